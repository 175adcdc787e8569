"""FRAME's orders: default learning rates, planted-order recovery, endpoint spread, float32 under casts.

The planted tests are ``benchmarks/frame_orders.py planted`` in small (results/frame_orders.md).
"""

import copy

import pytest
import torch
from torch import nn

import spectral_moe  # noqa: F401
from spectral_moe import FrameConfig, MoELoraConfig, create_optimizer
from spectral_moe.routing import route
from spectral_moe.spectral.frame import default_order_lr, transformed_factors
from spectral_moe.tuners.frame import FrameLinear

METHODS = ["weighted", "hermite", "chirp"]
D = 64
STEPS = 600
COMMON = dict(target_modules=["x"], r=1, lora_alpha=1.0, router_aux_loss_coef=0.0)


def _layer(config, d: int = D) -> FrameLinear:
    base = nn.Linear(d, d)
    with torch.no_grad():
        base.weight.zero_()
        base.bias.zero_()
    base.requires_grad_(False)
    return FrameLinear(base, "default", config)


def _delta(a_mat, b_mat, order: float, method: str) -> torch.Tensor:
    """One expert's ``Re(𝓕^{−a} B A 𝓕^{a})`` [d, d] via its transformed factors."""
    a2, b2 = transformed_factors(
        a_mat[None], b_mat[None], torch.tensor([float(order)], dtype=a_mat.dtype), method
    )
    return b2[0] @ a2[0]


def _target(method: str, a_star: float) -> torch.Tensor:
    """A rank-1 expert at order ``a*``: the ``A`` a layer seeded with 0 starts from, a random ``B*``."""
    torch.manual_seed(0)
    a_mat = _layer(FrameConfig(num_experts=1, top_k=1, **COMMON)).frame_A["default"][0].detach().double()
    b_mat = torch.randn(D, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return _delta(a_mat, b_mat, a_star, method).float()


def _train(config, target: torch.Tensor, steps: int = STEPS) -> tuple[FrameLinear, float]:
    """Adam (create_optimizer defaults, lr 1e-2, linear decay) on ``‖layer(x) − ΔW* x‖²``; held-out loss / power."""
    torch.manual_seed(0)
    layer = _layer(config)
    opt = create_optimizer(layer, lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    for _ in range(steps):
        x = torch.randn(64, D)
        loss = (layer(x) - x @ target.T).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        x = torch.randn(2048, D, generator=torch.Generator().manual_seed(7))
        ref = x @ target.T
        return layer, float((layer(x) - ref).pow(2).mean() / ref.pow(2).mean())


@pytest.mark.parametrize("a_star", [0.2, 0.7, 0.95])
def test_planted_order_is_recovered_by_the_default_transform(a_star):
    assert FrameConfig(target_modules=["x"]).transform == "weighted"
    target = _target("weighted", a_star)
    cfg = FrameConfig(num_experts=1, top_k=1, order_init=0.5, **COMMON)
    layer, loss = _train(cfg, target)
    _, loss_lora = _train(MoELoraConfig(num_experts=1, top_k=1, **COMMON), target)
    assert abs(float(layer.frame_orders("default").detach()[0]) - a_star) < 0.02
    assert loss < 1e-3
    assert loss_lora > 10 * loss


@pytest.mark.parametrize("method", METHODS)
def test_planted_spatial_target_is_fitted_at_the_default_init(method):
    """a* = 0 (a plain rank-1 LoRA target): FRAME's default spread has an order-0 expert from step 0, and
    the router's bias (default) sends every token to it; without the bias a linear router on zero-mean x
    cannot prefer one expert for all tokens (loss / power 1.1e-2, 9e-2, 0.11: results/frame_orders.md)."""
    target = _target("weighted", 0.0)
    cfg = FrameConfig(num_experts=4, top_k=2, transform=method, **COMMON)
    assert cfg.router_bias is True
    layer, loss = _train(cfg, target)
    _, loss_lora = _train(MoELoraConfig(num_experts=4, top_k=2, **COMMON), target)
    assert loss <= 2 * loss_lora or loss < 1e-2, (loss, loss_lora)
    bias = layer.frame_router["default"].bias.detach()
    assert int(bias.argmax()) == 0  # the learned preference is for the order-0 (LoRA) expert


def test_router_bias_defaults_and_errors():
    from spectral_moe import FourierMoEConfig

    assert FrameConfig(target_modules=["x"]).router_bias is True
    assert MoELoraConfig(target_modules=["x"]).router_bias is True
    assert FrameConfig(target_modules=["x"], router_bias=False).router_bias is False
    assert FrameConfig(target_modules=["x"], format_version=1).router_bias is False  # saved before it existed
    assert FrameConfig(target_modules=["x"], format_version=1, router_bias=True).router_bias is True
    assert FourierMoEConfig(target_modules=["x"]).router_bias is False
    assert FourierMoEConfig(target_modules=["x"], router_bias=True).router_bias is True
    for cls in (FrameConfig, MoELoraConfig, FourierMoEConfig):
        for bad in ("yes", 1, 0.0):
            with pytest.raises(TypeError, match="router_bias"):
                cls(target_modules=["x"], router_bias=bad)


def test_router_bias_starts_at_zero_stays_float32_and_is_a_router_parameter():
    layer = _layer(FrameConfig(target_modules=["x"], num_experts=4, init_lora_weights=False), 16)
    router = layer.frame_router["default"]
    assert router.bias is not None and torch.equal(router.bias, torch.zeros(4))
    x = torch.randn(5, 16)
    assert torch.equal(layer.router_weights("default", x), route(x @ router.weight.T, 2).gates)  # step 0
    with torch.no_grad():
        router.bias.copy_(torch.tensor([9.0, 8.0, 0.0, 0.0]))  # every token: experts 0 and 1
    gates = layer.router_weights("default", torch.randn(64, 16))
    assert torch.equal((gates > 0).sum(0), torch.tensor([64, 64, 0, 0]))
    assert layer.bfloat16().frame_router["default"].bias.dtype == torch.float32
    opt = create_optimizer(layer, lr=1e-3, router_lr=0.5)
    router_group = next(g for g in opt.param_groups if g["name"] == "router")
    assert any(p is router.bias for p in router_group["params"]) and router_group["lr"] == 0.5
    no_bias = _layer(FrameConfig(target_modules=["x"], num_experts=4, router_bias=False), 16)
    assert no_bias.frame_router["default"].bias is None


def test_a_format_1_checkpoint_without_router_bias_loads_unchanged(tmp_path):
    """Adapters saved before ``router_bias`` existed (format 1, no key in adapter_config.json, no bias
    tensor) load with bias-free routers and give the same outputs."""
    import json

    from peft import PeftModel, get_peft_model

    from tests.helpers import tiny_llama

    cfg = FrameConfig(
        target_modules=["q_proj"], num_experts=3, r=2, format_version=1, init_lora_weights=False
    )
    model = get_peft_model(tiny_llama(), cfg)
    model.save_pretrained(tmp_path)
    path = tmp_path / "adapter_config.json"
    saved = json.loads(path.read_text())
    saved.pop("router_bias")
    path.write_text(json.dumps(saved))
    loaded = PeftModel.from_pretrained(tiny_llama(), tmp_path)
    assert loaded.peft_config["default"].router_bias is False
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    new = get_peft_model(tiny_llama(), FrameConfig(target_modules=["q_proj"], num_experts=3, r=2))
    with torch.no_grad():
        for n, p in new.named_parameters():
            if "frame_router" in n and n.endswith("bias"):
                p.normal_()
    new.save_pretrained(tmp_path / "new")
    assert json.loads((tmp_path / "new" / "adapter_config.json").read_text())["router_bias"] is True
    back = PeftModel.from_pretrained(tiny_llama(), tmp_path / "new")
    with torch.no_grad():
        assert torch.equal(back(ids).logits, new(ids).logits)


@pytest.mark.parametrize("d", [64, 256])
@pytest.mark.parametrize("method", METHODS)
def test_one_step_at_the_default_order_lr_moves_delta_w_less_than_2_percent(method, d):
    """Adam's first step moves each order by its learning rate: ΔW of every expert changes < 2 %."""
    torch.manual_seed(d)
    cfg = FrameConfig(
        num_experts=5,
        top_k=5,
        r=4,
        transform=method,
        learn_order=True,
        init_lora_weights=False,
        **{k: v for k, v in COMMON.items() if k != "r"},
    )
    layer = _layer(cfg, d)
    with torch.no_grad():  # orders over [0, 2] (chirp: away from its branch points 0.5, 1.5)
        layer.frame_order["default"].copy_(torch.tensor([0.1, 0.3, 0.8, 1.2, 1.9]))
    for n, p in layer.named_parameters():
        p.requires_grad_("frame_order" in n)
    opt = create_optimizer(layer, lr=1e-3)
    assert opt.param_groups[0]["lr"] == pytest.approx(default_order_lr(method, d))
    before = layer.delta_weights("default").detach().double()
    x = torch.randn(32, d)
    layer(x).pow(2).sum().backward()
    opt.step()
    after = layer.delta_weights("default").detach().double()
    moved = (layer.frame_orders("default").detach() - torch.tensor([0.1, 0.3, 0.8, 1.2, 1.9])).abs()
    assert torch.allclose(moved, torch.full((5,), default_order_lr(method, d)), rtol=1e-2)
    change = (after - before).flatten(1).norm(dim=1) / before.flatten(1).norm(dim=1)
    assert change.max() < 0.02, change


def test_default_order_lr_is_a_function_of_transform_and_width():
    assert default_order_lr("weighted", 64) == default_order_lr("weighted", 4096)
    assert default_order_lr("hermite", 576) == pytest.approx(0.027 / 576)
    assert default_order_lr("chirp", 2048) == pytest.approx(0.025 / 2048)
    with pytest.raises(ValueError, match="method"):
        default_order_lr("fractional", 64)


def test_spread_includes_both_endpoints_and_hermite_orders_default_to_fixed():
    layer = _layer(FrameConfig(target_modules=["x"], num_experts=4), 16)
    assert torch.equal(layer.frame_orders("default"), torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))
    assert "default" in layer.frame_order  # weighted: learned
    for method in ("hermite", "chirp"):
        cfg = FrameConfig(target_modules=["x"], num_experts=3, transform=method)
        assert cfg.learn_order is False
        fixed = _layer(cfg, 16)
        assert "default" not in fixed.frame_order
        assert torch.equal(fixed.frame_orders("default"), torch.tensor([0.0, 0.5, 1.0]))
    assert FrameConfig(target_modules=["x"], transform="hermite", learn_order=True).learn_order is True
    one = _layer(FrameConfig(target_modules=["x"], num_experts=1, top_k=1), 16)
    assert torch.equal(one.frame_orders("default"), torch.tensor([0.5]))


def test_order_zero_expert_of_the_spread_is_exactly_lora():
    layer = _layer(
        FrameConfig(target_modules=["x"], num_experts=3, top_k=2, r=2, init_lora_weights=False), 10
    )
    lora = (16.0 / 2) * layer.frame_B["default"][0] @ layer.frame_A["default"][0]
    assert torch.allclose(layer.get_delta_weight("default", 0), lora, atol=1e-6)


@pytest.mark.parametrize("cast", ["to", "bfloat16", "half"])
def test_orders_and_router_stay_float32_under_half_casts_and_numbers_match(cast):
    """A bf16 order is off by ~1e-3: 40 % of a 256-wide hermite expert. Orders must stay float32."""
    torch.manual_seed(0)
    d = 256
    cfg = FrameConfig(
        target_modules=["x"],
        num_experts=3,
        top_k=2,
        r=2,
        transform="hermite",
        learn_order=True,
        init_lora_weights=False,
    )
    layer = FrameLinear(nn.Linear(d, d), "default", cfg)
    with torch.no_grad():
        layer.frame_order["default"].copy_(torch.tensor([0.1234567, 0.3456789, 0.8765432]))
        for p in layer.parameters():  # bf16-representable factors, so only the orders could differ
            if p.ndim >= 2:
                p.copy_(p.to(torch.bfloat16).float())
    ref = copy.deepcopy(layer).double()
    dtype = torch.bfloat16 if cast != "half" else torch.float16
    low = layer.to(dtype) if cast == "to" else getattr(layer, cast)()
    assert low.frame_order["default"].dtype == torch.float32
    assert low.frame_router["default"].weight.dtype == torch.float32
    assert low.frame_A["default"].dtype == dtype
    assert torch.equal(low.frame_orders("default").double(), ref.frame_orders("default"))
    x = torch.randn(8, d).to(dtype)
    y = low(x)
    assert y.dtype == dtype
    delta = y.double() - low.get_base_layer()(x).double()
    with torch.no_grad():
        expected = ref(x.double()) - ref.get_base_layer()(x.double())
    assert (delta - expected).abs().max() <= 0.03 * expected.abs().max()
    dw_low = low.get_delta_weight("default", 1).double()
    dw_ref = ref.get_delta_weight("default", 1)
    assert (dw_low - dw_ref).norm() / dw_ref.norm() < 0.02


def test_init_weights_is_an_alias_of_init_lora_weights():
    for name in ("init_weights", "init_lora_weights"):
        cfg = FrameConfig(target_modules=["x"], **{name: False})
        assert cfg.init_weights is False and cfg.init_lora_weights is False
        layer = _layer(cfg, 8)
        assert layer.frame_B["default"].abs().sum() > 0
        moe = MoELoraConfig(target_modules=["x"], **{name: False})
        assert moe.init_weights is False and moe.init_lora_weights is False
    cfg = FrameConfig(target_modules=["x"])
    assert cfg.init_weights is True and cfg.init_lora_weights is True
    assert _layer(cfg, 8).frame_B["default"].abs().sum() == 0
    assert FrameConfig(target_modules=["x"], init_weights=True, init_lora_weights=True).init_weights is True
    with pytest.raises(ValueError, match="init_weights"):
        FrameConfig(target_modules=["x"], init_weights=False, init_lora_weights=True)


def test_a_logit_checkpoint_of_earlier_versions_fails_to_load_naming_the_tensor(tmp_path):
    from peft import PeftModel, get_peft_model
    from safetensors.torch import load_file, save_file

    from tests.helpers import tiny_llama

    model = get_peft_model(tiny_llama(), FrameConfig(target_modules=["q_proj"], num_experts=2, r=2))
    model.save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    tensors = load_file(path)
    renamed = {k.replace("frame_order", "frame_order_logit"): v for k, v in tensors.items()}
    assert renamed != tensors
    save_file(renamed, path)
    with pytest.raises(ValueError, match="frame_order"):
        PeftModel.from_pretrained(tiny_llama(), tmp_path)


def test_alpha_one_readout_is_the_parity_even_part_in_the_fourier_domain():
    """``Re(𝓕^{−1} B A 𝓕) = 𝓕^{−1}·½(BA + J·BA·J)·𝓕`` (config docstring), rank ≤ 2r."""
    d, r = 12, 2
    a_mat = torch.randn(r, d, dtype=torch.float64)
    b_mat = torch.randn(d, r, dtype=torch.float64)
    for method in METHODS:
        dw = _delta(a_mat, b_mat, 1.0, method)
        ba = (b_mat @ a_mat).to(torch.complex128)
        j = torch.roll(torch.flip(torch.eye(d, dtype=torch.complex128), (0,)), 1, 0)
        f = torch.fft.fft(torch.eye(d, dtype=torch.complex128), norm="ortho")
        expected = f.conj().T @ (0.5 * (ba + j @ ba @ j)) @ f
        assert torch.allclose(dw.to(torch.complex128), expected, atol=1e-10)
        assert int(torch.linalg.matrix_rank(dw)) <= 2 * r

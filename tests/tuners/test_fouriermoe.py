import json

import pytest
import torch
from peft import FourierFTConfig, PeftConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import Trainer, TrainingArguments
from transformers.pytorch_utils import Conv1D

import spectral_moe  # noqa: F401  (registers the methods with peft)
from spectral_moe import FourierMoEConfig, routing
from spectral_moe.tuners.fouriermoe import FourierMoELayer, FourierMoELinear
from tests.helpers import ToyLM, tiny_gpt2, tiny_llama
from tests.oracles import load_balancing_loss

SHAPES = [(12, 12), (9, 9), (10, 7), (6, 16)]


def _layer(shape, dtype=torch.float64, conv1d=False, **kw):
    d_out, d_in = shape
    base = Conv1D(d_out, d_in) if conv1d else torch.nn.Linear(d_in, d_out)
    base = base.to(dtype)
    cfg = dict(
        target_modules=["x"], num_experts=3, top_k=2, n_frequency=4, init_weights=False, fan_in_fan_out=conv1d
    )
    cfg.update(kw)
    return FourierMoELinear(base, "default", FourierMoEConfig(**cfg)).to(dtype)


def _contract_rhs(layer, x, adapter="default"):
    gates = layer.router_weights(adapter, x)
    z = layer.fouriermoe_config[adapter].num_experts
    return sum(gates[..., i : i + 1] * (x @ layer.get_delta_weight(adapter, i).T) for i in range(z))


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("conv1d", [False, True])
@pytest.mark.parametrize("layout", ["radial", "uniform"])
@pytest.mark.parametrize("mode", ["fft", "dense", "auto"])
@pytest.mark.parametrize("shape", SHAPES)
def test_contract_identity_fp64(shape, mode, layout, conv1d):
    layer = _layer(shape, forward_mode=mode, band_layout=layout, conv1d=conv1d)
    x = torch.randn(2, 5, shape[1], dtype=torch.float64)
    lhs = layer(x) - layer.get_base_layer()(x)
    assert _rel(lhs, _contract_rhs(layer, x)) < 1e-10
    gates = layer.router_weights("default", x)
    assert torch.allclose(gates.sum(-1), torch.ones(2, 5, dtype=torch.float64))
    assert ((gates > 0).sum(-1) == 2).all()


@pytest.mark.parametrize("shape", SHAPES)
def test_fft_path_equals_dense_path_fp32(shape):
    fft = _layer(shape, torch.float32, forward_mode="fft")
    dense = _layer(shape, torch.float32, forward_mode="dense")
    dense.load_state_dict(fft.state_dict())
    x = torch.randn(4, 6, shape[1])
    base = fft.get_base_layer()(x)
    assert _rel(fft(x) - base, dense(x) - base) < 1e-5
    assert _rel(fft(x) - base, _contract_rhs(fft, x)) < 1e-5


def test_spectral_router_features_contract():
    layer = _layer((12, 10), router_features="spectral", router_spectral_bands=3)
    assert layer.fouriermoe_router["default"].in_features == 10 + 3
    x = torch.randn(7, 10, dtype=torch.float64)
    assert _rel(layer(x) - layer.get_base_layer()(x), _contract_rhs(layer, x)) < 1e-10


def test_router_stats_after_forward():
    layer = _layer((12, 12), num_experts=4, top_k=1)
    layer(torch.randn(30, 12, dtype=torch.float64))
    stats = layer.router_stats["default"]
    assert stats["mean_prob"].shape == stats["dispatch_fraction"].shape == (4,)
    assert stats["dispatch_fraction"].sum().item() == pytest.approx(1.0)
    assert stats["mean_prob"].sum().item() == pytest.approx(1.0)


def test_gradcheck_through_coefficients_and_router():
    layer = _layer((7, 6), num_experts=2, top_k=2, n_frequency=3, forward_mode="fft")
    x = torch.randn(3, 6, dtype=torch.float64)
    names = [
        "fouriermoe_spectrum_real.default",
        "fouriermoe_spectrum_imag.default",
        "fouriermoe_router.default.weight",
    ]
    params = {n: p for n, p in layer.named_parameters()}
    inputs = tuple(params[n].detach().clone().requires_grad_(True) for n in names)

    def f(*tensors):
        return torch.func.functional_call(layer, dict(zip(names, tensors)), (x,))

    assert torch.autograd.gradcheck(f, inputs)


def test_real_coefficients_have_no_imaginary_parameter():
    layer = _layer((8, 8), complex_coefficients=False)
    assert "default" not in layer.fouriermoe_spectrum_imag
    x = torch.randn(5, 8, dtype=torch.float64)
    assert _rel(layer(x) - layer.get_base_layer()(x), _contract_rhs(layer, x)) < 1e-10


def test_single_expert_reproduces_peft_fourierft_exactly():
    torch.manual_seed(0)
    base = torch.nn.Sequential()
    base.add_module("lin", torch.nn.Linear(20, 24))
    fft_cfg = FourierFTConfig(target_modules=["lin"], n_frequency=30, scaling=150.0, random_loc_seed=5)
    ref = get_peft_model(base, fft_cfg)
    ref_layer = ref.base_model.model.lin
    with torch.no_grad():
        ref_layer.fourierft_spectrum["default"].normal_()
    expected = ref_layer.get_delta_weight("default")

    layer = FourierMoELinear(
        torch.nn.Linear(20, 24),
        "default",
        FourierMoEConfig(
            target_modules=["lin"],
            num_experts=1,
            top_k=1,
            complex_coefficients=False,
            n_frequency=30,
            scaling=150.0,
        ),
    )
    idx = ref_layer.indices["default"]
    layer.fouriermoe_rows["default"] = idx[0].view(1, -1).clone()
    layer.fouriermoe_cols["default"] = idx[1].view(1, -1).clone()
    with torch.no_grad():
        layer.fouriermoe_spectrum_real["default"].copy_(ref_layer.fourierft_spectrum["default"].view(1, -1))
    got = layer.get_delta_weight("default", 0)
    assert got.shape == expected.shape == (24, 20)
    assert torch.allclose(got, expected, rtol=0, atol=1e-6 * expected.abs().max().item())
    x = torch.randn(3, 20)
    assert torch.allclose(layer(x) - layer.get_base_layer()(x), x @ expected.T, atol=1e-5)


def test_zero_init_equals_base_model_exactly():
    base = tiny_llama()
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        ref = base(ids).logits.clone()
    model = get_peft_model(
        base, FourierMoEConfig(target_modules=["q_proj", "v_proj", "down_proj"], n_frequency=8)
    )
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref)


def test_only_adapter_parameters_are_trainable_gpt2():
    model = get_peft_model(tiny_gpt2(), FourierMoEConfig(target_modules=["c_attn", "c_fc"], n_frequency=8))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    adapter = {n for n in trainable if "fouriermoe_" in n}
    assert trainable == adapter and len(adapter) == 3 * 2 * 2
    base = [p for n, p in model.named_parameters() if "fouriermoe_" not in n]
    assert base and not any(p.requires_grad for p in base)


def test_only_adapter_parameters_are_trainable():
    model = get_peft_model(tiny_llama(), FourierMoEConfig(target_modules=["q_proj", "v_proj"], n_frequency=8))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(
        any(k in n for k in ("fouriermoe_spectrum_real", "fouriermoe_spectrum_imag", "fouriermoe_router"))
        for n in trainable
    )
    n_layers = 2 * 2  # two layers × (q_proj, v_proj)
    assert len(trainable) == 3 * n_layers
    expected = n_layers * (2 * 8 * 8 + 32 * 8)  # real+imag coefficients + router 32→8
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected


def _perturb(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g))


@pytest.mark.parametrize(
    "factory,targets", [(tiny_llama, ["q_proj", "v_proj"]), (tiny_gpt2, ["c_attn", "c_fc"])]
)
def test_save_load_round_trip_is_exact(tmp_path, factory, targets):
    model = get_peft_model(factory(), FourierMoEConfig(target_modules=targets, n_frequency=6, num_experts=4))
    _perturb(model)
    model.eval()
    ids = torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        out = model(ids).logits
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".json", ".safetensors")) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    keys = load_file(tmp_path / "adapter_model.safetensors").keys()
    assert not any("rows" in k or "cols" in k for k in keys)  # positions are re-derived from the seed
    assert json.loads((tmp_path / "adapter_config.json").read_text())["peft_type"] == "FOURIERMOE"
    assert isinstance(PeftConfig.from_pretrained(tmp_path), FourierMoEConfig)
    loaded = PeftModel.from_pretrained(factory(), tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, out)


def test_gpt2_conv1d_layers_satisfy_the_contract():
    model = get_peft_model(
        tiny_gpt2(),
        FourierMoEConfig(target_modules=["c_attn"], n_frequency=6, num_experts=4, init_weights=False),
    )
    layer = model.base_model.model.transformer.h[0].attn.c_attn
    assert isinstance(layer.get_base_layer(), Conv1D) and layer.fan_in_fan_out
    assert (layer.out_features, layer.in_features) == (96, 32)
    x = torch.randn(3, 32)
    assert _rel(layer(x) - layer.get_base_layer()(x), _contract_rhs(layer, x)) < 1e-5


@pytest.mark.parametrize(
    "factory,targets,scaling",
    [
        (tiny_llama, ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"], 300.0),
        (tiny_gpt2, ["c_attn", "c_proj", "c_fc"], 30.0),
    ],
)
def test_trainer_lowers_loss_and_checkpoint_reloads(tmp_path, factory, targets, scaling):
    model = get_peft_model(
        factory(),
        FourierMoEConfig(
            target_modules=targets,
            n_frequency=16,
            num_experts=4,
            top_k=2,
            scaling=scaling,
        ),
    )
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=40,
        learning_rate=0.05,
        per_device_train_batch_size=16,
        logging_steps=5,
        save_steps=40,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=ToyLM(64))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0] - 0.1, losses  # LoRA r=8 reaches about the same drop here
    model.eval()
    ids = ToyLM(4, seed=9).ids
    with torch.no_grad():
        out = model(ids).logits
    loaded = PeftModel.from_pretrained(factory(), tmp_path / "run" / "checkpoint-40")
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, out)


def test_router_aux_loss_is_added_in_training_only():
    cfg = FourierMoEConfig(target_modules=["q_proj", "v_proj"], n_frequency=6, router_aux_loss_coef=0.5)
    model = get_peft_model(tiny_llama(), cfg)
    _perturb(model)
    ids = torch.randint(0, 64, (2, 8))
    model.eval()
    with torch.no_grad():
        eval_loss = model(input_ids=ids, labels=ids).loss
    model.train()
    layers = [m for m in model.modules() if isinstance(m, FourierMoELayer)]
    inputs = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach())) for m in layers]
    train_out = model(input_ids=ids, labels=ids)
    for h in hooks:
        h.remove()
    aux = model.get_router_aux_loss()
    manual = torch.stack(  # Z Σ_z f_z P_z per layer, recomputed from the gates the layer uses
        [
            load_balancing_loss(routing.route(m.fouriermoe_router["default"](x), 2))
            for m, x in zip(layers, inputs)
        ]
    ).mean()
    assert len(layers) == 4 and aux.item() == pytest.approx(manual.item())
    assert train_out.loss.item() == pytest.approx(eval_loss.item() + 0.5 * aux.item(), rel=1e-6)
    assert model.get_router_aux_loss(weighted=True).item() == pytest.approx(0.5 * aux.item())
    train_out.loss.backward()
    router = layers[0].fouriermoe_router["default"].weight
    assert router.grad is not None and router.grad.abs().sum() > 0


def test_bf16_model_forward_and_backward():
    base = tiny_llama().to(torch.bfloat16)
    model = get_peft_model(base, FourierMoEConfig(target_modules=["q_proj", "v_proj"], n_frequency=8))
    _perturb(model)
    model.train()
    ids = torch.randint(0, 64, (2, 8))
    out = model(input_ids=ids, labels=ids)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(num_experts=2, top_k=3), "top_k"),
        (dict(top_k=0), "top_k"),
        (dict(band_layout="rings"), "band_layout"),
        (dict(router_features="tokens"), "router_features"),
        (dict(forward_mode="sparse"), "forward_mode"),
        (dict(n_frequency=0), "n_frequency"),
        (dict(num_experts=0), "num_experts"),
        (dict(bias="lora_only"), "bias"),
        (dict(router_temperature=0.0), "router_temperature"),
        (dict(format_version=99), "format_version"),
    ],
)
def test_invalid_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field) as err:
        FourierMoEConfig(target_modules=["q_proj"], **kwargs)
    if field in ("band_layout", "router_features", "forward_mode"):
        assert "must be one of" in str(err.value)


def test_n_frequency_larger_than_a_band_is_an_error_at_injection():
    # q_proj is 32x32: half-plane 510 positions, 8 radial bands of 63
    with pytest.raises(ValueError, match=r"n_frequency must be in \[1, 63\]"):
        get_peft_model(tiny_llama(), FourierMoEConfig(target_modules=["q_proj"], n_frequency=64))


def test_no_module_matched_is_an_error():
    with pytest.raises(ValueError, match="target_modules"):
        get_peft_model(tiny_llama(), FourierMoEConfig(target_modules=["nonexistent_proj"]))


def test_exclude_and_layers_to_transform():
    model = get_peft_model(
        tiny_llama(),
        FourierMoEConfig(
            target_modules=["q_proj", "v_proj"],
            exclude_modules=["v_proj"],
            layers_to_transform=[1],
            n_frequency=8,
        ),
    )
    adapted = [n for n, m in model.named_modules() if isinstance(m, FourierMoELayer)]
    assert adapted == ["base_model.model.model.layers.1.self_attn.q_proj"]


def test_modules_to_save_is_trained_and_saved(tmp_path):
    model = get_peft_model(
        tiny_llama(), FourierMoEConfig(target_modules=["q_proj"], n_frequency=6, modules_to_save=["lm_head"])
    )
    assert any("modules_to_save" in n and p.requires_grad for n, p in model.named_parameters())
    model.save_pretrained(tmp_path)
    assert any("lm_head" in k for k in load_file(tmp_path / "adapter_model.safetensors"))


def test_multiple_adapters_and_disable_adapter():
    base = tiny_llama()
    ids = torch.randint(0, 64, (2, 8))
    with torch.no_grad():
        ref = base(ids).logits.clone()
    model = get_peft_model(base, FourierMoEConfig(target_modules=["q_proj"], n_frequency=6))
    model.add_adapter(
        "second", FourierMoEConfig(target_modules=["q_proj"], n_frequency=4, num_experts=2, top_k=1)
    )
    _perturb(model)
    model.set_adapter("second")
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert layer.fouriermoe_spectrum_real["second"].shape == (2, 4)
    assert layer.fouriermoe_spectrum_real["second"].requires_grad
    assert not layer.fouriermoe_spectrum_real["default"].requires_grad
    with torch.no_grad():
        second = model(ids).logits
        model.set_adapter("default")
        first = model(ids).logits
        with model.disable_adapter():
            disabled = model(ids).logits
    assert not torch.equal(first, second)
    assert torch.equal(disabled, ref)


def test_merge_single_expert_exact_and_refuse_routed(tmp_path):
    ids = torch.randint(0, 64, (2, 8))
    model = get_peft_model(
        tiny_llama(),
        FourierMoEConfig(target_modules=["q_proj", "v_proj"], num_experts=1, top_k=1, n_frequency=8),
    )
    _perturb(model)
    with torch.no_grad():
        out = model(ids).logits
        merged = model.merge_and_unload()
        assert torch.allclose(merged(ids).logits, out, atol=1e-5)

    routed = get_peft_model(tiny_llama(), FourierMoEConfig(target_modules=["q_proj"], n_frequency=8))
    with pytest.raises(ValueError, match="routed experts depend on each token"):
        routed.merge_and_unload()
    layer = routed.base_model.model.model.layers[0].self_attn.q_proj
    before = layer.get_base_layer().weight.clone()
    with pytest.raises(ValueError, match="num_experts=8"):
        layer.merge()
    assert torch.equal(layer.get_base_layer().weight, before)


def test_spectral_router_and_fft_path_share_one_rfft(monkeypatch):
    layer = _layer((12, 10), router_features="spectral", router_spectral_bands=3, forward_mode="fft")
    x = torch.randn(7, 10, dtype=torch.float64)
    expected = _contract_rhs(layer, x)
    calls = []
    rfft = torch.fft.rfft

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return rfft(*args, **kwargs)

    monkeypatch.setattr(torch.fft, "rfft", counting)
    out = layer(x) - layer.get_base_layer()(x)
    assert len(calls) == 1
    assert _rel(out, expected) < 1e-10

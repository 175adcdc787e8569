"""What peft's generic tuner suite (``tests/test_custom_models.py``) expects of a tuner, on our three
configs: routers trained by the task for top-1, no router for one expert, deepcopy after a forward,
merging only the named adapters, mixed-adapter batches, clear errors for what is unsupported, and
float32 routers/coefficients under half-precision casts."""

import copy

import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn

import spectral_moe  # noqa: F401  (registers the methods with peft)
from spectral_moe import FourierMoEConfig, FrameConfig, MoELoraConfig, create_optimizer
from spectral_moe.tuners.moe_common import RoutedLayerMixin, resolved_loss_stats


class MLP(nn.Module):
    """peft's test model (``tests/test_custom_models.py::MLP``)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin0 = nn.Linear(10, 20)
        self.relu = nn.ReLU()
        self.lin1 = nn.Linear(20, 2)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.lin1(self.relu(self.lin0(X.to(self.lin0.weight.dtype))))


METHODS = {
    "fouriermoe": lambda **kw: FourierMoEConfig(n_frequency=4, **kw),
    "frame": lambda **kw: FrameConfig(r=2, **kw),
    "moelora": lambda **kw: MoELoraConfig(r=2, **kw),
}
NOISE = {"fouriermoe": {"init_weights": False}, "frame": {"init_lora_weights": False}}


def _config(method: str, random_init: bool = False, **kw):
    if random_init:
        kw = {**NOISE.get(method, {"init_lora_weights": False}), **kw}
    return METHODS[method](**kw)


def _model(method: str, seed: int = 0, random_init: bool = False, **kw) -> PeftModel:
    torch.manual_seed(seed)
    kw.setdefault("target_modules", ["lin0", "lin1"])
    return get_peft_model(MLP(), _config(method, random_init, **kw))


def _layers(model: nn.Module) -> list[RoutedLayerMixin]:
    return [m for m in model.modules() if isinstance(m, RoutedLayerMixin)]


X = torch.randn(9, 10, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- top-1 routers train on the task
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_router_gets_a_task_loss_gradient_for_every_top_k(method, top_k):
    """k = 1 (Switch gate p_z), k = 2 and k = Z: the task loss alone (aux loss off) moves the router."""
    model = _model(method, random_init=True, num_experts=3, top_k=top_k, router_aux_loss_coef=0.0)
    model.train()
    model(X).square().sum().backward()
    routers = [p for n, p in model.named_parameters() if "router" in n]
    others = [p for n, p in model.named_parameters() if "router" not in n and p.grad is not None]
    scale = max(p.grad.abs().max() for p in others)
    assert routers
    for p in routers:  # a renormalised top-1 gate (≡ 1) leaves only rounding noise, ~1e-9 of the scale
        assert p.grad is not None and p.grad.abs().max() > 1e-3 * scale


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("experts", [(2, 1), (1, 1)])
def test_only_params_are_updated_and_all_of_them(method, experts):
    """peft's ``test_only_params_are_updated``: SGD steps change every adapter parameter (routers of
    top-1 adapters included, trained by the task alone here; one expert has no router to leave
    untrained) and nothing else."""
    num_experts, top_k = experts
    model = _model(method, num_experts=num_experts, top_k=top_k, router_aux_loss_coef=0.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        model(X).sum().backward()
        opt.step()
    after = dict(model.named_parameters())
    for name, p in before.items():
        adapter = model.prefix in name
        if adapter:  # moved by more than rounding noise (a renormalised top-1 router moves ~1e-5 of its size)
            moved = (after[name] - p).abs().max()
            assert moved > 1e-3 * (p.abs().max() + 1e-3), f"{name} never changed"
        else:
            assert torch.equal(p, after[name]), f"{name} changed"


# ---------------------------------------------------------------- one expert: no router, gates ≡ 1
@pytest.mark.parametrize("method", list(METHODS))
def test_single_expert_has_no_router_and_no_aux_loss(method, tmp_path):
    model = _model(method, random_init=True, num_experts=1, top_k=1)
    assert not [n for n, _ in model.named_parameters() if "router" in n]
    layer = _layers(model)[0]
    assert not layer.is_routed("default")
    assert torch.equal(layer.router_weights("default", X), torch.ones(9, 1))
    model.train()
    out = model(X)
    assert model.get_router_aux_loss() is None  # nothing to balance
    stats = layer.router_stats["default"]  # statistics still logged: one expert gets everything
    assert stats["dispatch_fraction"].tolist() == [1.0] and stats["mean_prob"].tolist() == [1.0]
    create_optimizer(model, lr=1e-3, order_lr=1e-2)  # the optimizer factory copes without routers
    # the single expert's update is exactly its ΔW (gate 1)
    base = model.get_base_model()
    h = base.relu(base.lin0(X))  # the adapted first layer
    lin1 = _layers(model)[1]
    expected = lin1.get_base_layer()(h) + h @ lin1.get_delta_weight("default", 0).T.to(h.dtype)
    assert torch.allclose(out, expected, atol=1e-5)
    # save / load round trip, and merging is exact
    model.eval()
    ref = model(X)
    model.save_pretrained(tmp_path)
    assert not [k for k in load_file(tmp_path / "adapter_model.safetensors") if "router" in k]
    torch.manual_seed(0)
    loaded = PeftModel.from_pretrained(MLP(), tmp_path)
    assert torch.equal(loaded(X), ref)
    merged = loaded.merge_and_unload()
    assert torch.allclose(merged(X), ref, atol=1e-5)


def test_single_expert_checkpoint_with_an_old_router_still_loads(tmp_path):
    """Checkpoints written before single experts lost their router hold an untrained one: it is dropped."""
    model = _model("fouriermoe", random_init=True, num_experts=1, top_k=1).eval()
    ref = model(X)
    model.save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    tensors = load_file(path)
    tensors["base_model.model.lin0.fouriermoe_router.weight"] = torch.randn(1, 10)
    save_file(tensors, path)
    torch.manual_seed(0)
    loaded = PeftModel.from_pretrained(MLP(), tmp_path)
    assert torch.equal(loaded(X), ref)


# ---------------------------------------------------------------- deepcopy after a forward
@pytest.mark.parametrize("method", list(METHODS))
def test_deepcopy_after_a_training_forward_and_aux_loss_still_available(method):
    model = _model(method, random_init=True, num_experts=3, top_k=2)
    model.train()
    out = model(X)
    twin = copy.deepcopy(model)  # graph tensors of the last forward are not copied
    aux = model.get_router_aux_loss(weighted=True)  # the original still has them (custom loops)
    assert aux is not None and aux.requires_grad
    (out.sum() + aux).backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "router" in n)
    assert twin.get_router_aux_loss() is None  # the copy starts without a forward
    twin.eval()
    model.eval()
    assert torch.equal(twin(X), model(X))


@pytest.mark.parametrize("method", list(METHODS))
def test_eval_forward_keeps_no_graph(method):
    """Outside training the recorded loss statistics are detached: no graph outlives the forward."""
    model = _model(method, random_init=True, num_experts=3, top_k=2).eval()
    model(X)
    for layer in _layers(model):
        for stats in layer._router_losses.values():
            stats = resolved_loss_stats(stats)  # deferred in evaluation until read
            assert stats.prob_sum.grad_fn is None and stats.lse_sq_sum.grad_fn is None
    assert model.get_router_aux_loss() is not None
    copy.deepcopy(model)


# ---------------------------------------------------------------- merging checks only the named adapters
@pytest.mark.parametrize("method", list(METHODS))
def test_merge_only_the_named_single_expert_adapter(method):
    torch.manual_seed(0)
    model = get_peft_model(MLP(), _config(method, True, target_modules=["lin0"], num_experts=1, top_k=1), "a")
    model.add_adapter("b", _config(method, True, target_modules=["lin0"], num_experts=3, top_k=2))
    model.set_adapter("a")
    model.eval()
    ref = model(X)
    weight = model.get_base_model().lin0.get_base_layer().weight.detach().clone()
    with pytest.raises(ValueError, match="'b' has num_experts=3"):
        model.merge_adapter(["b"])
    assert torch.equal(model.get_base_model().lin0.get_base_layer().weight, weight)  # untouched
    model.merge_adapter(["a"])
    assert torch.allclose(model(X), ref, atol=1e-5)
    model.unmerge_adapter()
    assert torch.allclose(model.get_base_model().lin0.get_base_layer().weight, weight, atol=1e-6)
    merged = copy.deepcopy(model).merge_and_unload(adapter_names=["a"])
    assert torch.allclose(merged(X), ref, atol=1e-5)
    with pytest.raises(ValueError, match="'b' has num_experts=3"):
        model.merge_and_unload(adapter_names=["a", "b"])


# ---------------------------------------------------------------- mixed-adapter batches
@pytest.mark.parametrize("method", list(METHODS))
def test_mixed_adapter_batch_gives_each_row_its_adapter(method):
    torch.manual_seed(0)
    model = get_peft_model(MLP(), _config(method, True, target_modules=["lin0", "lin1"], num_experts=3), "a")
    model.add_adapter("b", _config(method, True, target_modules=["lin0"], num_experts=1, top_k=1))
    model.eval()
    with torch.no_grad():
        outs = {}
        for name in ("a", "b"):
            model.set_adapter(name)
            outs[name] = model(X)
        with model.disable_adapter():
            outs["__base__"] = model(X)
        names = [("a", "b", "__base__")[i % 3] for i in range(9)]
        mixed = model(X, adapter_names=names)
    assert not torch.allclose(outs["a"], outs["b"])
    for i, name in enumerate(names):
        assert torch.allclose(mixed[i], outs[name][i], atol=1e-6), (i, name)
    with pytest.raises(ValueError, match="non-existing adapter"):
        model(X, adapter_names=["a"] * 8 + ["c"])
    with pytest.raises(ValueError, match="Length of `adapter_names`"):
        model(X, adapter_names=["a"] * 8)
    model.train()
    with pytest.raises(ValueError, match="training mode"):
        model(X, adapter_names=names)


def test_unsupported_combinations_say_what_is_supported(tmp_path):
    model = _model("fouriermoe", num_experts=3)
    with pytest.raises(NotImplementedError, match="LoRA only"):
        model.add_weighted_adapter(["default"], [1.0], "mix")
    from peft.utils.hotswap import hotswap_adapter

    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="only supports"):
        hotswap_adapter(model, str(tmp_path), adapter_name="default", torch_device="cpu")


def test_init_weights_false_is_the_generic_name_for_fouriermoe():
    """peft's generic harness passes ``init_weights=False`` to methods it does not know."""
    model = _model("fouriermoe", num_experts=2, init_weights=False)
    assert all(p.abs().sum() > 0 for n, p in model.named_parameters() if "spectrum" in n)
    zero = _model("fouriermoe", num_experts=2, init_weights=True)
    assert all(p.abs().sum() == 0 for n, p in zero.named_parameters() if "spectrum" in n)


# ---------------------------------------------------------------- float32 adapters in a half-precision model
@pytest.mark.parametrize("cast", ["to_bf16", "half", "bfloat16"])
def test_half_precision_cast_keeps_router_and_coefficients_float32_exactly(cast):
    model = _model("fouriermoe", random_init=True, num_experts=3, top_k=2, scaling=10.0).eval()
    kept = {n: p.detach().clone() for n, p in model.named_parameters() if model.prefix in n}
    ref = model(X)
    low = {
        "to_bf16": lambda m: m.to(torch.bfloat16),
        "half": lambda m: m.half(),
        "bfloat16": lambda m: m.bfloat16(),
    }
    low[cast](model)
    params = dict(model.named_parameters())
    assert params["base_model.model.lin0.base_layer.weight"].dtype in (torch.bfloat16, torch.float16)
    for name, value in kept.items():
        assert params[name].dtype == torch.float32, name
        assert torch.equal(params[name], value), name  # bit-identical: never rounded through half
    out = model(X)
    assert out.dtype == params["base_model.model.lin1.base_layer.weight"].dtype
    # the half-precision base layers round activations to 8 (bf16) / 11 (fp16) mantissa bits
    rel = ((out.float() - ref).abs().max() / ref.abs().max()).item()
    assert rel < 0.02, rel  # measured: bf16 3.3e-3, fp16 3.9e-4
    model.float()  # back to float32: the adapter is still the original one
    assert all(torch.equal(dict(model.named_parameters())[n], v) for n, v in kept.items())
    model.double()  # wider dtypes still apply
    assert all(p.dtype == torch.float64 for p in model.parameters())


def test_adapter_on_a_bf16_base_is_float32_and_routes_in_float32_under_autocast():
    """get_peft_model on a bf16 model (peft upcasts the adapter) and a forward under bf16 autocast: the
    router logits are float32, the output bf16."""
    torch.manual_seed(0)
    model = get_peft_model(
        MLP().to(torch.bfloat16), _config("fouriermoe", True, target_modules=["lin0"], num_experts=3)
    )
    for name, p in model.named_parameters():
        assert p.dtype == (torch.float32 if model.prefix in name else torch.bfloat16), name
    layer = _layers(model)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        routing = layer._routing("default", X.to(torch.bfloat16))
        out = model(X)
    assert routing.logits.dtype == torch.float32
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    model.to(torch.bfloat16)  # a later cast keeps them float32
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if model.prefix in n)


def test_frame_router_stays_float32_under_bf16_cast():
    model = _model("frame", random_init=True, num_experts=3).to(torch.bfloat16)
    routers = [p for n, p in model.named_parameters() if "router" in n]
    assert routers and all(p.dtype == torch.float32 for p in routers)
    assert torch.isfinite(model.eval()(X)).all()

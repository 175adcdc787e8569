"""FRAME / MoE-LoRA ``expert_mode``: only the routed experts (grouped matmuls) or all of them, and the cost model."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model

import spectral_moe.spectral.frame as frame_math
from spectral_moe import FrameConfig, MoELoraConfig
from spectral_moe.spectral.frame import routed_is_cheaper, routed_path_available
from spectral_moe.training.methods import build_peft_config
from spectral_moe.tuners.frame import FrameLinear
from tests.helpers import tiny_llama
from tests.tuners.test_no_host_sync import host_syncs  # noqa: F401 (the spy fixture)

CONFIGS = {"frame": FrameConfig, "moelora": MoELoraConfig}


def _layer(method: str, mode: str, d_in: int = 16, d_out: int = 12, dtype=torch.float32, **kw) -> FrameLinear:
    torch.manual_seed(0)
    cfg = dict(target_modules=["x"], num_experts=6, top_k=2, r=4, init_lora_weights=False, expert_mode=mode)
    cfg.update(kw)
    base = torch.nn.Linear(d_in, d_out).requires_grad_(False)
    return FrameLinear(base, "default", CONFIGS[method](**cfg)).to(dtype)


def _output_and_grads(layer: FrameLinear, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    x = x.clone().requires_grad_(True)
    y = layer(x)
    params = {n: p for n, p in layer.named_parameters() if p.requires_grad}
    grads = torch.autograd.grad(y, [x, *params.values()], torch.ones_like(y) + x[..., : y.shape[-1]].detach())
    return y, dict(zip(["x", *params], grads, strict=True))


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_routed_equals_all_experts_output_and_gradients(method):
    x = torch.randn(3, 7, 16, generator=torch.Generator().manual_seed(1))
    routed, every = _layer(method, "routed"), _layer(method, "all")
    assert routed._routed_path("default", x, *routed.effective_factors("default"))
    assert not every._routed_path("default", x, *every.effective_factors("default"))
    y_r, g_r = _output_and_grads(routed, x)
    y_a, g_a = _output_and_grads(every, x)
    torch.testing.assert_close(y_r, y_a, atol=2e-6, rtol=1e-5)
    assert g_r.keys() == g_a.keys() and {"x", "frame_A.default", "frame_B.default"} <= g_r.keys()
    for name in g_a:
        torch.testing.assert_close(g_r[name], g_a[name], atol=2e-6, rtol=1e-5, msg=name)


def test_routed_float32_matches_the_float64_formula_with_empty_experts():
    """Every token to experts 0 and 3 (router bias): the other groups are empty; the output is still
    ``Σ_{z ∈ top-k} g_z ΔW_z x`` with ``ΔW_z`` from dense float64 transform matrices."""
    layer = _layer("frame", "routed", num_experts=5)
    with torch.no_grad():
        router = layer.frame_router["default"]
        router.weight.mul_(1e-3)
        router.bias.copy_(torch.tensor([5.0, -5.0, -5.0, 4.0, -5.0]))
        layer.frame_order["default"].copy_(torch.tensor([0.0, 0.4, 1.0, 1.3, 2.0]))
    x = torch.randn(9, 16, generator=torch.Generator().manual_seed(2))
    gates = layer.router_weights("default", x).double()
    assert (gates[:, [1, 2, 4]] == 0).all()
    y = layer(x) - layer.get_base_layer()(x)
    layer64 = _layer("frame", "all", num_experts=5, dtype=torch.float64)
    layer64.load_state_dict({k: v.double() for k, v in layer.state_dict().items()})
    expect = sum(
        gates[:, z : z + 1] * (x.double() @ layer64.get_delta_weight("default", z).T) for z in range(5)
    )
    torch.testing.assert_close(y.double(), expect, atol=1e-5, rtol=1e-5)
    y.sum().backward()
    grad_b = layer.frame_B["default"].grad
    assert grad_b[[1, 2, 4]].abs().max() == 0 and grad_b[[0, 3]].abs().max() > 0


def test_routed_falls_back_to_all_experts_where_grouped_matmuls_cannot_run():
    x64 = torch.randn(4, 16, dtype=torch.float64)
    layer64 = _layer("moelora", "routed", dtype=torch.float64)
    assert not layer64._routed_path("default", x64, *layer64.effective_factors("default"))  # float64
    odd = _layer("moelora", "routed", d_in=10)  # 40-byte rows: not a multiple of 16 bytes
    x = torch.randn(4, 10)
    assert not routed_path_available(x, *odd.effective_factors("default"))
    torch.testing.assert_close(odd(x), _layer("moelora", "all", d_in=10)(x))
    one = _layer("moelora", "routed", num_experts=2, top_k=2)  # top_k = Z: nothing to skip
    assert not one._routed_path("default", torch.randn(4, 16), *one.effective_factors("default"))


def test_cost_model_decisions():
    """``k·(Z − 2) > 120`` at top_k 2 (CPU fit); never on other devices (nothing measured there)."""
    shape = dict(tokens=1024, d_in=576, d_out=576, top_k=2)
    assert not routed_is_cheaper(num_experts=8, k=8, device_type="cpu", **shape)  # MoE-LoRA default
    assert not routed_is_cheaper(num_experts=8, k=16, device_type="cpu", **shape)  # FRAME default
    assert not routed_is_cheaper(num_experts=16, k=8, device_type="cpu", **shape)
    assert routed_is_cheaper(num_experts=16, k=16, device_type="cpu", **shape)
    assert routed_is_cheaper(num_experts=32, k=8, device_type="cpu", **shape)
    assert not routed_is_cheaper(num_experts=32, k=8, device_type="cuda", **shape)
    assert not routed_is_cheaper(num_experts=8, k=8, device_type="cpu", **{**shape, "top_k": 8})


@pytest.mark.parametrize("mode,expect_routed", [("auto", False), ("auto", True), ("all", False)])
def test_auto_follows_the_cost_model(mode, expect_routed, monkeypatch):
    calls = []
    monkeypatch.setattr(frame_math, "routed_is_cheaper", lambda *a, **k: calls.append(a) or expect_routed)
    import spectral_moe.tuners.frame.layer as layer_module

    monkeypatch.setattr(layer_module, "routed_is_cheaper", frame_math.routed_is_cheaper)
    layer = _layer("frame", mode)
    x = torch.randn(2, 5, 16)
    assert layer._routed_path("default", x, *layer.effective_factors("default")) == expect_routed
    if mode == "auto":
        assert calls == [(10, 16, 12, 6, 8, 2, "cpu")]  # T, N, M, Z, k = 2r, top_k, device
    else:
        assert calls == []


def test_expert_mode_is_validated():
    with pytest.raises(ValueError, match="expert_mode"):
        FrameConfig(target_modules=["x"], expert_mode="sparse")


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_routed_training_forward_backward_has_no_host_sync(method, host_syncs, monkeypatch):  # noqa: F811
    """The routed path (forced) keeps the group sizes on the device: no host sync from our package."""
    ran = []
    original = frame_math.apply_routed_lowrank_experts
    import spectral_moe.tuners.frame.layer as layer_module

    monkeypatch.setattr(
        layer_module, "apply_routed_lowrank_experts", lambda *a: ran.append(1) or original(*a)
    )
    options = {"num_experts": 4, "top_k": 2, "r": 4, "expert_mode": "routed"}
    model = get_peft_model(tiny_llama(), build_peft_config(method, ["q_proj", "v_proj"], **options))
    model.train()
    ids = torch.randint(3, 64, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    for _ in range(2):
        with host_syncs.watch():
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            out.loss.backward()
    assert host_syncs == [], host_syncs
    assert len(ran) == 2 * 2 * 2  # 2 layers × q/v × 2 forwards

"""FourierMoE's inference reuse (tuners/fouriermoe/layer.py): same outputs, invalidated, never in training."""

import contextlib

import pytest
import torch
from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

import spectral_moe  # noqa: F401  (registers the methods with peft)
from spectral_moe import FourierMoEConfig
from spectral_moe.tuners.fouriermoe import FourierMoELinear
from spectral_moe.tuners.fouriermoe import layer as layer_module
from tests.helpers import tiny_llama


def _layer(mode="fft", d_out=12, d_in=10, **kw):
    torch.manual_seed(0)
    cfg = dict(target_modules=["x"], num_experts=4, top_k=2, n_frequency=6, init_weights=False)
    cfg.update(kw)
    return FourierMoELinear(
        torch.nn.Linear(d_in, d_out), "default", FourierMoEConfig(forward_mode=mode, **cfg)
    )


@contextlib.contextmanager
def _no_reuse(module):
    """Every FourierMoE layer of ``module`` with ``reuses_inference_state`` patched to False."""
    layers = [m for m in module.modules() if isinstance(m, FourierMoELinear)]
    for m in layers:
        m.reuses_inference_state = lambda: False
    try:
        yield
    finally:
        for m in layers:
            del m.reuses_inference_state


def _uncached(module, *inputs):
    """The forward with nothing reused, under no_grad as the reusing forwards (the same kernels: matmul
    dispatch differs with grad enabled)."""
    with _no_reuse(module), torch.no_grad():
        out = module(*inputs)
    return getattr(out, "logits", out)


class _Counter:
    """Counts the builds of the reused state (mixing coefficients, dense ΔW)."""

    def __init__(self, monkeypatch, layer):
        self.mixed = self.dense = 0
        mixing, delta_weights = layer_module.mixing_coefficients, layer.delta_weights

        def count_mixing(*args, **kwargs):
            self.mixed += 1
            return mixing(*args, **kwargs)

        def count_dense(*args, **kwargs):
            self.dense += 1
            return delta_weights(*args, **kwargs)

        monkeypatch.setattr(layer_module, "mixing_coefficients", count_mixing)
        monkeypatch.setattr(layer, "delta_weights", count_dense)


@pytest.mark.parametrize("mode", ["fft", "dense"])
@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
def test_reused_state_gives_identical_outputs_and_is_built_once(monkeypatch, mode, context):
    layer = _layer(mode).eval()
    x = torch.randn(3, 5, 10)
    expected, expected_part = _uncached(layer, x), _uncached(layer, x[:, :2])
    counter = _Counter(monkeypatch, layer)
    manager = torch.no_grad if context == "no_grad" else torch.inference_mode
    with manager():
        assert layer.reuses_inference_state()
        first, second = layer(x), layer(x[:, :2])
    assert torch.equal(first, expected)
    assert torch.equal(second, expected_part)
    assert (counter.mixed, counter.dense) == ((1, 0) if mode == "fft" else (0, 1))


def test_reused_dense_delta_in_bf16_autocast_equals_the_uncached_autocast_forward():
    layer = _layer("dense").eval()
    x = torch.randn(4, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = _uncached(layer, x)
        with torch.no_grad():
            got = layer(x)
    assert torch.equal(got, expected)
    (entry,) = layer._inference_cache["default"].values()
    assert entry[1].dtype == torch.bfloat16  # ΔW kept in the matmul's dtype


def test_optimizer_step_invalidates_even_without_train(monkeypatch):
    layer = _layer("fft").eval()
    x = torch.randn(6, 10)
    with torch.no_grad():
        before = layer(x)
    optimizer = torch.optim.SGD([p for p in layer.parameters() if p.requires_grad], lr=0.5)
    layer(x).square().sum().backward()  # eval, grad enabled: nothing reused
    optimizer.step()
    with torch.no_grad():
        after = layer(x)
    assert not torch.equal(after, before)
    assert torch.equal(after, _uncached(layer, x))


def test_in_place_write_and_device_move_of_coefficients_invalidate():
    layer = _layer("fft").eval()
    x = torch.randn(6, 10)
    with torch.no_grad():
        layer(x)
        layer.fouriermoe_spectrum_imag["default"].mul_(-1)
        assert torch.equal(layer(x), _uncached(layer, x))
        layer.fouriermoe_spectrum_real["default"].data = layer.fouriermoe_spectrum_real["default"].data * 2
        assert torch.equal(layer(x), _uncached(layer, x))


def test_loading_new_adapter_weights_invalidates():
    torch.manual_seed(0)
    cfg = FourierMoEConfig(target_modules=["q_proj", "v_proj"], n_frequency=8, init_weights=False)
    model = get_peft_model(tiny_llama(), cfg).eval()
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        old = model(ids).logits
        state = {k: torch.randn_like(v) for k, v in get_peft_model_state_dict(model).items()}
        set_peft_model_state_dict(model, state)
        new = model(ids).logits
    expected = _uncached(model, ids)
    assert not torch.allclose(new, old)
    assert torch.equal(new, expected)


def test_merge_and_unmerge_drop_the_reused_state():
    layer = _layer("dense", num_experts=1, top_k=1).eval()
    x = torch.randn(5, 10)
    with torch.no_grad():
        expected = layer(x)
        assert layer._inference_cache
        layer.merge()
        assert not layer._inference_cache
        assert torch.allclose(layer(x), expected, atol=1e-5)
        layer.unmerge()
        layer.fouriermoe_spectrum_real["default"].add_(1.0)
        assert torch.equal(layer(x), _uncached(layer, x))


def test_never_reused_in_training_mode_and_train_clears(monkeypatch):
    layer = _layer("fft").eval()
    x = torch.randn(4, 10)
    with torch.no_grad():
        layer(x)
    assert layer._inference_cache
    layer.train()
    assert not layer._inference_cache and not layer.reuses_inference_state()

    def refuse(*args, **kwargs):
        raise AssertionError("inference state reused in training mode")

    monkeypatch.setattr(layer, "_reused", refuse)
    with torch.no_grad():  # training mode under no_grad: still nothing reused
        layer(x)
    layer(x).sum().backward()
    assert layer.fouriermoe_spectrum_real["default"].grad is not None


def test_model_train_eval_round_trip_clears_every_layer():
    torch.manual_seed(0)
    cfg = FourierMoEConfig(target_modules=["q_proj"], n_frequency=8, init_weights=False)
    model = get_peft_model(tiny_llama(), cfg).eval()
    with torch.no_grad():
        model(torch.randint(0, 64, (1, 4)))
    layers = [m for m in model.modules() if isinstance(m, FourierMoELinear)]
    assert layers and all(m._inference_cache for m in layers)
    model.train()
    assert not any(m._inference_cache for m in layers)

"""The fast paths of issue 5 are the same functions as the reference paths (and are cached, not rebuilt)."""

import pytest
import torch

from spectral_moe import FourierMoEConfig, FrameConfig
from spectral_moe.spectral import bands, cost_model, fourier
from spectral_moe.tuners.fouriermoe import FourierMoELinear
from spectral_moe.tuners.frame import FrameLinear
from tests.oracles import hermitian_spectrum


def _routed_gates(logits, top_k):
    probs = torch.softmax(logits, -1)
    top, index = probs.topk(top_k, -1)
    return torch.zeros_like(probs).scatter(-1, index, top / top.sum(-1, keepdim=True))


@pytest.mark.parametrize("shape", [(8, 8), (9, 7), (6, 11), (16, 10)])
@pytest.mark.parametrize("complex_", [True, False])
def test_routed_fft_path_equals_all_experts_and_dense(shape, complex_):
    d_out, d_in = shape
    rows, cols = bands.sample_positions(d_out, d_in, 4, 3, "uniform", 5)
    g = torch.Generator().manual_seed(1)
    cr = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    ci = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True) if complex_ else None
    x = torch.randn(2, 5, d_in, generator=g, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    params = [t for t in (cr, ci, x, logits) if t is not None]

    def run(top_k):
        y = fourier.apply_fft(x, cr, ci, rows, cols, _routed_gates(logits, 2), d_out, 1.3, top_k=top_k)
        return y, torch.autograd.grad(y.square().sum(), params)

    (y_routed, g_routed), (y_all, g_all) = run(2), run(None)
    dense = fourier.apply_dense(
        x, fourier.dense_delta_weight(cr, ci, rows, cols, d_out, d_in, 1.3), _routed_gates(logits, 2)
    )
    torch.testing.assert_close(y_routed, y_all, atol=1e-12, rtol=0)
    torch.testing.assert_close(y_routed, dense, atol=1e-12, rtol=0)
    for a, b in zip(g_routed, g_all):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=0)


def test_dense_delta_by_irfft2_equals_ifft2_of_the_full_spectrum():
    for d_out, d_in in [(8, 8), (7, 9), (10, 5)]:
        rows, cols = bands.sample_positions(d_out, d_in, 3, 4, "uniform", 2)
        cr, ci = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
        full = torch.fft.ifft2(hermitian_spectrum(cr, ci, rows, cols, d_out, d_in)).real * 2.0
        torch.testing.assert_close(
            fourier.dense_delta_weight(cr, ci, rows, cols, d_out, d_in, 2.0), full, atol=1e-14, rtol=0
        )


def test_fft_plan_is_built_once_per_adapter():
    cfg = FourierMoEConfig(target_modules=["x"], num_experts=4, top_k=1, n_frequency=5, forward_mode="fft")
    layer = FourierMoELinear(torch.nn.Linear(12, 10), "default", cfg)
    x = torch.randn(3, 12)
    layer(x)
    plan = layer.fft_plan("default")
    layer(x).sum().backward()
    assert layer.fft_plan("default") is plan


def test_cost_model_counts_only_the_routed_experts():
    all_experts = cost_model.path_work(1024, 576, 576, 8, 250)
    routed = cost_model.path_work(1024, 576, 576, 8, 250, top_k=2)
    assert routed["fft"]["per_token_coef"] * 4 == all_experts["fft"]["per_token_coef"]
    assert routed["dense"] == all_experts["dense"]


def test_frame_caches_transformed_factors_without_autograd_only():
    cfg = FrameConfig(
        target_modules=["x"], num_experts=3, top_k=2, r=2, init_lora_weights=False, transform="chirp"
    )
    layer = FrameLinear(torch.nn.Linear(10, 8), "default", cfg)
    x = torch.randn(4, 10)
    with torch.no_grad():
        first = layer.effective_factors("default")
        assert layer.effective_factors("default")[0] is first[0]  # reused
        y_cached = layer(x)
    with torch.no_grad():
        layer.frame_A["default"].add_(0.1)  # an optimizer step: the version counter moves
        moved = layer.effective_factors("default")
    assert moved[0] is not first[0] and not torch.equal(moved[0], first[0])
    y_grad = layer(x)  # with autograd: recomputed, nothing cached
    assert y_grad.requires_grad and "default" not in layer._factor_cache
    with torch.no_grad():
        layer.frame_A["default"].sub_(0.1)
        torch.testing.assert_close(layer(x), y_cached, atol=1e-6, rtol=0)

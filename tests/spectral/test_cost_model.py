"""The cost model of ``forward_mode="auto"`` (spectral/cost_model.py)."""

import itertools
import math

import pytest
import torch

from spectral_moe import FourierMoEConfig
from spectral_moe.spectral import cost_model
from spectral_moe.tuners.fouriermoe import FourierMoELinear

# The model as it stood in spectral/fourier.py before it had its own module: 4 dense terms, the third
# (per ΔW entry) fitted as 0.0. The new one must decide exactly as this one did.
_OLD_FFT = (8.3e-4, 5.9e-10, 1.7e-8, 7.9e-10)
_OLD_DENSE = (3.6e-4, 6.3e-10, 0.0, 8.0e-11)


def _old_predicted_seconds(tokens, d_out, d_in, num_experts, n_frequency, top_k=None):
    log2 = math.log2
    routed = top_k is not None and top_k < num_experts and top_k / num_experts <= 0.5
    visited = top_k if routed else num_experts
    entries = num_experts * d_out * d_in
    fft = (
        1.0,
        tokens * (d_in * log2(max(d_in, 2)) + d_out * log2(max(d_out, 2))),
        tokens * visited * n_frequency,
        tokens * (d_in + d_out),
    )
    dense = (1.0, entries * log2(max(d_out * d_in, 2)), entries, tokens * entries)
    return sum(w * c for w, c in zip(fft, _OLD_FFT)), sum(w * c for w, c in zip(dense, _OLD_DENSE))


SHAPES = [(8, 8), (64, 64), (96, 160), (128, 128), (192, 576), (256, 256), (576, 576), (1536, 576)]
SHAPES += [(1024, 1024), (2048, 2048), (4096, 4096)]
TOKENS = [1, 16, 100, 128, 512, 1024, 4096]
EXPERTS_TOP_K = [(1, 1), (2, 1), (4, 2), (8, 2), (8, 4), (8, 8), (8, None), (16, 2)]
N_FREQUENCY = [8, 64, 250, 1000]


def test_decisions_and_predictions_equal_the_old_cost_model_on_a_grid():
    picks = set()
    for (d_out, d_in), tokens, (experts, top_k), n in itertools.product(
        SHAPES, TOKENS, EXPERTS_TOP_K, N_FREQUENCY
    ):
        old = _old_predicted_seconds(tokens, d_out, d_in, experts, n, top_k)
        new = cost_model.predicted_seconds(tokens, d_out, d_in, experts, n, top_k)
        assert new == old, (d_out, d_in, tokens, experts, top_k, n)  # bit for bit: the dropped term was 0
        pick = cost_model.fft_is_cheaper(tokens, d_out, d_in, experts, n, top_k)
        assert pick == (old[0] < old[1])
        picks.add(pick)
    assert picks == {True, False}  # the grid has both sides of the boundary


@pytest.mark.parametrize(
    "shape,tokens", [((64, 64), 256), ((576, 576), 16), ((128, 128), 1024), ((24, 40), 8)]
)
@pytest.mark.parametrize("num_experts,top_k", [(4, 2), (8, 2), (4, 4)])
def test_layer_auto_mode_decides_as_the_old_cost_model(shape, tokens, num_experts, top_k):
    d_out, d_in = shape
    cfg = FourierMoEConfig(
        target_modules=["x"], num_experts=num_experts, top_k=top_k, n_frequency=8, forward_mode="auto"
    )
    layer = FourierMoELinear(torch.nn.Linear(d_in, d_out), "default", cfg)
    fft, dense = _old_predicted_seconds(tokens, d_out, d_in, num_experts, 8, top_k)
    assert layer.resolve_forward_mode("default", tokens) == ("fft" if fft < dense else "dense")


def test_every_fitted_constant_is_a_live_term_with_a_work_count():
    work = cost_model.path_work(128, 64, 96, 8, 250, 2)
    assert set(work) == set(cost_model.FITTED_SECONDS) == {"fft", "dense"}
    for path, constants in cost_model.FITTED_SECONDS.items():
        assert list(work[path]) == list(constants)  # same terms, same (fit) order
        assert all(c > 0 for c in constants.values()), path  # no term fitted as zero is kept


def test_cost_model_prefers_fft_for_big_layers_and_dense_for_tiny_ones():
    # the sides measured by benchmarks/adapter_step.py --calibrate and fft_vs_dense.py (results/perf.md)
    assert cost_model.fft_is_cheaper(4096, 4096, 4096, 8, 1000)
    assert cost_model.fft_is_cheaper(16, 576, 576, 8, 250)
    assert not cost_model.fft_is_cheaper(256, 64, 64, 8, 250)

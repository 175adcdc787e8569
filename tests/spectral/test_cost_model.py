"""The cost model of ``forward_mode="auto"`` (spectral/cost_model.py): per precision, cached dense ΔW."""

import itertools

import pytest
import torch

from spectral_moe import FourierMoEConfig
from spectral_moe.spectral import cost_model
from spectral_moe.tuners.fouriermoe import FourierMoELinear
from spectral_moe.tuners.fouriermoe import layer as layer_module

SHAPES = [(8, 8), (64, 64), (96, 160), (128, 128), (192, 576), (256, 256), (576, 576), (1536, 576)]
SHAPES += [(1024, 1024), (2048, 2048), (4096, 4096)]
TOKENS = [1, 16, 100, 128, 512, 1024, 4096]
EXPERTS_TOP_K = [(1, 1), (2, 1), (4, 2), (8, 2), (8, 4), (8, 8), (8, None), (16, 2)]
N_FREQUENCY = [8, 64, 250, 1000]


def _by_hand(tokens, d_out, d_in, experts, n, top_k, precision, dense_cached=False):
    work = cost_model.path_work(tokens, d_out, d_in, experts, n, top_k, dense_cached)
    constants = cost_model.FITTED_SECONDS[precision]
    fft, dense = (sum(work[p][t] * constants[p][t] for t in constants[p]) for p in ("fft", "dense"))
    read = experts * d_out * d_in * cost_model.CACHED_DENSE_READ_SECONDS[precision]
    return fft, dense + (read if dense_cached else 0.0)


@pytest.mark.parametrize("precision", cost_model.PRECISIONS)
def test_predictions_are_work_times_the_precisions_constants_and_both_sides_occur(precision):
    picks = set()
    for (d_out, d_in), tokens, (experts, top_k), n in itertools.product(
        SHAPES, TOKENS, EXPERTS_TOP_K, N_FREQUENCY
    ):
        expected = _by_hand(tokens, d_out, d_in, experts, n, top_k, precision)
        got = cost_model.predicted_seconds(tokens, d_out, d_in, experts, n, top_k, precision=precision)
        assert got == expected, (d_out, d_in, tokens, experts, top_k, n)
        pick = cost_model.fft_is_cheaper(tokens, d_out, d_in, experts, n, top_k, precision=precision)
        assert pick == (expected[0] < expected[1])
        picks.add(pick)
    assert picks == {True, False}  # the grid has both sides of the boundary


def test_every_precision_has_the_same_live_terms_with_work_counts():
    work = cost_model.path_work(128, 64, 96, 8, 250, 2)
    assert set(cost_model.FITTED_SECONDS) == set(cost_model.PRECISIONS) == {"fp32", "bf16"}
    for precision, paths in cost_model.FITTED_SECONDS.items():
        assert set(work) == set(paths) == {"fft", "dense"}
        for path, constants in paths.items():
            assert list(work[path]) == list(constants)  # same terms, same (fit) order
            assert all(c > 0 for c in constants.values()), (precision, path)  # no zero-fitted term kept


def test_unknown_precision_is_an_error():
    with pytest.raises(ValueError, match="precision must be one of"):
        cost_model.predicted_seconds(16, 64, 64, 8, 64, 2, precision="fp16")


def test_cached_dense_delta_drops_the_irfft2_term_and_pays_its_read():
    plain = cost_model.path_work(8, 576, 576, 8, 500, 2)
    cached = cost_model.path_work(8, 576, 576, 8, 500, 2, dense_cached=True)
    assert cached["fft"] == plain["fft"]
    assert cached["dense"]["per_entry_log"] == 0 < plain["dense"]["per_entry_log"]
    assert cached["dense"]["per_mac"] == plain["dense"]["per_mac"]
    for precision in cost_model.PRECISIONS:
        fft, dense = cost_model.predicted_seconds(8, 576, 576, 8, 500, 2, precision, dense_cached=True)
        assert (fft, dense) == _by_hand(8, 576, 576, 8, 500, 2, precision, dense_cached=True)
        assert dense < cost_model.predicted_seconds(8, 576, 576, 8, 500, 2, precision)[1]
        # decode at smollm2's widths: one token, the FFT path (measured faster, results/perf_bf16.md)
        assert cost_model.fft_is_cheaper(1, 576, 576, 8, 500, 2, precision, dense_cached=True)
        assert cost_model.fft_is_cheaper(8, 576, 576, 8, 500, 2, precision, dense_cached=True)
    assert cost_model.CACHED_DENSE_READ_SECONDS["bf16"] < cost_model.CACHED_DENSE_READ_SECONDS["fp32"]


def test_precision_of_reads_the_autocast_and_the_input_dtype():
    assert cost_model.precision_of(torch.float32, "cpu") == "fp32"
    assert cost_model.precision_of(torch.float64, "cpu") == "fp32"
    assert cost_model.precision_of(torch.bfloat16, "cpu") == "bf16"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cost_model.precision_of(torch.float32, "cpu") == "bf16"
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        assert cost_model.precision_of(torch.float32, "cpu") == "fp32"


@pytest.mark.parametrize("precision", cost_model.PRECISIONS)
@pytest.mark.parametrize(
    "shape,tokens", [((64, 64), 256), ((576, 576), 16), ((128, 128), 1024), ((24, 40), 8)]
)
@pytest.mark.parametrize("num_experts,top_k", [(4, 2), (8, 2), (4, 4)])
def test_layer_auto_mode_decides_as_the_cost_model(shape, tokens, num_experts, top_k, precision):
    d_out, d_in = shape
    cfg = FourierMoEConfig(
        target_modules=["x"], num_experts=num_experts, top_k=top_k, n_frequency=8, forward_mode="auto"
    )
    layer = FourierMoELinear(torch.nn.Linear(d_in, d_out), "default", cfg)
    fft, dense = _by_hand(tokens, d_out, d_in, num_experts, 8, top_k, precision)
    assert layer.resolve_forward_mode("default", tokens, precision) == ("fft" if fft < dense else "dense")


def _disagreeing_constants(monkeypatch):
    """fp32 always prefers the FFT path, bf16 always the dense one."""
    table = {
        "fp32": {
            "fft": {k: 0.0 for k in cost_model.FITTED_SECONDS["fp32"]["fft"]},
            "dense": {"per_call": 1.0},
        },
        "bf16": {
            "fft": {"per_call": 1.0},
            "dense": {k: 0.0 for k in cost_model.FITTED_SECONDS["bf16"]["dense"]},
        },
    }
    monkeypatch.setattr(cost_model, "FITTED_SECONDS", table)


def test_layer_uses_the_active_autocast_precisions_constants(monkeypatch):
    _disagreeing_constants(monkeypatch)
    layer = FourierMoELinear(
        torch.nn.Linear(10, 12),
        "default",
        FourierMoEConfig(target_modules=["x"], n_frequency=4, num_experts=4),
    )
    used = []
    real_dense, real_fft = layer_module.apply_dense, layer_module.apply_fft
    monkeypatch.setattr(
        layer_module, "apply_dense", lambda *a, **k: used.append("dense") or real_dense(*a, **k)
    )
    monkeypatch.setattr(layer_module, "apply_fft", lambda *a, **k: used.append("fft") or real_fft(*a, **k))
    x = torch.randn(5, 10)
    assert layer.resolve_forward_mode("default", 5) == "fft"
    layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer.resolve_forward_mode("default", 5) == "dense"
        layer(x)
    layer(x.bfloat16().float())
    assert used == ["fft", "dense", "fft"]


def test_cost_model_prefers_fft_for_big_layers_and_dense_for_tiny_ones():
    # the sides measured by benchmarks/adapter_step.py --calibrate (results/perf_bf16.md)
    for precision in cost_model.PRECISIONS:
        assert cost_model.fft_is_cheaper(4096, 4096, 4096, 8, 1000, precision=precision)
        assert cost_model.fft_is_cheaper(1024, 576, 576, 8, 500, 2, precision=precision)
        assert not cost_model.fft_is_cheaper(256, 64, 64, 8, 250, precision=precision)

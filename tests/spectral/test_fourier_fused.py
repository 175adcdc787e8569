"""The fused kernels of the routed FFT path (``spectral.fourier_fused``, ``fused_kernels=True``).

Their formulas are checked eagerly (cheap) against the unfused path, which the fp64 tests of
test_fourier.py check against an independent inverse DFT; one test compiles them for real.
"""

import shutil
import warnings

import pytest
import torch

from spectral_moe.routing import route
from spectral_moe.spectral import bands, fourier, fourier_fused

SHAPES = [(9, 8), (8, 9), (12, 12), (7, 9), (16, 10)]


def _case(shape, dtype=torch.float32, tokens=13, num=4, n=6, top_k=2, seed=0):
    d_out, d_in = shape
    rows, cols = bands.sample_positions(d_out, d_in, num, n, "radial", seed)
    g = torch.Generator().manual_seed(seed)
    cr, ci = (torch.randn(num, n, generator=g, dtype=dtype) for _ in range(2))
    x = torch.randn(2, tokens, d_in, generator=g, dtype=dtype)
    routing = route(torch.randn(2, tokens, num, generator=g, dtype=dtype), top_k)
    return rows, cols, cr, ci, x, routing


def _run(case, d_out, fused, grad=True):
    rows, cols, cr, ci, x, routing = case
    leaves = [t.detach().clone().requires_grad_(grad) for t in (cr, ci, x, routing.gates)]
    a, b, xx, g = leaves
    y = fourier.apply_fft(
        xx,
        a,
        b,
        rows,
        cols,
        g,
        d_out,
        1.7,
        top_k=routing.topk_index.shape[-1],
        experts=routing.topk_index,
        fused=fused,
    )
    if not grad:
        return y, []
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    return y, [t.grad for t in leaves]


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("shape", SHAPES)
def test_fused_formulas_equal_the_unfused_path(shape, eager_kernels):
    case = _case(shape)
    y_ref, grads_ref = _run(case, shape[0], fused=False)
    y, grads = _run(case, shape[0], fused=True)
    assert eager_kernels == ["forward", "backward"]
    assert _rel(y, y_ref) < 1e-5
    for got, want in zip(grads, grads_ref):  # ∂c_re, ∂c_im, ∂x, ∂gates (at the routed positions)
        assert _rel(got, want) < 1e-5


def test_fused_inference_forward_equals_the_unfused_path(eager_kernels):
    case = _case((12, 12))
    with torch.inference_mode():
        y_ref, _ = _run(case, 12, fused=False, grad=False)
        y, _ = _run(case, 12, fused=True, grad=False)
    assert eager_kernels == ["forward"]
    assert _rel(y, y_ref) < 1e-5


def test_float64_and_the_all_experts_path_never_use_the_kernels(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the fused kernels ran where the reference path must")

    monkeypatch.setattr(fourier, "run_fused", refuse)
    _run(_case((9, 8), torch.float64), 9, fused=True)  # fp64 keeps the exact path
    rows, cols, cr, ci, x, routing = _case((9, 8))
    fourier.apply_fft(x, cr, ci, rows, cols, routing.gates, 9, 1.0, fused=True)  # top_k=None: every expert


def test_a_compile_failure_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(fourier_fused, "_DISABLED", [])

    def broken(name):
        def fail(*args):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(fourier_fused, "_compiled", broken)
    case = _case((9, 8))
    y_ref, grads_ref = _run(case, 9, fused=False)
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler"):
        y, grads = _run(case, 9, fused=True)
    assert fourier_fused.fused_unavailable() is not None
    assert torch.equal(y, y_ref)
    for got, want in zip(grads, grads_ref):
        assert torch.equal(got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: later calls fall back silently
        _run(case, 9, fused=True)


def test_inside_eager_the_kernels_run_uncompiled(monkeypatch):
    monkeypatch.setattr(fourier_fused, "_DISABLED", [])

    def no_compile(name):
        raise AssertionError("compiled inside eager()")

    monkeypatch.setattr(fourier_fused, "_compiled", no_compile)
    case = _case((9, 8))
    y_ref, grads_ref = _run(case, 9, fused=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning either: the kernels themselves ran
        with fourier_fused.eager():
            y, grads = _run(case, 9, fused=True)
    assert fourier_fused.fused_unavailable() is None
    assert _rel(y, y_ref) < 1e-5
    for got, want in zip(grads, grads_ref):
        assert _rel(got, want) < 1e-5


def test_compiled_kernels_match_and_compile_once_for_every_token_count():
    from torch._dynamo.utils import counters

    # inductor's CPU kernels need a C++ compiler; without one the option must fall back, not fail
    has_compiler = any(shutil.which(c) for c in ("g++", "c++", "clang++")) or torch.cuda.is_available()
    shape = (10, 12)
    graphs = []
    for tokens in (17, 29, 40):  # the first call compiles (token dimension dynamic); the others reuse it
        case = _case(shape, tokens=tokens, seed=tokens)
        y_ref, grads_ref = _run(case, shape[0], fused=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore" if not has_compiler else "default")
            y, grads = _run(case, shape[0], fused=True)
        assert _rel(y, y_ref) < 1e-5
        for got, want in zip(grads, grads_ref):
            assert _rel(got, want) < 1e-5
        graphs.append(counters["stats"]["unique_graphs"])
    if not has_compiler:
        assert fourier_fused.fused_unavailable() is not None
        return
    assert fourier_fused.fused_unavailable() is None, fourier_fused.fused_unavailable()
    assert graphs[0] > 0 and graphs[1] == graphs[0] == graphs[2], f"recompiled per token count: {graphs}"

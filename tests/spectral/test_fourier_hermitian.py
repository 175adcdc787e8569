"""Every spectrum the FFT path hands to ``irfft`` is Hermitian-consistent (issue #13 §3).

A half spectrum ``[..., n//2+1]`` of a real length-``n`` signal is real at bin 0 and, for even ``n``,
at bin ``n/2``. CPU pocketfft drops imaginary parts there; cuFFT's C2R requires them to be zero. The
tests check the tensors themselves (captured from ``torch.fft.irfft``) and that the outputs and
gradients stay right under a C2R that does *not* drop those imaginary parts.
"""

import pytest
import torch

from spectral_moe.spectral import bands, fourier

# (d_out, d_in): even/even, odd/odd, even/odd, odd/even, and the smallest even length (2 bins, both edges)
SHAPES = [(8, 6), (9, 7), (8, 7), (9, 6), (2, 4)]


def _edges(n: int) -> list[int]:
    return [0, n // 2] if n % 2 == 0 else [0]


def _strict_irfft(orig):
    """``irfft`` of a backend that keeps the edge bins' imaginary parts (adds ``Im`` as if real)."""

    def irfft(inp, n=None, dim=-1, norm=None, **kwargs):
        assert dim == -1 and norm is None and n is not None
        out = orig(inp, n=n, dim=dim, norm=norm, **kwargs)
        leak = inp[..., :1].imag / n
        if n % 2 == 0:
            sign = 1.0 - 2.0 * (torch.arange(n, device=inp.device) % 2).to(out.dtype)
            leak = leak + inp[..., n // 2 : n // 2 + 1].imag * sign / n
        return out + leak

    return irfft


def _every_position(d_out: int, d_in: int, num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every expert owns every position, so rows 0, M/2 and columns 0, N/2 are all hit."""
    rows = torch.arange(d_out).repeat_interleave(d_in).expand(num, -1).contiguous()
    cols = torch.arange(d_in).repeat(d_out).expand(num, -1).contiguous()
    return rows, cols


def _inputs(d_out, d_in, dtype, num=3, tokens=5, top_k=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = d_out * d_in
    cr = torch.randn(num, n, generator=g, dtype=dtype)
    ci = torch.randn(num, n, generator=g, dtype=dtype)
    x = torch.randn(tokens, d_in, generator=g, dtype=dtype)
    gates = torch.rand(tokens, num, generator=g, dtype=dtype)
    if top_k is not None:  # zero outside each token's top_k, as the router makes them
        keep = gates.topk(top_k, dim=-1).indices
        gates = torch.zeros_like(gates).scatter(1, keep, gates.gather(1, keep))
    grad_y = torch.randn(tokens, d_out, generator=g, dtype=dtype)
    return [t.requires_grad_(True) for t in (cr, ci, x, gates)], grad_y


@pytest.mark.parametrize("top_k", [None, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_irfft_inputs_are_hermitian_consistent_and_results_backend_independent(
    monkeypatch, shape, dtype, top_k
):
    d_out, d_in = shape
    rows, cols = _every_position(d_out, d_in, 3)
    (cr, ci, x, gates), grad_y = _inputs(d_out, d_in, dtype, top_k=top_k)
    calls = []
    strict = _strict_irfft(torch.fft.irfft)

    def spy(inp, n=None, dim=-1, norm=None, **kwargs):
        calls.append((inp.detach().clone(), n))
        return strict(inp, n=n, dim=dim, norm=norm, **kwargs)

    monkeypatch.setattr(torch.fft, "irfft", spy)
    y = fourier.apply_fft(x, cr, ci, rows, cols, gates, d_out, 1.3, top_k=top_k)
    forward_calls = list(calls)
    calls.clear()
    y.backward(grad_y)
    backward_calls = list(calls)
    monkeypatch.undo()

    # the tensors: forward irfft over d_out, backward irfft (∂L/∂x) over d_in
    assert [n for _, n in forward_calls] == [d_out]
    assert [n for _, n in backward_calls] == [d_in]
    for spec, n in forward_calls + backward_calls:
        assert spec.shape[-1] == n // 2 + 1
        edge = spec[..., _edges(n)]
        assert edge.abs().amax() > 0  # the edge bins carry data (the test would be empty otherwise)
        assert torch.equal(edge.imag, torch.zeros_like(edge.imag))  # exactly, not to rounding

    # the results, under a C2R that keeps those imaginary parts: still the dense path's
    fft_grads = [t.grad.clone() for t in (cr, ci, x, gates)]
    for t in (cr, ci, x, gates):
        t.grad = None
    dw = fourier.dense_delta_weight(cr, ci, rows, cols, d_out, d_in, 1.3)
    y_dense = fourier.apply_dense(x, dw, gates)
    y_dense.backward(grad_y)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    routed = gates.detach() != 0  # the routed path computes ∂L/∂gates at the routed positions only
    for got, want in zip(fft_grads + [y.detach()], [t.grad for t in (cr, ci, x, gates)] + [y_dense.detach()]):
        if got.shape == gates.shape and top_k is not None:
            got, want = got[routed], want[routed]
        assert ((got - want).abs().max() / want.abs().max()).item() < tol


@pytest.mark.parametrize("shape", SHAPES)
def test_backward_projects_the_output_gradient_spectrum(monkeypatch, shape):
    """``dG = rfft(∂L/∂y)/(M·ρ)`` enters real at rows 0 and M/2 even if the backend's rfft leaves
    rounding-level imaginary parts there (simulated): the gradients do not move at all."""
    d_out, d_in = shape
    rows, cols = _every_position(d_out, d_in, 3)
    (cr, ci, x, gates), grad_y = _inputs(d_out, d_in, torch.float64)

    def grads():
        for t in (cr, ci, x, gates):
            t.grad = None
        fourier.apply_fft(x, cr, ci, rows, cols, gates, d_out, 1.3).backward(grad_y)
        return [t.grad.clone() for t in (cr, ci, x, gates)]

    clean = grads()
    orig = torch.fft.rfft

    def noisy_rfft(inp, *args, **kwargs):
        out = orig(inp, *args, **kwargs)
        if inp.shape[-1] == d_out:  # the backward's rfft of ∂L/∂y (d_out != d_in in every shape here)
            out.imag[..., _edges(d_out)] += 1e-3
        return out

    monkeypatch.setattr(torch.fft, "rfft", noisy_rfft)
    for want, got in zip(clean, grads()):
        assert torch.equal(got, want)


@pytest.mark.parametrize("layout", ["radial", "uniform"])
@pytest.mark.parametrize("shape", [(8, 8), (9, 9), (8, 7), (9, 6), (16, 10)])
def test_dense_path_half_spectrum_is_exactly_hermitian_on_its_real_columns(shape, layout):
    """``irfft2``'s input (``half_hermitian_spectrum``): columns 0 and, for even N, N/2 satisfy
    ``F[−u, v] = conj(F[u, v])`` exactly, so the 2-D C2R gets a Hermitian-consistent half too."""
    d_out, d_in = shape
    rows, cols = bands.sample_positions(d_out, d_in, 3, 6, layout, 0)
    g = torch.Generator().manual_seed(1)
    cr, ci = torch.randn(2, 3, 6, generator=g, dtype=torch.float64)
    half = fourier.half_hermitian_spectrum(cr, ci, rows, cols, d_out, d_in)
    real_cols = half[..., _edges(d_in)]  # [Z, M, 1 or 2]
    mirrored = torch.roll(torch.flip(real_cols, dims=(-2,)), shifts=1, dims=-2)  # F[−u, v]
    assert torch.equal(mirrored, real_cols.conj().resolve_conj())


@pytest.mark.parametrize("n", [1, 2, 5, 6])
def test_real_edge_bins_zeroes_only_the_self_conjugate_bins(n):
    g = torch.Generator().manual_seed(0)
    half = torch.randn(3, n // 2 + 1, dtype=torch.complex128, generator=g)
    out = fourier.real_edge_bins_(half.clone(), n)
    edges = _edges(n)
    others = [k for k in range(n // 2 + 1) if k not in edges]
    assert torch.equal(out.imag[:, edges], torch.zeros(3, len(edges), dtype=torch.float64))
    assert torch.equal(out.real, half.real)
    assert torch.equal(out[:, others], half[:, others])


@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (4, 3), (3, 4)])
def test_gradcheck_with_edge_rows_and_columns(shape):
    d_out, d_in = shape
    rows, cols = _every_position(d_out, d_in, 2)
    g = torch.Generator().manual_seed(0)
    n = d_out * d_in
    args = [
        torch.randn(2, n, generator=g, dtype=torch.float64),
        torch.randn(2, n, generator=g, dtype=torch.float64),
        torch.randn(3, d_in, generator=g, dtype=torch.float64),
        torch.rand(3, 2, generator=g, dtype=torch.float64),
    ]
    args = [a.requires_grad_(True) for a in args]
    assert torch.autograd.gradcheck(
        lambda a, b, xx, gg: fourier.apply_fft(xx, a, b, rows, cols, gg, d_out, 0.9), args
    )

import pytest
import torch

from spectral_moe.spectral import bands, fourier
from tests.oracles import hermitian_spectrum

SHAPES = [(8, 8), (12, 12), (9, 9), (7, 5), (6, 9), (16, 10), (10, 16)]


def _setup(shape, layout, dtype, num=3, n=4, tokens=11, seed=0):
    d_out, d_in = shape
    rows, cols = bands.sample_positions(d_out, d_in, num, n, layout, seed)
    g = torch.Generator().manual_seed(seed)
    cr = torch.randn(num, n, generator=g, dtype=dtype)
    ci = torch.randn(num, n, generator=g, dtype=dtype)
    x = torch.randn(2, tokens, d_in, generator=g, dtype=dtype)
    gates = torch.rand(2, tokens, num, generator=g, dtype=dtype)
    return rows, cols, cr, ci, x, gates


def _independent_delta(cr, ci, rows, cols, d_out, d_in, scaling):
    """Dense reference by the explicit inverse DFT sum, fp64, no FFT library."""
    k = torch.arange(d_out, dtype=torch.float64)[:, None]
    l_ = torch.arange(d_in, dtype=torch.float64)[None, :]
    out = torch.zeros(cr.shape[0], d_out, d_in, dtype=torch.float64)
    for z in range(cr.shape[0]):
        for j in range(cr.shape[1]):
            u, v = rows[z, j].item(), cols[z, j].item()
            phase = 2 * torch.pi * (u * k / d_out + v * l_ / d_in)
            c = complex(cr[z, j].item(), ci[z, j].item())
            # Re(c · e^{iφ}) / (MN): the Hermitian pair ½c δ(u,v) + ½c̄ δ(−u,−v)
            out[z] += (c.real * torch.cos(phase) - c.imag * torch.sin(phase)) / (d_out * d_in)
    return out * scaling


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("layout", ["radial", "uniform"])
@pytest.mark.parametrize("shape", SHAPES)
def test_fft_equals_dense_equals_reference_fp64(shape, layout):
    d_out, d_in = shape
    rows, cols, cr, ci, x, gates = _setup(shape, layout, torch.float64)
    dw = fourier.dense_delta_weight(cr, ci, rows, cols, d_out, d_in, 2.5)
    ref_dw = _independent_delta(cr, ci, rows, cols, d_out, d_in, 2.5)
    assert _rel(dw, ref_dw) < 1e-10
    ref = torch.einsum("btz,zmn,btn->btm", gates, ref_dw, x)
    y_fft = fourier.apply_fft(x, cr, ci, rows, cols, gates, d_out, 2.5)
    y_dense = fourier.apply_dense(x, dw, gates)
    assert y_fft.shape == (2, x.shape[1], d_out)
    assert _rel(y_fft, ref) < 1e-10
    assert _rel(y_dense, ref) < 1e-10


@pytest.mark.parametrize("layout", ["radial", "uniform"])
@pytest.mark.parametrize("shape", SHAPES)
def test_fft_equals_dense_fp32(shape, layout):
    d_out, d_in = shape
    rows, cols, cr, ci, x, gates = _setup(shape, layout, torch.float32)
    ref = torch.einsum(
        "btz,zmn,btn->btm",
        gates.double(),
        _independent_delta(cr.double(), ci.double(), rows, cols, d_out, d_in, 2.5),
        x.double(),
    )
    y_fft = fourier.apply_fft(x, cr, ci, rows, cols, gates, d_out, 2.5)
    y_dense = fourier.apply_dense(x, fourier.dense_delta_weight(cr, ci, rows, cols, d_out, d_in, 2.5), gates)
    assert y_fft.dtype == torch.float32
    assert _rel(y_fft.double(), ref) < 1e-5
    assert _rel(y_dense.double(), ref) < 1e-5


@pytest.mark.parametrize("shape", SHAPES)
def test_spectrum_is_hermitian_and_idft_is_real(shape):
    d_out, d_in = shape
    rows, cols, cr, ci, _, _ = _setup(shape, "radial", torch.float64)
    spec = hermitian_spectrum(cr, ci, rows, cols, d_out, d_in)
    mirrored = torch.roll(torch.flip(spec, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))  # F[−u, −v]
    assert torch.allclose(mirrored, spec.conj(), atol=0, rtol=0)
    assert torch.fft.ifft2(spec).imag.abs().max().item() < 1e-12


@pytest.mark.parametrize("shape", SHAPES)
def test_delta_spectrum_support_and_rank(shape):
    d_out, d_in = shape
    num, n = 3, 4
    rows, cols, cr, ci, _, _ = _setup(shape, "radial", torch.float64, num=num, n=n)
    dw = fourier.dense_delta_weight(cr, ci, rows, cols, d_out, d_in, 1.0)
    part = bands.band_partition(d_out, d_in, num, "radial")
    for z in range(num):
        f = torch.fft.fft2(dw[z]).flatten()
        support = (f.abs() > 1e-9).nonzero().flatten()
        own = rows[z] * d_in + cols[z]
        expected = torch.cat([own, bands.mirror_index(own, d_out, d_in)]).unique()
        assert torch.equal(support.sort().values, expected.sort().values)
        assert support.numel() == 2 * n
        reps = torch.where(torch.isin(support, bands.half_plane(d_out, d_in)), support, 0)
        reps = reps[reps > 0]
        assert torch.isin(reps, part[z]).all()  # the half-plane representatives lie in band z
        assert torch.linalg.matrix_rank(dw[z]).item() <= 2 * n


def test_real_coefficients_give_even_phase():
    d_out, d_in = 8, 6
    rows, cols, cr, _, _, _ = _setup((d_out, d_in), "radial", torch.float64)
    dw = fourier.dense_delta_weight(cr, None, rows, cols, d_out, d_in, 1.0)
    spec = torch.fft.fft2(dw)
    assert spec.imag.abs().max() < 1e-12  # real spectrum ⇔ ΔW even: ΔW[−k, −l] = ΔW[k, l]
    even = torch.roll(torch.flip(dw, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
    assert torch.allclose(even, dw, atol=1e-14)


def test_gradcheck_through_coefficients_gates_and_input():
    d_out, d_in = 6, 5
    rows, cols, cr, ci, x, gates = _setup((d_out, d_in), "radial", torch.float64, num=2, n=3, tokens=3)
    cr.requires_grad_(True)
    ci.requires_grad_(True)
    x = x[:1].requires_grad_(True)
    gates = gates[:1].requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b, xx, g: fourier.apply_fft(xx, a, b, rows, cols, g, d_out, 1.7), (cr, ci, x, gates)
    )
    assert torch.autograd.gradcheck(
        lambda a, b: fourier.dense_delta_weight(a, b, rows, cols, d_out, d_in, 1.7), (cr, ci)
    )


def test_log_band_energies_matches_manual():
    x = torch.randn(3, 10, dtype=torch.float64)
    e = fourier.log_band_energies(x, 3)
    power = torch.fft.rfft(x).abs() ** 2 / 10  # 6 bins → bands [0,2), [2,4), [4,6)
    manual = torch.stack([power[:, 0:2].sum(-1), power[:, 2:4].sum(-1), power[:, 4:6].sum(-1)], -1)
    assert torch.allclose(e, torch.log(manual + 1e-6))


def _routed_setup(dtype, tokens=7, num=4, top_k=2):
    """Router-made gates (zero outside each token's top-k) and the router's top-k index."""
    from spectral_moe.routing import route

    rows, cols, cr, ci, x, _ = _setup((9, 8), "radial", dtype, num=num, n=5, tokens=tokens)
    routing = route(
        torch.randn(2, tokens, num, dtype=dtype, generator=torch.Generator().manual_seed(3)), top_k
    )
    return rows, cols, cr, ci, x, routing


def test_routed_path_with_the_routers_experts_equals_searching_them():
    rows, cols, cr, ci, x, routing = _routed_setup(torch.float64)
    leaves = [t.clone().requires_grad_(True) for t in (cr, ci, x, routing.gates)]

    def run(experts):
        a, b, xx, g = (t.detach().clone().requires_grad_(True) for t in leaves)
        y = fourier.apply_fft(xx, a, b, rows, cols, g, 9, 1.3, top_k=2, experts=experts)
        y.square().sum().backward()
        return y, [t.grad for t in (a, b, xx, g)]

    y_search, grads_search = run(None)
    y_given, grads_given = run(routing.topk_index)
    ref = fourier.apply_fft(x, cr, ci, rows, cols, routing.gates, 9, 1.3)  # every expert visited
    assert torch.allclose(y_given, ref, atol=1e-12)
    assert torch.equal(y_given, y_search)
    for a, b in zip(grads_given, grads_search):
        # the gate gradient lives at the routed positions only, in both (the router's scatter drops the rest)
        assert torch.allclose(a, b, atol=1e-12)
    # the given index is what is visited: with every gate positive, the two lowest-gate experts give the
    # update of those two alone (searching would have taken the two highest)
    dense = torch.rand(routing.gates.shape, dtype=torch.float64) + 0.1
    lowest = dense.topk(2, dim=-1, largest=False).indices
    only_lowest = torch.zeros_like(dense).scatter(-1, lowest, dense.gather(-1, lowest))
    y_lowest = fourier.apply_fft(x, cr, ci, rows, cols, dense, 9, 1.3, top_k=2, experts=lowest)
    assert torch.allclose(y_lowest, fourier.apply_fft(x, cr, ci, rows, cols, only_lowest, 9, 1.3), atol=1e-12)


@pytest.mark.parametrize("top_k", [None, 2])
def test_no_grad_forward_is_the_autograd_forward_bit_for_bit(top_k, monkeypatch):
    rows, cols, cr, ci, x, routing = _routed_setup(torch.float32)
    plan = fourier.fft_plan(rows, cols, 9, 8)
    kwargs = dict(top_k=top_k, plan=plan, experts=routing.topk_index if top_k else None)
    with torch.enable_grad():
        y_graph = fourier.apply_fft(
            x, cr.requires_grad_(True), ci, rows, cols, routing.gates, 9, 0.7, **kwargs
        )
    assert y_graph.grad_fn is not None

    def no_node(*args):
        raise AssertionError("an autograd node was built where nothing needs a gradient")

    monkeypatch.setattr(fourier._SpectralMix, "apply", no_node)
    with torch.inference_mode():
        y_plain = fourier.apply_fft(x, cr, ci, rows, cols, routing.gates, 9, 0.7, **kwargs)
    assert y_plain.grad_fn is None
    assert torch.equal(y_plain, y_graph.detach())

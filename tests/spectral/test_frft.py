"""Tests for spectral_moe.spectral.frft (fractional Fourier transforms)."""

from __future__ import annotations

import math

import pytest
import torch

from spectral_moe.spectral.frft import FRFT_METHODS, frft, frft_matrix

EXACT_METHODS = ("hermite", "weighted")
SIZES = (7, 8, 16, 33, 64)
FRACTIONAL = (0.3, 0.77, 1.4, -0.6, 2.5)

# Relative L2 distance chirp vs hermite on the smooth test signals at d = 64 and fractional
# orders: results/frft_accuracy.md records at most 1.0e-02 (worst at a = 0.5). The difference is
# hermite's O(1/d) deviation from the continuous FRFT, not chirp's (see the Hermite-Gauss table
# there). Bound = recorded maximum with headroom.
CHIRP_VS_HERMITE_SMOOTH_D64 = 1.5e-2
# chirp round trip / unitarity on the same smooth signals, recorded <= 1e-11 at d = 64 (`rt`, `unit`).
CHIRP_SMOOTH_ROUND_TRIP_D64 = 1e-9
# chirp on sampled continuous Hermite-Gauss functions (eigenfunctions of the continuous FRFT),
# recorded 2.4e-15 at d = 64.
CHIRP_HG_EIGEN_D64 = 1e-10


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny tensors: one intra-op thread is faster and immune to OpenMP stalls on a busy box."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _rand(shape: tuple[int, ...], complex_: bool, dtype: torch.dtype = torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, dtype=dtype, generator=g)
    if complex_:
        x = torch.complex(x, torch.randn(*shape, dtype=dtype, generator=g))
    return x


def _parity(x: torch.Tensor) -> torch.Tensor:
    idx = (-torch.arange(x.shape[-1])) % x.shape[-1]
    return x[..., idx]


def _integer_reference(x: torch.Tensor, k: int) -> torch.Tensor:
    k %= 4
    if k == 0:
        return x.to(torch.complex128 if x.dtype in (torch.float64, torch.complex128) else torch.complex64)
    if k == 1:
        return torch.fft.fft(x, norm="ortho")
    if k == 2:
        return _parity(x).to(
            torch.complex128 if x.dtype in (torch.float64, torch.complex128) else torch.complex64
        )
    return torch.fft.ifft(x, norm="ortho")


def _centred_t(d: int) -> torch.Tensor:
    n = torch.arange(d, dtype=torch.float64)
    return torch.where(n >= (d + 1) // 2, n - d, n) / math.sqrt(d)


def _smooth_signals(d: int) -> torch.Tensor:
    """Same family as benchmarks/frft_accuracy.py::smooth_signals (8, d)."""
    t = _centred_t(d)
    specs = [
        (1.0, [1.0], 0.0),
        (1.0, [0.0, 1.0], 0.0),
        (0.8, [1.0, 1.0, 0.5], 0.0),
        (1.25, [1.0, -0.5, 0.0, -0.3], 0.0),
        (1.0, [0.5, 0.0, -1.0, 0.0, 0.25], 0.0),
        (1.0, [1.0], 0.5),
        (0.8, [0.0, 1.0, 0.3], 0.5),
        (1.25, [1.0, 0.2, -0.4], -0.5),
    ]
    rows = []
    for s, coeffs, f0 in specs:
        p = sum(c * t**k for k, c in enumerate(coeffs))
        rows.append(torch.exp(-math.pi * t**2 / s**2) * p * torch.exp(2j * math.pi * f0 * t))
    return torch.stack(rows).to(torch.complex128)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------------------------------
# integer orders
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", FRFT_METHODS)
@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("complex_", [False, True])
def test_integer_orders_exact_fp64(method: str, d: int, complex_: bool) -> None:
    x = _rand((3, d), complex_)
    for k in (0, 1, 2, 3, -1, 4, 5, -2, -7):
        y = frft(x, float(k), method=method)
        assert y.dtype == torch.complex128
        torch.testing.assert_close(y, _integer_reference(x, k), atol=1e-12, rtol=0)


@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("complex_", [False, True])
def test_chirp_integer_orders_exact_fp32(d: int, complex_: bool) -> None:
    x = _rand((4, d), complex_, dtype=torch.float32)
    for k in (0, 1, 2, 3, -1, 4, 6):
        y = frft(x, float(k), method="chirp")
        assert y.dtype == torch.complex64
        torch.testing.assert_close(y, _integer_reference(x, k), atol=1e-6, rtol=0)
    # tensor order with a batch of integer orders, too
    orders = torch.tensor([0.0, 1.0, 2.0, 3.0])
    y = frft(x, orders, method="chirp")
    for i in range(4):
        torch.testing.assert_close(y[i], _integer_reference(x[i], i), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------
# unitarity, additivity, symmetry (exact methods)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", EXACT_METHODS)
@pytest.mark.parametrize("d", SIZES)
def test_unitary_and_additive(method: str, d: int) -> None:
    x = _rand((5, d), True)
    for a in FRACTIONAL:
        y = frft(x, a, method=method)
        torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1).to(torch.float64), atol=1e-10, rtol=0)
        for b in (0.45, -1.3, 2.9):
            torch.testing.assert_close(
                frft(y, b, method=method), frft(x, a + b, method=method), atol=1e-9, rtol=0
            )
    m = frft_matrix(d, 0.61, method=method)
    torch.testing.assert_close(m @ m.conj().T, torch.eye(d, dtype=torch.complex128), atol=1e-10, rtol=0)


@pytest.mark.parametrize("d", SIZES)
def test_hermite_matrix_symmetric(d: int) -> None:
    m = frft_matrix(d, torch.tensor([0.3, 0.77, 1.4, 3.1], dtype=torch.float64), method="hermite")
    torch.testing.assert_close(m, m.transpose(-1, -2), atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", FRFT_METHODS)
def test_period_four(method: str) -> None:
    x = _rand((3, 16), True)
    for a in (0.3, 1.4):
        torch.testing.assert_close(
            frft(x, a + 4.0, method=method), frft(x, a, method=method), atol=1e-10, rtol=0
        )
        torch.testing.assert_close(
            frft(x, a - 8.0, method=method), frft(x, a, method=method), atol=1e-10, rtol=0
        )


# ------------------------------------------------------------------------------------------
# round trip
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", EXACT_METHODS)
@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("complex_", [False, True])
def test_round_trip_exact_methods(method: str, d: int, complex_: bool) -> None:
    x = _rand((4, d), complex_)
    for a in FRACTIONAL:
        back = frft(frft(x, a, method=method), -a, method=method)
        torch.testing.assert_close(back, x.to(torch.complex128), atol=1e-10, rtol=0)


def test_chirp_round_trip_and_unitarity_smooth() -> None:
    x = _smooth_signals(64)
    for a in FRACTIONAL:
        y = frft(x, a, method="chirp")
        assert _rel(frft(y, -a, method="chirp"), x) < CHIRP_SMOOTH_ROUND_TRIP_D64
        assert float((y.norm(dim=-1) / x.norm(dim=-1) - 1).abs().max()) < CHIRP_SMOOTH_ROUND_TRIP_D64
    # real input goes through the same path
    xr = x.real.contiguous()
    back = frft(frft(xr, 0.6, method="chirp"), -0.6, method="chirp")
    assert _rel(back, xr.to(torch.complex128)) < CHIRP_SMOOTH_ROUND_TRIP_D64


@pytest.mark.parametrize("d", [7, 33])
def test_chirp_round_trip_smooth_odd(d: int) -> None:
    # small d: the signals' time-frequency support is not well inside the window, looser bound
    x = _smooth_signals(d)[:5]
    for a in (0.3, 1.4):
        back = frft(frft(x, a, method="chirp"), -a, method="chirp")
        assert _rel(back, x) < (0.2 if d == 7 else 1e-3)


# ------------------------------------------------------------------------------------------
# accuracy of chirp
# ------------------------------------------------------------------------------------------
def test_chirp_close_to_hermite_on_smooth_signals() -> None:
    x = _smooth_signals(64)
    for a in (0.25, 0.5, 0.75, 1.3, 0.3, 0.77, 1.4, -0.6):
        dev = _rel(frft(x, a, method="chirp"), frft(x, a, method="hermite"))
        assert dev < CHIRP_VS_HERMITE_SMOOTH_D64, (a, dev)


def test_chirp_reproduces_continuous_frft_on_hermite_gauss() -> None:
    u = math.sqrt(2.0 * math.pi) * _centred_t(64)
    h = [torch.ones_like(u), 2.0 * u]
    for j in range(1, 5):
        h.append(2.0 * u * h[j] - 2.0 * j * h[j - 1])
    psi = (torch.stack(h) * torch.exp(-0.5 * u**2)).to(torch.complex128)
    k = torch.arange(psi.shape[0], dtype=torch.float64)[:, None]
    for a in (0.3, 0.5, 1.4):
        y = frft(psi, a, method="chirp")
        assert _rel(y, torch.exp(-0.5j * math.pi * a * k) * psi) < CHIRP_HG_EIGEN_D64


# ------------------------------------------------------------------------------------------
# autograd
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", FRFT_METHODS)
@pytest.mark.parametrize("d", [7, 16])
def test_order_gradient_matches_finite_difference(method: str, d: int) -> None:
    x = _rand((3, d), True, seed=1)
    w = _rand((3, d), True, seed=2)

    def loss(a: torch.Tensor) -> torch.Tensor:
        return (frft(x, a, method=method) * w).real.sum()

    for a0 in (0.3, 0.77, 1.4, -2.6):
        a = torch.tensor(a0, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(loss(a), a)
        h = 1e-6
        fd = (
            loss(torch.tensor(a0 + h, dtype=torch.float64)) - loss(torch.tensor(a0 - h, dtype=torch.float64))
        ) / (2 * h)
        assert torch.isfinite(g)
        assert abs(float(g) - float(fd)) <= 1e-6 * max(1.0, abs(float(fd))), (a0, float(g), float(fd))


@pytest.mark.parametrize("method", FRFT_METHODS)
def test_order_gradient_batched_and_finite_at_integers(method: str) -> None:
    x = _rand((4, 2, 8), True)
    a = torch.tensor([[0.0], [1.0], [0.4], [2.7]], dtype=torch.float64, requires_grad=True)
    frft(x, a, method=method).abs().pow(2).mul(torch.arange(8.0, dtype=torch.float64)).sum().backward()
    assert a.grad is not None and a.grad.shape == (4, 1)
    assert torch.isfinite(a.grad).all()


@pytest.mark.parametrize("method", FRFT_METHODS)
def test_gradcheck_wrt_x_and_order(method: str) -> None:
    x = _rand((2, 5), True).requires_grad_(True)
    a = torch.tensor([[0.37], [1.21]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x_, a_: frft(x_, a_, method=method), (x, a), eps=1e-6, atol=1e-6)


def test_float32_order_gets_gradient() -> None:
    a = torch.tensor(0.7, requires_grad=True)
    x = _rand((2, 9), False, dtype=torch.float32)
    frft(x, a, method="chirp").abs().sum().backward()
    assert a.grad is not None and a.grad.dtype == torch.float32


# ------------------------------------------------------------------------------------------
# batching, broadcasting, dims, dtypes
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", FRFT_METHODS)
@pytest.mark.parametrize("d", [8, 33])
def test_batched_orders_equal_separate_calls(method: str, d: int) -> None:
    z, r = 8, 3
    x = _rand((z, r, d), True)
    orders = torch.tensor([-3.7, -1.0, 0.0, 0.25, 0.77, 1.0, 1.4, 5.1], dtype=torch.float64)
    yb = frft(x, orders[:, None], method=method)
    assert yb.shape == (z, r, d)
    for i in range(z):
        torch.testing.assert_close(yb[i], frft(x[i], float(orders[i]), method=method), atol=1e-12, rtol=0)
    # order shaped (Z, r): one order per row
    o2 = torch.linspace(-1.2, 2.3, z * r, dtype=torch.float64).reshape(z, r)
    y2 = frft(x, o2, method=method)
    for i in range(z):
        for j in range(r):
            torch.testing.assert_close(
                y2[i, j], frft(x[i, j], float(o2[i, j]), method=method), atol=1e-12, rtol=0
            )


@pytest.mark.parametrize("method", FRFT_METHODS)
def test_dim_argument(method: str) -> None:
    x = _rand((5, 12, 3), True)
    y = frft(x, 0.4, dim=1, method=method)
    ref = frft(x.movedim(1, -1), 0.4, method=method).movedim(-1, 1)
    assert y.shape == x.shape
    torch.testing.assert_close(y, ref, atol=1e-12, rtol=0)
    # order broadcast against the leading dims (5, 3) when dim is not last
    o = torch.tensor([0.1, 0.9, 1.7], dtype=torch.float64)
    y = frft(x, o, dim=1, method=method)
    for j in range(3):
        torch.testing.assert_close(y[..., j], frft(x[..., j], float(o[j]), method=method), atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", FRFT_METHODS)
def test_dtypes(method: str) -> None:
    x = _rand((2, 10), False, dtype=torch.float32)
    assert frft(x, 0.5, method=method).dtype == torch.complex64
    assert frft(x.to(torch.complex64), 0.5, method=method).dtype == torch.complex64
    assert frft(x.double(), 0.5, method=method).dtype == torch.complex128
    for low in (torch.bfloat16, torch.float16):
        y = frft(x.to(low), 0.5, method=method)
        assert y.dtype == torch.complex64
        torch.testing.assert_close(y, frft(x.to(low).float(), 0.5, method=method))
    torch.testing.assert_close(
        frft(x, 0.5, method=method),
        frft(x.double(), 0.5, method=method).to(torch.complex64),
        atol=1e-5,
        rtol=0,
    )


@pytest.mark.parametrize("method", FRFT_METHODS)
@pytest.mark.parametrize("d", [7, 16])
def test_frft_matrix_agrees_with_frft(method: str, d: int) -> None:
    x = _rand((4, d), True)
    orders = torch.tensor([0.3, 1.0, 1.77, -0.4], dtype=torch.float64)
    m = frft_matrix(d, orders, method=method)
    assert m.shape == (4, d, d) and m.dtype == torch.complex128
    y = frft(x, orders, method=method)
    torch.testing.assert_close(torch.einsum("zij,zj->zi", m, x), y, atol=1e-12, rtol=0)
    torch.testing.assert_close(x @ m[0].T, frft(x, 0.3, method=method), atol=1e-12, rtol=0)
    m1 = frft_matrix(d, 1.0, method=method, dtype=torch.complex64)
    assert m1.shape == (d, d) and m1.dtype == torch.complex64
    eye = torch.eye(d, dtype=torch.complex128)
    torch.testing.assert_close(
        m1, torch.fft.fft(eye, dim=0, norm="ortho").to(torch.complex64), atol=1e-6, rtol=0
    )


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------
def test_bad_method_raises() -> None:
    with pytest.raises(ValueError, match="method") as info:
        frft(torch.randn(4, 8), 0.5, method="fast")  # type: ignore[arg-type]
    for name in FRFT_METHODS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="method"):
        frft_matrix(8, 0.5, method="nope")  # type: ignore[arg-type]


def test_too_short_raises() -> None:
    with pytest.raises(ValueError, match="d >= 2"):
        frft(torch.randn(3, 1), 0.5)
    with pytest.raises(ValueError, match="d >= 2"):
        frft(torch.randn(1, 5), 0.5, dim=0)
    with pytest.raises(ValueError, match="d >= 2"):
        frft_matrix(1, 0.5, method="hermite")


def test_order_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="broadcast"):
        frft(torch.randn(4, 3, 8), torch.zeros(5, 1), method="weighted")

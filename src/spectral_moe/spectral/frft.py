"""Batched, differentiable discrete fractional Fourier transforms (DFRFT).

One cohesive thing (three transforms sharing one convention, their eigenbases and batched orders), so
it stays one module though it is over 400 lines.

Convention (shared by all methods)
----------------------------------
``F`` is the unitary ("ortho") DFT, ``F x = torch.fft.fft(x, norm="ortho")``, acting on the
*uncentred* index ``n = 0..d-1`` (index 0 is the origin, ``n`` and ``n - d`` are the same
point). The fractional power ``F^a`` satisfies

* ``F^0 = I``, ``F^1 = F``, ``F^2 = J`` (parity, ``(J x)[n] = x[-n mod d]``), ``F^3 = F^-1``;
* ``F^(a + 4) = F^a`` (period 4 in the order);
* ``F^a F^b = F^(a+b)`` exactly for ``hermite`` / ``weighted``, approximately for ``chirp``.

Three methods are provided:

``hermite``
    Eigenvector DFRFT (Candan-Kutay-Ozaktas 2000, with the orthogonal-projection refinement of
    Pei-Yeh-Tseng 1999). ``F^a = V diag(exp(-i pi a m_k / 2)) V^T`` where the real orthonormal
    columns of ``V`` are Hermite-Gauss-like eigenvectors of the DFT and ``m_k`` their
    Hermite-Gauss orders. ``O(d^2)`` per vector, ``O(d^3)`` once per size (cached).
``weighted``
    Four-term weighted-type FRFT (Shih 1995): ``F^a = sum_k w_k(a) F^k``,
    ``w_k(a) = 1/4 sum_m exp(-i pi m (a - k) / 2)``; equivalently ``sum_q exp(-i pi a q/2) P_q``
    with ``P_q`` the projector onto the DFT eigenspace of eigenvalue ``(-i)^q``. ``O(d log d)``.
``chirp``
    Ozaktas-Arikan-Kutay-Bozdagi (1996) chirp multiply - convolve - multiply approximation of
    the continuous FRFT on a centred grid of spacing ``1/sqrt(d)``, with 2x band-limited
    interpolation. ``O(d log d)``. Approximates ``hermite`` well for smooth signals localised
    near the origin; see ``results/frft_accuracy.md`` for measured deviations.

All functions are pure tensor code: no Python branching on tensor values, so a batch of
orders gives exactly the same result as separate calls, and autograd flows to ``x`` and to
``order``.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch

__all__ = ["FRFT_METHODS", "FrftMethod", "frft", "frft_matrix", "frft_transpose"]

FrftMethod = Literal["chirp", "hermite", "weighted"]
FRFT_METHODS: tuple[str, ...] = ("chirp", "hermite", "weighted")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _check_method(method: str) -> None:
    if method not in FRFT_METHODS:
        raise ValueError(f"method must be one of {FRFT_METHODS}, got method={method!r}")


def _check_size(d: int) -> None:
    if d < 2:
        raise ValueError(f"frft needs a transform length d >= 2, got d={d}")


def _working_dtypes(dtype: torch.dtype) -> tuple[torch.dtype, torch.dtype]:
    """(real, complex) compute dtypes: float64/complex128 -> double, everything else -> single."""
    if dtype in (torch.float64, torch.complex128):
        return torch.float64, torch.complex128
    return torch.float32, torch.complex64


def _order_tensor(order: float | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Order as a float64 tensor on ``device`` (python numbers go straight to float64, tensors
    are cast so that autograd still reaches the caller's order tensor)."""
    if isinstance(order, torch.Tensor):
        if order.is_complex():
            raise ValueError("order must be real")
        return order.to(device=device, dtype=torch.float64)
    return torch.tensor(float(order), dtype=torch.float64, device=device)


def _cexp(angle: torch.Tensor) -> torch.Tensor:
    """exp(i * angle) for a real tensor, differentiable."""
    return torch.complex(torch.cos(angle), torch.sin(angle))


def _parity(x: torch.Tensor) -> torch.Tensor:
    """``(J x)[..., n] = x[..., -n mod d]`` (= ``F^2 x``), shape preserved."""
    return torch.roll(torch.flip(x, (-1,)), 1, -1)


def _dft_powers(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(F^0 x, F^1 x, F^2 x, F^3 x)`` for complex ``x`` of shape (..., d), ortho DFT."""
    return x, torch.fft.fft(x, norm="ortho"), _parity(x), torch.fft.ifft(x, norm="ortho")


def _select_power(
    k: torch.Tensor, powers: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Pick ``powers[k]`` per leading index with masks (``k`` float in {0,1,2,3}, shape (...)).

    ``k[..., None]`` broadcasts against the powers (..., d); no Python branching on values.
    """
    kk = k[..., None]
    p0, p1, p2, p3 = powers
    return torch.where(kk == 0, p0, torch.where(kk == 1, p1, torch.where(kk == 2, p2, p3)))


def _cmatmul_real(z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``z @ r`` for complex or real ``z`` (..., n) and real ``r`` (n, m)."""
    if z.is_complex():
        return torch.complex(z.real @ r, z.imag @ r)
    return z @ r


# --------------------------------------------------------------------------------------------
# hermite: eigenvector DFRFT
# --------------------------------------------------------------------------------------------
def _grunbaum_s(d: int) -> torch.Tensor:
    """Dickinson-Steiglitz / Gruenbaum commuting matrix (d, d), float64.

    ``S = circ(0, 1, 0, ..., 0, 1) + diag(2 cos(2 pi n / d) - 4)``: second-difference operator
    plus its DFT-dual; ``S F = F S`` for the (ortho) DFT ``F``. Its eigenvectors are the discrete
    analogues of the Hermite-Gauss functions.
    """
    n = torch.arange(d, dtype=torch.float64)
    s = torch.diag(2.0 * torch.cos(2.0 * math.pi * n / d) - 4.0)
    idx = torch.arange(d)
    s[idx, (idx + 1) % d] += 1.0  # separate statements so that d = 2 gets S[0, 1] = 2
    s[idx, (idx - 1) % d] += 1.0
    return s


def _even_odd_bases(d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal bases (d, d//2 + 1) of even and (d, (d-1)//2) of odd vectors (x[n] = +-x[-n])."""
    ne, no = d // 2 + 1, (d - 1) // 2
    e = torch.zeros(d, ne, dtype=torch.float64)
    o = torch.zeros(d, no, dtype=torch.float64)
    e[0, 0] = 1.0
    h = 1.0 / math.sqrt(2.0)
    for n in range(1, no + 1):
        e[n, n] = e[d - n, n] = h
        o[n, n - 1] = h
        o[d - n, n - 1] = -h
    if d % 2 == 0:
        e[d // 2, d // 2] = 1.0
    return e, o


def _dft_eigenspace_projector_apply(u: torch.Tensor, q: int) -> torch.Tensor:
    """``P_q u`` for real u (d, n): projector onto the DFT eigenspace with eigenvalue (-i)^q.

    ``P_q = 1/4 sum_j (i^q)^j F^j``, which is real: with ``F = C - i Sn`` (cos / sin parts),
    ``P_0 = (I + J + 2C)/4``, ``P_2 = (I + J - 2C)/4``, ``P_1 = (I - J + 2Sn)/4``,
    ``P_3 = (I - J - 2Sn)/4``. ``C u = Re(F u)``, ``Sn u = -Im(F u)``.
    """
    fu = torch.fft.fft(u, dim=0, norm="ortho")
    ju = torch.roll(torch.flip(u, (0,)), 1, 0)
    if q == 0:
        return (u + ju + 2.0 * fu.real) / 4.0
    if q == 2:
        return (u + ju - 2.0 * fu.real) / 4.0
    if q == 1:
        return (u - ju - 2.0 * fu.imag) / 4.0
    return (u - ju + 2.0 * fu.imag) / 4.0


@functools.cache
def _hermite_basis_cpu(d: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Real orthonormal DFT eigenbasis ``V`` (d, d) with Hermite-Gauss orders ``m`` (d,), float64.

    1. Split ``S`` (see ``_grunbaum_s``) into its even and odd blocks ``E^T S E`` / ``O^T S O``
       (both unreduced tridiagonal-like, so simple spectra) and diagonalise each (``eigh``).
    2. Sort each block by *descending* eigenvalue. The j-th even vector gets order ``2 j``,
       the j-th odd one ``2 j + 1``. This gives orders ``0..d-1`` for odd ``d`` and
       ``0..d-2, d`` (order ``d - 1`` skipped) for even ``d`` (Candan et al. 2000).
    3. Pei-Yeh-Tseng refinement: the vectors assigned to class ``q = m mod 4`` are projected
       onto the exact DFT eigenspace ``range(P_q)``, re-orthonormalised (QR) and ``S`` is
       re-diagonalised inside that space (descending -> orders q, q+4, q+8, ...). The
       columns are then exact DFT eigenvectors (to rounding): ``F = V diag((-i)^m) V^T`` to
       ~1e-14, independent of how accurately step 2's ordering theorem holds numerically.

    Returns ``(V, m, max_projection_residual)``; the residual ``max |P_q u - u|`` over the
    step-2 vectors measures how exactly the Gruenbaum eigenvectors already were DFT
    eigenvectors (recorded in the benchmark).
    """
    s = _grunbaum_s(d)
    e, o = _even_odd_bases(d)
    _, we = torch.linalg.eigh(e.T @ s @ e)
    ve = e @ we.flip(-1)  # descending eigenvalue order
    me = 2.0 * torch.arange(ve.shape[1], dtype=torch.float64)
    if o.shape[1] > 0:
        _, wo = torch.linalg.eigh(o.T @ s @ o)
        vo = o @ wo.flip(-1)
    else:
        vo = torch.zeros(d, 0, dtype=torch.float64)
    mo = 2.0 * torch.arange(vo.shape[1], dtype=torch.float64) + 1.0
    v_all = torch.cat([ve, vo], dim=1)
    m_all = torch.cat([me, mo])

    cols, orders = [], []
    residual = 0.0
    for q in range(4):
        sel = torch.nonzero(torch.remainder(m_all, 4.0) == q).flatten()
        if sel.numel() == 0:
            continue
        m_q = m_all[sel].sort().values
        u = v_all[:, sel]
        pu = _dft_eigenspace_projector_apply(u, q)
        residual = max(residual, float((pu - u).abs().max()))
        qmat, _ = torch.linalg.qr(pu)
        _, w = torch.linalg.eigh(qmat.T @ s @ qmat)
        cols.append(qmat @ w.flip(-1))
        orders.append(m_q)
    v = torch.cat(cols, dim=1)
    m = torch.cat(orders)
    perm = torch.argsort(m)
    return v[:, perm].contiguous(), m[perm].contiguous(), residual


@functools.cache
def hermite_basis(d: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The cached fp64 Hermite-Gaussian eigenbasis of the size-``d`` DFT on CPU: ``(V [d, d], m [d],
    residual)`` with ``F V = V diag(exp(−iπ m/2))`` and ``residual = max |F V − V Λ|`` (built once per
    ``d``, O(d³))."""
    return _hermite_basis_cpu(d)


def clear_hermite_basis_cache() -> None:
    """Forget every cached Hermite basis (CPU and per-device copies), e.g. to time a fresh build."""
    _hermite_basis_cpu.cache_clear()
    _hermite_basis.cache_clear()


def _hermite_basis(d: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(V, m)`` of ``_hermite_basis_cpu`` on ``device``; V cast to ``dtype``, m stays float64."""
    v, m, _ = _hermite_basis_cpu(d)
    return v.to(device=device, dtype=dtype), m.to(device=device)


def _frft_hermite(x: torch.Tensor, a: torch.Tensor, cdtype: torch.dtype) -> torch.Tensor:
    """``y = V (lambda(a) * (V^T x))``, ``lambda_k(a) = exp(-i pi (a m_k mod 4) / 2)``.

    Shapes: x (..., d) real or complex; a (...) float64 broadcastable against x's leading dims;
    V (d, d), m (d,); coefficients ``c = x @ V`` (..., d); phases (..., d); y (..., d) complex.
    Phases are reduced mod 4 in float64, so integer orders give exact multiples of pi/2.
    """
    d = x.shape[-1]
    rdtype = torch.float64 if cdtype == torch.complex128 else torch.float32
    v, m = _hermite_basis(d, x.device, rdtype)
    c = _cmatmul_real(x, v)
    lam = _cexp(-0.5 * math.pi * torch.remainder(a[..., None] * m, 4.0)).to(cdtype)
    return _cmatmul_real(c * lam, v.T)


# --------------------------------------------------------------------------------------------
# weighted: 4-term weighted-type FRFT
# --------------------------------------------------------------------------------------------
def _weighted_coefficients(a: torch.Tensor) -> torch.Tensor:
    """``w_k(a) = 1/4 sum_{m=0..3} exp(-i pi m (a - k) / 2)`` for k = 0..3; shape (..., 4), complex128.

    The exponent ``m (a - k)`` is reduced mod 4 first so integer orders give exact weights.
    """
    k = torch.arange(4, dtype=torch.float64, device=a.device)
    mm = torch.arange(4, dtype=torch.float64, device=a.device)
    t = torch.remainder((a[..., None] - k)[..., None] * mm, 4.0)  # (..., 4 [k], 4 [m])
    return _cexp(-0.5 * math.pi * t).mean(-1)


def _frft_weighted(x: torch.Tensor, a: torch.Tensor, cdtype: torch.dtype) -> torch.Tensor:
    """``y = w_0 x + w_1 F x + w_2 J x + w_3 F^-1 x``; x (..., d) complex, a (...), w (..., 4)."""
    w = _weighted_coefficients(a).to(cdtype)
    p0, p1, p2, p3 = _dft_powers(x)
    return w[..., 0:1] * p0 + w[..., 1:2] * p1 + w[..., 2:3] * p2 + w[..., 3:4] * p3


# --------------------------------------------------------------------------------------------
# chirp: Ozaktas et al. (1996) chirp - convolution - chirp
# --------------------------------------------------------------------------------------------
@functools.cache
def _chirp_grids(d: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Order-independent grids (float64) for the chirp method, cached per (d, device).

    * ``x2`` (2d,): squared positions ``x_i^2``, ``x_i = (i - d) / (2 sqrt(d))``, i = 0..2d-1
      (centred, 2x oversampled grid of the continuous-FRFT model with ``Delta x = sqrt(d)``).
    * ``t2`` (4d - 1,): squared kernel lags ``((l - (2d - 1)) / (2 sqrt(d)))^2``, l = 0..4d-2.
    """
    i = torch.arange(2 * d, dtype=torch.float64, device=device)
    x2 = ((i - d) ** 2) / (4.0 * d)
    ell = torch.arange(4 * d - 1, dtype=torch.float64, device=device)
    t2 = ((ell - (2 * d - 1)) ** 2) / (4.0 * d)
    return x2, t2


def _chirp_factors(
    d: int, r: torch.Tensor, x2: torch.Tensor, t2: torch.Tensor, cdtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Order-dependent factors for ``r`` (...): ``phi = r π/2``,
    ``chirp = exp(-iπ tan(phi/2) x²)`` (..., 2d), ``kern = exp(iπ csc(phi) t²)`` (..., 4d-1),
    ``amp = A_phi / (2√d)`` (..., 1) with ``A_phi = exp(-iπ/4 + i phi/2)/√sin(phi)``; float64
    from ``r`` (gradients reach the order), cast to ``cdtype``."""
    phi = 0.5 * math.pi * r
    tan_half = torch.tan(0.5 * phi)[..., None]
    csc = (1.0 / torch.sin(phi))[..., None]
    chirp = _cexp(-math.pi * torch.remainder(tan_half * x2, 2.0)).to(cdtype)
    kern = _cexp(math.pi * torch.remainder(csc * t2, 2.0)).to(cdtype)
    amp = (_cexp(0.5 * phi - 0.25 * math.pi) / torch.sqrt(torch.sin(phi)) / (2.0 * math.sqrt(d))).to(cdtype)
    return chirp, kern, amp[..., None]


def _chirp_convolve(u: torch.Tensor, kern: torch.Tensor) -> torch.Tensor:
    """Linear convolution of ``u`` (..., 2d) with the even lag kernel (..., 4d-1) by a length-4d
    FFT; returns the 2d outputs at positions -d..d-1 (a symmetric Toeplitz matrix applied to u)."""
    d = u.shape[-1] // 2
    g = torch.fft.ifft(torch.fft.fft(u, n=4 * d) * torch.fft.fft(kern, n=4 * d))
    return g[..., 2 * d - 1 : 4 * d - 1]


def _chirp_core(y: torch.Tensor, y_hat: torch.Tensor, r: torch.Tensor, cdtype: torch.dtype) -> torch.Tensor:
    """Approximate ``F^r y`` for ``r`` in [0.5, 1.5] (float64, shape (...)); y, y_hat = F y: (..., d).

    1. Band-limited 2x interpolation: spectrum ``y_hat`` (d,) zero-padded to 2d (the even-d
       Nyquist bin is put whole at frequency -d/2, matching the output grid [-d/2, d/2)),
       ``y_up = ifft_2d(pad(y_hat), norm="forward") / sqrt(d)`` so that ``y_up[2n] = y[n]``;
       rolled by d to the centred grid ``x_i = (i - d) / (2 sqrt d)``, shape (..., 2d).
    2. ``phi = r pi / 2``; ``u = exp(-i pi tan(phi/2) x^2) * y_up``.
    3. Linear convolution with ``h(t) = exp(i pi csc(phi) t^2)`` over lags ``|l| <= 2d-1``
       via a length-4d FFT (no wrap-around reaches the 2d needed outputs): ``g`` (..., 2d).
    4. ``F^r y (x) ~ A_phi / (2 sqrt d) * exp(-i pi tan(phi/2) x^2) * g(x)``,
       ``A_phi = exp(-i pi/4 + i phi/2) / sqrt(sin phi)`` (sin phi > 0 on [0.5, 1.5]).
    5. Roll back to uncentred order and keep every second sample -> (..., d).

    At ``r = 1`` this is the ortho DFT up to rounding. Order-dependent chirps are computed in
    float64 from ``r`` (gradients flow to the order), then cast to ``cdtype``.
    """
    d = y.shape[-1]
    x2, t2 = _chirp_grids(d, y.device)
    half = d // 2
    # 1. interpolation (positive freqs 0..ceil(d/2)-1, negative freqs -floor(d/2)..-1)
    npos = d - half
    pad = torch.zeros(*y_hat.shape[:-1], d, dtype=y_hat.dtype, device=y_hat.device)
    spec = torch.cat([y_hat[..., :npos], pad, y_hat[..., npos:]], dim=-1)  # (..., 2d)
    y_up = torch.fft.ifft(spec, norm="forward") / math.sqrt(d)
    y_up = torch.roll(y_up, d, -1)  # centred: index i <-> sample position i - d

    chirp, kern, amp = _chirp_factors(d, r, x2, t2, cdtype)
    g = _chirp_convolve(y_up * chirp, kern)  # outputs at positions -d..d-1
    out = amp * chirp * g
    return torch.roll(out, d, -1)[..., ::2]


def _frft_chirp(x: torch.Tensor, a: torch.Tensor, cdtype: torch.dtype) -> torch.Tensor:
    """Order reduction + chirp core, batched over orders with masks.

    ``a' = a mod 4``, ``k = round(a' - 1)`` (no gradient), ``r = a' - k`` in [0.5, 1.5] (dr/da = 1);
    ``F^a x = F^r (F^k x)`` with ``F^k x`` and ``F^(k+1) x`` picked from ``(x, Fx, Jx, F^-1 x)``.
    Integer orders give ``r == 1`` exactly; there the output is the exact ``F^(k+1) x`` plus
    ``core - core.detach()`` (value exactly 0), so values are exact and d/da stays the finite
    derivative of the chirp approximation. Shapes: x (..., d) complex, a (...), output (..., d).
    """
    ap = torch.remainder(a, 4.0)
    k = torch.round(ap.detach() - 1.0)
    r = ap - k
    k = torch.remainder(k, 4.0)
    powers = _dft_powers(x)
    y = _select_power(k, powers)
    y_hat = _select_power(torch.remainder(k + 1.0, 4.0), powers)
    core = _chirp_core(y, y_hat, r, cdtype)
    exact = (r == 1.0)[..., None]
    return torch.where(exact, y_hat + (core - core.detach()), core)


def _chirp_core_transpose(z: torch.Tensor, r: torch.Tensor, cdtype: torch.dtype) -> torch.Tensor:
    """``w`` with ``K(r)^T z = F w``, where ``_chirp_core(y, F y, r) = K(r) y``.

    ``K = Dec·R·diag(amp·chirp)·C·diag(chirp)·R·G·Pad·F`` (steps 1-5 of ``_chirp_core``); every
    stage is symmetric except the resampling ones, so ``K^T = F·Trunc·G·R·diag(chirp)·C·
    diag(amp·chirp)·R·Stuff`` with ``Stuff`` = zero-stuffing (the transpose of taking every second
    sample), ``Trunc`` the transpose of the zero-padding of the spectrum, ``R`` the roll by d on
    length 2d (its own inverse and transpose), ``G = ifft_{2d}(·, norm="forward")/√d`` and the
    kernel convolution ``C`` symmetric (the lag kernel is even). Returns ``w`` (..., d).
    """
    d = z.shape[-1]
    x2, t2 = _chirp_grids(d, z.device)
    half = d // 2
    npos = d - half
    s = torch.zeros(*z.shape[:-1], 2 * d, dtype=cdtype, device=z.device)
    s = s.index_copy(-1, torch.arange(0, 2 * d, 2, device=z.device), z.to(cdtype))  # Stuff
    s = torch.roll(s, d, -1)

    chirp, kern, amp = _chirp_factors(d, r, x2, t2, cdtype)
    g = chirp * _chirp_convolve(amp * chirp * s, kern)
    g = torch.roll(g, d, -1)
    up = torch.fft.ifft(g, norm="forward") / math.sqrt(d)  # G^T = G (a symmetric DFT-type matrix)
    return torch.cat([up[..., :npos], up[..., npos + d :]], dim=-1)  # Trunc = Pad^T


def _frft_chirp_transpose(x: torch.Tensor, a: torch.Tensor, cdtype: torch.dtype) -> torch.Tensor:
    """``M^T x`` for the chirp matrix ``M = K(r) F^k`` of ``_frft_chirp``: ``F^k K^T x = F^(k+1) w``.

    The DFT powers are symmetric matrices, so at integer orders (``r == 1``) this is the same
    exact ``F^(k+1) x`` as the forward transform.
    """
    ap = torch.remainder(a, 4.0)
    k = torch.round(ap.detach() - 1.0)
    r = ap - k
    k1 = torch.remainder(k + 1.0, 4.0)
    w = _chirp_core_transpose(x, r, cdtype)
    core = _select_power(k1, _dft_powers(w))
    exact = (r == 1.0)[..., None]
    return torch.where(exact, _select_power(k1, _dft_powers(x)) + (core - core.detach()), core)


_IMPLS = {"chirp": _frft_chirp, "hermite": _frft_hermite, "weighted": _frft_weighted}


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _prepare(
    x: torch.Tensor, order: float | torch.Tensor, dim: int, method: str
) -> tuple[torch.Tensor, torch.Tensor, torch.dtype, int]:
    """Checks and layout shared by ``frft`` and ``frft_transpose``: ``x`` with ``dim`` moved last and
    cast to the working dtype (real kept real only for ``hermite``), the order as float64, the
    complex dtype, and ``dim`` counted from the end."""
    _check_method(method)
    _check_size(x.shape[dim])
    dim_from_end = (dim % x.ndim) - x.ndim
    rdtype, cdtype = _working_dtypes(x.dtype)
    xm = x.movedim(dim_from_end, -1)
    if method != "hermite":
        xm = xm.to(cdtype)
    elif not (xm.is_complex() or xm.is_floating_point()) or xm.dtype not in (rdtype, cdtype):
        xm = xm.to(cdtype if xm.is_complex() else rdtype)
    a = _order_tensor(order, x.device)
    try:
        torch.broadcast_shapes(xm.shape[:-1], a.shape)
    except RuntimeError as err:
        raise ValueError(
            f"order of shape {tuple(a.shape)} does not broadcast against the leading dims "
            f"{tuple(xm.shape[:-1])} of x (x.shape={tuple(x.shape)}, dim={dim})"
        ) from err
    return xm, a, cdtype, dim_from_end


def frft(
    x: torch.Tensor,
    order: float | torch.Tensor,
    dim: int = -1,
    method: FrftMethod = "chirp",
) -> torch.Tensor:
    """Discrete fractional Fourier transform ``F^order`` of ``x`` along ``dim``.

    Args:
        x: real or complex tensor; transform length ``d = x.shape[dim] >= 2`` (odd allowed).
        order: python float or tensor broadcast against the *leading* dims of ``x`` (all dims
            except ``dim``, in order). E.g. ``x`` (Z, r, d) with order () / (Z, 1) / (Z, r).
            Extra leading order dims broadcast into the output. Differentiable.
        dim: transformed dimension.
        method: ``"chirp"`` (default, O(d log d), approximate), ``"hermite"`` (eigenvector
            DFRFT, O(d^2), exact unitary/additive) or ``"weighted"`` (4-term, O(d log d),
            exact unitary/additive).

    Returns:
        complex tensor of shape ``broadcast(leading(x), order.shape)`` with ``d`` at ``dim``
        (counted from the end when broadcasting adds dims); complex128 for float64/complex128
        input, complex64 otherwise (bf16/fp16 compute in float32).

    Integer orders are exact for every method: 0 -> identity, 1 -> ``fft(x, norm="ortho")``,
    2 -> ``x[-n mod d]``, 3 / -1 -> ``ifft(x, norm="ortho")``; period 4.
    """
    xm, a, cdtype, dim_from_end = _prepare(x, order, dim, method)
    y = _IMPLS[method](xm, a, cdtype)
    return y.movedim(-1, dim_from_end)


def frft_transpose(
    x: torch.Tensor,
    order: float | torch.Tensor,
    dim: int = -1,
    method: FrftMethod = "chirp",
) -> torch.Tensor:
    """``M^T x`` for the matrix ``M`` of ``frft(·, order, method)``; same arguments and shapes as ``frft``.

    Applied to the rows of ``A`` it gives ``A M`` (``A 𝓕^a``), which FRAME needs for its factors.
    ``hermite`` and ``weighted`` are symmetric (``M^T = M``), so this is ``frft``; ``chirp`` is not
    (its 2x resampling is not self-transposed) and runs the transposed chain, still O(d log d).
    """
    if method != "chirp":
        return frft(x, order, dim=dim, method=method)
    xm, a, cdtype, dim_from_end = _prepare(x, order, dim, method)
    return _frft_chirp_transpose(xm, a, cdtype).movedim(-1, dim_from_end)


def frft_matrix(
    d: int,
    order: float | torch.Tensor,
    method: FrftMethod = "chirp",
    dtype: torch.dtype = torch.complex128,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Dense matrix ``M`` (..., d, d) of ``frft`` so that ``frft(x, a) == x @ M.mT`` (``M @ x``).

    Built by transforming the identity: ``frft(I, a[..., None])`` has rows ``M e_i``, i.e. it
    is ``M^T``. ``order`` of shape (...) gives a batch of matrices (..., d, d).
    ``dtype`` must be complex64 or complex128.
    """
    _check_method(method)
    _check_size(d)
    if dtype not in (torch.complex64, torch.complex128):
        raise ValueError(f"dtype must be torch.complex64 or torch.complex128, got {dtype}")
    rdtype = torch.float64 if dtype == torch.complex128 else torch.float32
    eye = torch.eye(d, dtype=rdtype, device=device)
    a = _order_tensor(order, eye.device)
    mt = frft(eye, a[..., None], dim=-1, method=method)
    return mt.transpose(-1, -2)

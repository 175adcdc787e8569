"""Hermitian sparse spectra and the weight updates they define.

Notation (shapes in brackets): ``Z`` experts, ``n`` coefficients per expert, ``T`` tokens,
``M = d_out``, ``N = d_in``. Expert ``z`` owns positions ``(u_{z,j}, v_{z,j})`` (``rows``, ``cols``
[Z, n]) and complex coefficients ``c_{z,j}`` (real part [Z, n], optional imaginary part [Z, n]).

Hermitian spectrum of expert ``z`` (scatter-add, so repeated or self-conjugate positions add up)::

    F_z = ½ Σ_j ( c_{z,j} δ[u_{z,j}, v_{z,j}] + conj(c_{z,j}) δ[−u_{z,j}, −v_{z,j}] )      [M, N]

``F_z[−u, −v] = conj(F_z[u, v])`` by construction, hence ``IDFT2(F_z)`` is exactly real and::

    ΔW_z = scaling · IDFT2(F_z) = scaling · Re(IDFT2(Σ_j c_{z,j} δ[u_{z,j}, v_{z,j}]))     [M, N]

IDFT2 is ``torch.fft.ifft2`` ("backward" normalisation, 1/(MN)). The ½ makes the one-sided form on
the right exactly peft FourierFT's ``get_delta_weight`` for real ``c``, so FourierFT's ``scaling``
values carry over unchanged.

Applying ``ΔW_z`` without forming it (``x`` real)::

    X = ifft_N(x)                                   [T, N]   (from rfft: X[v] = conj(R[v])/N, X[N−v] = R[v]/N)
    H_t[u] = Σ_z g_{t,z} Σ_{j: u_{z,j}=u} c_{z,j} X_t[v_{z,j}]                 [T, M]
    G_t[u] = ½ (H_t[u] + conj(H_t[−u]))             (Hermitian in u)
    y_t = scaling · ifft_M(G_t) = scaling · irfft_M(G_t[0..M/2])                [T, M]

which equals ``Σ_z g_{t,z} ΔW_z x_t`` exactly. Cost per token ``O(N log N + M log M + Z·n)``.
FFTs run in float32 for half-precision inputs (torch has no bf16 FFT).
"""

from __future__ import annotations

import math

import torch


def fft_dtype(dtype: torch.dtype) -> torch.dtype:
    """Real dtype the FFTs run in: float64 stays float64, everything else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def input_spectrum(x: torch.Tensor) -> torch.Tensor:
    """``rfft(x)`` along the feature axis in the FFT dtype, ``[..., d_in//2+1]`` complex."""
    return torch.fft.rfft(x.to(fft_dtype(x.dtype)), dim=-1)


def complex_coefficients(coef_real: torch.Tensor, coef_imag: torch.Tensor | None) -> torch.Tensor:
    """``c = coef_real + i·coef_imag`` ([Z, n] complex); ``coef_imag=None`` means real coefficients."""
    if coef_imag is None:
        coef_imag = torch.zeros_like(coef_real)
    return torch.complex(coef_real, coef_imag)


def hermitian_spectrum(
    coef_real: torch.Tensor,
    coef_imag: torch.Tensor | None,
    rows: torch.Tensor,
    cols: torch.Tensor,
    d_out: int,
    d_in: int,
) -> torch.Tensor:
    """Dense Hermitian spectra ``F_z`` (module docstring), complex ``[Z, d_out, d_in]``."""
    c = complex_coefficients(coef_real, coef_imag)
    num_experts = c.shape[0]
    flat = rows * d_in + cols
    mirror = ((-rows) % d_out) * d_in + (-cols) % d_in
    spec = torch.zeros(num_experts, d_out * d_in, dtype=c.dtype, device=c.device)
    spec = spec.scatter_add(1, flat, 0.5 * c).scatter_add(1, mirror, 0.5 * c.conj())
    return spec.view(num_experts, d_out, d_in)


def dense_delta_weight(
    coef_real: torch.Tensor,
    coef_imag: torch.Tensor | None,
    rows: torch.Tensor,
    cols: torch.Tensor,
    d_out: int,
    d_in: int,
    scaling: float,
) -> torch.Tensor:
    """Reference ``ΔW_z = scaling · IDFT2(F_z)``, real ``[Z, d_out, d_in]`` in the FFT dtype.

    ``F_z`` is Hermitian, so the imaginary part of ``ifft2(F_z)`` is zero up to rounding (tested); the
    ``.real`` below drops only rounding noise.
    """
    dtype = fft_dtype(coef_real.dtype)
    spec = hermitian_spectrum(
        coef_real.to(dtype), None if coef_imag is None else coef_imag.to(dtype), rows, cols, d_out, d_in
    )
    return torch.fft.ifft2(spec).real * scaling


def fold_plan(cols: torch.Tensor, d_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For flat ``cols`` [K]: index into ``rfft`` and the sign of its imaginary part giving ``N·X[v]``.

    ``X[v] = ifft(x)[v] = conj(R[v])/N`` for ``v ≤ N/2`` and ``R[N−v]/N`` otherwise, ``R = rfft(x)``.
    """
    folded = torch.minimum(cols, d_in - cols)
    sign = torch.where(cols <= d_in // 2, -1.0, 1.0).to(cols.device)
    return folded, sign


def apply_fft(
    x: torch.Tensor,
    coef_real: torch.Tensor,
    coef_imag: torch.Tensor | None,
    rows: torch.Tensor,
    cols: torch.Tensor,
    gates: torch.Tensor,
    d_out: int,
    scaling: float,
    spectrum: torch.Tensor | None = None,
) -> torch.Tensor:
    """``Σ_z gates[..., z] · ΔW_z x`` by 1-D FFTs (module docstring), without any dense ``ΔW``.

    Args:
        x: real ``[..., d_in]``.
        coef_real, coef_imag: ``[Z, n]`` (``coef_imag`` None for real coefficients).
        rows, cols: int64 ``[Z, n]`` spectral positions.
        gates: ``[..., Z]`` router weights (zeros outside the top-k).
        spectrum: ``rfft(x)`` in the FFT dtype ``[..., d_in//2+1]`` when the caller already has it.
    Returns:
        ``[..., d_out]`` in the FFT dtype (float32, or float64 for float64 inputs).
    """
    dtype = fft_dtype(x.dtype)
    lead = x.shape[:-1]
    d_in = x.shape[-1]
    xt = x.reshape(-1, d_in).to(dtype)
    g = gates.reshape(-1, gates.shape[-1]).to(dtype)
    num_experts, n = coef_real.shape

    if spectrum is None:
        spectrum = torch.fft.rfft(xt, dim=-1)
    spec_x = spectrum.reshape(-1, d_in // 2 + 1)  # [T, N//2+1]
    folded, sign = fold_plan(cols.reshape(-1), d_in)
    xv = spec_x[:, folded]  # [T, Z·n]
    xv = torch.complex(xv.real, xv.imag * sign.to(dtype)) / d_in  # X[v] = ifft(x)[v]

    c = complex_coefficients(coef_real.to(dtype), None if coef_imag is None else coef_imag.to(dtype))
    weights = (g.repeat_interleave(n, dim=1) * scaling).to(c.dtype) * c.reshape(1, -1)  # [T, Z·n]
    h = torch.zeros(xt.shape[0], d_out, dtype=c.dtype, device=x.device)
    h = h.index_add(1, rows.reshape(-1), xv * weights)  # H_t[u]
    half = d_out // 2 + 1
    mirror = (-torch.arange(half, device=x.device)) % d_out
    g_half = 0.5 * (h[:, :half] + h[:, mirror].conj())  # Hermitian part, u = 0..M/2
    y = torch.fft.irfft(g_half, n=d_out, dim=-1)
    return y.reshape(*lead, d_out)


def apply_dense(x: torch.Tensor, delta_weight: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """``Σ_z gates[..., z] · ΔW_z x`` from dense ``delta_weight`` ``[Z, d_out, d_in]``.

    One matmul against the stacked experts ``[Z·d_out, d_in]``, then the gate-weighted sum.
    """
    num_experts, d_out, d_in = delta_weight.shape
    xt = x.to(delta_weight.dtype)
    per_expert = (xt @ delta_weight.reshape(num_experts * d_out, d_in).T).unflatten(-1, (num_experts, d_out))
    return (gates.to(delta_weight.dtype).unsqueeze(-1) * per_expert).sum(-2)


def log_band_energies(
    x: torch.Tensor, num_bands: int, eps: float = 1e-6, spectrum: torch.Tensor | None = None
) -> torch.Tensor:
    """Router features of the frequency-adaptive variant: ``log(ε + Σ_{v∈band b} |rfft(x)[v]|²/N)``.

    The ``N//2+1`` rfft bins of ``x [..., N]`` are cut into ``num_bands`` contiguous bands
    (edges ``round(linspace(0, bins, num_bands+1))``: sizes differ by at most one). Returns ``[..., num_bands]`` in the FFT dtype.
    ``spectrum`` is ``rfft(x)`` in the FFT dtype when the caller already has it.
    """
    dtype = fft_dtype(x.dtype)
    if spectrum is None:
        spectrum = torch.fft.rfft(x.to(dtype), dim=-1)
    power = spectrum.abs().square() / x.shape[-1]
    bins = power.shape[-1]
    bounds = torch.linspace(0, bins, num_bands + 1, device=x.device).round().long()
    band_id = torch.bucketize(torch.arange(bins, device=x.device), bounds[1:-1], right=True)
    energies = torch.zeros(*power.shape[:-1], num_bands, dtype=dtype, device=x.device)
    energies = energies.index_add(-1, band_id, power)
    return torch.log(energies + eps)


# Cost-model constants (relative seconds per unit of work on CPU, fp32), measured by
# benchmarks/adapter_step.py; only their ratios matter.
FFT_COST_PER_POINT_LOG = 1.0  # one complex butterfly of an rfft/irfft, per token
GATHER_COST_PER_COEF = 10.0  # gather + complex multiply + index_add, per token per coefficient
MATMUL_COST_PER_MAC = 0.25  # one multiply-accumulate of a dense float32 matmul


def fft_is_cheaper(tokens: int, d_out: int, d_in: int, num_experts: int, n_frequency: int) -> bool:
    """Cost model of ``forward_mode="auto"``: True when the FFT path is expected to be faster.

    FFT path ≈ ``T·(N log₂N + M log₂M)/2 · c_fft + T·Z·n · c_gather``;
    dense path ≈ ``Z·M·N·log₂(MN) · c_fft`` (one ifft2 per expert) ``+ T·Z·M·N · c_mac``.
    """
    log2 = math.log2
    fft = tokens * (d_in * log2(max(d_in, 2)) + d_out * log2(max(d_out, 2))) / 2 * FFT_COST_PER_POINT_LOG
    fft += tokens * num_experts * n_frequency * GATHER_COST_PER_COEF
    dense = num_experts * d_out * d_in * log2(max(d_out * d_in, 2)) * FFT_COST_PER_POINT_LOG
    dense += tokens * num_experts * d_out * d_in * MATMUL_COST_PER_MAC
    return fft < dense

"""Direct formulas the library computes another way, kept here only to test it against.

* ``hermitian_spectrum``: the dense Hermitian spectra ``F_z`` of ``spectral/fourier.py``'s module
  docstring, complex ``[Z, M, N]`` (the library only ever builds their stored half,
  ``fourier.half_hermitian_spectrum``, or never forms them at all, ``fourier.apply_fft``).
* ``load_balancing_loss``, ``router_z_loss``: the Switch and ST-MoE losses of one routing call
  (``routing.py``'s docstring), which the library computes from per-layer sufficient statistics
  (``routing.router_loss_stats`` → ``routing.router_losses_from_stats``).
"""

from __future__ import annotations

import torch

from spectral_moe.routing import Routing, dispatch_fraction
from spectral_moe.spectral.fourier import complex_coefficients


def hermitian_spectrum(
    coef_real: torch.Tensor,
    coef_imag: torch.Tensor | None,
    rows: torch.Tensor,
    cols: torch.Tensor,
    d_out: int,
    d_in: int,
) -> torch.Tensor:
    """``F_z = ½ Σ_j (c_{z,j} δ[u, v] + conj(c_{z,j}) δ[−u, −v])``, complex ``[Z, d_out, d_in]``.

    Scatter-add, so repeated or self-conjugate positions add up; ``rows``, ``cols`` are ``[Z, n]``.
    """
    c = complex_coefficients(coef_real, coef_imag)  # [Z, n]
    num_experts = c.shape[0]
    flat = rows * d_in + cols
    mirror = ((-rows) % d_out) * d_in + (-cols) % d_in
    spec = torch.zeros(num_experts, d_out * d_in, dtype=c.dtype, device=c.device)
    spec = spec.scatter_add(1, flat, 0.5 * c).scatter_add(1, mirror, 0.5 * c.conj())
    return spec.view(num_experts, d_out, d_in)


def load_balancing_loss(routing: Routing) -> torch.Tensor:
    """``L_aux = Z · Σ_z f_z P_z`` (Switch Transformer) over every position, differentiable through ``P_z``."""
    num_experts = routing.probs.shape[-1]
    f = dispatch_fraction(routing.topk_index, num_experts).to(routing.probs)  # [Z]
    p_mean = routing.probs.reshape(-1, num_experts).mean(0)  # [Z]
    return num_experts * (f * p_mean).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """``L_z = mean_t (logsumexp_z ℓ_{t,z})²`` (ST-MoE router z-loss) of logits ``[..., Z]``."""
    work = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return torch.logsumexp(logits.to(work), dim=-1).square().mean()

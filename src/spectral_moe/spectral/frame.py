"""FRAME's math: fractional-Fourier low-rank experts, computed on the factors (DESIGN.md §4).

Shapes: ``Z`` experts, rank ``r``, ``M = d_out``, ``N = d_in``, orders ``a [Z]``,
``A [Z, r, N]``, ``B [Z, M, r]``, ``s = lora_alpha / r``.

Dense reference::

    ΔW_z = s · Re( 𝓕^{−a_z}_M B_z A_z 𝓕^{a_z}_N )                                      [Z, M, N]

Transform the factors, not the tokens (2·Z·r transforms per step, independent of T)::

    Ã_z = A_z 𝓕^{a_z}_N        the r rows of A_z transformed by (𝓕^a)ᵀ (= 𝓕^a but for chirp) [Z, r, N]
    B̃_z = 𝓕^{−a_z}_M B_z       the r columns of B_z transformed                         [Z, M, r]
    ΔW_z x = s · ( Re B̃_z · (Re Ã_z x) − Im B̃_z · (Im Ã_z x) )     (x real)

i.e. a real rank-2r LoRA with ``A'_z = [Re Ã_z; Im Ã_z]`` [2r, N] and ``B'_z = [Re B̃_z, −Im B̃_z]``
[M, 2r]. All experts are applied with two matmuls against the stacked factors, the gates scaling
the ``2r`` hidden units of each expert.
"""

from __future__ import annotations

import torch

from .frft import frft, frft_matrix, frft_transpose


def transformed_factors(
    lora_a: torch.Tensor, lora_b: torch.Tensor, orders: torch.Tensor, method: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Real stacked factors ``A' [Z, 2r, N]`` and ``B' [Z, M, 2r]`` (module docstring)."""
    a = orders[:, None]  # one order per expert, broadcast over the r rows
    a_t = frft_transpose(lora_a, a, dim=-1, method=method)  # rows of Ã = A 𝓕^a are (𝓕^a)ᵀ A_iᵀ
    b_t = frft(lora_b.transpose(-1, -2), -a, dim=-1, method=method).transpose(-1, -2)  # B̃ = 𝓕^{−a} B
    a2 = torch.cat([a_t.real, a_t.imag], dim=-2).to(lora_a.dtype)
    b2 = torch.cat([b_t.real, -b_t.imag], dim=-1).to(lora_b.dtype)
    return a2, b2


def apply_lowrank_experts(
    x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, gates: torch.Tensor, scale: float
) -> torch.Tensor:
    """``Σ_z gates[..., z] · scale · B_z A_z x`` for real factors ``A [Z, k, N]``, ``B [Z, M, k]``.

    ``h = x A_allᵀ`` [..., Z·k] (one matmul), ``h ← h · gates`` repeated over each expert's ``k``
    units, ``y = scale · h B_allᵀ`` [..., M] (one matmul).
    """
    num_experts, k, d_in = lora_a.shape
    d_out = lora_b.shape[1]
    h = x.to(lora_a.dtype) @ lora_a.reshape(num_experts * k, d_in).T
    h = h * gates.to(h.dtype).repeat_interleave(k, dim=-1)
    b_all = lora_b.permute(1, 0, 2).reshape(d_out, num_experts * k)
    return (h @ b_all.T) * scale


def dense_delta_weight(
    lora_a: torch.Tensor, lora_b: torch.Tensor, orders: torch.Tensor, method: str, scale: float
) -> torch.Tensor:
    """Reference ``ΔW_z = s · Re(𝓕^{−a_z} B_z A_z 𝓕^{a_z})`` from dense transform matrices, ``[Z, M, N]``."""
    cdtype = torch.complex128 if lora_a.dtype == torch.float64 else torch.complex64
    d_out, d_in = lora_b.shape[1], lora_a.shape[2]
    m_in = frft_matrix(d_in, orders, method=method, dtype=cdtype, device=lora_a.device)  # [Z, N, N]
    m_out = frft_matrix(d_out, -orders, method=method, dtype=cdtype, device=lora_a.device)  # [Z, M, M]
    prod = m_out @ lora_b.to(cdtype) @ lora_a.to(cdtype) @ m_in
    return (prod.real * scale).to(lora_a.dtype)

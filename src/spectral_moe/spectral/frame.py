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

Order sensitivity (``benchmarks/frame_orders.py sensitivity``, results/frame_orders.md): the order
move ``δ`` at which one expert's ``ΔW`` changes by ``ρ* = 2 %`` (median over random A, B and orders):
``weighted`` 7.4e-3–7.9e-3 at d = 64 … 2048 (its weights depend on ``a`` only), ``hermite``
``0.031/d``, ``chirp`` ``0.028/d``–``0.030/d`` (phases ``exp(−iπ·a·m/2)`` with ``m`` up to ``d − 1``).
Adam moves a parameter by about its learning rate per step, so ``default_order_lr`` is that ``δ``,
lowered so that the *worst* case over orders in ``[0, 2]``, ranks 1 and 4 and seeds stays below 2 %:
``weighted`` 6e-3, ``hermite`` ``0.027/d``, ``chirp`` ``0.025/d`` (chirp's own approximation jumps at
the half-integer orders where its reduction changes branch; those points are excluded).
"""

from __future__ import annotations

import torch

from .frft import FRFT_METHODS, frft, frft_matrix, frft_transpose

#: order move per optimizer step at which ΔW changes by 2 %: a constant for ``weighted``,
#: ``ORDER_LR_PER_WIDTH[method] / d`` for the Hermite-phase transforms (module docstring)
WEIGHTED_ORDER_LR = 6e-3
ORDER_LR_PER_WIDTH = {"hermite": 0.027, "chirp": 0.025}


def default_order_lr(method: str, width: int) -> float:
    """Default learning rate of a FRAME order for ``method`` on a layer of width ``max(d_in, d_out)``.

    ``weighted``: ``WEIGHTED_ORDER_LR`` (6e-3, width-independent); ``hermite``/``chirp``:
    ``ORDER_LR_PER_WIDTH[method] / width`` (4.7e-5 for hermite at 576). One Adam step at this rate
    changes an expert's ΔW by less than 2 %.
    """
    if method not in FRFT_METHODS:
        raise ValueError(f"method must be one of {FRFT_METHODS}, got method={method!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    if method == "weighted":
        return WEIGHTED_ORDER_LR
    return ORDER_LR_PER_WIDTH[method] / width


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

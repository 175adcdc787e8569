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
[M, 2r]. For ``weighted`` the factors are transformed in real arithmetic
(``weighted_transformed_factors``: ``𝓕^a v = Σ_k w_k(a) 𝓕^k v`` with ``𝓕² v = J v`` and
``𝓕³ v = conj(𝓕 v)`` for real ``v``, so one real-input FFT per factor). Rank 2r is the floor of the
token side: ``ΔW_z`` has rank 2r for generic ``A``, ``B`` and orders (``a = 1``: ``𝓕⁻¹·½(BA + J·BA·J)·𝓕``).

The experts meet the tokens in one of two ways (``FrameConfig.expert_mode``): all experts with two
matmuls against the stacked factors, the gates scaling the ``k`` hidden units of each expert
(``apply_lowrank_experts``), or only each token's top-k experts, tokens grouped by expert
(``apply_routed_lowrank_experts``, ``torch._grouped_mm``); ``routed_is_cheaper`` is the cost model.

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

import functools
import math

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


@functools.cache
def _weighted_real_map(device: torch.device) -> torch.Tensor:
    """``K [8, 8]`` (float64, constant) with ``C(a).reshape(8) = [cos(mφ), sin(mφ)]_{m=0..3} @ K``, ``φ = πa/2``.

    ``w_k = ¼ Σ_m e^{−imφ} i^{mk}``: with ``i^{mk} = p_mk + i q_mk`` (integers),
    ``w_kr = ¼ Σ_m (cos(mφ) p_mk + sin(mφ) q_mk)`` and ``w_ki = ¼ Σ_m (cos(mφ) q_mk − sin(mφ) p_mk)``;
    the rows of ``C`` are the combinations of ``weighted_real_coefficients``. Cached per device (read only)."""
    with torch.inference_mode(False):  # built under inference_mode, it still serves autograd later
        return _build_weighted_real_map().to(device)


def _build_weighted_real_map() -> torch.Tensor:
    m = torch.arange(4, dtype=torch.float64)
    mk = m[:, None] * m[None, :]  # [m, k]
    p = torch.round(torch.cos(0.5 * math.pi * mk))
    q = torch.round(torch.sin(0.5 * math.pi * mk))
    w_re = torch.cat([p, q], dim=0) / 4.0  # [8 (cos m, sin m), 4 (k)]: w_kr
    w_im = torch.cat([q, -p], dim=0) / 4.0  # w_ki
    re = torch.stack([w_re[:, 0], w_re[:, 2], w_re[:, 1] + w_re[:, 3], w_im[:, 3] - w_im[:, 1]], dim=-1)
    im = torch.stack([w_im[:, 0], w_im[:, 2], w_im[:, 1] + w_im[:, 3], w_re[:, 1] - w_re[:, 3]], dim=-1)
    return torch.cat([re, im], dim=-1)  # [8, 2·4]


def weighted_real_coefficients(orders: torch.Tensor) -> torch.Tensor:
    """``C(a) [Z, 2, 4]`` real, with ``(Re, Im)(𝓕^a v) = C(a) · (v, J v, Re 𝓕v, Im 𝓕v)`` for real ``v``.

    ``𝓕^a = Σ_k w_k(a) 𝓕^k`` (weighted transform, ``frft._weighted_coefficients``) and, for real ``v``,
    ``𝓕² v = J v`` (real) and ``𝓕³ v = 𝓕⁻¹ v = conj(𝓕 v)``. With ``f = 𝓕 v = f_r + i f_i`` and
    ``w_k = w_kr + i w_ki``::

        Re 𝓕^a v = w_0r v + w_2r J v + (w_1r + w_3r) f_r + (w_3i − w_1i) f_i
        Im 𝓕^a v = w_0i v + w_2i J v + (w_1i + w_3i) f_r + (w_1r − w_3r) f_i

    ``w_k`` is linear in ``(cos mφ, sin mφ)``, ``φ = πa/2``, ``m = 0..3`` (``_weighted_real_map``); the
    angles ``mφ`` are reduced mod 2π first (``m·a mod 4``), as in ``frft``. Float64, differentiable in
    ``orders [Z]``.
    """
    a = orders.to(torch.float64)
    m = torch.arange(4, dtype=torch.float64, device=a.device)
    angle = (0.5 * math.pi) * torch.remainder(a[:, None] * m, 4.0)  # [Z, 4]
    trig = torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)  # [Z, 8]
    return (trig @ _weighted_real_map(a.device)).reshape(-1, 2, 4)


@functools.cache
def _parity_index(d: int, device: torch.device) -> torch.Tensor:
    """``[−n mod d]_{n < d}`` (int64, read only): ``J v = v[parity]``."""
    with torch.inference_mode(False):  # built under inference_mode, it still serves autograd later
        return torch.remainder(-torch.arange(d, device=device), d)


def _real_weighted_basis(v: torch.Tensor, dim: int) -> torch.Tensor:
    """``(v, J v, Re 𝓕v, Im 𝓕v)`` of real ``v`` ``[Z, ...]`` along ``dim``, stacked at dim 1: ``[Z, 4, ...]``.

    One real-input FFT (``𝓕``, ortho) and ``J`` (``v[−n mod d]``: an index gather, or flip and roll along
    the last axis)."""
    if dim % v.ndim == v.ndim - 1:  # a gather along the contiguous axis is slow: flip, then roll by one
        jv = torch.roll(torch.flip(v, (dim,)), 1, dim)
    else:
        jv = v.index_select(dim, _parity_index(v.shape[dim], v.device))
    f = torch.view_as_real(torch.fft.fft(v, dim=dim, norm="ortho"))  # [..., 2]: no complex views to undo
    return torch.stack([v, jv, f[..., 0], f[..., 1]], dim=1)


def weighted_transformed_factors(
    lora_a: torch.Tensor, lora_b: torch.Tensor, orders: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``transformed_factors`` for the weighted transform, in real arithmetic: ``A' [Z, 2r, N]``, ``B' [Z, M, 2r]``.

    ``C(a)`` of ``weighted_real_coefficients`` (``[Z, 2, 4]``) mixes the real basis
    ``(A, A J, Re A𝓕, Im A𝓕)`` (rows of ``A``; ``𝓕``, ``J`` symmetric) and ``(B, J B, Re 𝓕B, Im 𝓕B)``
    (columns of ``B``)::

        A'_z = [Re Ã_z; Im Ã_z] = Σ_b C(a_z)[:, b] · basis_A[z, b]                    [Z, 2, r, N] → [Z, 2r, N]
        B'_z = [Re B̃_z, −Im B̃_z] = Σ_b (diag(1, −1) C(−a_z))[:, b] · basis_B[z, b]    [M, Z, 2, r] → [Z, M, 2r]

    Two real-input FFTs, two parities and two ``einsum`` (batched matmuls with inner size 4) per step,
    instead of complex FFTs, inverse FFTs, flips and complex products (2.2× faster forward + backward at
    d = 2048, results/perf_frame.md). Float32 (float64 for float64 factors), cast to the factors' dtype.
    ``B'`` is a ``[Z, M, 2r]`` view of an ``[M, Z·2r]``-contiguous tensor, the layout
    ``apply_lowrank_experts`` multiplies with (no copy there).
    """
    work = torch.float64 if lora_a.dtype == torch.float64 else torch.float32
    num_experts, r, d_in = lora_a.shape
    d_out = lora_b.shape[1]
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64, device=orders.device)[:, None]  # B' rows (Re, −Im)
    coef_a = weighted_real_coefficients(orders).to(work)  # [Z, 2, 4]
    coef_b = (weighted_real_coefficients(-orders) * sign).to(work)
    basis_a = _real_weighted_basis(lora_a.to(work), dim=-1)  # [Z, 4, r, N]
    basis_b = _real_weighted_basis(lora_b.to(work), dim=-2)  # [Z, 4, M, r]
    a2 = torch.einsum("zcb,zbrn->zcrn", coef_a, basis_a)  # [Z, 2, r, N]
    b2 = torch.einsum("zcb,zbmr->mzcr", coef_b, basis_b)  # [M, Z, 2, r]
    a2 = a2.reshape(num_experts, 2 * r, d_in).to(lora_a.dtype)
    return a2, b2.reshape(d_out, num_experts, 2 * r).to(lora_b.dtype).permute(1, 0, 2)


def transformed_factors(
    lora_a: torch.Tensor, lora_b: torch.Tensor, orders: torch.Tensor, method: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Real stacked factors ``A' [Z, 2r, N]`` and ``B' [Z, M, 2r]`` (module docstring); ``weighted`` in
    real arithmetic (``weighted_transformed_factors``), ``chirp``/``hermite`` through ``frft``."""
    if method == "weighted":
        return weighted_transformed_factors(lora_a, lora_b, orders)
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

    ``h = x A_allᵀ`` [..., Z·k] (one matmul), ``h ← h · gates`` broadcast over each expert's ``k``
    units (``[..., Z, k]`` view), ``y = scale · h B_allᵀ`` [..., M] (one matmul; ``B_all = [M, Z·k]``, free
    when ``B`` is a view of an ``[M, Z, k]``-contiguous tensor as ``weighted_transformed_factors`` makes).
    """
    num_experts, k, d_in = lora_a.shape
    d_out = lora_b.shape[1]
    h = x.to(lora_a.dtype) @ lora_a.reshape(num_experts * k, d_in).T
    lead = h.shape[:-1]
    h = (h.view(*lead, num_experts, k) * gates.to(h.dtype)[..., None]).view(*lead, num_experts * k)
    b_all = lora_b.permute(1, 0, 2).reshape(d_out, num_experts * k)
    return (h @ b_all.T) * scale


#: dtypes of ``torch._grouped_mm`` (the routed path); float64 (tests) takes the all-experts path
GROUPED_MM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
EXPERT_MODES = ("auto", "all", "routed")
# cost model of the routed path on the CPU (one thread, fp32; results/perf_frame.md), in units of one
# multiply-add of the all-experts matmuls: a grouped-matmul multiply-add costs GROUPED_MM_COST, and each
# (token, slot) pair costs ROUTED_MOVE_COST per feature (N + M) for the gathers of x, y and dy and the
# scatter of dx (measured: 150-230 at 576² … 2048², Z = 8 … 32)
GROUPED_MM_COST = 1.0
ROUTED_MOVE_COST = 180.0


def _aligned(t: torch.Tensor) -> bool:
    """``torch._grouped_mm``'s layout rule: every non-unit stride a multiple of 16 bytes, 16-byte base."""
    unit = 16 // t.element_size()
    return t.data_ptr() % 16 == 0 and all(
        st % unit == 0 for st, n in zip(t.stride(), t.shape) if st != 1 and n > 1
    )


@functools.cache
def _grouped_mm_works(device_type: str, dtype: torch.dtype) -> bool:
    """One tiny ``torch._grouped_mm`` (forward only) on this device type and dtype: does it run here?"""
    if not hasattr(torch, "_grouped_mm") or dtype not in GROUPED_MM_DTYPES:
        return False
    try:
        a = torch.ones(16, 8, dtype=dtype, device=device_type)
        b = torch.ones(2, 8, 8, dtype=dtype, device=device_type)
        torch._grouped_mm(a, b, offs=torch.tensor([8, 16], dtype=torch.int32, device=device_type))
    except (RuntimeError, NotImplementedError, TypeError):
        return False
    return True


def routed_path_available(x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> bool:
    """Can ``apply_routed_lowrank_experts`` run on these tensors (dtype, widths a multiple of 16 bytes,
    ``torch._grouped_mm`` present on the device)? Shapes, strides and dtypes only: no host sync."""
    dtype = lora_a.dtype
    if lora_b.dtype != dtype or not _grouped_mm_works(x.device.type, dtype):
        return False
    unit = 16 // lora_a.element_size()
    k, d_in, d_out = lora_a.shape[1], lora_a.shape[2], lora_b.shape[1]
    return all(n % unit == 0 for n in (k, d_in, d_out)) and _aligned(lora_a) and _aligned(lora_b)


def routed_is_cheaper(
    tokens: int, d_in: int, d_out: int, num_experts: int, k: int, top_k: int, device_type: str
) -> bool:
    """The cost model of ``expert_mode="auto"``: True when computing only the routed experts is predicted
    faster than all ``Z`` experts (same matmuls, 3 per factor: forward, input and factor gradients).

    ``all = 3·T·Z·k·(N + M)``, ``routed = GROUPED_MM_COST·3·T·K·k·(N + M) + ROUTED_MOVE_COST·T·K·(N + M)``
    (units: one all-experts multiply-add), i.e. routed wins when ``k·(3Z − 3·GROUPED_MM_COST·K) >
    ROUTED_MOVE_COST·K`` whatever ``T``, ``N``, ``M``: many experts per routed one, wide experts
    (``K = 2``: ``k·(Z − 2) > 120``; ``Z = 8``: ``k > 20``, ``Z = 16``: ``k > 8.6``, ``Z = 32``: ``k > 4``).
    Fitted on the CPU (results/perf_frame.md); on other devices nothing is measured yet and ``auto``
    keeps all experts (``expert_mode="routed"`` forces the routed path).
    """
    if device_type != "cpu" or top_k >= num_experts:
        return False
    width = tokens * (d_in + d_out)
    all_cost = 3.0 * width * num_experts * k
    routed_cost = GROUPED_MM_COST * 3.0 * width * top_k * k + ROUTED_MOVE_COST * width * top_k
    return routed_cost < all_cost


def apply_routed_lowrank_experts(
    x: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    gates: torch.Tensor,
    top_k: int,
    scale: float,
    experts: torch.Tensor | None = None,
) -> torch.Tensor:
    """``apply_lowrank_experts`` computing only each token's ``top_k`` experts (equal up to rounding).

    ``x [..., N]`` flattened to ``[T, N]``, ``gates [..., Z]`` zero outside each token's top-k, factors
    ``A [Z, k, N]``, ``B [Z, M, k]``::

        g, e = topk(gates, K)                             [T, K]   the routed gates and experts
        order = argsort(e.flat, stable)                   [T·K]    (token, slot) pairs grouped by expert
        offs = cumsum(counts_z)                           [Z]      int32 group ends (scatter_add: no host sync)
        h = grouped_mm(x[order // K], Aᵀ, offs) · g[order]  [T·K, k]
        y_pair = grouped_mm(h, Bᵀ, offs)                  [T·K, M]
        y = scale · Σ_slot y_pair[order⁻¹].view(T, K, M)  [..., M]

    Every shape is fixed by ``T``, ``K`` and the factors; the group sizes stay on the device
    (``torch._grouped_mm`` reads ``offs`` there). The gradient reaches the gates of the routed experts only,
    as in the all-experts path (the other gates come from a scatter of zeros). ``experts`` ``[..., K]``:
    each token's routed experts when the caller has them (the router's ``topk_index``), gathered instead of
    searched again. Needs ``routed_path_available``.
    """
    num_experts, k, d_in = lora_a.shape
    d_out = lora_b.shape[1]
    lead = x.shape[:-1]
    flat = x.reshape(-1, d_in).to(lora_a.dtype)
    flat_gates = gates.reshape(-1, num_experts)
    if experts is None:
        gate, expert = flat_gates.topk(top_k, dim=-1)  # [T, K]
    else:
        expert = experts.reshape(-1, top_k)
        gate = flat_gates.gather(1, expert)
    expert = expert.reshape(-1)
    order = torch.argsort(expert, stable=True)  # [T·K]
    counts = torch.zeros(num_experts, dtype=torch.int32, device=x.device)
    counts = counts.scatter_add(0, expert, torch.ones_like(expert, dtype=torch.int32))
    offs = torch.cumsum(counts, 0, dtype=torch.int32)
    pair_gate = gate.reshape(-1).index_select(0, order).to(lora_a.dtype)
    h = torch._grouped_mm(flat.index_select(0, order // top_k), lora_a.transpose(-1, -2), offs=offs)
    y_pair = torch._grouped_mm(h * pair_gate[:, None], lora_b.transpose(-1, -2), offs=offs)  # [T·K, M]
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=x.device))
    y = y_pair.index_select(0, inverse).view(-1, top_k, d_out).sum(1)
    return (y * scale).view(*lead, d_out)


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

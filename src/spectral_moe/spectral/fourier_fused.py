"""The routed FFT path's gather · multiply · scatter as two fused kernels (opt-in, ``torch.compile``).

``spectral.fourier`` runs the routed FFT path as separate complex gather, multiply and scatter-add
kernels, each a pass over the ``T·k·n`` terms (``T`` tokens, ``k`` routed experts, ``n`` coefficients
per expert). Here the same formulas (``fourier`` module docstring; ``_SpectralMix`` for the backward)
are written in real arithmetic, which inductor fuses into loops that read each term once
(benchmarks/fft_path_floor.py: a 1.0–1.7× faster FFT path at smollm2's widths, results/perf_bf16.md).
Hand-written because no kept library fuses this pattern; ``torch.compile`` does the fusing.

Notation: ``R = rfft(x)`` [T, B] (``B = N//2+1``), split into ``s_re, s_im``; per coefficient [Z, n]
of the ``FftPlan``: ``in_mod = i mod B`` (its bin of ``R``), ``sign = −1`` where it reads ``conj R``
(``i ≥ B``) else ``+1``, ``out_index = r`` (its row of ``G``); ``c'' = c_re + i·c_im``; ``gates``,
``experts`` [T, k] (the router's top-k). Per term ``a = (s_re[in_mod], sign·s_im[in_mod])``::

    forward:   G_t[r] = Σ_slot Σ_j a · c'' · g,        Im G = 0 at the self-conjugate rows (``edge``)
    backward:  P = dG[r] · conj(a)
               ∂g_{t,slot} = Σ_j Re(P · conj c'')           ∂c''_{z,j} = Σ_{(t,slot) → z} g · P
               ∂R[in_mod] += conj^{[sign<0]}(dG[r] · conj(c'') · g)

so ``(∂R, ∂g, ∂c'')`` are ``_SpectralMix``'s ``(∂L/∂S[:B] + conj ∂L/∂S[B:], ∂g, ∂c'')``, to float32
rounding. The token dimension is compiled dynamic (one compile per layer shape, not per batch size).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import torch


def per_term(table: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """``table[experts]`` ``[T, k, n]`` for a per-expert ``table`` [Z, n]: whole rows copied by
    ``index_select`` (several times faster on CPU than advanced indexing, which goes element-wise)."""
    return table.index_select(0, experts.reshape(-1)).view(*experts.shape, table.shape[1])


def fused_forward(
    s_re: torch.Tensor,
    s_im: torch.Tensor,
    c_re: torch.Tensor,
    c_im: torch.Tensor,
    sign: torch.Tensor,
    in_mod: torch.Tensor,
    out_index: torch.Tensor,
    gates: torch.Tensor,
    experts: torch.Tensor,
    edge: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Re G, Im G)`` [T, M//2+1] (module docstring); ``edge`` [M//2+1] is 0 at rows 0 and M/2, else 1."""
    tokens, k = experts.shape
    n = in_mod.shape[1]
    index = per_term(in_mod, experts).view(tokens, k * n)
    a_re = s_re.gather(1, index).view(tokens, k, n)
    a_im = s_im.gather(1, index).view(tokens, k, n) * per_term(sign, experts)
    cr, ci = per_term(c_re, experts), per_term(c_im, experts)
    g = gates.unsqueeze(-1)
    t_re = ((a_re * cr - a_im * ci) * g).view(tokens, k * n)
    t_im = ((a_re * ci + a_im * cr) * g).view(tokens, k * n)
    rows = per_term(out_index, experts).view(tokens, k * n)
    zeros = torch.zeros(tokens, edge.shape[0], dtype=s_re.dtype, device=s_re.device)
    return zeros.scatter_add(1, rows, t_re), zeros.scatter_add(1, rows, t_im) * edge


def fused_backward(
    dg_re: torch.Tensor,
    dg_im: torch.Tensor,
    s_re: torch.Tensor,
    s_im: torch.Tensor,
    c_re: torch.Tensor,
    c_im: torch.Tensor,
    sign: torch.Tensor,
    in_mod: torch.Tensor,
    out_index: torch.Tensor,
    gates: torch.Tensor,
    experts: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Re ∂R, Im ∂R [T, B], ∂g [T, k], Re ∂c'', Im ∂c'' [Z, n])`` from ``dG`` [T, M//2+1] (docstring)."""
    tokens, k = experts.shape
    num_experts, n = in_mod.shape
    rows = per_term(out_index, experts).view(tokens, k * n)
    d_re = dg_re.gather(1, rows).view(tokens, k, n)
    d_im = dg_im.gather(1, rows).view(tokens, k, n)
    index = per_term(in_mod, experts).view(tokens, k * n)
    s = per_term(sign, experts)
    a_re = s_re.gather(1, index).view(tokens, k, n)
    a_im = s_im.gather(1, index).view(tokens, k, n) * s
    cr, ci = per_term(c_re, experts), per_term(c_im, experts)
    g = gates.unsqueeze(-1)
    p_re = d_re * a_re + d_im * a_im
    p_im = d_im * a_re - d_re * a_im
    grad_gates = (p_re * cr + p_im * ci).sum(-1)
    slot = (experts.unsqueeze(-1) * n + torch.arange(n, device=experts.device)).reshape(-1)
    zeros_c = torch.zeros(num_experts * n, dtype=s_re.dtype, device=s_re.device)
    gc_re = zeros_c.index_add(0, slot, (p_re * g).reshape(-1)).view(num_experts, n)
    gc_im = zeros_c.index_add(0, slot, (p_im * g).reshape(-1)).view(num_experts, n)
    da_re = ((d_re * cr + d_im * ci) * g).view(tokens, k * n)
    da_im = ((d_im * cr - d_re * ci) * g * s).view(tokens, k * n)
    zeros_s = torch.zeros_like(s_re)
    return (
        zeros_s.scatter_add(1, index, da_re),
        zeros_s.scatter_add(1, index, da_im),
        grad_gates,
        gc_re,
        gc_im,
    )


KERNELS = {"forward": fused_forward, "backward": fused_backward}
TOKEN_ARGS = {"forward": (0, 1, 7, 8), "backward": (0, 1, 2, 3, 9, 10)}  # arguments with a token dimension
RECOMPILE_LIMIT = 64  # one compile per layer shape (and one for T = 1): a model has a handful
_COMPILED: dict[str, Callable] = {}
_DISABLED: list[str] = []  # the reason, once compiling failed in this process
_EAGER: list[bool] = []  # non-empty inside ``eager()``


def _compiled(name: str) -> Callable:
    if name not in _COMPILED:
        config = torch._dynamo.config
        for attr in ("recompile_limit", "cache_size_limit"):  # the name differs between torch versions
            if hasattr(config, attr):
                setattr(config, attr, max(getattr(config, attr), RECOMPILE_LIMIT))
        _COMPILED[name] = torch.compile(KERNELS[name], dynamic=False)
    return _COMPILED[name]


def run_fused(name: str, *args: torch.Tensor, compiled: bool = True) -> tuple[torch.Tensor, ...] | None:
    """``fused_forward`` or ``fused_backward`` (``name``) on ``args``, compiled; None if compiling is not
    possible here (no C++ compiler on CPU, no triton on CUDA): then it warns once and the caller runs
    the unfused path. ``compiled=False`` (or inside ``eager()``) runs the functions uncompiled."""
    if not compiled or _EAGER:
        return KERNELS[name](*args)
    if _DISABLED:
        return None
    if args[0].shape[0] > 1:  # the token dimension varies between calls: dynamic, the rest static
        for i in TOKEN_ARGS[name]:
            torch._dynamo.mark_dynamic(args[i], 0)
    try:
        with torch.autocast(args[0].device.type, enabled=False):
            return _compiled(name)(*args)
    except Exception as exc:  # noqa: BLE001  (any compiler failure: fall back, once, loudly)
        _DISABLED.append(f"{type(exc).__name__}: {exc}")
        warnings.warn(
            f"fused_kernels: torch.compile failed ({_DISABLED[0][:300]}); using the unfused FFT path",
            stacklevel=2,
        )
        return None


def fused_unavailable() -> str | None:
    """Why the compiled kernels are off in this process (compiling failed once), else None."""
    return _DISABLED[0] if _DISABLED else None


@contextlib.contextmanager
def eager() -> Iterator[None]:
    """Inside, ``fused_kernels=True`` runs the two kernels uncompiled: their formulas, without the compile
    (benchmarks/fft_path_floor.py times them so)."""
    _EAGER.append(True)
    try:
        yield
    finally:
        _EAGER.pop()

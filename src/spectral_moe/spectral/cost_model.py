"""Cost model of FourierMoE's ``forward_mode="auto"``: FFT path or dense path, per call and precision.

Notation: ``T`` tokens, ``M = d_out``, ``N = d_in``, ``Z`` experts, ``n`` coefficients per expert,
``k`` experts visited per token by the FFT path (``top_k`` when the routed gather is used,
``fourier.uses_routed_gather``; else ``Z``). Each path's forward + backward time is modelled as a
sum of work counts times fitted seconds per unit (``path_work``, ``FITTED_SECONDS[precision]``)::

    FFT   ≈ c₀ + T·(N log₂N + M log₂M)·c_fft + T·k·n·c_gather + T·(N+M)·c_point
    dense ≈ d₀ + Z·M·N·log₂(MN)·d_fft + T·Z·M·N·d_mac

and ``auto`` takes the path with the smaller prediction (``fft_is_cheaper``). Only the ratios of the
constants matter for the choice.

Precision (``precision_of``): the constants are fitted separately for float32 (``"fp32"``) and for
bf16 autocast (``"bf16"``; float16 autocast or half-precision inputs use these too). Under bf16 the
dense path's matmuls run in bf16 (autocast) while the FFT path still runs its FFTs, gathers and
scatters in float32 (``fourier.fft_dtype``), so bf16 moves the boundary towards dense.

Inference with cached ΔW (``dense_cached=True``, FourierMoE under ``eval()`` without grad keeps each
adapter's dense ``ΔW`` between calls while its coefficients do not change): the dense path's
``Z·M·N·log₂(MN)`` term (building ΔW by ``irfft2``) is not paid, but every call reads the ``Z·M·N``
cached entries, which bounds the matmul of a few tokens (decode) and which the forward + backward fit
never sees: ``dense += Z·M·N · CACHED_DENSE_READ_SECONDS[precision]``. The other constants are used as
fitted (both paths' forwards are about a third of their forward + backward, so their ratio carries
over); results/perf_bf16.md checks the choice on decode (``fouriermoe-fft`` against
``fouriermoe-dense``).

Where the constants come from: ``python benchmarks/adapter_step.py --calibrate --threads 1
--precision fp32|bf16`` (``calibrate`` there) times both paths of the FourierMoE update alone (8
experts, top-2, forward + backward, CPU, 1 torch thread, the forward under the precision's autocast)
on 8 shapes 64x64 to 2048x2048, 16 to 1024 tokens and n = 64 to 1000 (72 configurations), and fits
each path's constants by non-negative least squares on relative error over these features; it prints
them as ``FITTED_SECONDS`` entries. results/perf_bf16.md records the runs behind the values below and
how often they pick the faster path.
"""

from __future__ import annotations

import math

import torch

from ..precision import active_autocast_dtype
from .fourier import uses_routed_gather

PRECISIONS = ("fp32", "bf16")

# Seconds per unit of work, forward + backward, CPU, 1 torch thread, per precision (module docstring
# for the command that fits them). The keys of each path are its work terms (``path_work``), in fit order.
FITTED_SECONDS: dict[str, dict[str, dict[str, float]]] = {
    "fp32": {
        "fft": {
            "per_call": 8.3e-4,  # the FFT path's few dozen small ops (plan, routing gather, casts)
            "per_token_point_log": 5.9e-10,  # per point·log₂(point) of the rfft/irfft of x, y and the grads
            "per_token_coef": 1.7e-8,  # per visited coefficient: gather, multiply, scatter and adjoints
            "per_token_point": 7.9e-10,  # per input/output feature: zero fills, doubling, casts
        },
        "dense": {
            "per_call": 3.6e-4,
            "per_entry_log": 6.3e-10,  # per ΔW entry·log₂(M·N): the irfft2 of every expert and its adjoint
            "per_mac": 8.0e-11,  # per multiply-add of the dense matmuls (forward, grad of x, grad of ΔW)
        },
    },
    # bf16 autocast, fitted directly (``--calibrate --precision bf16 --clock cpu``, results/perf_bf16.md,
    # "Cost model per precision"): the FFT path runs in float32 either way, so its constants are fp32's
    # within the fit's noise; the dense matmuls run in bf16 (``per_mac`` 0.56x fp32's). A float32 fit
    # run the same way right after reproduced the fp32 constants above to 3 % (``per_mac``) to 25 %.
    "bf16": {
        "fft": {
            "per_call": 1.2e-3,
            "per_token_point_log": 7.4e-10,
            "per_token_coef": 1.6e-8,
            "per_token_point": 7.9e-10,  # fp32's: this fit zeroed it (its float32 pointwise work is fp32's)
        },
        "dense": {
            "per_call": 9.5e-4,
            "per_entry_log": 6.4e-10,
            "per_mac": 4.65e-11,
        },
    },
}


# Seconds per cached ΔW entry read by one inference call of the dense path (module docstring): one
# [1, 576] @ [576, 8·576] matmul against the cached ΔW measured 1.3-1.9 ms fp32 and ~1.5 ms bf16 on
# 1 thread under a load average of ~12 (2 cores), i.e. ≤ 7e-10 s/entry; halved for the load, and
# halved again for bf16's half-size entries.
CACHED_DENSE_READ_SECONDS: dict[str, float] = {"fp32": 5.0e-10, "bf16": 2.5e-10}


def precision_of(dtype: torch.dtype, device_type: str) -> str:
    """The ``FITTED_SECONDS`` key of a call: ``"bf16"`` under a half-precision autocast on ``device_type``
    or for half-precision inputs (``dtype``), else ``"fp32"``."""
    if dtype in (torch.bfloat16, torch.float16):
        return "bf16"
    return "bf16" if active_autocast_dtype(device_type) in (torch.bfloat16, torch.float16) else "fp32"


def check_precision(precision: str) -> str:
    """``precision`` itself when it is a ``FITTED_SECONDS`` key, else ``ValueError`` naming the keys."""
    if precision not in FITTED_SECONDS:
        raise ValueError(f"precision must be one of {list(FITTED_SECONDS)}, got {precision!r}")
    return precision


def path_work(
    tokens: int,
    d_out: int,
    d_in: int,
    num_experts: int,
    n_frequency: int,
    top_k: int | None = None,
    dense_cached: bool = False,
) -> dict[str, dict[str, float]]:
    """Work counts of the FFT and dense paths, keyed like ``FITTED_SECONDS[precision]``.

    ``fft``: ``per_call`` 1, ``per_token_point_log`` ``T·(N log₂N + M log₂M)``, ``per_token_coef``
    ``T·k·n``, ``per_token_point`` ``T·(N+M)``; ``dense``: ``per_call`` 1, ``per_entry_log``
    ``Z·M·N·log₂(M·N)`` (0 when ``dense_cached``: ΔW reused, not rebuilt), ``per_mac`` ``T·Z·M·N``
    (module docstring for ``k``).
    """
    log2 = math.log2
    visited = top_k if uses_routed_gather(top_k, num_experts) else num_experts
    entries = num_experts * d_out * d_in
    return {
        "fft": {
            "per_call": 1.0,
            "per_token_point_log": tokens * (d_in * log2(max(d_in, 2)) + d_out * log2(max(d_out, 2))),
            "per_token_coef": tokens * visited * n_frequency,
            "per_token_point": tokens * (d_in + d_out),
        },
        "dense": {
            "per_call": 1.0,
            "per_entry_log": 0.0 if dense_cached else entries * log2(max(d_out * d_in, 2)),
            "per_mac": tokens * entries,
        },
    }


def predicted_seconds(
    tokens: int,
    d_out: int,
    d_in: int,
    num_experts: int,
    n_frequency: int,
    top_k: int | None = None,
    precision: str = "fp32",
    dense_cached: bool = False,
) -> tuple[float, float]:
    """Cost-model seconds of the FFT and the dense path: ``Σ work · FITTED_SECONDS[precision]``, plus
    the read of the cached ΔW when ``dense_cached`` (module docstring)."""
    constants = FITTED_SECONDS[check_precision(precision)]
    work = path_work(tokens, d_out, d_in, num_experts, n_frequency, top_k, dense_cached)
    fft, dense = (
        sum(work[path][term] * cost for term, cost in constants[path].items()) for path in ("fft", "dense")
    )
    if dense_cached:
        dense += num_experts * d_out * d_in * CACHED_DENSE_READ_SECONDS[precision]
    return fft, dense


def fft_is_cheaper(
    tokens: int,
    d_out: int,
    d_in: int,
    num_experts: int,
    n_frequency: int,
    top_k: int | None = None,
    precision: str = "fp32",
    dense_cached: bool = False,
) -> bool:
    """``forward_mode="auto"``'s choice: True when the FFT path is predicted faster (module docstring)."""
    fft, dense = predicted_seconds(
        tokens, d_out, d_in, num_experts, n_frequency, top_k, precision, dense_cached
    )
    return fft < dense

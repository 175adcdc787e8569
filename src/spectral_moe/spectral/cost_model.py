"""Cost model of FourierMoE's ``forward_mode="auto"``: FFT path or dense path, per call.

Notation: ``T`` tokens, ``M = d_out``, ``N = d_in``, ``Z`` experts, ``n`` coefficients per expert,
``k`` experts visited per token by the FFT path (``top_k`` when the routed gather is used,
``fourier.uses_routed_gather``; else ``Z``). Each path's forward + backward time is modelled as a
sum of work counts times fitted seconds per unit (``path_work``, ``FITTED_SECONDS``)::

    FFT   ≈ c₀ + T·(N log₂N + M log₂M)·c_fft + T·k·n·c_gather + T·(N+M)·c_point
    dense ≈ d₀ + Z·M·N·log₂(MN)·d_fft + T·Z·M·N·d_mac

and ``auto`` takes the path with the smaller prediction (``fft_is_cheaper``). Only the ratios of the
constants matter for the choice.

Where the constants come from: ``python benchmarks/adapter_step.py --calibrate --threads 1``
(``calibrate`` there) times both paths of the FourierMoE update alone (8 experts, top-2, forward +
backward, CPU float32, 1 torch thread) on 8 shapes 64x64 to 2048x2048, 16 to 1024 tokens and
n = 64 to 1000 (72 configurations), and fits each path's constants by non-negative least squares on
relative error over these features; it prints them as ``FITTED_SECONDS`` entries. The values below
are the rounded fit of its first run; results/perf.md ("Cost model ... (calibration)") records a
re-run (``--repeats 3``) and how often these constants pick the faster path (68/72; the misses are
near-ties on layers at most 256 wide). The dense path once had a third term, ``Z·M·N`` per ΔW entry
beyond its FFT: it was fitted as exactly zero in both runs (absorbed by the ``Z·M·N·log₂(MN)`` term)
and is gone.
"""

from __future__ import annotations

import math

from .fourier import uses_routed_gather

# Seconds per unit of work, forward + backward, CPU float32, 1 torch thread (module docstring for the
# command that fits them). The keys of each path are its work terms (``path_work``), in fit order.
FITTED_SECONDS: dict[str, dict[str, float]] = {
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
}


def path_work(
    tokens: int, d_out: int, d_in: int, num_experts: int, n_frequency: int, top_k: int | None = None
) -> dict[str, dict[str, float]]:
    """Work counts of the FFT and dense paths, keyed like ``FITTED_SECONDS``.

    ``fft``: ``per_call`` 1, ``per_token_point_log`` ``T·(N log₂N + M log₂M)``, ``per_token_coef``
    ``T·k·n``, ``per_token_point`` ``T·(N+M)``; ``dense``: ``per_call`` 1, ``per_entry_log``
    ``Z·M·N·log₂(M·N)``, ``per_mac`` ``T·Z·M·N`` (module docstring for ``k``).
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
            "per_entry_log": entries * log2(max(d_out * d_in, 2)),
            "per_mac": tokens * entries,
        },
    }


def predicted_seconds(
    tokens: int, d_out: int, d_in: int, num_experts: int, n_frequency: int, top_k: int | None = None
) -> tuple[float, float]:
    """Cost-model seconds (forward + backward) of the FFT and the dense path: ``Σ work · seconds``."""
    work = path_work(tokens, d_out, d_in, num_experts, n_frequency, top_k)
    fft, dense = (
        sum(work[path][term] * cost for term, cost in FITTED_SECONDS[path].items())
        for path in ("fft", "dense")
    )
    return fft, dense


def fft_is_cheaper(
    tokens: int, d_out: int, d_in: int, num_experts: int, n_frequency: int, top_k: int | None = None
) -> bool:
    """``forward_mode="auto"``'s choice: True when the FFT path is predicted faster (module docstring)."""
    fft, dense = predicted_seconds(tokens, d_out, d_in, num_experts, n_frequency, top_k)
    return fft < dense

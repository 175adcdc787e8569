"""Lint and format are part of the test suite, so CI enforces them."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["src", "tests", "benchmarks"]


def _ruff(*args):
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    return subprocess.run([exe, *args, *TARGETS], cwd=ROOT, capture_output=True, text=True)


def test_ruff_check():
    res = _ruff("check")
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_format():
    res = _ruff("format", "--check")
    assert res.returncode == 0, res.stdout + res.stderr

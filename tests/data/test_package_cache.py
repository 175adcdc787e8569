"""Cache location, atomic writes and the pip download helper (pip is faked here)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from spectral_moe import cache


def test_cache_root_env_and_override(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECTRAL_MOE_CACHE", str(tmp_path / "env"))
    assert cache.cache_root() == tmp_path / "env"
    assert cache.cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("SPECTRAL_MOE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "spectral-moe"


def test_atomic_writes_leave_no_temporaries(tmp_path):
    cache.atomic_write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert (tmp_path / "a" / "b.json").read_text().strip().startswith("{")
    assert oct((tmp_path / "a" / "b.json").stat().st_mode & 0o777) != oct(0o600)
    with pytest.raises(RuntimeError), cache.atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("partial")
        raise RuntimeError("interrupted")
    assert not (tmp_path / "d").exists()
    with cache.atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("done")
    assert (tmp_path / "d" / "f").read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "d"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.json"]


def _fake_run(returncode: int, filename: str | None, calls: list):
    def run(cmd, **kwargs):
        calls.append(cmd)
        if filename is not None:
            dest = Path(cmd[cmd.index("-d") + 1])
            (dest / filename).write_bytes(b"payload")
        return subprocess.CompletedProcess(cmd, returncode, stdout="ERROR: No matching distribution found")

    return run


def test_fetch_package_downloads_once(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(cache.subprocess, "run", _fake_run(0, "demo_pkg-1.2-py3-none-any.whl", calls))
    path = cache.fetch_package("demo-pkg", "1.2", cache_dir=tmp_path)
    assert path == tmp_path / "pkgs" / "demo_pkg-1.2-py3-none-any.whl"
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and cmd[-1] == "demo-pkg==1.2"
    assert "--only-binary" in cmd
    assert cache.fetch_package("demo-pkg", "1.2", cache_dir=tmp_path) == path
    assert len(calls) == 1
    assert [p.name for p in (tmp_path / "pkgs").iterdir()] == [path.name]


def test_fetch_sdist_uses_no_binary(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(cache.subprocess, "run", _fake_run(0, "demo-pkg-1.2.tar.gz", calls))
    path = cache.fetch_package("demo_pkg", "1.2", sdist=True, cache_dir=tmp_path)
    assert path.name == "demo-pkg-1.2.tar.gz"
    assert "--no-binary" in calls[0]
    assert cache.find_package_file("demo-pkg", "1.2", sdist=True, cache_dir=tmp_path) == path
    assert cache.find_package_file("demo-pkg", "1.2", sdist=False, cache_dir=tmp_path) is None


def test_sdist_metadata_failure_retries_with_build_isolation(tmp_path, monkeypatch):
    monkeypatch.setattr(cache.importlib.util, "find_spec", lambda name: object())
    calls: list = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        if "--no-build-isolation" in cmd:
            return subprocess.CompletedProcess(cmd, 1, stdout="error: metadata-generation-failed")
        (Path(cmd[cmd.index("-d") + 1]) / "demo-1.0.tar.gz").write_bytes(b"x")
        return subprocess.CompletedProcess(cmd, 0, stdout="Saved")

    monkeypatch.setattr(cache.subprocess, "run", run)
    assert cache.fetch_package("demo", "1.0", sdist=True, cache_dir=tmp_path).name == "demo-1.0.tar.gz"
    assert len(calls) == 2 and "--no-build-isolation" not in calls[1]


def test_fetch_failure_says_what_to_download_by_hand(tmp_path, monkeypatch):
    monkeypatch.setattr(cache.subprocess, "run", _fake_run(1, None, []))
    with pytest.raises(RuntimeError) as info:
        cache.fetch_package("demo-pkg", "1.2", cache_dir=tmp_path)
    msg = str(info.value)
    assert "pip download --no-deps --only-binary :all: -d some_folder demo-pkg==1.2" in msg
    assert str(tmp_path / "pkgs") in msg
    assert "SPECTRAL_MOE_CACHE" in msg
    assert "No matching distribution" in msg
    assert not any(p.name.startswith(".download") for p in (tmp_path / "pkgs").iterdir())
    assert os.listdir(tmp_path / "pkgs") == []


def test_real_pip_failure_without_any_index(tmp_path, monkeypatch):
    """Runs the real pip with every index switched off (no network): the error explains the manual route."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-links"))
    (tmp_path / "no-links").mkdir()
    with pytest.raises(
        RuntimeError, match=r"Could not download the wheel of spectral-moe-absent==0\.0\.0"
    ) as info:
        cache.fetch_package("spectral-moe-absent", "0.0.0", cache_dir=tmp_path / "c")
    assert "copy the downloaded file" in str(info.value)
    assert os.listdir(tmp_path / "c" / "pkgs") == []

"""benchmarks/fft_path_floor.py on small layers: every row timed, the fused rows equal to apply_fft."""

import pytest

from tests.benchmarks._load import load

floor = load("fft_path_floor")


def _rows(report: str) -> list[list[str]]:
    lines = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| shape")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_rows_per_shape_with_ratios_and_the_fused_kernels_agreement(tmp_path):
    out = tmp_path / "floor.md"
    report = floor.main(
        ["--shapes", "16x12,9x10", "--tokens", "24", "--n-frequency", "5", "--rounds", "2", "--warmup", "1"]
        + ["--clock", "cpu", "--no-compile", "--out", str(out)],
        log=lambda *_: None,
    )
    assert out.read_text() == report
    rows = _rows(report)
    assert [r[0] for r in rows] == ["16x12"] * 6 + ["9x10"] * 6
    whats = [r[1] for r in rows[:6]]
    assert whats[0] == "lora-r8 layer step" and "fused kernels (eager)" in whats[3]
    assert not any("compiled" in w for w in whats)  # --no-compile
    for r in rows:
        assert float(r[2]) > 0
        assert r[3] == "1.00" if r[1] == "lora-r8 layer step" else float(r[3]) > 0
        if "fused" in r[1]:
            assert float(r[4]) < 1e-5  # the fused formulas give apply_fft's output and gradients


def test_warmup_must_leave_a_timed_round():
    with pytest.raises(SystemExit, match="--warmup"):
        floor.main(["--rounds", "2", "--warmup", "2"], log=lambda *_: None)

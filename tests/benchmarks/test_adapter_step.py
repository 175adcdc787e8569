"""benchmarks/adapter_step.py on tiny shapes: the tables have the expected rows."""

import torch

from spectral_moe.spectral import cost_model
from tests.benchmarks._load import load

adapter_step = load("adapter_step")


def _rows(report: str, prefix: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in report.splitlines()
        if line.startswith(prefix)
    ]


def test_main_writes_one_row_per_method_and_the_auto_check(tmp_path):
    out = tmp_path / "step.md"
    methods = "lora-r8,fouriermoe-n250-fft,fouriermoe-n250-dense,fouriermoe-n250-auto,fouriermoe-n1000-fft"
    report = adapter_step.main(
        [
            "--shapes",
            "64x64",
            "--tokens",
            "16",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--methods",
            methods,
            "--out",
            str(out),
        ],
        log=lambda *_: None,
    )
    assert out.read_text() == report
    rows = _rows(report, "| 64x64 | 16 |")
    assert [r[2] for r in rows[:5]] == methods.split(",")
    lora = rows[0]
    assert lora[4] == "1.00" and lora[6] == "1.00"  # ratios to itself
    assert float(lora[3]) > 0 and float(lora[5]) > 0  # step ms, peak MB
    assert rows[4][3].startswith("n/a: n=1000 > band capacity")  # a 64x64 band holds 255 positions
    auto = rows[5]  # the forward_mode="auto" table
    assert auto[2] == "fouriermoe-n250" and auto[3] in ("fft", "dense") and auto[8] in ("True", "False")


def test_profile_and_peft_methods(tmp_path):
    report = adapter_step.main(
        [
            "--shapes",
            "32x48",
            "--tokens",
            "8",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--no-memory",
            "--clock",
            "cpu",
            "--methods",
            "lora-r8,lora-r16,fourierft-n1000,moelora-r8,frame-chirp",
            "--profile",
            "frame-chirp",
        ],
        log=lambda *_: None,
    )
    rows = _rows(report, "| 32x48 | 8 |")
    assert [r[2] for r in rows] == ["lora-r8", "lora-r16", "fourierft-n1000", "moelora-r8", "frame-chirp"]
    assert all(r[5] == "n/a" for r in rows)  # --no-memory
    assert "## Profile: frame-chirp, 32x48, T=8" in report and "aten::" in report
    assert "cpu clock" in report and all(float(r[3]) > 0 for r in rows)  # process CPU time per step


def test_cpu_clock_counts_this_process_not_the_wall(monkeypatch):
    import time

    common = adapter_step.common
    monkeypatch.setattr(common, "clock", "cpu")
    assert common.timed(lambda: time.sleep(0.2), torch.device("cpu")) < 0.05  # sleeping uses no CPU
    monkeypatch.setattr(common, "clock", "wall")
    assert common.timed(lambda: time.sleep(0.2), torch.device("cpu")) >= 0.2


def test_calibration_fits_nonnegative_constants():
    report = adapter_step.main(
        ["--calibrate", "--shapes", "32x32", "--tokens", "8,32", "--repeats", "1", "--warmup", "0"],
        log=lambda *_: None,
    )
    constants = [line.split(" = ") for line in report.splitlines() if line.startswith("FITTED_SECONDS[")]
    assert len(constants) == sum(map(len, cost_model.FITTED_SECONDS["fp32"].values())) == 7
    assert all(name.startswith('FITTED_SECONDS["fp32"]') for name, _ in constants)  # --precision default
    assert all(float(v) >= 0 for _, v in constants)
    assert (
        len(_rows(report, "| 32x32 |")) == 2
    )  # n = 64, 250, 1000 all capped to the band size 63; 2 token counts


def test_peak_tensor_bytes_counts_a_known_allocation():
    def work():
        a = torch.empty(1024, 1024)  # 4 MiB
        b = torch.empty(256, 1024)  # 1 MiB, while a is alive
        del a, b

    peak = adapter_step.common.peak_tensor_bytes(work, torch.device("cpu"))
    assert 5 * 2**20 <= peak < 6 * 2**20

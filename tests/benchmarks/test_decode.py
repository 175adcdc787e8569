"""benchmarks/decode.py on a tiny random Llama: one row per (method, batch), LoRA's ratios, forced paths."""

import pytest
import torch

from tests.benchmarks._load import load

decode = load("decode")


def _rows(report: str) -> list[list[str]]:
    lines = [
        line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| method")
    ]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_main_tiny_model_round_robin(tmp_path):
    out = tmp_path / "decode.md"
    methods = "lora,fouriermoe,fouriermoe-dense"
    report = decode.main(
        ["--model", "tiny-llama", "--methods", methods, "--batch-sizes", "1,2", "--prompt-len", "4"]
        + ["--new-tokens", "2", "--rounds", "2", "--warmup", "1", "--precision", "bf16", "--out", str(out)],
        log=lambda *_: None,
    )
    assert out.read_text() == report
    rows = _rows(report)
    assert [(r[0], r[1]) for r in rows] == [(m, b) for b in ("1", "2") for m in methods.split(",")]
    assert all(r[3] == r[5] == "1.00" for r in rows if r[0] == "lora")
    assert all(float(r[2]) > 0 and float(r[4]) > 0 for r in rows)
    assert "resolved bf16" in report


def test_forced_dense_path_builds_a_dense_fouriermoe():
    models, _ = decode.build_models(
        "tiny-llama",
        ["fouriermoe-dense", "base"],
        ["q_proj"],
        {},
        "random",
        decode.common.resolve_device("cpu"),
    )
    config = models["fouriermoe-dense"].peft_config["default"]
    assert config.forward_mode == "dense" and not hasattr(models["base"], "peft_config")


def test_profile_counts_ops_per_step_and_cpu_clock(monkeypatch):
    monkeypatch.setattr(decode.common, "clock", "wall")  # module state: restored after the test
    report = decode.main(
        ["--model", "tiny-llama", "--methods", "base,lora,fouriermoe", "--batch-sizes", "1"]
        + ["--prompt-len", "4", "--new-tokens", "1", "--rounds", "1", "--warmup", "0"]
        + ["--clock", "cpu", "--profile", "all", "--profile-top", "5"],
        log=lambda *_: None,
    )
    assert "cpu clock" in report
    ops = {r[0]: int(r[2]) for r in _rows(report) if len(r) == 4}
    assert set(ops) == {"base", "lora", "fouriermoe"}
    # the adapters add ops to the base model's step; FourierMoE's routing and FFT path add more than LoRA
    assert ops["base"] < ops["lora"] < ops["fouriermoe"]
    assert report.count("one decode step (self CPU time)") == 3
    assert decode.common.clock == "cpu"
    with pytest.raises(ValueError, match="--clock cpu measures host CPU time"):
        decode.common.use_clock("cpu", torch.device("cuda"))


def test_profile_names_must_be_measured_methods():
    with pytest.raises(ValueError, match="--profile"):
        decode.main(
            ["--model", "tiny-llama", "--methods", "lora", "--profile", "frame", "--rounds", "1"]
            + ["--warmup", "0", "--new-tokens", "1", "--prompt-len", "4", "--batch-sizes", "1"],
            log=lambda *_: None,
        )

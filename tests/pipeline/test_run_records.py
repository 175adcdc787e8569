"""A run writes each evaluated example's hits to predictions.json, and keeps them out of metrics.json."""

import json

from spectral_moe.evaluation.runs import load_records
from spectral_moe.pipeline.run import train
from spectral_moe.training.config import RunConfig
from tests.helpers import save_tiny_llama, write_jsonl_task


def test_run_writes_per_example_records_of_base_and_tuned(tmp_path):
    cfg = RunConfig(
        method="lora",
        model=save_tiny_llama(tmp_path / "model"),
        tasks="jsonl:" + write_jsonl_task(tmp_path / "task.jsonl", n=40),
        out=str(tmp_path / "run"),
        steps=2,
        batch_size=4,
        logging_steps=1,
        save_steps=10,
        max_eval=6,
        adapter={"r": 2},
    )
    metrics = train(cfg, progress=False, log=lambda s: None)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "records" not in saved["tuned"] and "records" not in saved["base"]
    for which in ("tuned", "base"):
        records = load_records(tmp_path / "run", which)
        (task,) = records
        n = metrics[which]["tasks"][task]["n"]
        assert len(records[task]["acc"]) == len(records[task]["uid"]) == n
        assert sum(records[task]["acc"]) / n == metrics[which]["tasks"][task]["acc"]

"""A run records how many prompts max_length cut, per task, warns above 5 %, and evaluates with the
training max_length (the same truncation policy as training)."""

from __future__ import annotations

import json

from spectral_moe.pipeline.run import RunConfig, train
from tests.helpers import save_tiny_llama


def _write_task(path, long: bool, n: int = 40) -> str:
    lines = []
    for i in range(n):
        story = (
            " ".join(["The answer is yes or no."] * (6 if long else 0)) + f" Question: what is {i} plus 3?"
        )
        head = "Read the story and answer.\nStory: "
        text = head + story.strip() + "\nAnswer:"
        meta = {"passage": [len(head), len(head) + len(story.strip())]}
        lines.append(
            {"input": text, "choices": [" yes", " no"], "answer": " yes" if i % 2 else " no", "meta": meta}
        )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_run_records_and_warns_about_truncated_prompts(tmp_path):
    model = save_tiny_llama(tmp_path / "model")
    long_task = _write_task(tmp_path / "long.jsonl", long=True)
    short_task = _write_task(tmp_path / "short.jsonl", long=False)
    messages: list[str] = []
    cfg = RunConfig(
        method="fouriermoe",
        model=model,
        tasks=f"jsonl:{long_task},jsonl:{short_task}",
        out=str(tmp_path / "run"),
        steps=1,
        batch_size=4,
        max_length=48,
        max_train=8,
        max_eval=4,
        adapter={"n_frequency": 8, "num_experts": 2},
    )
    metrics = train(cfg, progress=False, log=messages.append)
    report = json.loads((tmp_path / "run" / "truncation.json").read_text())
    long_name, short_name = f"jsonl:{long_task}", f"jsonl:{short_task}"
    assert report["max_length"] == 48 and report["warn_above"] == 0.05
    assert report["tasks"][long_name] == {"train": 1.0, "test": 1.0}
    assert report["tasks"][short_name] == {"train": 0.0, "test": 0.0}
    warned = [m for m in messages if long_name in m and "max_length=48" in m]
    assert len(warned) == 2 and not any(short_name in m for m in messages)
    # evaluation truncated with the run's max_length (48), not its own 1024
    for which in ("base", "tuned"):
        assert metrics[which]["tasks"][long_name]["truncated"] == 1.0
        assert metrics[which]["tasks"][short_name]["truncated"] == 0.0

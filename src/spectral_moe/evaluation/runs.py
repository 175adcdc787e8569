"""Evaluate a saved run (its adapter on its base model) or a base model without adaptation; a run's
per-example records (``predictions.json``).

``predictions.json`` (written by ``spectral_moe.pipeline.run.train`` before ``metrics.json``)::

    {"format": 1, "split": "test",
     "tuned": {task: record, ...},      the records of evaluation.tasks (index, uid, acc, acc_norm hits)
     "base": {task: record, ...}}       only in the run that scored the base model

Runs saved before records existed have no such file: :func:`load_records` returns ``None`` for them and
everything else in the run directory reads as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..cache import atomic_write_json
from ..data.features import head_layout, num_labels_for
from .tasks import evaluate_tasks

__all__ = [
    "RECORDS_FILE",
    "evaluate_run",
    "head_layout",
    "load_records",
    "load_run_model",
    "num_labels_for",
    "save_records",
]

RECORDS_FILE = "predictions.json"
RECORDS_FORMAT = 1


def save_records(run_dir: str | Path, split: str, records: dict[str, dict[str, dict]]) -> Path:
    """Write ``predictions.json`` of ``run_dir``: ``records`` = ``{"tuned": {task: record}, "base": ...}``
    (the ``records`` of :func:`~spectral_moe.evaluation.tasks.evaluate_tasks`) scored on ``split``."""
    path = Path(run_dir) / RECORDS_FILE
    atomic_write_json(path, {"format": RECORDS_FORMAT, "split": split, **records})
    return path


def load_records(run_dir: str | Path, which: str = "tuned") -> dict[str, dict[str, list]] | None:
    """``{task: record}`` of ``which`` (``"tuned"`` or ``"base"``) in ``run_dir``'s ``predictions.json``;
    ``None`` when the run has no records file (an older run) or none for ``which``."""
    path = Path(run_dir) / RECORDS_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved.get("format") != RECORDS_FORMAT:
        raise ValueError(
            f"{path}: records format {saved.get('format')!r}, this library reads {RECORDS_FORMAT}"
        )
    return saved.get(which)


def load_run_model(run_dir: str | Path, num_labels: int | None = None):
    """``(peft_model, tokenizer, run_config_dict)`` of a run directory, in eval mode."""
    from peft import PeftModel

    from ..models import load_model
    from ..tuners import peft_registry

    peft_registry.register_all()  # spectral-moe's methods known to peft before it loads the adapter

    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "run_config.json").read_text())
    task_type = cfg.get("task_type", "causal_lm")
    base, tokenizer = load_model(
        cfg["model"], task_type, num_labels=num_labels if task_type == "seq_cls" else None
    )
    model = PeftModel.from_pretrained(base, run_dir / "adapter")
    model.eval()
    return model, tokenizer, cfg


def evaluate_run(
    run_dir: str | Path | None = None,
    base_model: str | None = None,
    tasks: str | None = None,
    split: str = "test",
    max_eval: int | None = None,
    task_type: str = "causal_lm",
    max_length: int | None = None,
    allow_code_execution: bool | None = None,
    precision: str | None = None,
    records: bool = False,
) -> dict[str, Any]:
    """Metrics of a run's tuned model (``run_dir``) or of ``base_model`` on ``tasks`` / ``split``
    (``records=True``: with the per-example ``records`` of :func:`evaluate_tasks`).

    For a run, tasks, caps, the task type, the prompt length ``max_length`` and ``precision`` default to the
    run's own (so the numbers reproduce its ``metrics.json``); for a base model, ``suite:core`` with 50
    examples per task, prompts of up to 1024 tokens and ``fp32``.
    """
    from ..data import load_tasks
    from ..models import load_model
    from ..precision import check_precision

    max_train = None
    if run_dir is not None:
        cfg = json.loads((Path(run_dir) / "run_config.json").read_text())
        tasks = tasks or cfg["tasks"]
        task_type = cfg.get("task_type", "causal_lm")
        max_train = cfg.get("max_train")
        max_eval = max_eval if max_eval is not None else cfg.get("max_eval")
        max_length = max_length if max_length is not None else cfg.get("max_length", 256)
        precision = precision if precision is not None else cfg.get("precision", "fp32")
    elif max_eval is None:
        max_eval = 50
    max_length = max_length if max_length is not None else 1024
    precision = check_precision(precision if precision is not None else "fp32")
    tasks = tasks or "suite:core"
    task_data = load_tasks(tasks, max_train=max_train, max_eval=max_eval, seed=0)
    labels = num_labels_for(task_data) if task_type == "seq_cls" else None
    if run_dir is not None:
        model, tokenizer, _ = load_run_model(run_dir, num_labels=labels)
    else:
        model, tokenizer = load_model(base_model, task_type, num_labels=labels)
    result = evaluate_tasks(
        model,
        tokenizer,
        task_data,
        split,
        task_type,
        max_length=max_length,
        allow_code_execution=allow_code_execution,
        precision=precision,
        records=records,
    )
    result["split"] = split
    result["source"] = str(run_dir) if run_dir is not None else f"base:{base_model}"
    return result

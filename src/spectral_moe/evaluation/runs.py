"""Evaluate a saved run (its adapter on its base model) or a base model without adaptation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..data.features import head_layout, num_labels_for
from .tasks import evaluate_tasks

__all__ = ["evaluate_run", "head_layout", "load_run_model", "num_labels_for"]


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
) -> dict[str, Any]:
    """Metrics of a run's tuned model (``run_dir``) or of ``base_model`` on ``tasks`` / ``split``.

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
    )
    result["split"] = split
    result["source"] = str(run_dir) if run_dir is not None else f"base:{base_model}"
    return result

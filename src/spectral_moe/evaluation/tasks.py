"""A model on tasks: per-task metrics and their macro averages (causal LMs and encoder classifiers).

:func:`evaluate_tasks` scores each task's ``split`` with :func:`~spectral_moe.evaluation.scoring.evaluate_task`
(log-likelihood of the choices, or exact match of a greedy completion) for causal LMs, or with
:func:`evaluate_classifier` (argmax within the task's head of :func:`~spectral_moe.data.features.head_layout`)
for encoders, and averages ``acc``, ``acc_norm`` and ``exact_match`` over the tasks that have them.
Prompts are fitted to ``max_length`` by the same policy as in training (:mod:`spectral_moe.data.prompts`).

Per-example records (``records=True``), for paired comparisons of runs (a paired bootstrap pairs two
runs' hits on the same example): per multiple-choice or classification task, in the split's order::

    {"index": [i, ...],        position in the task's split (test or validation list)
     "uid": ["3fa1...", ...],  the first 16 hex digits of Example.uid (content hash, stable across runs)
     "acc": [0/1, ...],        argmax of the summed log-likelihood (encoders: of the task's head) is right
     "acc_norm": [0/1, ...]}   argmax of the per-byte log-likelihood is right (multiple choice only)

Free-form tasks (exact match, pass@1) keep no records.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data import TaskData
from ..data.features import PadCollator, head_layout, head_mask, seq_cls_features
from ..data.types import Example
from ..precision import autocast, resolve_precision
from .scoring import evaluate_task, macro_average

UID_DIGITS = 16


def evaluate_tasks(
    model,
    tokenizer,
    tasks: list[TaskData],
    split: str,
    task_type: str,
    batch_size: int = 16,
    max_length: int = 1024,
    allow_code_execution: bool | None = None,
    precision: str = "fp32",
    records: bool = False,
) -> dict[str, Any]:
    """Per-task metrics on ``split`` and their macro averages (``allow_code_execution``: the opt-in that
    code tasks need, see ``evaluation.code``).

    ``records=True`` adds ``summary["records"] = {task: record}`` (module docstring) for the multiple-choice
    and classification tasks; the metrics are the same either way.

    ``precision`` (``fp32``, ``bf16``, ``auto``; :mod:`spectral_moe.precision`) is resolved on the model's
    device and the scoring runs under its autocast, as training does; the summary records the resolved
    value (``precision``).

    Prompts are fitted to ``max_length`` tokens by the data policy (a run evaluates with its training
    ``max_length``); each task's ``truncated`` is the fraction of its examples that lost tokens.
    """
    per_task = {}
    kept: dict[str, dict[str, list]] = {}
    layout = head_layout(tasks)
    device_type = next(model.parameters()).device.type
    resolved = resolve_precision(precision, device_type)
    for task in tasks:
        examples = getattr(task, split)
        hits: list[int] = []
        with autocast(resolved, device_type):
            if task_type == "seq_cls":
                per_task[task.name] = evaluate_classifier(
                    model, tokenizer, examples, layout[task.name], max_length=max_length, hits=hits
                )
                if records and examples:
                    kept[task.name] = _record(examples, {"acc": hits})
            else:
                mc_hits: dict[str, list[int]] = {}
                per_task[task.name] = evaluate_task(
                    model,
                    tokenizer,
                    examples,
                    task.kind,
                    batch_size=batch_size,
                    max_length=max_length,
                    allow_code_execution=allow_code_execution,
                    hits=mc_hits,
                )
                if records and mc_hits:
                    kept[task.name] = _record(examples, mc_hits)
    summary: dict[str, Any] = {"tasks": per_task}
    for metric in ("acc", "acc_norm", "exact_match", "pass@1"):
        value = macro_average(per_task, metric)
        if value is not None:
            summary[f"macro_{metric}"] = value
    summary["precision"] = resolved
    if records:
        summary["records"] = kept
    return summary


def _record(examples: list[Example], hits: dict[str, list[int]]) -> dict[str, list]:
    """The per-example record of ``examples`` (module docstring) with ``hits`` = ``{metric: [0/1, ...]}``."""
    return {
        "index": list(range(len(examples))),
        "uid": [ex.uid[:UID_DIGITS] for ex in examples],
        **{k: [int(v) for v in values] for k, values in hits.items()},
    }


@torch.no_grad()
def evaluate_classifier(
    model,
    tokenizer,
    examples: list[Example],
    head: tuple[int, int],
    batch_size: int = 32,
    max_length: int = 512,
    hits: list[int] | None = None,
) -> dict[str, float]:
    """Accuracy of the argmax within the task's head (inputs fitted to ``max_length`` as in training);
    ``hits``, when given, is extended by each example's 0/1 correctness in order."""
    was = model.training
    model.eval()
    right = truncated = 0
    collate = PadCollator(tokenizer.pad_token_id)
    device = next(model.parameters()).device
    for start in range(0, len(examples), batch_size):
        rows = [
            seq_cls_features(tokenizer, ex, max_length, head) for ex in examples[start : start + batch_size]
        ]
        truncated += sum(r["truncated"] for r in rows)
        batch = {k: v.to(device) for k, v in collate(rows).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits.float().masked_fill(~head_mask(batch["heads"], logits.shape[-1]), float("-inf"))
        correct = logits.argmax(-1) == batch["labels"]
        right += int(correct.sum())
        if hits is not None:
            hits.extend(int(v) for v in correct.tolist())
    model.train(was)
    total = max(len(examples), 1)
    return {"acc": right / total, "n": len(examples), "truncated": truncated / total}

"""One run, end to end: load model and tasks, evaluate the base model, adapt and train, evaluate, save, plot.

A run directory holds::

    adapter/             the adapter in peft format (adapter_config.json + adapter_model.safetensors)
    run_config.json      the resolved RunConfig
    splits.json          every task's split sizes and how they were made
    heads.json           encoders: each task's block of classifier outputs (offset, size)
    truncation.json      per task, the fraction of training and evaluation prompts cut to max_length
    train_log.jsonl      loss, learning rate, router load per layer and expert, FRAME orders
    predictions.json     per task, each evaluated example's index, uid and acc / acc_norm hits, of the
                         tuned model (and of the base model where this run scored it); written before
                         metrics.json (``spectral_moe.evaluation.runs.load_records`` reads it)
    metrics.json         per-task metrics of the base model and the tuned model, macro averages; the
                         precision the run resolved to (``precision``: requested and resolved); written
                         last, so a run directory with it is finished
    checkpoints/         Trainer checkpoints (for --resume)
    figures/             training_curve.png

The flow of :func:`train` (each step in the layer that owns it)::

    training.config.load_run_tasks ─ models.load_model          tasks and model first: a bad task file or
    evaluation.evaluate_tasks (base model)                      model fails before anything is written
    training.loop.adapt ─ training.loop.training_rows           peft model; the mixed training stream
    training.loop.fit                                           SpectralTrainer.train, adapter saved
    evaluation.evaluate_tasks (tuned model) ─ metrics.json
    analysis.figures.plot_training_curve

Causal LMs learn ``prompt + answer`` with the loss on the answer tokens only; encoders learn the
choice index with a classification head per task.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from ..analysis.figures import plot_training_curve
from ..cache import atomic_write_json
from ..data import TaskData
from ..data.features import head_layout, num_labels_for
from ..data.types import Example
from ..evaluation.runs import save_records
from ..evaluation.tasks import evaluate_tasks
from ..models import load_model
from ..precision import resolve_precision
from ..training.config import DEFAULT_TARGETS, ENCODER_TARGETS, RunConfig, load_run_tasks, target_modules_of
from ..training.loop import adapt, fit, training_rows
from ..training.trainer import launch_world, trainable_parameters

__all__ = [
    "DEFAULT_TARGETS",
    "ENCODER_TARGETS",
    "TRUNCATION_WARN_FRACTION",
    "RunConfig",
    "load_run_tasks",
    "target_modules_of",
    "train",
    "truncation_report",
]


TRUNCATION_WARN_FRACTION = 0.05


def truncation_report(
    max_length: int,
    tasks: list[TaskData],
    stream: list[Example],
    rows: list[dict],
    evaluation: dict[str, Any] | None,
    eval_split: str,
) -> dict[str, Any]:
    """What ``truncation.json`` records: per task, the fraction of its training sequences (``stream`` and
    their feature ``rows``) and of its ``eval_split`` examples (``evaluation``, an :func:`evaluate_tasks`
    summary, when there is one yet) whose prompt lost tokens to ``max_length``; and a warning line for
    each fraction above :data:`TRUNCATION_WARN_FRACTION`."""
    counts: dict[str, list[int]] = {t.name: [0, 0] for t in tasks}
    for ex, row in zip(stream, rows):
        counts[ex.task][0] += int(row["truncated"])
        counts[ex.task][1] += 1
    per_task: dict[str, dict[str, float]] = {}
    warnings: list[str] = []
    for task in tasks:
        hit, n = counts[task.name]
        fractions = {"train": hit / n if n else 0.0}
        scored = (evaluation or {}).get("tasks", {}).get(task.name, {})
        if "truncated" in scored:
            fractions[eval_split] = scored["truncated"]
        per_task[task.name] = {k: round(v, 4) for k, v in fractions.items()}
        for split, value in fractions.items():
            if value > TRUNCATION_WARN_FRACTION:
                warnings.append(
                    f"{split}: {value:.0%} of {task.name}'s prompts exceed max_length={max_length} tokens "
                    f"and lose the start of their passage; raise max_length to keep them whole"
                )
    return {
        "max_length": max_length,
        "warn_above": TRUNCATION_WARN_FRACTION,
        "tasks": per_task,
        "warnings": warnings,
    }


def train(
    cfg: RunConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], Any] = print,
    callbacks: list[TrainerCallback] | None = None,
) -> dict[str, Any]:
    """Run ``cfg`` end to end; returns the metrics also written to ``metrics.json``.

    Under ``torchrun``/``accelerate launch`` (DDP) every rank trains on its share of each global batch
    (``batch_size`` per process); rank 0 alone evaluates and writes the run directory (other ranks return
    ``{"rank", "train_loss"}``). ``callbacks`` are extra ``transformers.TrainerCallback`` objects.
    """
    cfg.validate()
    rank, world = launch_world()
    main = rank == 0
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    # tasks and model first: a bad task file or model fails before anything is written
    tasks = load_run_tasks(cfg)
    num_labels = num_labels_for(tasks)
    model, tokenizer = load_model(
        cfg.model, cfg.task_type, num_labels=num_labels if cfg.task_type == "seq_cls" else None
    )
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise PermissionError(f"output directory {out} is not writable")
    if main:
        atomic_write_json(out / "splits.json", {t.name: t.describe() for t in tasks})
    metrics: dict[str, Any] = {"method": cfg.method, "model": cfg.model, "seed": cfg.seed}
    records: dict[str, dict] = {}  # predictions.json: per-example hits, kept out of metrics.json
    device_type = "cuda" if torch.cuda.is_available() else "cpu"  # where Trainer trains (training_arguments)
    precision = resolve_precision(
        cfg.precision, device_type
    )  # "auto" detected once, recorded in metrics.json
    metrics["precision"] = {"requested": cfg.precision, "resolved": precision, "device": device_type}
    if main:
        atomic_write_json(out / "run_config.json", dataclasses.asdict(cfg))

    def evaluate(scored) -> tuple[dict[str, Any], dict[str, dict]]:
        """``evaluate_tasks`` on the run's split, and its per-example records (for predictions.json)."""
        summary = evaluate_tasks(
            scored,
            tokenizer,
            tasks,
            cfg.eval_split,
            cfg.task_type,
            cfg.eval_batch_size,
            cfg.max_length,
            precision=precision,
            records=True,
        )
        return summary, summary.pop("records")

    if cfg.eval_base and main:
        log(f"evaluating the base model on {len(tasks)} task(s) ({cfg.eval_split} split)")
        metrics["base"], records["base"] = evaluate(model)

    model = adapt(cfg, model, tokenizer)
    metrics["trainable_params"] = trainable_parameters(model)
    log(f"{cfg.method}: {metrics['trainable_params']:,} trainable parameters")

    heads = head_layout(tasks) if cfg.task_type == "seq_cls" else None
    if heads is not None and main:
        atomic_write_json(out / "heads.json", heads)
    stream, rows = training_rows(cfg, tasks, tokenizer, world, heads)
    truncation = truncation_report(cfg.max_length, tasks, stream, rows, metrics.get("base"), cfg.eval_split)
    if main:
        atomic_write_json(out / "truncation.json", truncation)
        for line in truncation["warnings"]:
            log(line)

    fitted = fit(
        cfg, model, tokenizer, rows, out, resume=resume, progress=progress, log=log, callbacks=callbacks
    )
    if not main:
        return {"rank": rank, "train_loss": fitted.training_loss}
    metrics["train"] = {
        "steps": cfg.steps,
        "processes": world,
        "train_loss": fitted.training_loss,
        "train_seconds": round(fitted.train_seconds, 2),
        "train_tokens_per_second": round(fitted.tokens / max(fitted.train_seconds, 1e-9), 1)
        if not fitted.resumed_from
        else None,
        "skipped_nonfinite_steps": fitted.skipped_steps,
    }
    log(f"evaluating the tuned model ({cfg.eval_split} split)")
    t_eval = time.time()
    metrics["tuned"], records["tuned"] = evaluate(model)
    if not cfg.eval_base:  # the evaluation fractions are known only now
        truncation = truncation_report(cfg.max_length, tasks, stream, rows, metrics["tuned"], cfg.eval_split)
        atomic_write_json(out / "truncation.json", truncation)
        for line in truncation["warnings"]:
            if line.startswith(f"{cfg.eval_split}:"):
                log(line)
    metrics["eval_seconds"] = round(time.time() - t_eval, 2)
    metrics["total_seconds"] = round(time.time() - t0, 2)
    save_records(out, cfg.eval_split, records)
    atomic_write_json(out / "metrics.json", metrics)
    (out / "figures").mkdir(exist_ok=True)
    plot_training_curve(out / "train_log.jsonl", out / "figures")
    return metrics

"""Training alone: the adapter on a model, the training stream, the optimizer and the ``Trainer`` fit.

What :func:`spectral_moe.pipeline.train` calls between evaluating the base model and evaluating the
tuned one; nothing here evaluates, plots or writes anything but checkpoints and the adapter:

* :func:`run_peft_config` / :func:`adapt` — the method's peft config on the run's target modules
  (``modules_to_save`` the encoders' new head) and the peft model built from it;
* :func:`training_rows` — ``steps · batch_size · grad_accum · processes`` examples drawn by the
  temperature mixture of :func:`~spectral_moe.data.mix_tasks`, as feature rows
  (:mod:`spectral_moe.data.features`);
* :func:`run_optimizer` — :func:`~spectral_moe.training.optim.create_optimizer` with the run's (or the
  method's default) learning rates;
* :func:`fit` — ``SpectralTrainer.train`` (resuming from the newest complete checkpoint when asked) and,
  on rank 0, the adapter saved to ``out/adapter`` in peft format.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftConfig, get_peft_model
from transformers import TrainerCallback, TrainingArguments

from ..cache import replace_dir
from ..data import TaskData, mix_tasks
from ..data.features import ListDataset, PadCollator, causal_lm_features, seq_cls_features
from ..data.types import Example
from ..precision import resolve_precision
from .config import RunConfig, target_modules_of
from .methods import DEFAULT_LR, DEFAULT_SPECTRUM_LR, build_peft_config, tokenizer_options
from .optim import create_optimizer
from .trainer import JsonlLogCallback, SpectralTrainer, last_checkpoint, launch_world


def run_peft_config(cfg: RunConfig, adapter: dict[str, Any] | None = None) -> PeftConfig:
    """``build_peft_config`` of ``cfg.method`` on :func:`~spectral_moe.training.config.target_modules_of`
    with ``adapter`` (default ``cfg.adapter``; options from the tokenizer already filled in by
    :func:`~spectral_moe.training.methods.tokenizer_options`); encoders also save their new head
    (``modules_to_save = ["classifier", "score"]``: BERT-style, Llama-style)."""
    adapter = dict(cfg.adapter if adapter is None else adapter)
    peft_config = build_peft_config(cfg.method, target_modules_of(cfg), cfg.task_type, **adapter)
    if cfg.task_type == "seq_cls":
        peft_config.modules_to_save = ["classifier", "score"]
    return peft_config


def adapt(cfg: RunConfig, model: torch.nn.Module, tokenizer: Any) -> torch.nn.Module:
    """``get_peft_model(model, run_peft_config(cfg, …))``; HMoRA's ``task_token_id`` from ``tokenizer``."""
    return get_peft_model(model, run_peft_config(cfg, tokenizer_options(cfg.method, cfg.adapter, tokenizer)))


def training_rows(
    cfg: RunConfig,
    tasks: list[TaskData],
    tokenizer: Any,
    world: int = 1,
    heads: dict[str, tuple[int, int]] | None = None,
) -> tuple[list[Example], list[dict]]:
    """``(stream, rows)``: the ``cfg.steps · batch_size · grad_accum · world`` training examples of the task
    mixture (temperature ``cfg.mix_temperature``, seed ``cfg.seed``) and their feature rows, fitted to
    ``cfg.max_length`` (causal LMs: prompt + answer; encoders: the choice index in its task's ``heads``)."""
    num_samples = cfg.steps * cfg.batch_size * cfg.grad_accum * world
    stream = mix_tasks(tasks, cfg.mix_temperature, num_samples, cfg.seed)
    if cfg.task_type == "causal_lm":
        rows = [causal_lm_features(tokenizer, ex, cfg.max_length) for ex in stream]
    else:
        if heads is None:
            raise ValueError("task_type='seq_cls' needs the head layout (heads)")
        rows = [seq_cls_features(tokenizer, ex, cfg.max_length, heads[ex.task]) for ex in stream]
    return stream, rows


def main_lr(cfg: RunConfig) -> float:
    """``cfg.lr``, else the method's default (:data:`~spectral_moe.training.methods.DEFAULT_LR`)."""
    return cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.method]


def run_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The run's optimizer: FRAME orders at ``cfg.order_lr`` (``None``: each layer's measured default),
    FourierMoE's spectra at ``spectrum_lr`` (default :data:`DEFAULT_SPECTRUM_LR`; other methods: ``lr``),
    routers at ``router_lr`` (default ``lr``)."""
    lr = main_lr(cfg)
    spectrum_lr = cfg.spectrum_lr
    if spectrum_lr is None:
        spectrum_lr = DEFAULT_SPECTRUM_LR if cfg.method == "fouriermoe" else lr
    return create_optimizer(
        model,
        lr,
        order_lr=cfg.order_lr,
        order_optimizer=cfg.order_optimizer,
        weight_decay=cfg.weight_decay,
        spectrum_lr=spectrum_lr,
        router_lr=cfg.router_lr,
    )


def training_arguments(cfg: RunConfig, out: Path, progress: bool = True) -> TrainingArguments:
    """``TrainingArguments`` of ``cfg``: checkpoints under ``out/checkpoints`` (the last two kept), the
    schedule with ``ceil(warmup_ratio · steps)`` warm-up steps, CPU when there is no CUDA, and
    ``bf16=True`` (autocast, float32 master weights) when ``cfg.precision`` resolves to ``bf16`` there."""
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    return TrainingArguments(
        bf16=resolve_precision(cfg.precision, device_type) == "bf16",
        output_dir=str(out / "checkpoints"),
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=main_lr(cfg),
        lr_scheduler_type=cfg.schedule,
        warmup_steps=math.ceil(cfg.warmup_ratio * cfg.steps),
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to=cfg.report_to,
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


@dataclass
class FitResult:
    """What :func:`fit` did: the mean training loss, seconds in ``Trainer.train``, the tokens of the
    training rows, the checkpoint it resumed from (``None``: from step 0) and the skipped steps."""

    training_loss: float
    train_seconds: float
    tokens: int
    resumed_from: str | None = None
    skipped_steps: list[int] = field(default_factory=list)


def fit(
    cfg: RunConfig,
    model: torch.nn.Module,
    tokenizer: Any,
    rows: list[dict],
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], Any] = print,
    callbacks: list[TrainerCallback] | None = None,
) -> FitResult:
    """Train the adapted ``model`` on ``rows`` with :class:`SpectralTrainer` for ``cfg.steps`` steps.

    Logs go to ``out/train_log.jsonl``, checkpoints to ``out/checkpoints`` (``resume``: continue from the
    newest complete one). On rank 0 the adapter is then saved to ``out/adapter`` (replaced as a whole, so a
    kill mid-write leaves no half adapter). ``callbacks`` are extra ``TrainerCallback`` objects.
    """
    rank, _ = launch_world()
    trainer = SpectralTrainer(
        model=model,
        args=training_arguments(cfg, out, progress),
        train_dataset=ListDataset(rows),
        data_collator=PadCollator(tokenizer.pad_token_id),
        optimizers=(run_optimizer(cfg, model), None),
        callbacks=[JsonlLogCallback(out / "train_log.jsonl", model), *(callbacks or [])],
        on_nan=cfg.on_nan,
        group_by_length=cfg.group_by_length,
    )
    checkpoint = last_checkpoint(out / "checkpoints") if resume else None
    if resume and checkpoint is None:
        log(f"no checkpoint under {out / 'checkpoints'}; starting from step 0")
    start = time.time()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.time() - start
    if rank == 0:
        with replace_dir(out / "adapter") as tmp:  # a kill mid-write leaves no half adapter/
            model.save_pretrained(tmp)
    return FitResult(
        training_loss=result.training_loss,
        train_seconds=seconds,
        tokens=sum(len(r["input_ids"]) for r in rows),
        resumed_from=checkpoint,
        skipped_steps=list(trainer.skipped_steps),
    )

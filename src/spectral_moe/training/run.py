"""One training run: load model and tasks, adapt, train with ``transformers.Trainer``, evaluate, save.

A run directory holds::

    adapter/             the adapter in peft format (adapter_config.json + adapter_model.safetensors)
    run_config.json      the resolved RunConfig
    splits.json          every task's split sizes and how they were made
    truncation.json      per task, the fraction of training and evaluation prompts cut to max_length
    train_log.jsonl      loss, learning rate, router load per layer and expert, FRAME orders
    metrics.json         per-task metrics of the base model and the tuned model, macro averages
    checkpoints/         Trainer checkpoints (for --resume)

Causal LMs learn ``prompt + answer`` with the loss on the answer tokens only; encoders learn the
choice index with a classification head.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model
from transformers import Trainer, TrainerCallback, TrainingArguments

from ..cache import atomic_write_json, replace_dir
from ..data import TaskData, load_tasks, mix_tasks
from ..data.prompts import build_prompt, encoder_input_ids
from ..data.types import Example
from ..evaluation.runs import head_layout, num_labels_for
from ..evaluation.scoring import evaluate_task, macro_average
from ..optim import create_optimizer
from ..tuners.flylora import FlyLoraLayer
from ..tuners.frame import FrameLayer
from ..tuners.hmora import HMoRALayer
from ..tuners.moe_common import RoutedLayerMixin
from .methods import DEFAULT_LR, DEFAULT_SPECTRUM_LR, build_peft_config, check_method, tokenizer_options

DEFAULT_TARGETS = ["q_proj", "v_proj"]
ENCODER_TARGETS = ["query", "value"]


@dataclass
class RunConfig:
    """Everything a run needs; saved as ``run_config.json``."""

    method: str = "fouriermoe"
    model: str = "smollm2-135m"
    tasks: str = "suite:core"
    out: str = "runs/run"
    steps: int = 100
    seed: int = 0
    task_type: str = "causal_lm"  # or "seq_cls" (encoders)
    target_modules: list[str] | None = None  # None: q_proj,v_proj (causal LMs) or query,value (encoders)
    adapter: dict[str, Any] = field(default_factory=dict)  # method options (e.g. n_frequency)
    lr: float | None = None  # None: the method's default
    spectrum_lr: float | None = None
    router_lr: float | None = None
    order_lr: float | None = None
    order_optimizer: str = "adam"
    weight_decay: float = 0.0
    batch_size: int = 8
    grad_accum: int = 1
    schedule: str = "cosine"  # or "linear", "constant"
    warmup_ratio: float = 0.05
    max_length: int = 256
    max_train: int | None = 400  # per task
    max_eval: int | None = 50  # per task and split
    eval_split: str = "test"
    mix_temperature: float = 2.0
    logging_steps: int = 10
    save_steps: int = 50
    eval_base: bool = True
    eval_batch_size: int = 16
    on_nan: str = "stop"  # or "skip": what a non-finite training loss does
    report_to: list[str] = field(default_factory=list)

    def validate(self) -> None:
        check_method(self.method)
        for name in ("steps", "batch_size", "grad_accum", "max_length", "logging_steps", "save_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(
                f"schedule must be one of ['cosine', 'linear', 'constant'], got {self.schedule!r}"
            )
        if self.task_type not in ("causal_lm", "seq_cls"):
            raise ValueError(f"task_type must be 'causal_lm' or 'seq_cls', got {self.task_type!r}")
        if self.eval_split not in ("validation", "test"):
            raise ValueError(f"eval_split must be 'validation' or 'test', got {self.eval_split!r}")
        if self.on_nan not in ("stop", "skip"):
            raise ValueError(f"on_nan must be 'stop' or 'skip', got {self.on_nan!r}")
        if not self.mix_temperature > 0:
            raise ValueError(f"mix_temperature must be > 0, got {self.mix_temperature}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown run option(s) {unknown}; known options: {sorted(known)}")
        return cls(**values)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def causal_lm_features(tokenizer, example: Example, max_length: int) -> dict[str, Any]:
    """``input_ids`` of BOS + prompt + answer + EOS and ``labels`` = -100 except on answer + EOS.

    Fitted to ``max_length`` by the data policy (:mod:`spectral_moe.data.prompts`, the same as
    evaluation's): only the example's passage loses tokens, from its left; BOS, the task instruction,
    the choice list and the answer stay. ``truncated`` says whether any prompt token was dropped.
    """
    target = example.meta.get("completion", example.answer) if not example.choices else example.answer
    fitted = build_prompt(
        tokenizer, example.input, target, max_length, passage=example.passage_span, add_eos=True
    )
    labels = [-100] * len(fitted.context) + fitted.continuation
    return {"input_ids": fitted.ids, "labels": labels, "truncated": fitted.truncated}


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


class PadCollator:
    """Right-pads ``input_ids`` (pad id), ``labels`` (-100) and builds ``attention_mask``."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        batch = {
            "input_ids": torch.full((len(rows), width), self.pad_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
        }
        if "head" in rows[0]:
            batch["heads"] = torch.tensor([r["head"] for r in rows], dtype=torch.long)
        if "labels" in rows[0] and isinstance(rows[0]["labels"], list):
            batch["labels"] = torch.full((len(rows), width), -100, dtype=torch.long)
        elif "labels" in rows[0]:
            batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            batch["input_ids"][i, :n] = torch.tensor(r["input_ids"])
            batch["attention_mask"][i, :n] = 1
            if isinstance(r.get("labels"), list):
                batch["labels"][i, :n] = torch.tensor(r["labels"])
        return batch


def seq_cls_features(tokenizer, example: Example, max_length: int, head: tuple[int, int] = (0, 0)) -> dict:
    """Encoder features: ``labels = offset + choice index`` in the task's head ``(offset, size)``.

    The input is fitted to ``max_length`` (special tokens included) by the data policy: only the
    passage loses tokens, from its left; the instruction, the choice list and the answer prefix stay.
    """
    ids, fitted = encoder_input_ids(tokenizer, example.input, max_length, example.passage_span)
    offset, size = head
    return {
        "input_ids": ids,
        "labels": offset + example.label,
        "head": (offset, size or len(example.choices)),
        "truncated": fitted.truncated,
    }


def head_mask(heads: torch.Tensor, num_labels: int) -> torch.Tensor:
    """``[B, num_labels]`` bool: True on each example's own head ``[offset, offset + size)``."""
    cols = torch.arange(num_labels, device=heads.device)
    return (cols >= heads[:, :1]) & (cols < heads[:, :1] + heads[:, 1:])


# --------------------------------------------------------------------------------------------
# logging
# --------------------------------------------------------------------------------------------
# Layers with per-forward router statistics (``router_stats[adapter]["dispatch_fraction"]``): the routed
# MoE layers, FlyLoRA (its rank activation frequency c_i / Σ_j c_j over the r ranks) and HMoRA.
ROUTED_LAYER_TYPES = (RoutedLayerMixin, FlyLoraLayer, HMoRALayer)


def router_snapshot(model: torch.nn.Module) -> dict[str, Any]:
    """Per adapted layer: expert dispatch fraction and mean probability (FlyLoRA: rank activation
    frequency); FRAME orders; HMoRA's mixing weight ``α_l`` of each hybrid router (``mixing_weights``)."""
    load, orders, mixing = {}, {}, {}
    for name, module in model.named_modules():
        if isinstance(module, ROUTED_LAYER_TYPES):
            short = name.removeprefix("base_model.model.")
            for adapter, stats in module.router_stats.items():
                load[short] = {k: [round(v, 5) for v in t.tolist()] for k, t in stats.items()}
                if isinstance(module, FrameLayer):
                    orders[short] = [round(v, 5) for v in module.frame_orders(adapter).detach().tolist()]
                if isinstance(module, HMoRALayer) and module.mixing_weight(adapter) is not None:
                    mixing[short] = round(float(module.mixing_weight(adapter).detach()), 5)
    if not load:
        return {}
    return {"router_load": load, "orders": orders, **({"mixing_weights": mixing} if mixing else {})}


def router_scalars(model: torch.nn.Module) -> dict[str, float]:
    """Scalars for ``report_to`` integrations: aux loss, dispatch fraction per expert (mean over
    layers; FlyLoRA: per rank), the mean FRAME order per expert and HMoRA's mean ``α_l``."""
    out: dict[str, float] = {}
    aux = getattr(model, "get_router_aux_loss", None)
    value = aux(sync=False) if callable(aux) else None  # this rank's own routers: no collective
    if value is not None:
        out["router_aux_loss"] = round(float(value.detach()), 6)
    snap = router_snapshot(model)
    for key, field_name in (("router_load", "dispatch_fraction"), ("orders", None)):
        rows = [v[field_name] if field_name else v for v in snap.get(key, {}).values()]
        if rows:
            mean = torch.tensor(rows).mean(0).tolist()
            prefix = "router_load" if field_name else "order"
            out.update({f"{prefix}/expert_{z}": round(v, 5) for z, v in enumerate(mean)})
    mixing = list(snap.get("mixing_weights", {}).values())
    if mixing:
        out["mixing_weight/mean"] = round(sum(mixing) / len(mixing), 5)
    return out


class NonFiniteLossError(RuntimeError):
    """Training stopped on a NaN/inf loss (``on_nan="stop"``); the last good checkpoint is kept."""


class SpectralTrainer(Trainer):
    """``Trainer`` whose logs carry the router scalars (so every ``report_to`` integration sees them),
    whose encoder loss is a cross-entropy within each example's task head, and which stops on (or
    skips) a non-finite loss: ``on_nan="stop"`` raises before the optimizer step, so the parameters
    and the last checkpoint stay good; ``"skip"`` drops the gradients of that optimizer step."""

    def __init__(self, *args: Any, on_nan: str = "stop", **kwargs: Any) -> None:
        if on_nan not in ("stop", "skip"):
            raise ValueError(f"on_nan must be 'stop' or 'skip', got {on_nan!r}")
        super().__init__(*args, **kwargs)
        self.on_nan = on_nan
        self.skipped_steps: list[int] = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if torch.isfinite(loss).all():
            return loss
        step = self.state.global_step + 1
        if self.on_nan == "stop":
            ckpt = _last_checkpoint(Path(self.args.output_dir))
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at step {step}; training stopped before the optimizer step. "
                f"Last good checkpoint: {ckpt or 'none yet'} (lower the learning rate, or use --on-nan skip)"
            )
        model.zero_grad(set_to_none=True)
        self.skipped_steps.append(step)
        return torch.zeros_like(loss)

    def _clip_grad_norm(self, model):
        """Trainer's global gradient-norm clip over every parameter except FRAME's orders, which are not
        clipped (``spectral_moe.optim``: their norm would otherwise shrink every other step). Returns the
        pre-clip norm of the clipped parameters. FSDP, DeepSpeed and mixed device meshes keep Trainer's
        own clip (orders included): their norms must be reduced over shards by the engine."""
        from accelerate.utils import DistributedType

        from ..optim import order_parameters

        orders = {id(p) for p in order_parameters(model)}
        engine = self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        mixed = getattr(self, "_has_mixed_mesh_grads", lambda m: False)(model)
        if not orders or engine or mixed:
            return super()._clip_grad_norm(model)
        rest = [p for p in model.parameters() if id(p) not in orders]
        return self.accelerator.clip_grad_norm_(rest, self.args.max_grad_norm)

    def _loss_is_scaled_for_ga(self, num_items_in_batch) -> bool:
        """Mirror of Trainer.training_step: True when Trainer will not divide the loss by the
        gradient-accumulation steps (it was normalised by ``num_items_in_batch`` instead)."""
        if getattr(self, "loss_is_scaled_for_ga", None) is not None:
            return bool(self.loss_is_scaled_for_ga)
        return bool(
            (self.model_accepts_loss_kwargs and num_items_in_batch is not None)
            or self.compute_loss_func is not None
        )

    def _trainer_loss_scale(self, num_items_in_batch) -> int:
        """Mirror of Trainer.compute_loss: the factor it multiplies the model's loss by (the number of
        data-parallel processes when token counts are averaged across devices, else 1)."""
        if (
            self.args.average_tokens_across_devices
            and (self.model_accepts_loss_kwargs or self.compute_loss_func)
            and num_items_in_batch is not None
        ):
            scale = self.accelerator.num_processes // self.get_tp_size()
            return scale if self.args.n_gpu <= 1 else self.args.n_gpu
        return 1

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "heads" not in inputs:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = result[0] if return_outputs else result
            steps = getattr(self, "current_gradient_accumulation_steps", 1)
            aux = getattr(self.accelerator.unwrap_model(model), "get_router_aux_loss", None)  # DDP wraps it
            extra = aux(weighted=True) if model.training and callable(aux) else None
            if extra is not None:
                # The model added this rank's router loss share (whose mean over ranks is the global
                # batch's) to its loss. Trainer multiplied that sum by `scale`; when it will not divide by
                # the accumulation steps, keep 1/steps of the aux loss, as for the token-normalised loss.
                scale = self._trainer_loss_scale(num_items_in_batch)
                target = 1 / steps if self._loss_is_scaled_for_ga(num_items_in_batch) else 1.0
                if scale != target:
                    loss = loss - extra.to(loss.dtype) * (scale - target)
            return (loss, result[1]) if return_outputs else loss
        inputs = dict(inputs)
        heads, labels = inputs.pop("heads"), inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits.float().masked_fill(
            ~head_mask(heads, outputs.logits.shape[-1]), float("-inf")
        )
        # One optimizer step must see the mean cross-entropy over all of its examples (B per micro-batch,
        # G = accumulation steps). Where Trainer divides the returned loss by G, return the micro-batch
        # mean; where it does not (it believes the loss was normalised by num_items_in_batch = the
        # examples of the whole step, as the causal-LM loss is), return
        #   loss = scale · Σ_{i ∈ micro-batch} CE_i / num_items_in_batch
        # with Trainer's device factor `scale` (token counts averaged across processes), and 1/G of the
        # router loss, as the causal-LM branch does.
        steps = getattr(self, "current_gradient_accumulation_steps", 1)
        if self._loss_is_scaled_for_ga(num_items_in_batch):
            count = num_items_in_batch if num_items_in_batch is not None else labels.numel() * steps
            count = torch.as_tensor(count, device=logits.device, dtype=logits.dtype)
            total = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
            loss = total / count * self._trainer_loss_scale(num_items_in_batch)
            aux_weight = 1.0 / steps
        else:
            loss = torch.nn.functional.cross_entropy(logits, labels)
            aux_weight = 1.0
        aux = getattr(self.accelerator.unwrap_model(model), "get_router_aux_loss", None)  # DDP wraps it
        extra = aux(weighted=True) if model.training and callable(aux) else None
        if extra is not None:
            loss = loss + extra.to(loss.dtype) * aux_weight
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:
            logs = {**logs, **router_scalars(self.model)}
        super().log(logs, *args, **kwargs)


class JsonlLogCallback(TrainerCallback):
    """Appends every Trainer log plus per-layer router load and FRAME orders to ``train_log.jsonl``."""

    def __init__(self, path: Path, model: torch.nn.Module) -> None:
        self.path = path
        self.model = model

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "time": round(time.time(), 3), **logs}
        if "loss" in logs:
            record.update(router_snapshot(self.model))
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
def load_run_tasks(cfg: RunConfig) -> list[TaskData]:
    return load_tasks(cfg.tasks, max_train=cfg.max_train, max_eval=cfg.max_eval, seed=0)


def evaluate_tasks(
    model,
    tokenizer,
    tasks: list[TaskData],
    split: str,
    task_type: str,
    batch_size: int = 16,
    max_length: int = 1024,
) -> dict[str, Any]:
    """Per-task metrics on ``split`` and their macro averages.

    Prompts are fitted to ``max_length`` tokens by the data policy (a run evaluates with its training
    ``max_length``); each task's ``truncated`` is the fraction of its examples that lost tokens.
    """
    per_task = {}
    layout = head_layout(tasks)
    for task in tasks:
        examples = getattr(task, split)
        if task_type == "seq_cls":
            per_task[task.name] = evaluate_classifier(
                model, tokenizer, examples, layout[task.name], max_length=max_length
            )
        else:
            per_task[task.name] = evaluate_task(
                model, tokenizer, examples, task.kind, batch_size=batch_size, max_length=max_length
            )
    summary = {"tasks": per_task}
    for metric in ("acc", "acc_norm", "exact_match"):
        value = macro_average(per_task, metric)
        if value is not None:
            summary[f"macro_{metric}"] = value
    return summary


@torch.no_grad()
def evaluate_classifier(
    model,
    tokenizer,
    examples: list[Example],
    head: tuple[int, int],
    batch_size: int = 32,
    max_length: int = 512,
) -> dict[str, float]:
    """Accuracy of the argmax within the task's head (inputs fitted to ``max_length`` as in training)."""
    was = model.training
    model.eval()
    hits = truncated = 0
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
        hits += int((logits.argmax(-1) == batch["labels"]).sum())
    model.train(was)
    total = max(len(examples), 1)
    return {"acc": hits / total, "n": len(examples), "truncated": truncated / total}


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


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _last_checkpoint(ckpt_dir: Path) -> str | None:
    """Newest complete Trainer checkpoint: one whose ``trainer_state.json`` (written last) and adapter
    exist, so a run killed while writing a checkpoint resumes from the previous one."""
    if not ckpt_dir.is_dir():
        return None
    found = [
        p
        for p in ckpt_dir.glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit()
        and (p / "trainer_state.json").is_file()
        and (p / "adapter_model.safetensors").is_file()
    ]
    return str(max(found, key=lambda p: int(p.name.split("-")[-1]))) if found else None


def launch_world() -> tuple[int, int]:
    """``(rank, world_size)`` of a ``torchrun``/``accelerate launch`` process (``(0, 1)`` otherwise)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def train(
    cfg: RunConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    log=print,
    callbacks: list[TrainerCallback] | None = None,
) -> dict[str, Any]:
    """Run ``cfg`` end to end; returns the metrics also written to ``metrics.json``.

    Under ``torchrun``/``accelerate launch`` (DDP) every rank trains on its share of each global batch
    (``batch_size`` per process); rank 0 alone evaluates and writes the run directory.
    ``callbacks`` are extra ``transformers.TrainerCallback`` objects for the Trainer.
    """
    from ..models import load_model

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
    if main:
        atomic_write_json(out / "run_config.json", dataclasses.asdict(cfg))
    if cfg.eval_base and main:
        log(f"evaluating the base model on {len(tasks)} task(s) ({cfg.eval_split} split)")
        metrics["base"] = evaluate_tasks(
            model, tokenizer, tasks, cfg.eval_split, cfg.task_type, cfg.eval_batch_size, cfg.max_length
        )

    targets = cfg.target_modules or (DEFAULT_TARGETS if cfg.task_type == "causal_lm" else ENCODER_TARGETS)
    # HMoRA's task_token_id from the tokenizer (as evaluation.compare.resolved_adapter_config rebuilds it)
    adapter = tokenizer_options(cfg.method, cfg.adapter, tokenizer)
    peft_config = build_peft_config(cfg.method, targets, cfg.task_type, **adapter)
    if cfg.task_type == "seq_cls":
        peft_config.modules_to_save = ["classifier", "score"]  # the new head (BERT-style, Llama-style)
    model = get_peft_model(model, peft_config)
    metrics["trainable_params"] = trainable_parameters(model)
    log(f"{cfg.method}: {metrics['trainable_params']:,} trainable parameters")

    num_samples = cfg.steps * cfg.batch_size * cfg.grad_accum * world
    stream = mix_tasks(tasks, cfg.mix_temperature, num_samples, cfg.seed)
    if cfg.task_type == "causal_lm":
        rows = [causal_lm_features(tokenizer, ex, cfg.max_length) for ex in stream]
    else:
        layout = head_layout(tasks)
        if main:
            atomic_write_json(out / "heads.json", layout)
        rows = [seq_cls_features(tokenizer, ex, cfg.max_length, layout[ex.task]) for ex in stream]
    train_rows = ListDataset(rows)
    truncation = truncation_report(cfg.max_length, tasks, stream, rows, metrics.get("base"), cfg.eval_split)
    if main:
        atomic_write_json(out / "truncation.json", truncation)
        for line in truncation["warnings"]:
            log(line)

    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.method]
    has_spectrum = cfg.method == "fouriermoe"
    optimizer = create_optimizer(
        model,
        lr,
        order_lr=cfg.order_lr,  # None: each FRAME layer's measured default (optim.create_optimizer)
        order_optimizer=cfg.order_optimizer,
        weight_decay=cfg.weight_decay,
        spectrum_lr=cfg.spectrum_lr
        if cfg.spectrum_lr is not None
        else (DEFAULT_SPECTRUM_LR if has_spectrum else lr),
        router_lr=cfg.router_lr,
    )
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=lr,
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
    trainer = SpectralTrainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        data_collator=PadCollator(tokenizer.pad_token_id),
        optimizers=(optimizer, None),
        callbacks=[JsonlLogCallback(out / "train_log.jsonl", model), *(callbacks or [])],
        on_nan=cfg.on_nan,
    )
    checkpoint = _last_checkpoint(out / "checkpoints") if resume else None
    if resume and checkpoint is None:
        log(f"no checkpoint under {out / 'checkpoints'}; starting from step 0")
    t_train = time.time()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    train_time = time.time() - t_train
    if not main:
        return {"rank": rank, "train_loss": result.training_loss}
    with replace_dir(out / "adapter") as tmp:  # a kill mid-write leaves no half adapter/
        model.save_pretrained(tmp)
    tokens = sum(len(r["input_ids"]) for r in train_rows.rows)
    metrics["train"] = {
        "steps": cfg.steps,
        "processes": world,
        "train_loss": result.training_loss,
        "train_seconds": round(train_time, 2),
        "train_tokens_per_second": round(tokens / max(train_time, 1e-9), 1) if not checkpoint else None,
        "skipped_nonfinite_steps": trainer.skipped_steps,
    }
    log(f"evaluating the tuned model ({cfg.eval_split} split)")
    t_eval = time.time()
    metrics["tuned"] = evaluate_tasks(
        model, tokenizer, tasks, cfg.eval_split, cfg.task_type, cfg.eval_batch_size, cfg.max_length
    )
    if not cfg.eval_base:  # the evaluation fractions are known only now
        truncation = truncation_report(cfg.max_length, tasks, stream, rows, metrics["tuned"], cfg.eval_split)
        atomic_write_json(out / "truncation.json", truncation)
        for line in truncation["warnings"]:
            if line.startswith(f"{cfg.eval_split}:"):
                log(line)
    metrics["eval_seconds"] = round(time.time() - t_eval, 2)
    metrics["total_seconds"] = round(time.time() - t0, 2)
    atomic_write_json(out / "metrics.json", metrics)
    from ..analysis.figures import plot_training_curve

    (out / "figures").mkdir(exist_ok=True)
    plot_training_curve(out / "train_log.jsonl", out / "figures")
    return metrics

"""The Trainer integration: ``SpectralTrainer``, the JSONL log callback and router logging.

* :class:`SpectralTrainer` — a drop-in ``transformers.Trainer`` subclass: the router scalars in every log
  (so every ``report_to`` integration sees them), the encoders' per-head cross-entropy, the router aux loss
  weighted right under gradient accumulation and data parallelism, FRAME's orders out of the global
  gradient-norm clip, and a non-finite loss stopping (``on_nan="stop"``) or skipping (``"skip"``) a step.
  Causal LMs get LM-head logits only at the labelled positions (:func:`answer_logit_mask`, the model's
  ``logits_to_keep``; same loss), and with ``group_by_length`` training batches of similar lengths
  (:func:`length_grouped_order`, a seeded fixed order: resumable, the same global batches under DDP).
* :class:`JsonlLogCallback` — appends every log plus per-layer router load and FRAME orders to
  ``train_log.jsonl``; :func:`router_snapshot` / :func:`router_scalars` read them from the model.
* :func:`last_checkpoint` — the newest complete checkpoint (for ``--resume``); :func:`launch_world`.

"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from ..data.features import head_mask
from ..tuners.frame import FrameLayer
from ..tuners.hmora import HMoRALayer
from ..tuners.introspection import ROUTED_LAYER_TYPES
from .optim import order_parameters

__all__ = [
    "JsonlLogCallback",
    "NonFiniteLossError",
    "ROUTED_LAYER_TYPES",
    "SpectralTrainer",
    "answer_logit_mask",
    "last_checkpoint",
    "launch_world",
    "length_grouped_order",
    "router_scalars",
    "router_snapshot",
    "trainable_parameters",
]


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


def answer_logit_mask(labels: torch.Tensor) -> torch.Tensor:
    """Positions whose logits carry a label: ``keep[b, t] = labels[b, t + 1] ≠ -100`` (``[B, T]`` bool, last
    column False), the causal shift of the LM loss. ``targets = labels[:, 1:][keep[:, :-1]]`` in the same
    (row-major) order as ``hidden[keep]``."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    return keep


def length_grouped_order(lengths: list[int], batch_size: int, seed: int, group: int = 16) -> list[int]:
    """A fixed order of ``range(len(lengths))`` whose consecutive ``batch_size`` rows have similar lengths.

    A seeded permutation (``torch.Generator`` with ``seed``: no global RNG, so a resumed run sees the same
    order), cut into chunks of ``group · batch_size`` rows, each chunk sorted by length (longest first) and
    cut into batches; the batches are then shuffled (same generator). Every row is used once."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(lengths), generator=g).tolist()
    chunk = max(1, group * batch_size)
    batches: list[list[int]] = []
    for start in range(0, len(perm), chunk):
        part = sorted(perm[start : start + chunk], key=lambda i: -lengths[i])
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    order = torch.randperm(len(batches), generator=g).tolist()
    return [i for b in order for i in batches[b]]


class FixedOrderSampler(torch.utils.data.Sampler):
    """Yields a fixed list of indices (the same on every pass: deterministic and resumable)."""

    def __init__(self, order: list[int]) -> None:
        self.order = list(order)

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def supports_answer_logits(model: torch.nn.Module) -> bool:
    """True when the (peft-wrapped) causal LM takes a boolean ``logits_to_keep`` mask ``[B, T]`` (transformers'
    ``slice_logits_to_keep``: the LM head then runs only at the kept positions, output ``[N, vocab]``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    forward = getattr(type(base), "forward", None)
    if forward is None or "logits_to_keep" not in inspect.signature(forward).parameters:
        return False
    return getattr(sys.modules.get(type(base).__module__), "slice_logits_to_keep", None) is not None


class NonFiniteLossError(RuntimeError):
    """Training stopped on a NaN/inf loss (``on_nan="stop"``); the last good checkpoint is kept."""


class SpectralTrainer(Trainer):
    """``Trainer`` whose logs carry the router scalars (so every ``report_to`` integration sees them),
    whose encoder loss is a cross-entropy within each example's task head, and which stops on (or
    skips) a non-finite loss: ``on_nan="stop"`` raises before the optimizer step, so the parameters
    and the last checkpoint stay good; ``"skip"`` drops the gradients of that optimizer step."""

    def __init__(
        self,
        *args: Any,
        on_nan: str = "stop",
        answer_logits: bool = True,
        group_by_length: bool = False,
        **kwargs: Any,
    ) -> None:
        if on_nan not in ("stop", "skip"):
            raise ValueError(f"on_nan must be 'stop' or 'skip', got {on_nan!r}")
        super().__init__(*args, **kwargs)
        self.on_nan = on_nan
        self.skipped_steps: list[int] = []
        # causal LMs: LM-head logits only where a label is (answer tokens), not at every position
        self.answer_logits = answer_logits
        # training batches of similar lengths (less padding): length_grouped_order, seeded by args.data_seed
        self.group_by_length = group_by_length

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_length or dataset is None or not hasattr(dataset, "__len__"):
            return super()._get_train_sampler(train_dataset)
        lengths = [len(dataset[i]["input_ids"]) for i in range(len(dataset))]
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        # grouped by the global batch (data-parallel ranks take consecutive per-device batches of this
        # order), so a global batch holds the same rows whatever the number of processes
        global_batch = self.args.per_device_train_batch_size * max(1, self.args.world_size)
        return FixedOrderSampler(length_grouped_order(lengths, global_batch, seed))

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if torch.isfinite(loss).all():
            return loss
        step = self.state.global_step + 1
        if self.on_nan == "stop":
            ckpt = last_checkpoint(Path(self.args.output_dir))
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at step {step}; training stopped before the optimizer step. "
                f"Last good checkpoint: {ckpt or 'none yet'} (lower the learning rate, or use --on-nan skip)"
            )
        model.zero_grad(set_to_none=True)
        self.skipped_steps.append(step)
        return torch.zeros_like(loss)

    def _clip_grad_norm(self, model):
        """Trainer's global gradient-norm clip over every parameter except FRAME's orders, which are not
        clipped (``spectral_moe.training.optim``: their norm would otherwise shrink every other step). Returns the
        pre-clip norm of the clipped parameters. FSDP, DeepSpeed and mixed device meshes keep Trainer's
        own clip (orders included): their norms must be reduced over shards by the engine."""
        from accelerate.utils import DistributedType

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

    def answer_logits_loss(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        """The causal-LM loss with LM-head logits at the labelled positions only (same value as the model's
        own loss, which computes a vocabulary-wide logit row at every position first)::

            keep = answer_logit_mask(labels)                  [B, T] bool, N = Σ keep
            logits = lm_head(h[keep])                         [N, V]   (transformers' logits_to_keep)
            loss = scale · Σ CE(logits, labels[:, 1:][keep[:, :-1]]) / num_items_in_batch   (mean without it)
                   + w · (router_aux_loss_coef · L_aux + router_z_loss_coef · L_z)

        ``scale`` is Trainer's device factor and ``w = 1/steps`` where Trainer will not divide the loss by the
        accumulation steps (else 1): exactly what the model's loss plus Trainer's scaling give."""
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        keep = answer_logit_mask(labels)
        targets = labels[:, 1:][keep[:, :-1]]  # [N]
        outputs = model(**inputs, logits_to_keep=keep)
        logits = outputs.logits.float().reshape(-1, outputs.logits.shape[-1])  # [N, V]
        if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            total = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
            loss = total / torch.as_tensor(num_items_in_batch, device=total.device)
        else:
            loss = torch.nn.functional.cross_entropy(logits, targets)
        loss = loss * self._trainer_loss_scale(num_items_in_batch)
        aux = getattr(self.accelerator.unwrap_model(model), "get_router_aux_loss", None)  # DDP wraps it
        extra = aux(weighted=True) if model.training and callable(aux) else None
        if extra is not None:
            steps = getattr(self, "current_gradient_accumulation_steps", 1)
            weight = 1 / steps if self._loss_is_scaled_for_ga(num_items_in_batch) else 1.0
            loss = loss + extra.to(loss.dtype) * weight
        return loss

    def _answer_logits_apply(self, model, inputs, return_outputs: bool) -> bool:
        if not self.answer_logits or return_outputs or "labels" not in inputs or inputs["labels"].dim() != 2:
            return False
        if self.compute_loss_func is not None or self.label_smoother is not None:
            return False
        unwrapped = self.accelerator.unwrap_model(model)
        cached = self.__dict__.setdefault("_answer_logits_support", {})
        if id(unwrapped) not in cached:
            cached[id(unwrapped)] = supports_answer_logits(unwrapped)
        return cached[id(unwrapped)]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "heads" not in inputs and self._answer_logits_apply(model, inputs, return_outputs):
            return self.answer_logits_loss(model, inputs, num_items_in_batch)
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


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def last_checkpoint(ckpt_dir: Path) -> str | None:
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

"""The Trainer integration: ``SpectralTrainer``, the JSONL log callback and router logging.

* :class:`SpectralTrainer` — a drop-in ``transformers.Trainer`` subclass: the router scalars in every log
  (so every ``report_to`` integration sees them), the encoders' per-head cross-entropy, the router aux loss
  weighted right under gradient accumulation and data parallelism, FRAME's orders out of the global
  gradient-norm clip, and a non-finite loss stopping (``on_nan="stop"``) or skipping (``"skip"``) a step.
* :class:`JsonlLogCallback` — appends every log plus per-layer router load and FRAME orders to
  ``train_log.jsonl``; :func:`router_snapshot` / :func:`router_scalars` read them from the model.
* :func:`last_checkpoint` — the newest complete checkpoint (for ``--resume``); :func:`launch_world`.

"""

from __future__ import annotations

import json
import os
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
    "last_checkpoint",
    "launch_world",
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

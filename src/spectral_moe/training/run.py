"""Backward-compatible import path for the names that lived here before the layers were split.

``spectral_moe.training.run.SpectralTrainer`` (the README's earlier spelling) and the run config keep
working from here. Where each name lives now:

* :class:`RunConfig`, :data:`DEFAULT_TARGETS`, :data:`ENCODER_TARGETS`, :func:`load_run_tasks` —
  :mod:`spectral_moe.training.config`;
* :class:`SpectralTrainer`, :class:`NonFiniteLossError`, :class:`JsonlLogCallback`,
  :func:`router_snapshot`, :func:`router_scalars`, :func:`last_checkpoint` — :mod:`spectral_moe.training.trainer`;
* features and collators (:func:`causal_lm_features`, :func:`seq_cls_features`, :class:`PadCollator`,
  :class:`ListDataset`, :func:`head_mask`) — :mod:`spectral_moe.data.features`;
* ``train`` (a whole run: train, evaluate, figures) — :func:`spectral_moe.pipeline.train`;
  ``evaluate_tasks`` — :func:`spectral_moe.evaluation.tasks.evaluate_tasks`.
"""

from __future__ import annotations

from ..data.features import ListDataset, PadCollator, causal_lm_features, head_mask, seq_cls_features
from .config import DEFAULT_TARGETS, ENCODER_TARGETS, RunConfig, load_run_tasks
from .trainer import (
    JsonlLogCallback,
    NonFiniteLossError,
    SpectralTrainer,
    last_checkpoint,
    router_scalars,
    router_snapshot,
)

__all__ = [
    "DEFAULT_TARGETS",
    "ENCODER_TARGETS",
    "JsonlLogCallback",
    "ListDataset",
    "NonFiniteLossError",
    "PadCollator",
    "RunConfig",
    "SpectralTrainer",
    "causal_lm_features",
    "head_mask",
    "last_checkpoint",
    "load_run_tasks",
    "router_scalars",
    "router_snapshot",
    "seq_cls_features",
]

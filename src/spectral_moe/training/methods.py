"""The methods the harness compares, as peft configs built from one set of options.

``fouriermoe``, ``frame``, ``moelora`` are spectral-moe's adapters; ``lora`` and ``fourierft`` come
from peft itself. Every method adapts the same ``target_modules``; per-method options override the
defaults below (``--set adapter.n_frequency=500`` on the command line).
"""

from __future__ import annotations

from typing import Any

from peft import FourierFTConfig, LoraConfig, PeftConfig, TaskType

from ..spectral.frame import WEIGHTED_ORDER_LR
from ..tuners.fouriermoe import FourierMoEConfig
from ..tuners.frame import FrameConfig, MoELoraConfig

METHODS = ("fouriermoe", "frame", "moelora", "lora", "fourierft")

DEFAULTS: dict[str, dict[str, Any]] = {
    # n_frequency: FourierMoEConfig's default (500, chosen by the study's ablation; see its docstring)
    "fouriermoe": {"num_experts": 8, "top_k": 2, "scaling": 150.0},
    # transform: FrameConfig's default ("weighted", chosen by the study's ablation; see its docstring)
    "frame": {"num_experts": 8, "top_k": 2, "r": 4, "lora_alpha": 8.0},
    "moelora": {"num_experts": 8, "top_k": 2, "r": 4, "lora_alpha": 8.0},
    "lora": {"r": 8, "lora_alpha": 16},
    "fourierft": {"n_frequency": 1000, "scaling": 150.0, "init_weights": True},
}

# Learning rates per parameter role (see spectral_moe.optim): spectra, like FourierFT's, want a far
# larger step than LoRA factors.
DEFAULT_LR = {"fouriermoe": 1e-3, "frame": 1e-3, "moelora": 1e-3, "lora": 1e-3, "fourierft": 5e-2}
DEFAULT_SPECTRUM_LR = 5e-2
# FRAME orders: by default (order_lr None) every layer gets its transform's measured rate
# (spectral.frame.default_order_lr: 6e-3 for "weighted", 0.027/d for "hermite", 0.025/d for "chirp";
# results/frame_orders.md). DEFAULT_ORDER_LR is the default transform's, for code that needs one number.
DEFAULT_ORDER_LR = WEIGHTED_ORDER_LR

_CLASSES = {
    "fouriermoe": FourierMoEConfig,
    "frame": FrameConfig,
    "moelora": MoELoraConfig,
    "lora": LoraConfig,
    "fourierft": FourierFTConfig,
}


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")


def build_peft_config(
    method: str, target_modules: list[str], task_type: str = "causal_lm", **overrides: Any
) -> PeftConfig:
    """The peft config of ``method`` on ``target_modules`` with ``DEFAULTS[method]`` updated by ``overrides``."""
    check_method(method)
    kwargs = {**DEFAULTS[method], **overrides}
    peft_task = TaskType.CAUSAL_LM if task_type == "causal_lm" else TaskType.SEQ_CLS
    try:
        return _CLASSES[method](target_modules=list(target_modules), task_type=peft_task, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad option for method {method!r}: {err}") from err

"""The methods the harness compares, as peft configs built from one set of options.

``fouriermoe``, ``frame``, ``moelora`` are spectral-moe's adapters; ``flylora`` (Zou et al., 2025) and
``hmora`` (Liao et al., 2025) are the FRAME paper's baselines, built here as peft tuners after their
authors' code; ``lora``, ``dora`` (``LoraConfig(use_dora=True)``) and ``fourierft`` come from peft
itself. Every method adapts the same ``target_modules``; per-method options override the defaults below
(``--set adapter.n_frequency=500`` on the command line).

HMoRA initialises its task token from the input embedding of ``"?"``, so its config needs the tokenizer:
:func:`tokenizer_options` adds ``task_token_id`` (:func:`task_token_id`) unless it was given. ``train``
and the run-reuse check (``pipeline.reuse.resolved_adapter_config``) both go through it, so the
config a run saves is the one the check rebuilds.
"""

from __future__ import annotations

from typing import Any

from peft import FourierFTConfig, LoraConfig, PeftConfig, TaskType

from ..spectral.frame import WEIGHTED_ORDER_LR
from ..tuners.flylora import FlyLoraConfig
from ..tuners.fouriermoe import FourierMoEConfig
from ..tuners.frame import FrameConfig, MoELoraConfig
from ..tuners.hmora import HMoRAConfig

METHODS = ("fouriermoe", "frame", "moelora", "flylora", "hmora", "lora", "dora", "fourierft")

DEFAULTS: dict[str, dict[str, Any]] = {
    # n_frequency: FourierMoEConfig's default (500, chosen by the study's ablation; see its docstring)
    "fouriermoe": {"num_experts": 8, "top_k": 2, "scaling": 150.0},
    # transform: FrameConfig's default ("weighted", chosen by the study's ablation; see its docstring)
    "frame": {"num_experts": 8, "top_k": 2, "r": 4, "lora_alpha": 8.0},
    "moelora": {"num_experts": 8, "top_k": 2, "r": 4, "lora_alpha": 8.0},
    # the authors' MMLU script (gfyddha/FlyLoRA scripts/run_mmlu.sh)
    "flylora": {"r": 32, "lora_alpha": 64.0, "top_k": 8},
    # the authors' run_train.sh (LiaoMengqi/HMoRA); task_token_id comes from the tokenizer
    "hmora": {"num_experts": 8, "top_k": 2, "r": 8, "lora_alpha": 8.0},
    "lora": {"r": 8, "lora_alpha": 16},
    "dora": {"r": 8, "lora_alpha": 16, "use_dora": True},
    "fourierft": {"n_frequency": 1000, "scaling": 150.0, "init_weights": True},
}

# Learning rates per parameter role (see spectral_moe.training.optim): spectra, like FourierFT's, want a far
# larger step than LoRA factors.
# FlyLoRA's and HMoRA's are their authors' (3e-4 in run_mmlu.sh, 5e-5 in run_train.sh).
DEFAULT_LR = {
    "fouriermoe": 1e-3,
    "frame": 1e-3,
    "moelora": 1e-3,
    "flylora": 3e-4,
    "hmora": 5e-5,
    "lora": 1e-3,
    "dora": 1e-3,
    "fourierft": 5e-2,
}
DEFAULT_SPECTRUM_LR = 5e-2
# FRAME orders: by default (order_lr None) every layer gets its transform's measured rate
# (spectral.frame.default_order_lr: 6e-3 for "weighted", 0.027/d for "hermite", 0.025/d for "chirp";
# results/frame_orders.md). DEFAULT_ORDER_LR is the default transform's, for code that needs one number.
DEFAULT_ORDER_LR = WEIGHTED_ORDER_LR

_CLASSES = {
    "fouriermoe": FourierMoEConfig,
    "frame": FrameConfig,
    "moelora": MoELoraConfig,
    "flylora": FlyLoraConfig,
    "hmora": HMoRAConfig,
    "lora": LoraConfig,
    "dora": LoraConfig,
    "fourierft": FourierFTConfig,
}
TASK_TOKEN = "?"  # HMoRA's task token starts as this token's input embedding (the authors')


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


def task_token_id(tokenizer: Any) -> int:
    """The id of :data:`TASK_TOKEN` (``"?"``) in ``tokenizer``: ``convert_tokens_to_ids("?")`` when ``"?"``
    is a token of its vocabulary, else the last id of ``encode("?", add_special_tokens=False)``
    (sentencepiece vocabularies spell it ``"▁?"``)."""
    token_id = tokenizer.convert_tokens_to_ids(TASK_TOKEN)
    unk = getattr(tokenizer, "unk_token_id", None)
    if isinstance(token_id, int) and token_id >= 0 and (unk is None or token_id != unk):
        return token_id
    ids = tokenizer.encode(TASK_TOKEN, add_special_tokens=False)
    if not ids:
        raise ValueError(f"the tokenizer encodes {TASK_TOKEN!r} as no token; set hmora.task_token_id=ID")
    return int(ids[-1])


def needs_tokenizer(method: str, adapter: dict[str, Any]) -> bool:
    """Whether :func:`tokenizer_options` adds anything to ``adapter`` (HMoRA without ``task_token_id``)."""
    return method == "hmora" and adapter.get("task_token_id") is None


def tokenizer_options(method: str, adapter: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """``adapter`` with the options that come from the model's tokenizer filled in: HMoRA's
    ``task_token_id`` (:func:`task_token_id`) unless given. Other methods: ``adapter`` unchanged."""
    if needs_tokenizer(method, adapter):
        return {**adapter, "task_token_id": task_token_id(tokenizer)}
    return dict(adapter)

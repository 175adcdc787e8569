"""The run configuration: every option of one training run, saved as ``run_config.json``.

:class:`RunConfig` holds the method and its adapter options, the model, the task specs and the
optimisation and evaluation settings; :meth:`RunConfig.validate` names the field and its allowed values
for a bad option. :func:`target_modules_of` gives the modules a run adapts (``q_proj, v_proj`` for
causal LMs, ``query, value`` for encoders unless ``target_modules`` is set) and :func:`load_run_tasks`
the tasks it trains and evaluates on (splits with seed 0, so every run of a task sees the same split).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..data import TaskData, load_tasks
from ..precision import check_precision
from .methods import check_method

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
    # "fp32", "bf16" (autocast: fp32 master weights, bf16 matmuls; training and evaluation) or "auto" (bf16
    # where the device runs it fast: CUDA with bf16, CPU with AMX-/AVX512-BF16); spectral_moe.precision
    precision: str = "fp32"
    # training batches of similar lengths (less padding, a seeded fixed order); opt-in until a study shows
    # it leaves accuracy unchanged (it changes which examples share a batch)
    group_by_length: bool = False

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
        check_precision(self.precision)
        if not isinstance(self.group_by_length, bool):
            raise ValueError(f"group_by_length must be true or false, got {self.group_by_length!r}")
        if not self.mix_temperature > 0:
            raise ValueError(f"mix_temperature must be > 0, got {self.mix_temperature}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown run option(s) {unknown}; known options: {sorted(known)}")
        return cls(**values)


def target_modules_of(cfg: RunConfig) -> list[str]:
    """The modules ``cfg`` adapts: ``cfg.target_modules``, else :data:`DEFAULT_TARGETS` (causal LMs) or
    :data:`ENCODER_TARGETS` (``task_type="seq_cls"``)."""
    return cfg.target_modules or (DEFAULT_TARGETS if cfg.task_type == "causal_lm" else ENCODER_TARGETS)


def load_run_tasks(cfg: RunConfig) -> list[TaskData]:
    """The tasks of ``cfg`` (``tasks``, ``max_train``, ``max_eval``), split with seed 0."""
    return load_tasks(cfg.tasks, max_train=cfg.max_train, max_eval=cfg.max_eval, seed=0)

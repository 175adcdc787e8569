"""Reusing finished runs: a run directory stands for ``train(cfg)`` only when nothing that made it changed.

:func:`reuse_mismatch` compares, in order: ``run_config.json`` (every field but ``eval_base``), the library
version (``provenance.json``, written by :func:`train_or_reuse`), ``adapter/adapter_config.json`` against
the config the library builds now (:func:`resolved_adapter_config`; bookkeeping fields left out, name
lists compared as sets) and ``splits.json`` against the splits made now (:func:`data_spec`).
:func:`train_or_reuse` returns the saved metrics when it finds nothing, else trains.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cache import atomic_write_json
from ..evaluation.runs import RECORDS_FILE
from ..training.config import load_run_tasks
from ..training.loop import run_peft_config
from ..training.methods import needs_tokenizer, tokenizer_options
from ..training.trainer import last_checkpoint
from . import run as run_module

BOOKKEEPING_FIELDS = ("base_model_name_or_path", "revision", "inference_mode", "peft_version")
# adapter_config.json fields that are sets of module names, whatever order the list is saved in
NAME_SET_FIELDS = ("target_modules", "modules_to_save", "exclude_modules")
PROVENANCE_FILE = "provenance.json"
# run options added after runs were already saved, with the value those runs trained with
OLDER_RUN_DEFAULTS = {"precision": "fp32", "group_by_length": False}


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON, sets as sorted lists (peft saves sets as lists)."""
    return json.loads(
        json.dumps(value, default=lambda v: sorted(v) if isinstance(v, (set, frozenset)) else str(v))
    )


def resolved_adapter_config(cfg) -> dict[str, Any]:
    """The ``adapter_config.json`` content ``train(cfg)`` would write now, bookkeeping fields left out.

    It is :func:`~spectral_moe.training.loop.run_peft_config` ``.to_dict()``, the config ``train`` builds
    (``modules_to_save`` set for encoders' heads), so every library default that reaches the config is in it.
    Options that come from the tokenizer (HMoRA's ``task_token_id``) are filled in from the run model's
    tokenizer by :func:`~spectral_moe.training.methods.tokenizer_options`, as ``train`` does.
    Left out (:data:`BOOKKEEPING_FIELDS`): ``base_model_name_or_path`` and ``revision`` (where the model
    came from, not what the adapter is), ``inference_mode`` (peft sets it on save) and ``peft_version``.
    """
    adapter = dict(cfg.adapter)
    if needs_tokenizer(cfg.method, adapter):
        adapter = tokenizer_options(cfg.method, adapter, load_tokenizer(cfg.model))
    peft_config = run_peft_config(cfg, adapter)
    return {k: v for k, v in peft_config.to_dict().items() if k not in BOOKKEEPING_FIELDS}


def load_tokenizer(model_name: str):
    """The tokenizer of ``model_name`` (an alias, hub id or folder) alone, as ``load_model`` loads it."""
    from transformers import AutoTokenizer

    from ..models import MODEL_ALIASES, resolve_model_path

    offline = {"local_files_only": True} if model_name.strip().lower() in MODEL_ALIASES else {}
    return AutoTokenizer.from_pretrained(resolve_model_path(model_name), **offline)


def data_spec(cfg) -> dict[str, dict]:
    """Every task's split record as ``train(cfg)`` would write it to ``splits.json`` now: tasks, split
    sizes, split salt and fractions, ``max_train``/``max_eval``, what was dropped (the tasks are loaded)."""
    return {t.name: _jsonable(t.describe()) for t in load_run_tasks(cfg)}


def library_versions() -> dict[str, str]:
    """``{"spectral_moe": ..., "peft": ..., "transformers": ..., "torch": ...}`` of this process."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    out = {"spectral_moe": __version__}
    for name in ("peft", "transformers", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover - installed with spectral-moe
            out[name] = "unknown"
    return out


def _first_difference(saved: dict, now: dict) -> str | None:
    for key in sorted(set(saved) | set(now)):
        if key not in now or key not in saved or saved[key] != now[key]:
            return f"{key}: {saved.get(key, '<absent>')!r} then, {now.get(key, '<absent>')!r} now"
    return None


def adapter_config_difference(cfg, saved: dict[str, Any]) -> str | None:
    """The first field where a saved ``adapter_config.json`` differs from :func:`resolved_adapter_config`
    of ``cfg`` (``"key: then, now"``), or ``None``. Bookkeeping fields are not compared; the name lists
    peft treats as sets (:data:`NAME_SET_FIELDS`: it saves sets in set order and extends
    ``modules_to_save`` with the classifier's names) are compared as sets."""

    def normal(config: dict[str, Any]) -> dict[str, Any]:
        config = _jsonable({k: v for k, v in config.items() if k not in BOOKKEEPING_FIELDS})
        return {
            k: sorted(set(v)) if k in NAME_SET_FIELDS and isinstance(v, list) else v
            for k, v in config.items()
        }

    return _first_difference(normal(saved), normal(resolved_adapter_config(cfg)))


def reuse_mismatch(cfg) -> str | None:
    """``None`` when the finished run in ``cfg.out`` can stand for ``train(cfg)``, else why it cannot.

    A run is reused only when all of these match what ``cfg`` gives now:

    * ``run_config.json`` (every field except ``eval_base``, which only adds the base model's scores;
      a run asked for them must have them in ``metrics.json``);
    * the library version, ``spectral_moe`` in ``provenance.json`` (written by :func:`train_or_reuse`;
      a run without it predates the check and is retrained);
    * ``adapter/adapter_config.json`` against :func:`resolved_adapter_config`, so a changed library
      default (``DEFAULTS`` in ``training/methods.py`` or a config class's field default) retrains;
    * ``splits.json`` against :func:`data_spec`: the same tasks, and for each every field the split
      record has now (extra fields the run wrote are not compared);
    * and the run has its per-example records (``predictions.json``), which paired comparisons need.
    """
    run = Path(cfg.out)
    files = {
        name: run / name
        for name in (
            "metrics.json",
            "run_config.json",
            PROVENANCE_FILE,
            "adapter/adapter_config.json",
            "splits.json",
            RECORDS_FILE,
        )
    }
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        return f"not finished or from an older harness (no {', '.join(missing)})"
    # options added later, at the value older runs trained with
    previous = {**OLDER_RUN_DEFAULTS, **json.loads(files["run_config.json"].read_text())}
    wanted = _jsonable(dataclasses.asdict(cfg))
    diff = _first_difference({**previous, "eval_base": None}, {**wanted, "eval_base": None})
    if diff:
        return f"run config differs ({diff})"
    if cfg.eval_base and "base" not in json.loads(files["metrics.json"].read_text()):
        return "base model scores asked for, and the run has none"
    saved_version = json.loads(files[PROVENANCE_FILE].read_text()).get("spectral_moe")
    if saved_version != library_versions()["spectral_moe"]:
        return f"library version differs ({saved_version!r} then, {library_versions()['spectral_moe']!r} now)"
    diff = adapter_config_difference(cfg, json.loads(files["adapter/adapter_config.json"].read_text()))
    if diff:
        return f"adapter config differs ({diff})"
    splits = json.loads(files["splits.json"].read_text())
    spec = data_spec(cfg)
    if sorted(splits) != sorted(spec):
        return f"tasks differ ({sorted(splits)} then, {sorted(spec)} now)"
    for task, record in spec.items():
        diff = _first_difference({k: splits[task].get(k, "<absent>") for k in record}, record)
        if diff:
            return f"data split of {task} differs ({diff})"
    return None


def interrupted_run(cfg) -> bool:
    """True when ``cfg.out`` holds an unfinished run of exactly ``cfg`` (the same ``run_config.json``, no
    ``metrics.json``) with a complete Trainer checkpoint: :func:`train_or_reuse` then continues it from
    that checkpoint instead of step 0 (a killed multi-hour study run loses at most ``save_steps``)."""
    run = Path(cfg.out)
    config = run / "run_config.json"
    if (run / "metrics.json").is_file() or not config.is_file():
        return False
    previous = {**OLDER_RUN_DEFAULTS, **json.loads(config.read_text())}
    if _first_difference(previous, _jsonable(dataclasses.asdict(cfg))) is not None:
        return False
    return last_checkpoint(run / "checkpoints") is not None


def train_or_reuse(cfg, log: Callable[[str], None] | None = None) -> dict:
    """The metrics of ``train(cfg)``: those of the finished run in ``cfg.out`` when
    :func:`reuse_mismatch` finds nothing changed (so an interrupted compare resumes), else a new run;
    an interrupted run of the same config continues from its last checkpoint (:func:`interrupted_run`).

    After training it writes ``provenance.json`` (library versions) next to ``metrics.json``.
    ``eval_base`` only adds the base model's scores, so which method of a compare scores the base model
    does not decide whether its runs are reused. ``log`` gets one line saying why a run that exists is
    retrained.
    """
    reason = reuse_mismatch(cfg)
    if reason is None:
        return json.loads((Path(cfg.out) / "metrics.json").read_text())
    if log is not None and (Path(cfg.out) / "metrics.json").is_file():
        log(f"retraining {cfg.out}: {reason}")
    resume = interrupted_run(cfg)
    if log is not None and resume:
        log(f"resuming {cfg.out} from its last checkpoint")
    metrics = run_module.train(
        cfg, resume=resume, progress=False
    )  # looked up at call time (tests replace it)
    if "rank" not in metrics:  # rank 0 of a multi-process run writes the run directory
        atomic_write_json(Path(cfg.out) / PROVENANCE_FILE, library_versions())
    return metrics

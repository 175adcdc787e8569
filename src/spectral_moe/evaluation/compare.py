"""``spectral-moe compare``: several methods × seeds in one harness, a markdown table and figures.

Budgets: with ``budget_params=P`` each method's size option (``n_frequency`` for FourierMoE and
FourierFT, ``r`` for LoRA, DoRA, MoE-LoRA, FRAME, FlyLoRA and HMoRA) is solved so its trainable parameter
count, routers included, is as close to ``P`` as the option allows. What is counted is what trains
(:data:`COUNT_NOTES`): FlyLoRA's frozen sparse ``A`` and its routing bias are buffers, so only its ``B``
counts; HMoRA's count includes its routers, mixing logits ``θ_l`` and task encoder; DoRA's its
magnitude vectors. Counts are exact: the adapter is built on a
meta-device copy of the model (no weights are materialised), and the count is linear in the size
option, so two builds give the solution. Each method keeps its scale convention while its size is
solved: the LoRA-like methods keep ``lora_alpha / r`` (``lora_alpha / √r`` with ``use_rslora``) by
scaling ``lora_alpha`` with ``r`` (HMoRA: ``α/√r``, rsLoRA, always; FlyLoRA also keeps its density
``top_k / r``); the Fourier methods' ``scaling`` does not depend on
``n_frequency`` and stays as it is. The results table states each method's scale and learning rates.

Adapter options: ``base_cfg.adapter`` holds options for every method that has them (``--set
adapter.r=4`` reaches LoRA, MoE-LoRA and FRAME, not FourierMoE); ``method_options`` holds one
method's own (``--set frame.transform=hermite``). See :func:`method_adapters`.

Resuming: a finished run is reused only when nothing that made it has changed (see
:func:`reuse_mismatch`): its run config, its adapter config as the library builds it now, the
library version, and its data splits as they are made now.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIZE_OPTION = {
    "fouriermoe": "n_frequency",
    "fourierft": "n_frequency",
    "lora": "r",
    "moelora": "r",
    "frame": "r",
    "flylora": "r",
    "hmora": "r",
    "dora": "r",
}
# What a method's trainable-parameter count holds beyond its size option's factors (the results table).
COUNT_NOTES = {
    "flylora": "FlyLoRA counts B only: its frozen sparse A and routing bias are buffers, not parameters",
    "hmora": "HMoRA's count includes its routers, mixing logits θ_l and task encoder",
    "dora": "DoRA's count includes its magnitude vectors (d_out per layer)",
}
# adapter_config.json fields that record where and when an adapter was made, not what it is
BOOKKEEPING_FIELDS = ("base_model_name_or_path", "revision", "inference_mode", "peft_version")
# adapter_config.json fields that are sets of module names, whatever order the list is saved in
NAME_SET_FIELDS = ("target_modules", "modules_to_save", "exclude_modules")
PROVENANCE_FILE = "provenance.json"


def count_trainable(model_name: str, method: str, targets: list[str], task_type: str, **adapter: Any) -> int:
    """Trainable parameters of ``method`` on ``model_name`` (built on the meta device)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from ..models import resolve_model_path
    from ..training.methods import build_peft_config

    config = AutoConfig.from_pretrained(resolve_model_path(model_name))
    auto = AutoModelForCausalLM if task_type == "causal_lm" else AutoModelForSequenceClassification
    with torch.device("meta"):
        model = auto.from_config(config)
    if method == "hmora" and adapter.get("task_token_id") is None:
        adapter = {
            **adapter,
            "task_token_id": 0,
        }  # which token starts the task token does not change the count
    peft_model = get_peft_model(model, build_peft_config(method, targets, task_type, **adapter))
    return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def _scale_exponent(peft_config) -> float:
    """``e`` in LoRA's ``ΔW = (lora_alpha / r^e) · B A``: 0.5 with ``use_rslora`` and for HMoRA (rsLoRA
    always), else 1."""
    from ..tuners.hmora import HMoRAConfig

    if isinstance(peft_config, HMoRAConfig):
        return 0.5
    return 0.5 if getattr(peft_config, "use_rslora", False) else 1.0


def _is_lora_like(peft_config) -> bool:
    """Scaled by ``lora_alpha / r^e`` (LoRA, MoE-LoRA, FRAME), rather than by a ``scaling`` that does not
    depend on the size option (FourierFT, FourierMoE: ``ΔW = scaling · IDFT2(F)``)."""
    return hasattr(peft_config, "lora_alpha") and hasattr(peft_config, "r")


def scale_convention(method: str, **adapter: Any) -> str:
    """How ``method``'s update is scaled with these options, for the results table.

    LoRA-like: ``α/r=2`` (``ΔW = (lora_alpha / r) · B A``; ``α/√r`` with ``use_rslora`` and HMoRA); Fourier
    methods: ``scaling=150`` (``ΔW = scaling · IDFT2(F)``); ``-`` for a method with neither.
    """
    from ..training.methods import build_peft_config

    resolved = build_peft_config(method, ["q_proj"], **adapter)
    if _is_lora_like(resolved):
        e = _scale_exponent(resolved)
        return f"α/{'√' if e == 0.5 else ''}r={resolved.lora_alpha / resolved.r**e:.4g}"
    return f"scaling={resolved.scaling:g}" if hasattr(resolved, "scaling") else "-"


def solve_budget(
    model_name: str, method: str, targets: list[str], task_type: str, budget: int, **adapter: Any
) -> dict:
    """Adapter options with the size option set so the trainable count is nearest ``budget``.

    The count is linear in the size ``s`` (``r`` or ``n_frequency``): ``c(s) = c(1) + (s − 1)·(c(2) − c(1))``,
    so ``s = max(1, round(1 + (budget − c(1)) / (c(2) − c(1))))``. The scale convention stays: for the
    LoRA-like methods ``lora_alpha`` becomes ``κ · s^e`` with ``κ = lora_alpha / r^e`` of the options as
    given (defaults filled in; ``e = 1``, or ½ with ``use_rslora`` and for HMoRA), so ``α/r`` does not
    drift with ``r``.

    FlyLoRA (``top_k <= r``): the probes use ``top_k = 1`` (its count, ``Σ d_out · r``, does not depend on
    ``k``), and the solution keeps its ratio ``ρ = k/r``: ``top_k = max(1, round(s · k0 / r0))`` with
    ``k0, r0`` of the options as given (defaults filled in).
    """
    from ..training.methods import build_peft_config

    key = SIZE_OPTION[method]
    probe = {"top_k": 1} if method == "flylora" else {}
    c1 = count_trainable(model_name, method, targets, task_type, **{**adapter, **probe, key: 1})
    c2 = count_trainable(model_name, method, targets, task_type, **{**adapter, **probe, key: 2})
    slope = c2 - c1
    size = max(1, round(1 + (budget - c1) / slope))
    solved = {**adapter, key: size}
    resolved = build_peft_config(method, targets, task_type, **adapter)
    if _is_lora_like(resolved) and key == "r":
        e = _scale_exponent(resolved)
        kappa = resolved.lora_alpha / resolved.r**e
        solved["lora_alpha"] = float(f"{kappa * size**e:.6g}")
    if method == "flylora":
        solved["top_k"] = max(1, round(size * resolved.top_k / resolved.r))
    return solved


def mean_std(values: list[float]) -> tuple[float, float]:
    """``(mean, sample std)`` of ``values``; std 0 for one value, both NaN for none."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _metric_of(task_metrics: dict) -> str:
    return "acc" if "acc" in task_metrics else "exact_match"


def macro_score(summary: dict) -> float:
    """The headline number of an ``evaluate_tasks`` summary: ``macro_acc``, else ``macro_exact_match``
    (NaN when it has neither)."""
    return summary.get("macro_acc", summary.get("macro_exact_match", float("nan")))


def adapter_options(method: str) -> frozenset[str]:
    """The option names ``method``'s peft config accepts (the fields of its config dataclass)."""
    from ..training.methods import build_peft_config

    return frozenset(f.name for f in dataclasses.fields(build_peft_config(method, ["q_proj"])))


def method_adapters(
    methods: list[str], common: dict[str, Any], method_options: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Each method's adapter options: the ``common`` options it has, updated by its own ``method_options``.

    ``common`` (``--set adapter.KEY=V``) reaches every method whose config has ``KEY``;
    ``method_options[METHOD]`` (``--set METHOD.KEY=V``) reaches ``METHOD`` only. A ``common`` option no
    method in ``methods`` has, a ``method_options`` entry for a method not in ``methods``, or an option
    that method lacks is a ``ValueError`` (nothing is silently dropped).
    """
    method_options = method_options or {}
    known = {m: adapter_options(m) for m in methods}
    unused = sorted(k for k in common if not any(k in known[m] for m in methods))
    if unused:
        raise ValueError(
            f"adapter option(s) {unused} belong to none of the methods {methods}; "
            f"give an option one of them has, e.g. {sorted(set.union(*(set(known[m]) for m in methods)))[:20]}"
        )
    for method, values in method_options.items():
        if method not in known:
            raise ValueError(f"options for method {method!r} given, but the methods compared are {methods}")
        bad = sorted(set(values) - known[method])
        if bad:
            raise ValueError(f"{method} has no option(s) {bad}; its options: {sorted(known[method])}")
    return {
        m: {**{k: v for k, v in common.items() if k in known[m]}, **method_options.get(m, {})}
        for m in methods
    }


def learning_rates(method: str, base_cfg, multiplier: float) -> dict[str, float]:
    """``method``'s main learning rates (``lr``; FourierMoE's ``spectrum_lr``; ``router_lr`` when set)
    scaled by ``multiplier``.

    Each rate starts from ``base_cfg``'s when set, else the method's default, so one sweep of multipliers
    is the same sweep for every method. FRAME's order learning rate is its own axis and is not swept:
    every run keeps ``base_cfg.order_lr`` (``None``: the library's default), so it is not in the result.
    """
    from ..training.methods import DEFAULT_LR, DEFAULT_SPECTRUM_LR

    lr = base_cfg.lr if base_cfg.lr is not None else DEFAULT_LR[method]
    out = {"lr": lr * multiplier}
    if method == "fouriermoe":
        spectrum = base_cfg.spectrum_lr if base_cfg.spectrum_lr is not None else DEFAULT_SPECTRUM_LR
        out["spectrum_lr"] = spectrum * multiplier
    if base_cfg.router_lr is not None:
        out["router_lr"] = base_cfg.router_lr * multiplier
    return out


def _best_multiplier(scores: dict[float, float]) -> float:
    """The multiplier with the highest score; ties go to the one nearest the default (×1)."""
    return max(scores, key=lambda m: (scores[m], -abs(m - 1)))


def sweep_learning_rate(
    score: Callable[[float], float], multipliers: list[float], extend: int = 0
) -> dict[float, float]:
    """``{multiplier: score(multiplier)}`` over ``multipliers``, extended past an edge that wins.

    A sweep whose best point is its smallest or largest multiplier has not bracketed the optimum.
    With ``extend=E`` such a sweep goes on, one point at a time, on the winning side: the next point
    continues the grid geometrically, ``m_min · (m_min / m_2nd)`` below or ``m_max · (m_max / m_2nd)``
    above (a single-point sweep steps by ×10), at most ``E`` points per side, stopping as soon as the
    best point is interior. The same rule applies to every method, so the sweeps stay comparable.
    """
    if not multipliers:
        raise ValueError("multipliers must not be empty")
    scores = {m: score(m) for m in sorted(set(multipliers))}
    added = {"low": 0, "high": 0}
    while True:
        grid = sorted(scores)
        best = _best_multiplier(scores)
        if best == grid[0] and added["low"] < extend:
            side, ratio = "low", (grid[0] / grid[1] if len(grid) > 1 else 0.1)
        elif best == grid[-1] and added["high"] < extend:
            side, ratio = "high", (grid[-1] / grid[-2] if len(grid) > 1 else 10.0)
        else:
            return scores
        nxt = float(f"{best * ratio:.6g}")  # 0.3 · 0.3/1 = 0.09, not 0.09000000000000001
        added[side] += 1
        scores[nxt] = score(nxt)


# --------------------------------------------------------------------------------------------
# reusing finished runs
# --------------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON, sets as sorted lists (peft saves sets as lists)."""
    return json.loads(
        json.dumps(value, default=lambda v: sorted(v) if isinstance(v, (set, frozenset)) else str(v))
    )


def resolved_adapter_config(cfg) -> dict[str, Any]:
    """The ``adapter_config.json`` content ``train(cfg)`` would write now, bookkeeping fields left out.

    It is ``build_peft_config(...).to_dict()`` on the run's targets (``modules_to_save`` set for
    encoders' heads, as ``train`` does), so every library default that reaches the config is in it.
    Options that come from the tokenizer (HMoRA's ``task_token_id``) are filled in from the run model's
    tokenizer by :func:`~spectral_moe.training.methods.tokenizer_options`, as ``train`` does.
    Left out (:data:`BOOKKEEPING_FIELDS`): ``base_model_name_or_path`` and ``revision`` (where the model
    came from, not what the adapter is), ``inference_mode`` (peft sets it on save) and ``peft_version``.
    """
    from ..training.methods import build_peft_config, needs_tokenizer, tokenizer_options
    from ..training.run import DEFAULT_TARGETS, ENCODER_TARGETS

    targets = cfg.target_modules or (DEFAULT_TARGETS if cfg.task_type == "causal_lm" else ENCODER_TARGETS)
    adapter = dict(cfg.adapter)
    if needs_tokenizer(cfg.method, adapter):
        adapter = tokenizer_options(cfg.method, adapter, load_tokenizer(cfg.model))
    peft_config = build_peft_config(cfg.method, targets, cfg.task_type, **adapter)
    if cfg.task_type == "seq_cls":
        peft_config.modules_to_save = ["classifier", "score"]
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
    from ..training.run import load_run_tasks

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
      record has now (extra fields the run wrote are not compared).
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
        )
    }
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        return f"not finished or from an older harness (no {', '.join(missing)})"
    previous = json.loads(files["run_config.json"].read_text())
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


def train_or_reuse(cfg, log: Callable[[str], None] | None = None) -> dict:
    """The metrics of ``train(cfg)``: those of the finished run in ``cfg.out`` when
    :func:`reuse_mismatch` finds nothing changed (so an interrupted compare resumes), else a new run.

    After training it writes ``provenance.json`` (library versions) next to ``metrics.json``.
    ``eval_base`` only adds the base model's scores, so which method of a compare scores the base model
    does not decide whether its runs are reused. ``log`` gets one line saying why a run that exists is
    retrained.
    """
    from ..cache import atomic_write_json
    from ..training.run import train

    reason = reuse_mismatch(cfg)
    if reason is None:
        return json.loads((Path(cfg.out) / "metrics.json").read_text())
    if log is not None and (Path(cfg.out) / "metrics.json").is_file():
        log(f"retraining {cfg.out}: {reason}")
    metrics = train(cfg, progress=False)
    if "rank" not in metrics:  # rank 0 of a multi-process run writes the run directory
        atomic_write_json(Path(cfg.out) / PROVENANCE_FILE, library_versions())
    return metrics


# --------------------------------------------------------------------------------------------
# the comparison
# --------------------------------------------------------------------------------------------
def run_compare(
    base_cfg,
    methods: list[str],
    seeds: list[int],
    out: Path,
    budget_params: int | None = None,
    lr_multipliers: list[float] | None = None,
    lr_extend: int = 0,
    method_options: dict[str, dict[str, Any]] | None = None,
) -> str:
    """Train every (method, seed), write ``results.md``, ``results.json`` and figures; return the markdown.

    Each method's adapter options are :func:`method_adapters` of ``base_cfg.adapter`` (options for every
    method that has them) and ``method_options`` (``{method: options}``). With ``lr_multipliers`` each
    method first trains at every multiplier of its main learning rates (:func:`learning_rates`; FRAME's
    order learning rate is not swept) with the first seed, scored on the validation split; the best one
    is then trained with every seed and scored on ``base_cfg.eval_split``. With ``lr_extend=E`` a sweep
    whose best multiplier is at an edge of the grid goes on past it, up to ``E`` points per side
    (:func:`sweep_learning_rate`). Finished runs are reused when nothing that made them changed
    (:func:`train_or_reuse`), so an interrupted compare resumes where it stopped.
    """
    adapters = method_adapters(methods, dict(base_cfg.adapter), method_options)
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {}
    options: dict[str, dict] = {}
    scales: dict[str, str] = {}
    rates_used: dict[str, dict[str, Any]] = {}
    sweeps: dict[str, dict[float, float]] = {}
    base_metrics = None
    for method in methods:
        adapter = adapters[method]
        if budget_params:
            from ..training.run import DEFAULT_TARGETS, ENCODER_TARGETS

            targets = base_cfg.target_modules or (
                DEFAULT_TARGETS if base_cfg.task_type == "causal_lm" else ENCODER_TARGETS
            )
            adapter = solve_budget(
                base_cfg.model, method, targets, base_cfg.task_type, budget_params, **adapter
            )
        options[method] = dict(adapter)
        scales[method] = scale_convention(method, **adapter)
        rates: dict[str, float] = {}
        if lr_multipliers:

            def score(mult: float, method: str = method, adapter: dict = adapter) -> float:
                cfg = dataclasses.replace(
                    base_cfg,
                    method=method,
                    seed=seeds[0],
                    adapter=adapter,
                    out=str(out / "sweep" / f"{method}-lr{mult:g}"),
                    eval_base=False,
                    eval_split="validation",
                    **learning_rates(method, base_cfg, mult),
                )
                return macro_score(train_or_reuse(cfg, log=print)["tuned"])

            scores = sweep_learning_rate(score, lr_multipliers, extend=lr_extend)
            sweeps[method] = scores
            best = _best_multiplier(scores)
            rates = learning_rates(method, base_cfg, best)
            options[method]["lr×"] = best
        rates_used[method] = {**learning_rates(method, base_cfg, 1.0), **rates}
        if method == "frame":
            rates_used[method]["order_lr"] = base_cfg.order_lr if base_cfg.order_lr is not None else "default"
        for seed in seeds:
            cfg = dataclasses.replace(
                base_cfg,
                method=method,
                seed=seed,
                adapter=adapter,
                out=str(out / "runs" / f"{method}-s{seed}"),
                eval_base=base_metrics is None,
                **rates,
            )
            metrics = train_or_reuse(cfg, log=print)
            if base_metrics is None:
                base_metrics = metrics.get("base")
            runs.setdefault(method, []).append(metrics)
    table = summarize(runs, base_metrics, options, scales, rates_used)
    (out / "results.json").write_text(
        json.dumps(
            {
                "runs": runs,
                "base": base_metrics,
                "options": options,
                "scale": scales,
                "learning_rates": rates_used,
                "lr_sweep": sweeps,
            },
            indent=2,
        )
    )
    figures = plot_compare(runs, base_metrics, out / "figures")
    md = "\n".join(
        [
            f"# compare: {', '.join(methods)} (seeds {', '.join(map(str, seeds))})",
            "",
            f"Model `{base_cfg.model}`, tasks `{base_cfg.tasks}`, {base_cfg.steps} steps, split `{base_cfg.eval_split}`.",
            "",
            table,
            "",
            *[f"- {COUNT_NOTES[m]}." for m in methods if m in COUNT_NOTES],
            *([""] if any(m in COUNT_NOTES for m in methods) else []),
            *_sweep_table(sweeps),
            *[f"![{p.stem}](figures/{p.name})" for p in figures],
        ]
    )
    (out / "results.md").write_text(md + "\n")
    return md


def _sweep_table(sweeps: dict[str, dict[float, float]]) -> list[str]:
    """Markdown lines: validation macro accuracy per method and learning-rate multiplier."""
    if not sweeps:
        return []
    mults = sorted({m for scores in sweeps.values() for m in scores})
    lines = [
        "Learning-rate sweep (multiplier of each method's main learning rates; FRAME's order learning "
        "rate is not swept; validation macro accuracy, first seed):",
        "",
        "| method | " + " | ".join(f"×{m:g}" for m in mults) + " |",
        "|---|" + "---|" * len(mults),
    ]
    for method, scores in sweeps.items():
        best = _best_multiplier(scores)
        cells = [
            ("**" if m == best else "") + f"{100 * scores[m]:.1f}" + ("**" if m == best else "")
            if m in scores
            else "-"
            for m in mults
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _fmt_rate(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def summarize(
    runs: dict[str, list[dict]],
    base: dict | None,
    options: dict[str, dict],
    scales: dict[str, str] | None = None,
    rates: dict[str, dict[str, Any]] | None = None,
) -> str:
    """Markdown: one row per method, mean ± std over seeds per task, macro average, params, time.

    ``scales`` (:func:`scale_convention`) and ``rates`` (``{method: {name: learning rate}}``) fill the
    ``scale`` and ``learning rates`` columns (``-`` where not given).
    """
    scales, rates = scales or {}, rates or {}
    tasks = list(next(iter(runs.values()))[0]["tuned"]["tasks"]) if runs else []
    head = ["method", "options", "scale", "learning rates", "params", *tasks, "macro", "train s", "tok/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if base:
        cells = [f"{100 * base['tasks'][t][_metric_of(base['tasks'][t])]:.1f}" for t in tasks]
        lines.append(
            "| base | - | - | - | 0 | " + " | ".join(cells) + f" | {100 * macro_score(base):.1f} | - | - |"
        )
    for method, results in runs.items():
        cells = []
        for t in tasks:
            vals = [r["tuned"]["tasks"][t][_metric_of(r["tuned"]["tasks"][t])] for r in results]
            m, s = mean_std(vals)
            cells.append(f"{100 * m:.1f} ± {100 * s:.1f}")
        m, s = mean_std([macro_score(r["tuned"]) for r in results])
        t_mean, _ = mean_std([r["train"]["train_seconds"] for r in results])
        tok = [
            r["train"]["train_tokens_per_second"] for r in results if r["train"]["train_tokens_per_second"]
        ]
        tok_mean, _ = mean_std(tok)
        opts = ", ".join(f"{k}={v}" for k, v in options.get(method, {}).items()) or "defaults"
        lrs = ", ".join(f"{k}={_fmt_rate(v)}" for k, v in rates.get(method, {}).items()) or "-"
        lines.append(
            f"| {method} | {opts} | {scales.get(method, '-')} | {lrs} | {results[0]['trainable_params']:,} | "
            + " | ".join(cells)
            + f" | {100 * m:.1f} ± {100 * s:.1f} | {t_mean:.0f} | {tok_mean:.0f} |"
        )
    return "\n".join(lines)


def plot_compare(runs: dict[str, list[dict]], base: dict | None, folder: Path) -> list[Path]:
    """Bar chart of macro accuracy per method (± std) and accuracy vs trainable parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names, means, stds, params = [], [], [], []
    for method, results in runs.items():
        m, s = mean_std([macro_score(r["tuned"]) for r in results])
        names.append(method)
        means.append(100 * m)
        stds.append(100 * s)
        params.append(results[0]["trainable_params"])
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.5))
    ax.bar(names, means, yerr=stds, capsize=4, color="tab:blue")
    if base:
        ax.axhline(100 * macro_score(base), color="gray", ls="--", label="base")
        ax.legend()
    ax.set_ylabel("macro accuracy (%)")
    ax.set_title("accuracy by method (mean ± std over seeds)")
    fig.tight_layout()
    bar = folder / "accuracy_by_method.png"
    fig.savefig(bar, dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for n, m, s, p in zip(names, means, stds, params):
        ax.errorbar([p], [m], yerr=[s], fmt="o", capsize=3, label=n)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("macro accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    scatter = folder / "accuracy_vs_params.png"
    fig.savefig(scatter, dpi=120)
    plt.close(fig)
    return [bar, scatter]

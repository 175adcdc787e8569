"""``spectral-moe compare``: several methods × seeds in one harness, a markdown table and figures.

The tables and figures are in :mod:`spectral_moe.pipeline.report`, run reuse in
:mod:`spectral_moe.pipeline.reuse`; this module sizes the methods, sweeps learning rates and runs them.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..models import resolve_model_path
from ..training.config import target_modules_of
from ..training.methods import DEFAULT_LR, DEFAULT_SPECTRUM_LR, build_peft_config
from ..tuners.hmora import HMoRAConfig
from .report import best_multiplier, macro_score, mean_std, plot_compare, summarize, sweep_table
from .reuse import (
    BOOKKEEPING_FIELDS,
    NAME_SET_FIELDS,
    PROVENANCE_FILE,
    adapter_config_difference,
    data_spec,
    library_versions,
    load_tokenizer,
    resolved_adapter_config,
    reuse_mismatch,
    train_or_reuse,
)

__all__ = [
    "BOOKKEEPING_FIELDS",
    "COUNT_NOTES",
    "NAME_SET_FIELDS",
    "PROVENANCE_FILE",
    "SIZE_OPTION",
    "adapter_config_difference",
    "adapter_options",
    "count_trainable",
    "data_spec",
    "learning_rates",
    "library_versions",
    "load_tokenizer",
    "macro_score",
    "mean_std",
    "method_adapters",
    "plot_compare",
    "resolved_adapter_config",
    "reuse_mismatch",
    "run_compare",
    "scale_convention",
    "solve_budget",
    "summarize",
    "sweep_learning_rate",
    "train_or_reuse",
]


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
def count_trainable(model_name: str, method: str, targets: list[str], task_type: str, **adapter: Any) -> int:
    """Trainable parameters of ``method`` on ``model_name`` (built on the meta device)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

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


def adapter_options(method: str) -> frozenset[str]:
    """The option names ``method``'s peft config accepts (the fields of its config dataclass)."""
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
    lr = base_cfg.lr if base_cfg.lr is not None else DEFAULT_LR[method]
    out = {"lr": lr * multiplier}
    if method == "fouriermoe":
        spectrum = base_cfg.spectrum_lr if base_cfg.spectrum_lr is not None else DEFAULT_SPECTRUM_LR
        out["spectrum_lr"] = spectrum * multiplier
    if base_cfg.router_lr is not None:
        out["router_lr"] = base_cfg.router_lr * multiplier
    return out


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
        best = best_multiplier(scores)
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
    variants: dict[str, tuple[str, dict[str, Any]]] | None = None,
    sweep_changes: dict[str, Any] | None = None,
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

    ``variants`` (``{label: (method, options)}``) names extra arms: a ``label`` in ``methods`` runs
    ``method`` with its adapter options updated by ``options`` (``"frame-hermite": ("frame",
    {"transform": "hermite"})``), sized, swept and reported under ``label`` (run directories
    ``runs/<label>-s<seed>``). ``sweep_changes`` (``{RunConfig field: value}``, e.g. ``{"max_eval": 200,
    "steps": 150}``) apply to the sweep's validation runs only: a smaller validation subset or fewer
    steps make the sweep cheaper (``max_eval`` keeps the first examples of a fixed order, so the
    training split is the same); they are saved in ``results.json`` (``sweep_changes``).
    """
    variants = variants or {}
    sweep_changes = dict(sweep_changes or {})
    bad = sorted(set(sweep_changes) - {f.name for f in dataclasses.fields(base_cfg)})
    if bad:
        raise ValueError(f"sweep_changes: {bad} are not run options")
    method_of = {label: variants[label][0] if label in variants else label for label in methods}
    by_method = method_adapters(
        list(dict.fromkeys(method_of.values())), dict(base_cfg.adapter), method_options
    )
    adapters = {
        label: {**by_method[method_of[label]], **(variants[label][1] if label in variants else {})}
        for label in methods
    }
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {}
    options: dict[str, dict] = {}
    scales: dict[str, str] = {}
    rates_used: dict[str, dict[str, Any]] = {}
    sweeps: dict[str, dict[float, float]] = {}
    base_metrics = None
    for label in methods:
        method = method_of[label]
        adapter = adapters[label]
        if budget_params:
            targets = target_modules_of(base_cfg)
            adapter = solve_budget(
                base_cfg.model, method, targets, base_cfg.task_type, budget_params, **adapter
            )
        options[label] = dict(adapter)
        scales[label] = scale_convention(method, **adapter)
        rates: dict[str, float] = {}
        if lr_multipliers:

            def score(
                mult: float, method: str = method, label: str = label, adapter: dict = adapter
            ) -> float:
                cfg = dataclasses.replace(
                    base_cfg,
                    method=method,
                    seed=seeds[0],
                    adapter=adapter,
                    out=str(out / "sweep" / f"{label}-lr{mult:g}"),
                    eval_base=False,
                    eval_split="validation",
                    **learning_rates(method, base_cfg, mult),
                    **sweep_changes,
                )
                return macro_score(train_or_reuse(cfg, log=print)["tuned"])

            scores = sweep_learning_rate(score, lr_multipliers, extend=lr_extend)
            sweeps[label] = scores
            best = best_multiplier(scores)
            rates = learning_rates(method, base_cfg, best)
            options[label]["lr×"] = best
        rates_used[label] = {**learning_rates(method, base_cfg, 1.0), **rates}
        if method == "frame":
            rates_used[label]["order_lr"] = base_cfg.order_lr if base_cfg.order_lr is not None else "default"
        for seed in seeds:
            cfg = dataclasses.replace(
                base_cfg,
                method=method,
                seed=seed,
                adapter=adapter,
                out=str(out / "runs" / f"{label}-s{seed}"),
                eval_base=base_metrics is None,
                **rates,
            )
            metrics = train_or_reuse(cfg, log=print)
            if base_metrics is None:
                base_metrics = metrics.get("base")
            runs.setdefault(label, []).append(metrics)
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
                "sweep_changes": sweep_changes,
                "variants": {k: [m, o] for k, (m, o) in variants.items() if k in methods},
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
            *[f"- {COUNT_NOTES[m]}." for m in dict.fromkeys(method_of.values()) if m in COUNT_NOTES],
            *([""] if any(m in COUNT_NOTES for m in method_of.values()) else []),
            *[f"- {k}: {m} with {o}." for k, (m, o) in variants.items() if k in methods],
            *([f"- sweep runs changed {sweep_changes}.", ""] if sweep_changes else []),
            *sweep_table(sweeps),
            *[f"![{p.stem}](figures/{p.name})" for p in figures],
        ]
    )
    (out / "results.md").write_text(md + "\n")
    return md

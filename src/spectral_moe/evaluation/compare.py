"""``spectral-moe compare``: several methods × seeds in one harness, a markdown table and figures.

Budgets: with ``budget_params=P`` each method's size option (``n_frequency`` for FourierMoE and
FourierFT, ``r`` for LoRA, MoE-LoRA and FRAME) is solved so its trainable parameter count, routers
included, is as close to ``P`` as the option allows. Counts are exact: the adapter is built on a
meta-device copy of the model (no weights are materialised), and the count is linear in the size
option, so two builds give the solution.
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
}


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
    peft_model = get_peft_model(model, build_peft_config(method, targets, task_type, **adapter))
    return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def solve_budget(
    model_name: str, method: str, targets: list[str], task_type: str, budget: int, **adapter: Any
) -> dict:
    """Adapter options with the size option set so the trainable count is nearest ``budget``."""
    key = SIZE_OPTION[method]
    c1 = count_trainable(model_name, method, targets, task_type, **{**adapter, key: 1})
    c2 = count_trainable(model_name, method, targets, task_type, **{**adapter, key: 2})
    slope = c2 - c1
    size = max(1, round(1 + (budget - c1) / slope))
    return {**adapter, key: size}


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _metric_of(task_metrics: dict) -> str:
    return "acc" if "acc" in task_metrics else "exact_match"


def learning_rates(method: str, base_cfg, multiplier: float) -> dict[str, float]:
    """Every learning rate of ``method`` (main, spectrum, order, router) scaled by ``multiplier``.

    Each method's rates start from ``base_cfg``'s when set, else the method's defaults, so one sweep of
    multipliers is the same sweep for every method.
    """
    from ..training.methods import DEFAULT_LR, DEFAULT_ORDER_LR, DEFAULT_SPECTRUM_LR

    lr = base_cfg.lr if base_cfg.lr is not None else DEFAULT_LR[method]
    out = {"lr": lr * multiplier}
    if method == "fouriermoe":
        spectrum = base_cfg.spectrum_lr if base_cfg.spectrum_lr is not None else DEFAULT_SPECTRUM_LR
        out["spectrum_lr"] = spectrum * multiplier
    if method == "frame":
        order = base_cfg.order_lr if base_cfg.order_lr is not None else DEFAULT_ORDER_LR
        out["order_lr"] = order * multiplier
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


def _train_or_reuse(cfg) -> dict:
    """``train(cfg)``, or the metrics of a finished run with the same config in ``cfg.out`` (resume).

    ``eval_base`` only adds the base model's scores to the metrics, so it does not make a run
    different: a finished run with otherwise the same config is reused, unless ``cfg`` asks for the
    base scores and the run has none (then it is retrained). Which method of a compare scores the
    base model therefore does not decide whether its runs are reused.
    """
    from ..training.run import train

    run = Path(cfg.out)
    done, saved = run / "metrics.json", run / "run_config.json"
    if done.is_file() and saved.is_file():
        previous, wanted = json.loads(saved.read_text()), dataclasses.asdict(cfg)
        metrics = json.loads(done.read_text())
        same = {**previous, "eval_base": None} == {**wanted, "eval_base": None}
        if same and (not cfg.eval_base or "base" in metrics):
            return metrics
    return train(cfg, progress=False)


def _macro(metrics: dict) -> float:
    return metrics.get("macro_acc", metrics.get("macro_exact_match", float("nan")))


def run_compare(
    base_cfg,
    methods: list[str],
    seeds: list[int],
    out: Path,
    budget_params: int | None = None,
    lr_multipliers: list[float] | None = None,
    lr_extend: int = 0,
) -> str:
    """Train every (method, seed), write ``results.md``, ``results.json`` and figures; return the markdown.

    With ``lr_multipliers`` each method first trains at every multiplier of its learning rates
    (:func:`learning_rates`) with the first seed, scored on the validation split; the best one is
    then trained with every seed and scored on ``base_cfg.eval_split``. With ``lr_extend=E`` a sweep
    whose best multiplier is at an edge of the grid goes on past it, up to ``E`` points per side
    (:func:`sweep_learning_rate`). Finished runs (same config,
    ``metrics.json`` present) are reused, so an interrupted compare resumes where it stopped.
    """
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {}
    options: dict[str, dict] = {}
    sweeps: dict[str, dict[float, float]] = {}
    base_metrics = None
    for method in methods:
        adapter = dict(base_cfg.adapter) if method == base_cfg.method else {}
        if budget_params:
            from ..training.run import DEFAULT_TARGETS, ENCODER_TARGETS

            targets = base_cfg.target_modules or (
                DEFAULT_TARGETS if base_cfg.task_type == "causal_lm" else ENCODER_TARGETS
            )
            adapter = solve_budget(
                base_cfg.model, method, targets, base_cfg.task_type, budget_params, **adapter
            )
        options[method] = dict(adapter)
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
                return _macro(_train_or_reuse(cfg)["tuned"])

            scores = sweep_learning_rate(score, lr_multipliers, extend=lr_extend)
            sweeps[method] = scores
            best = _best_multiplier(scores)
            rates = learning_rates(method, base_cfg, best)
            options[method]["lr×"] = best
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
            metrics = _train_or_reuse(cfg)
            if base_metrics is None:
                base_metrics = metrics.get("base")
            runs.setdefault(method, []).append(metrics)
    table = summarize(runs, base_metrics, options)
    (out / "results.json").write_text(
        json.dumps({"runs": runs, "base": base_metrics, "options": options, "lr_sweep": sweeps}, indent=2)
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
        "Learning-rate sweep (multiplier of each method's default rates; validation macro accuracy, "
        "first seed):",
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


def summarize(runs: dict[str, list[dict]], base: dict | None, options: dict[str, dict]) -> str:
    """Markdown: one row per method, mean ± std over seeds per task, macro average, params, time."""
    tasks = list(next(iter(runs.values()))[0]["tuned"]["tasks"]) if runs else []
    head = ["method", "options", "params", *tasks, "macro", "train s", "tok/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if base:
        cells = [f"{100 * base['tasks'][t][_metric_of(base['tasks'][t])]:.1f}" for t in tasks]
        macro = base.get("macro_acc", base.get("macro_exact_match"))
        lines.append("| base | - | 0 | " + " | ".join(cells) + f" | {100 * macro:.1f} | - | - |")
    for method, results in runs.items():
        cells = []
        for t in tasks:
            vals = [r["tuned"]["tasks"][t][_metric_of(r["tuned"]["tasks"][t])] for r in results]
            m, s = _mean_std(vals)
            cells.append(f"{100 * m:.1f} ± {100 * s:.1f}")
        macro_vals = [r["tuned"].get("macro_acc", r["tuned"].get("macro_exact_match")) for r in results]
        m, s = _mean_std(macro_vals)
        t_mean, _ = _mean_std([r["train"]["train_seconds"] for r in results])
        tok = [
            r["train"]["train_tokens_per_second"] for r in results if r["train"]["train_tokens_per_second"]
        ]
        tok_mean, _ = _mean_std(tok)
        opts = ", ".join(f"{k}={v}" for k, v in options.get(method, {}).items()) or "defaults"
        lines.append(
            f"| {method} | {opts} | {results[0]['trainable_params']:,} | "
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
        vals = [r["tuned"].get("macro_acc", r["tuned"].get("macro_exact_match")) for r in results]
        m, s = _mean_std(vals)
        names.append(method)
        means.append(100 * m)
        stds.append(100 * s)
        params.append(results[0]["trainable_params"])
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.5))
    ax.bar(names, means, yerr=stds, capsize=4, color="tab:blue")
    if base:
        ax.axhline(
            100 * base.get("macro_acc", base.get("macro_exact_match", 0)), color="gray", ls="--", label="base"
        )
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

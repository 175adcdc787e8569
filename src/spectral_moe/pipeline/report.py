"""The results of a compare as a markdown table and figures (mean ± sample std over seeds); the
per-example hit matrices of finished runs and paired-bootstrap intervals between methods.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..analysis.bootstrap import BootstrapResult, paired_bootstrap
from ..evaluation.runs import load_records


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


def best_multiplier(scores: dict[float, float]) -> float:
    """The multiplier with the highest score; ties go to the one nearest the default (×1)."""
    return max(scores, key=lambda m: (scores[m], -abs(m - 1)))


def sweep_table(sweeps: dict[str, dict[float, float]]) -> list[str]:
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
        best = best_multiplier(scores)
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


# --------------------------------------------------------------------------------------------
# per-example records: hit matrices and paired bootstrap intervals
# --------------------------------------------------------------------------------------------
HitMatrices = dict[str, tuple[list[str], list[list[int]]]]


def hit_matrices(
    run_dirs: Sequence[str | Path], metric: str = "acc", which: str = "tuned"
) -> HitMatrices | None:
    """``{task: (uids, hits)}`` of finished runs (one row of ``hits`` per run, one column per example, in
    the runs' shared example order) from their ``predictions.json``; ``None`` when any run has no
    records (an older run, or one not finished). Runs whose examples differ raise ``ValueError``."""
    out: HitMatrices = {}
    for run in run_dirs:
        records = load_records(run, which)
        if records is None:
            return None
        if out and sorted(records) != sorted(out):
            raise ValueError(f"{run}: tasks {sorted(records)}, the other runs have {sorted(out)}")
        for task, rec in records.items():
            if task not in out:
                out[task] = (list(rec["uid"]), [])
            if rec["uid"] != out[task][0]:
                raise ValueError(f"{run}: the examples of {task} differ from the other runs'")
            out[task][1].append([int(v) for v in rec[metric]])
    return out or None


def paired_hits(
    a: HitMatrices, b: HitMatrices
) -> tuple[dict[str, list[list[int]]], dict[str, list[list[int]]]]:
    """The hit matrices of ``a`` and ``b`` restricted to the examples both scored, in ``a``'s order
    (paired by uid); a task either lacks, or one without a shared example, is left out."""
    pa, pb = {}, {}
    for task in sorted(set(a) & set(b)):
        ua, ha = a[task]
        ub, hb = b[task]
        where = {u: i for i, u in enumerate(ub)}
        keep = [(i, where[u]) for i, u in enumerate(ua) if u in where]
        if not keep:
            continue
        pa[task] = [[row[i] for i, _ in keep] for row in ha]
        pb[task] = [[row[j] for _, j in keep] for row in hb]
    return pa, pb


def bootstrap_difference(
    a: HitMatrices, b: HitMatrices, *, n_resamples: int = 10_000, seeds: str = "resample", rng: int = 0
) -> BootstrapResult:
    """:func:`~spectral_moe.analysis.bootstrap.paired_bootstrap` of ``a − b`` on the examples both scored."""
    import numpy as np

    pa, pb = paired_hits(a, b)
    if not pa:
        raise ValueError("the two methods share no scored example")
    return paired_bootstrap(
        {t: np.asarray(v) for t, v in pa.items()},
        {t: np.asarray(v) for t, v in pb.items()},
        n_resamples=n_resamples,
        seeds=seeds,
        rng=rng,
    )


def ci_cell(result: BootstrapResult) -> str:
    """``+1.2 [+0.3, +2.1]`` (points) with ``**resolved**`` when the interval excludes 0."""
    text = f"{100 * result.difference:+.1f} [{100 * result.low:+.1f}, {100 * result.high:+.1f}]"
    return f"{text} **resolved**" if result.resolved else text

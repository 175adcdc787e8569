"""The commonsense study of issue 18: eight methods on ``suite:commonsense``, ablations, and the report with
paired-bootstrap confidence intervals. Every run is resumable; every command is logged and reported.

Each run is one ``spectral_moe.pipeline.train`` in its own directory (under ``--out``, default
``runs/commonsense_study``, kept out of git); a finished run is reused when nothing that made it changed
(``spectral_moe.pipeline.reuse.reuse_mismatch``), so any command can be stopped and run again and goes
on where it stopped. Each run keeps its per-example hits (``predictions.json``), which the report pairs.

    # main comparison: base + 8 methods at one trainable-parameter count (±10 %, checked before anything
    # trains; see budget_of), learning rate swept on validation (first seed), then 3 seeds on test
    OMP_NUM_THREADS=1 python benchmarks/commonsense_study.py main
    #   + FRAME with the hermite / chirp transform (orders learned):
    OMP_NUM_THREADS=1 python benchmarks/commonsense_study.py main --methods frame-hermite,frame-chirp

    # ablations of FourierMoE and FRAME (2 seeds each; needs main's sweep for the learning rates)
    OMP_NUM_THREADS=1 python benchmarks/commonsense_study.py ablations [--only fm-real,frame-fixed]

    # results/commonsense_study_tables.md from whatever has finished
    python benchmarks/commonsense_study.py report

Sizing (:data:`SIZING`; each has a flag): ``smollm2-135m``, the 8 tasks of ``suite:commonsense`` mixed
with temperature 2 (the library default), ``q_proj, v_proj`` adapted for every method, 300 optimizer
steps of 16 sequences, at most 1000 training examples per task, the first 1000 test examples per task
(all of them where fewer: openbookqa has 500), prompts of up to 384 tokens (1.4 % of boolq's cut, no
other task's), ``bf16`` autocast for training and evaluation (recorded per run in ``metrics.json``).
The learning-rate sweep multiplies each method's main learning rates (``lr``; FourierMoE's
``spectrum_lr`` too; FRAME's order learning rate stays at its default) by 0.3, 1 and 3, one more point
past a winning edge (``--lr-extend 1``), scored on the first 200 validation examples per task
(``--sweep-max-eval``) after the same number of steps (``--sweep-steps`` to change it).

A tiny smoke run (minutes): ``--steps 2 --max-eval 4 --max-train 8 --seeds 0 --methods lora,fouriermoe
--lr-sweep 1,3 --lr-extend 0 --sweep-max-eval 4 --out /tmp/cs``; ``report --out /tmp/cs --tables
/tmp/cs/tables.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

from spectral_moe.pipeline.compare import (
    count_trainable,
    macro_score,
    mean_std,
    run_compare,
    solve_budget,
    train_or_reuse,
)
from spectral_moe.pipeline.report import (
    best_multiplier,
    bootstrap_difference,
    ci_cell,
    hit_matrices,
    sweep_table,
)
from spectral_moe.training.config import RunConfig, target_modules_of

ROOT = Path(__file__).resolve().parent.parent
METHODS = ["lora", "dora", "fourierft", "moelora", "flylora", "hmora", "fouriermoe", "frame"]
BASELINES = ["lora", "dora", "fourierft", "moelora", "flylora", "hmora"]
# optional arms of the main comparison: FRAME with the other transforms, orders learned (their default
# is fixed orders, spectral_moe.tuners.frame.FrameConfig)
VARIANTS: dict[str, tuple[str, dict]] = {
    f"frame-{t}": ("frame", {"transform": t, "learn_order": True}) for t in ("hermite", "chirp")
}
SIZING = dict(
    model="smollm2-135m",
    tasks="suite:commonsense",
    task_type="causal_lm",
    steps=300,
    batch_size=16,
    max_train=1000,
    max_eval=1000,
    max_length=384,
    precision="bf16",
    eval_batch_size=16,
)
SIZE_FLAGS = ("model", "tasks", "steps", "batch_size", "max_train", "max_eval", "max_length", "precision")
LR_GRID = "0.3,1,3"
SWEEP_MAX_EVAL = 200
BUDGET_TOLERANCE = 0.10
N_RESAMPLES = 10_000


def ablation_arms(fm_n: int) -> dict[str, tuple[str, dict]]:
    """Ablation name -> (method, the options changed from the main comparison's run of that method).

    FourierMoE (reference: its main run, ``n_frequency=fm_n``): real coefficients, uniform bands, the
    spectral router features, and ``n_frequency`` at half and twice ``fm_n``. FRAME (reference: its main
    run, the library's default transform with learned orders): fixed orders, and the hermite / chirp
    transforms with learned orders.
    """
    return {
        "fm-real": ("fouriermoe", {"complex_coefficients": False}),
        "fm-uniform": ("fouriermoe", {"band_layout": "uniform"}),
        "fm-spectral-router": ("fouriermoe", {"router_features": "spectral"}),
        "fm-n-half": ("fouriermoe", {"n_frequency": fm_n // 2}),
        "fm-n-double": ("fouriermoe", {"n_frequency": 2 * fm_n}),
        "frame-fixed": ("frame", {"learn_order": False}),
        "frame-hermite": ("frame", {"transform": "hermite", "learn_order": True}),
        "frame-chirp": ("frame", {"transform": "chirp", "learn_order": True}),
    }


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------
def log_command(out: Path, argv: list[str]) -> None:
    """Append this command line (with the time) to ``<out>/commands.log``; the report prints them."""
    out.mkdir(parents=True, exist_ok=True)
    line = "python benchmarks/commonsense_study.py " + " ".join(shlex.quote(a) for a in argv)
    with open(out / "commands.log", "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\t{line}\n")


def base_config(args: argparse.Namespace, out: Path) -> RunConfig:
    values = dict(SIZING)
    for key in SIZE_FLAGS:
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    return RunConfig(method="fouriermoe", out=str(out), logging_steps=10, save_steps=50, **values)


def budget_of(cfg: RunConfig, args: argparse.Namespace, labels: list[str]) -> int:
    """``--budget``, else the smallest count every method in ``labels`` can be sized to: FourierMoE's
    trainable parameters at its defaults, raised to the largest count any method has at size 1 (HMoRA's
    task encoder alone is ~2.7M on smollm2-135m, so its r=1 sets the budget there)."""
    if args.budget:
        return args.budget
    from spectral_moe.pipeline.compare import SIZE_OPTION

    targets = target_modules_of(cfg)
    floor = count_trainable(cfg.model, "fouriermoe", targets, cfg.task_type)
    for label in labels:
        method, options = VARIANTS.get(label, (label, {}))
        smallest = {**options, SIZE_OPTION[method]: 1, **({"top_k": 1} if method == "flylora" else {})}
        floor = max(floor, count_trainable(cfg.model, method, targets, cfg.task_type, **smallest))
    return floor


def solved_adapters(cfg: RunConfig, labels: list[str], budget: int) -> dict[str, tuple[dict, int]]:
    """``{label: (adapter options, trainable count)}`` as ``run_compare`` will size them; ``SystemExit``
    when a count is off ``budget`` by more than :data:`BUDGET_TOLERANCE` (nothing trains then)."""
    targets = target_modules_of(cfg)
    out, bad = {}, []
    for label in labels:
        method, options = VARIANTS.get(label, (label, {}))
        adapter = solve_budget(cfg.model, method, targets, cfg.task_type, budget, **options)
        count = count_trainable(cfg.model, method, targets, cfg.task_type, **adapter)
        out[label] = (adapter, count)
        print(f"  {label}: {count:,} trainable ({count / budget - 1:+.1%}) with {adapter}", flush=True)
        if abs(count / budget - 1) > BUDGET_TOLERANCE:
            bad.append(label)
    if bad:
        raise SystemExit(f"trainable parameters of {bad} are off the budget {budget:,} by more than ±10 %")
    return out


def write_budget(path: Path, budget: int, solved: dict[str, tuple[dict, int]]) -> None:
    """Record the budget and each method's sizing in ``budget.json``, keeping the methods an earlier
    ``main`` with the same budget recorded (``main`` may be split over processes by ``--methods``, each
    with the same ``--budget``); another budget starts the file afresh."""
    record = json.loads(path.read_text()) if path.is_file() else {}
    if record.get("budget") != budget:
        record = {}
    record.update({"budget": budget, **{k: {"adapter": a, "count": c} for k, (a, c) in solved.items()}})
    path.write_text(json.dumps(record))


def cmd_main(args: argparse.Namespace) -> None:
    root = Path(args.out)
    log_command(root, args.argv)
    labels = args.methods.split(",")
    unknown = sorted(set(labels) - set(METHODS) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; known: {METHODS + list(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = root / "main"
    cfg = base_config(args, out)
    budget = budget_of(cfg, args, labels)
    print(f"== main: budget {budget:,} trainable parameters (±10 %), targets {target_modules_of(cfg)}")
    solved = solved_adapters(cfg, labels, budget)
    out.mkdir(parents=True, exist_ok=True)
    write_budget(out / "budget.json", budget, solved)
    changes: dict = {"max_eval": args.sweep_max_eval}
    if args.sweep_steps:
        changes["steps"] = args.sweep_steps
    mults = [float(m) for m in args.lr_sweep.split(",")] if args.lr_sweep else None
    run_compare(
        cfg,
        labels,
        seeds,
        out,
        budget_params=budget,
        lr_multipliers=mults,
        lr_extend=args.lr_extend,
        variants={k: v for k, v in VARIANTS.items() if k in labels},
        sweep_changes=changes,
    )


def _main_choice(root: Path, method: str, args: argparse.Namespace) -> tuple[dict, float]:
    """The main comparison's adapter options and learning-rate multiplier of ``method`` (``budget.json``
    and the sweep's best multiplier from the finished sweep runs; ``--lr-mult`` overrides the latter)."""
    budget_file = root / "main" / "budget.json"
    if not budget_file.is_file() or method not in json.loads(budget_file.read_text()):
        raise SystemExit(
            f"run `main` with {method} first: the ablations start from its options ({budget_file})"
        )
    adapter = json.loads(budget_file.read_text())[method]["adapter"]
    if args.lr_mult is not None:
        return adapter, args.lr_mult
    scores = _sweep_scores(root / "main", method)
    if not scores:
        raise SystemExit(
            f"{method}'s learning-rate sweep has not finished; run `main` first or give --lr-mult"
        )
    return adapter, best_multiplier(scores)


def _reference_run(root: Path, cfg: RunConfig, method: str, seed: int) -> Path:
    """The main comparison's run of ``method`` at ``seed`` when it is the same run as ``cfg`` (all but its
    directory), else ``<root>/ablations/<method>-ref-s<seed>`` (trained there)."""
    from spectral_moe.pipeline.reuse import reuse_mismatch

    main_run = root / "main" / "runs" / f"{method}-s{seed}"
    if reuse_mismatch(dataclasses.replace(cfg, out=str(main_run))) is None:
        return main_run
    ref = root / "ablations" / f"{method}-ref-s{seed}"
    print(f"== {method} seed {seed}: main run not reusable as the reference; training {ref}", flush=True)
    train_or_reuse(dataclasses.replace(cfg, out=str(ref)), log=print)
    return ref


def cmd_ablations(args: argparse.Namespace) -> None:
    from spectral_moe.pipeline.compare import learning_rates

    root = Path(args.out)
    log_command(root, args.argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = base_config(args, root / "ablations")
    names = args.only.split(",") if args.only else list(ablation_arms(1))
    unknown = sorted(set(names) - set(ablation_arms(1)))
    if unknown:
        raise SystemExit(f"unknown ablation(s) {unknown}; known: {sorted(ablation_arms(1))}")
    methods = sorted({ablation_arms(1)[n][0] for n in names})
    choice = {m: _main_choice(root, m, args) for m in methods}
    arms = ablation_arms(int(choice["fouriermoe"][0]["n_frequency"]) if "fouriermoe" in choice else 1)
    refs: dict[str, list[str]] = {}
    for method in methods:
        adapter, mult = choice[method]
        cfg = dataclasses.replace(
            base, method=method, adapter=adapter, eval_base=False, **learning_rates(method, base, mult)
        )
        refs[method] = [str(_reference_run(root, dataclasses.replace(cfg, seed=s), method, s)) for s in seeds]
    for name in names:
        method, change = arms[name]
        adapter, mult = choice[method]
        for seed in seeds:
            cfg = dataclasses.replace(
                base,
                method=method,
                seed=seed,
                adapter={**adapter, **change},
                out=str(root / "ablations" / f"{name}-s{seed}"),
                eval_base=False,
                **learning_rates(method, base, mult),
            )
            print(f"== ablation {name} seed {seed}", flush=True)
            train_or_reuse(cfg, log=print)
    (root / "ablations").mkdir(parents=True, exist_ok=True)
    (root / "ablations" / "arms.json").write_text(
        json.dumps({"arms": {n: arms[n] for n in names}, "references": refs, "seeds": seeds}, indent=1)
    )


# --------------------------------------------------------------------------------------------
# cost: step and evaluation time at study sizing
# --------------------------------------------------------------------------------------------
def cmd_measure(args: argparse.Namespace) -> None:
    """Per method: ``--steps`` optimizer steps at study sizing (budget-matched, the study's batch, length
    and precision) through the real harness (``pipeline.run.train``), the median time of steps 2.. (the
    first holds one-off allocations), and the tuned model's evaluation time per 100 test examples on
    ``--max-eval`` examples per task (the mix of tasks the study evaluates). Wall and process-CPU time
    (with one thread the CPU time is the time the run needs a core for; wall time grows with other load).
    Methods run one after the other in this process; the load is printed (``/proc/loadavg``)."""
    import statistics

    from transformers import TrainerCallback

    from spectral_moe.pipeline import run as run_module

    class StepTimer(TrainerCallback):
        """Wall and process-CPU time at each step's start and end, and at the end of training (one
        thread: the process's CPU time is its time on a core, much less sensitive to other load)."""

        def __init__(self) -> None:
            self.marks: list[tuple[float, float]] = []
            self.train_end: tuple[float, float] | None = None

        def on_step_begin(self, *a, **k):
            self.marks.append((time.perf_counter(), time.process_time()))

        def on_step_end(self, *a, **k):
            self.marks.append((time.perf_counter(), time.process_time()))

        def on_train_end(self, *a, **k):
            self.train_end = (time.perf_counter(), time.process_time())

    root = Path(args.out)
    log_command(root, args.argv)
    labels = args.methods.split(",")
    cfg = base_config(args, root / "measure")
    budget = budget_of(cfg, args, labels)
    solved = solved_adapters(cfg, labels, budget)
    rows = []
    for label in labels:
        method = VARIANTS.get(label, (label, {}))[0]
        timer = StepTimer()
        run_cfg = dataclasses.replace(
            cfg, method=method, adapter=solved[label][0], out=str(root / "measure" / label), eval_base=False
        )
        load = open("/proc/loadavg").read().split()[0]
        metrics = run_module.train(run_cfg, progress=False, log=print, callbacks=[timer])
        done = (time.perf_counter(), time.process_time())
        pairs = [(timer.marks[i], timer.marks[i + 1]) for i in range(0, len(timer.marks) - 1, 2)]
        wall = [e[0] - b[0] for b, e in pairs]
        cpu = [e[1] - b[1] for b, e in pairs]
        n_eval = sum(t["n"] for t in metrics["tuned"]["tasks"].values())
        rows.append(
            {
                "method": label,
                "params": metrics["trainable_params"],
                "step_wall_s": statistics.median(wall[1:] or wall),
                "step_cpu_s": statistics.median(cpu[1:] or cpu),
                "steps_wall_s": [round(x, 2) for x in wall],
                "steps_cpu_s": [round(x, 2) for x in cpu],
                "eval_wall_s_per_100": 100 * metrics["eval_seconds"] / max(n_eval, 1),
                # CPU time after training: the evaluation, the adapter save and the figure
                "eval_cpu_s_per_100": 100 * (done[1] - timer.train_end[1]) / max(n_eval, 1),
                "n_eval": n_eval,
                "precision": metrics["precision"]["resolved"],
                "load_before": load,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        (root / "measure.json").write_text(json.dumps(rows, indent=1))
    print(
        "| method | trainable | step CPU s | step wall s | eval CPU s / 100 ex | eval wall s / 100 ex "
        "| n eval | precision | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['params']:,} | {r['step_cpu_s']:.1f} | {r['step_wall_s']:.1f} | "
            f"{r['eval_cpu_s_per_100']:.1f} | {r['eval_wall_s_per_100']:.1f} | {r['n_eval']} | "
            f"{r['precision']} | {r['load_before']} |"
        )
    print("load after:", open("/proc/loadavg").read().strip())


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------
def _finished(folder: Path, pattern: str) -> list[Path]:
    return sorted(p.parent for p in folder.glob(f"{pattern}/metrics.json"))


def _sweep_scores(main: Path, label: str) -> dict[float, float]:
    scores = {}
    for run in _finished(main / "sweep", f"{label}-lr*"):
        mult = float(run.name[len(label) + 3 :])
        scores[mult] = macro_score(json.loads((run / "metrics.json").read_text())["tuned"])
    return scores


def _metrics(runs: list[Path]) -> list[dict]:
    return [json.loads((r / "metrics.json").read_text()) for r in runs]


def _pm(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def _rates(run: Path) -> str:
    cfg = json.loads((run / "run_config.json").read_text())
    return ", ".join(
        f"{k}={cfg[k]:.3g}" for k in ("lr", "spectrum_lr", "router_lr") if cfg.get(k) is not None
    )


def main_tables(root: Path, resamples: int) -> list[str]:
    main = root / "main"
    labels = [m for m in METHODS + list(VARIANTS) if _finished(main / "runs", f"{m}-s*")]
    if not labels:
        return ["No main-comparison run has finished yet.", ""]
    runs = {m: _finished(main / "runs", f"{m}-s*") for m in labels}
    results = {m: _metrics(r) for m, r in runs.items()}
    base_run = next((r for m in labels for r, x in zip(runs[m], results[m]) if "base" in x), None)
    base = json.loads((base_run / "metrics.json").read_text())["base"] if base_run else None
    tasks = list(results[labels[0]][0]["tuned"]["tasks"])
    head = ["method", "seeds", "trainable params", "learning rates", *tasks, "macro acc", "macro acc_norm"]
    lines = [
        "## Main comparison (test split, acc, mean ± std over seeds)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    if base:
        cells = [f"{100 * base['tasks'][t]['acc']:.1f}" for t in tasks]
        lines.append(
            f"| base | - | 0 | - | {' | '.join(cells)} | {100 * base['macro_acc']:.1f} | "
            f"{100 * base.get('macro_acc_norm', float('nan')):.1f} |"
        )
    for m in labels:
        res = results[m]
        cells = [_pm([r["tuned"]["tasks"][t]["acc"] for r in res]) for t in tasks]
        lines.append(
            f"| {m} | {len(res)} | {res[0]['trainable_params']:,} | {_rates(runs[m][0])} | {' | '.join(cells)} | "
            f"{_pm([r['tuned']['macro_acc'] for r in res])} | {_pm([r['tuned'].get('macro_acc_norm', float('nan')) for r in res])} |"
        )
    precisions = sorted(
        {str(r.get("precision", {}).get("resolved", "fp32 (older run)")) for x in results.values() for r in x}
    )
    lines += ["", f"Precision (resolved, per run's metrics.json): {', '.join(precisions)}.", ""]
    budget_file = main / "budget.json"
    if budget_file.is_file():
        budget = json.loads(budget_file.read_text())
        lines += [
            f"Budget: {budget['budget']:,} trainable parameters (FourierMoE's at its defaults, or the largest "
            "count any method has at size 1 where that is more); counts include "
            "routers, HMoRA's task encoder and DoRA's magnitudes; FlyLoRA's frozen A is a buffer. Sizes: "
            + "; ".join(
                f"{k} {v['count']:,} ({v['count'] / budget['budget'] - 1:+.1%}, {v['adapter']})"
                for k, v in budget.items()
                if k != "budget"
            ),
            "",
        ]
    sweeps = {m: _sweep_scores(main, m) for m in labels}
    lines += sweep_table({m: s for m, s in sweeps.items() if s})
    lines += _bootstrap_lines(labels, runs, results, base_run, resamples)
    return lines


def _bootstrap_lines(labels, runs, results, base_run, resamples) -> list[str]:
    finished_baselines = [m for m in BASELINES if m in labels]
    if not finished_baselines:
        return ["No baseline has finished yet: no bootstrap intervals.", ""]
    best = max(finished_baselines, key=lambda m: mean_std([r["tuned"]["macro_acc"] for r in results[m]])[0])
    ref = hit_matrices(runs[best])
    if ref is None:
        return [
            f"The best baseline ({best}) has runs without per-example records: no bootstrap intervals.",
            "",
        ]
    lines = [
        f"### Macro-accuracy difference to the best baseline ({best}, by macro mean), paired bootstrap",
        "",
        f"95 % percentile interval over {resamples:,} replicates; each replicate resamples the test examples "
        "within each task (the same draw for both methods: paired by example) and the seeds (paired by seed "
        "when both have the same number, independent for the base model's single evaluation). Points of "
        "macro acc; **resolved** = the interval excludes 0.",
        "",
        "| method | Δ macro acc [95 % CI] | resolved |",
        "|---|---|---|",
    ]
    arms = [(m, runs[m], "tuned") for m in labels if m != best]
    if base_run is not None:
        arms.insert(0, ("base", [base_run], "base"))
    for name, dirs, which in arms:
        hits = hit_matrices(dirs, which=which)
        if hits is None:
            lines.append(f"| {name} | no per-example records | - |")
            continue
        res = bootstrap_difference(hits, ref, n_resamples=resamples)
        lines.append(f"| {name} | {ci_cell(res)} | {'yes' if res.resolved else 'no'} |")
    return [*lines, ""]


def ablation_tables(root: Path, resamples: int) -> list[str]:
    arms_file = root / "ablations" / "arms.json"
    if not arms_file.is_file():
        return []
    saved = json.loads(arms_file.read_text())
    lines = [
        "## Ablations (test split; Δ = arm − its method's main run, same seeds, paired bootstrap 95 % CI)",
        "",
        "| ablation | method | change | seeds | trainable params | macro acc | per seed | Δ macro acc [95 % CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, (method, change) in saved["arms"].items():
        dirs = _finished(root / "ablations", f"{name}-s*")
        if not dirs:
            continue
        res = _metrics(dirs)
        seeds = [r["seed"] for r in res]
        refs = [Path(p) for p in saved["references"][method] if (Path(p) / "metrics.json").is_file()]
        refs = [p for p in refs if json.loads((p / "metrics.json").read_text())["seed"] in seeds]
        cell = "-"
        a, b = hit_matrices(dirs), hit_matrices(refs) if refs else None
        if a is not None and b is not None and len(refs) == len(dirs):
            cell = ci_cell(bootstrap_difference(a, b, n_resamples=resamples))
        per_seed = ", ".join(f"{100 * r['tuned']['macro_acc']:.1f}" for r in res)
        lines.append(
            f"| {name} | {method} | {change} | {len(res)} | {res[0]['trainable_params']:,} | "
            f"{_pm([r['tuned']['macro_acc'] for r in res])} | {per_seed} | {cell} |"
        )
    return [*lines, ""]


def cmd_report(args: argparse.Namespace) -> None:
    root = Path(args.out)
    lines = [
        "# Commonsense study: tables (generated by `python benchmarks/commonsense_study.py report`)",
        "",
        f"Run directories: `{root}`. `results/commonsense_study.md` has the plan and discusses these.",
        "",
        *main_tables(root, args.resamples),
        *ablation_tables(root, args.resamples),
        "## Commands run (from commands.log)",
        "",
    ]
    log = root / "commands.log"
    entries = log.read_text().splitlines() if log.is_file() else []
    lines += [f"    {e}" for e in entries] or ["(none logged)"]
    target = Path(args.tables)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
    print(target)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("main", "ablations", "report", "measure"):
        p = sub.add_parser(name)
        p.add_argument("--out", default=str(ROOT / "runs" / "commonsense_study"))
        if name == "report":
            p.add_argument("--tables", default=str(ROOT / "results" / "commonsense_study_tables.md"))
            p.add_argument("--resamples", type=int, default=N_RESAMPLES)
            continue
        p.add_argument("--seeds", default="0,1,2" if name == "main" else "0,1")
        for key in SIZE_FLAGS:
            kind = str if key in ("model", "tasks", "precision") else int
            p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=kind, help=f"default {SIZING[key]}")
        p.add_argument(
            "--budget",
            type=int,
            help="trainable parameters (default: FourierMoE's at its defaults, or the largest count any "
            "method has at size 1 where that is more)",
        )
        if name in ("main", "measure"):
            p.add_argument("--methods", default=",".join(METHODS))
        if name == "main":
            p.add_argument("--lr-sweep", default=LR_GRID, help="learning-rate multipliers ('' for none)")
            p.add_argument("--lr-extend", type=int, default=1, help="points tried past a winning grid edge")
            p.add_argument(
                "--sweep-max-eval", type=int, default=SWEEP_MAX_EVAL, help="validation examples/task"
            )
            p.add_argument("--sweep-steps", type=int, help="steps of the sweep runs (default: --steps)")
        elif name == "ablations":
            p.add_argument("--only", help="comma list of ablation names")
            p.add_argument("--lr-mult", type=float, help="learning-rate multiplier (default: main's sweep)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    args.argv = argv
    commands = {"main": cmd_main, "ablations": cmd_ablations, "report": cmd_report, "measure": cmd_measure}
    commands[args.cmd](args)


if __name__ == "__main__":
    main()

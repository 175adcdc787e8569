"""The evidence for issue 6: main comparisons, ablations and the study report, all resumable.

Every run is one ``spectral_moe.pipeline.train`` call in its own directory; a finished run is
reused when nothing that made it changed (run config, adapter config as built now, library version,
data splits: ``spectral_moe.pipeline.reuse.reuse_mismatch``), so each command can be interrupted
and run again.

    # main comparison: 5 methods at matched trainable parameters, learning-rate sweep on validation
    # (extended past a winning edge with --lr-extend), then every seed on test (spectral-moe compare
    # under the hood); results/study.md has the exact sizing flags of each recorded run
    python benchmarks/study.py main --setting llm --seeds 0,1,2 --lr-sweep 0.3,1,3 --lr-extend 2 --out results/study
    python benchmarks/study.py main --setting encoder-multi --seeds 0,1,2 --lr-sweep 0.3,1,3 --out results/study
    python benchmarks/study.py main --setting encoder-single --seeds 0,1,2 --lr-sweep 0.3,1,3 --lr-extend 2 \
        --out results/study [--single-tasks bigbench:strategyqa]

    # ablations on the LLM setting (each variant x seeds); --only picks some by name
    python benchmarks/study.py ablations --seeds 0,1 --out results/study [--only fm-real,frame-chirp]

    # results/study_tables.md from whatever has finished (results/study.md discusses them)
    python benchmarks/study.py report --out results/study

    # analyze the LLM FourierMoE/FRAME runs and collect every figure into results/figures/
    python benchmarks/study.py figures --out results/study

``--steps``, ``--max-train``, ``--max-eval`` and ``--batch-size`` size the runs (CPU runs are slow:
see the defaults per setting below).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from spectral_moe.pipeline.compare import (
    count_trainable,
    macro_score,
    mean_std,
    run_compare,
    train_or_reuse,
)
from spectral_moe.training.config import RunConfig

METHODS = ["lora", "fourierft", "moelora", "fouriermoe", "frame"]

# the classification tasks of suite:core (encoders get one head per task)
ENCODER_TASKS = [
    "bigbench:vitaminc_fact_verification",
    "bigbench:strategyqa",
    "bigbench:multiemo/hotels_text_en",
    "bigbench:multiemo/medicine_text_en",
    "bigbench:multiemo/products_text_en",
    "bigbench:multiemo/reviews_text_en",
]
SINGLE_TASKS = ENCODER_TASKS[:3]

SETTINGS = {
    "llm": dict(
        model="smollm2-135m",
        tasks="suite:core",
        task_type="causal_lm",
        steps=60,
        batch_size=8,
        max_train=200,
        max_eval=30,
        max_length=160,
    ),
    "encoder-multi": dict(
        model="minilm-l6",
        tasks=",".join(ENCODER_TASKS),
        task_type="seq_cls",
        steps=150,
        batch_size=16,
        max_train=400,
        max_eval=100,
        max_length=128,
    ),
    "encoder-single": dict(
        model="minilm-l6", task_type="seq_cls", steps=100, batch_size=16, max_train=400, max_eval=100
    ),
}

# ablation name -> (method, adapter options); the LLM setting, every other option at its default
# FourierMoE's reference is n_frequency=250, its default when the study ran (the study then made 500
# the default), so every FourierMoE variant states n explicitly.
_N = {"n_frequency": 250}
ABLATIONS: dict[str, tuple[str, dict]] = {
    **{f"fm-n{n}": ("fouriermoe", {"n_frequency": n}) for n in (62, 125, 250, 500)},
    "fm-real": ("fouriermoe", {**_N, "complex_coefficients": False}),
    "fm-uniform": ("fouriermoe", {**_N, "band_layout": "uniform"}),
    "fm-spectral-router": ("fouriermoe", {**_N, "router_features": "spectral"}),
    **{f"fm-top{k}": ("fouriermoe", {**_N, "top_k": k}) for k in (1, 4)},
    **{f"fm-experts{z}": ("fouriermoe", {**_N, "num_experts": z}) for z in (2, 4, 16)},
    # FRAME's reference is the hermite transform, the harness default when the study ran; the study
    # then made "weighted" the default (FrameConfig), so every FRAME variant names its transform.
    **{f"frame-{t}": ("frame", {"transform": t}) for t in ("hermite", "chirp", "weighted")},
    "frame-fixed0": ("frame", {"transform": "hermite", "learn_order": False, "order_init": 0.0}),
    "frame-fixed1": ("frame", {"transform": "hermite", "learn_order": False, "order_init": 1.0}),
    # ×0.1 and ×10 the order learning rate of 1e-2, the one default for every transform when the study
    # ran; the default is now each transform's measured rate (order_lr None: optim.create_optimizer), so
    # these two state theirs as numbers ("__order_lr": RunConfig.order_lr, not an adapter option)
    "frame-orderlr0.1": ("frame", {"transform": "hermite", "__order_lr": 1e-3}),
    "frame-orderlr10": ("frame", {"transform": "hermite", "__order_lr": 1e-1}),
}
REFERENCE = {"fouriermoe": "fm-n250", "frame": "frame-hermite"}


def base_config(setting: str, args: argparse.Namespace, out: Path, tasks: str | None = None) -> RunConfig:
    values = dict(SETTINGS[setting])
    if tasks:
        values["tasks"] = tasks
    for key in ("steps", "max_train", "max_eval", "batch_size", "max_length"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    return RunConfig(method="fouriermoe", out=str(out), logging_steps=10, save_steps=10_000, **values)


def fouriermoe_budget(cfg: RunConfig) -> int:
    """Trainable parameters of FourierMoE's defaults on this setting: the budget every method matches."""
    from spectral_moe.training.config import DEFAULT_TARGETS, ENCODER_TARGETS

    targets = DEFAULT_TARGETS if cfg.task_type == "causal_lm" else ENCODER_TARGETS
    return count_trainable(cfg.model, "fouriermoe", targets, cfg.task_type)


def cmd_main(args: argparse.Namespace) -> None:
    seeds = [int(s) for s in args.seeds.split(",")]
    mults = [float(m) for m in args.lr_sweep.split(",")] if args.lr_sweep else None
    methods = args.methods.split(",")
    root = Path(args.out)
    groups = [(args.setting, None)]
    if args.setting == "encoder-single":
        chosen = args.single_tasks.split(",") if args.single_tasks else SINGLE_TASKS
        unknown = sorted(set(chosen) - set(SINGLE_TASKS))
        if unknown:
            raise SystemExit(f"unknown single task(s) {unknown}; known: {SINGLE_TASKS}")
        groups = [(f"encoder-single/{t.split(':', 1)[1].replace('/', '_')}", t) for t in chosen]
    for name, tasks in groups:
        out = root / name
        cfg = base_config(args.setting, args, out, tasks)
        budget = args.budget or fouriermoe_budget(cfg)
        print(f"== {name}: budget {budget:,} trainable parameters", flush=True)
        run_compare(
            cfg, methods, seeds, out, budget_params=budget, lr_multipliers=mults, lr_extend=args.lr_extend
        )


def cmd_ablations(args: argparse.Namespace) -> None:
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.only.split(",") if args.only else list(ABLATIONS)
    unknown = sorted(set(names) - set(ABLATIONS))
    if unknown:
        raise SystemExit(f"unknown ablation(s) {unknown}; known: {sorted(ABLATIONS)}")
    root = Path(args.out) / "ablations"
    base = base_config("llm", args, root)
    for name in names:
        method, options = ABLATIONS[name]
        options = dict(options)
        extra = {"order_lr": options.pop("__order_lr")} if "__order_lr" in options else {}
        for seed in seeds:
            cfg = dataclasses.replace(
                base,
                method=method,
                seed=seed,
                adapter=options,
                out=str(root / f"{name}-s{seed}"),
                eval_base=False,
                **extra,
            )
            print(f"== ablation {name} seed {seed}", flush=True)
            train_or_reuse(cfg, log=print)


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    mean, std = mean_std(values)
    return f"{100 * mean:.1f} ± {100 * std:.1f} (n={len(values)})"


def _ablation_scores(root: Path, name: str) -> tuple[dict[int, float], dict[int, float], int | None]:
    """``({seed: macro acc}, {seed: macro exact match}, trainable params)`` of one ablation's finished runs."""
    acc, em, params = {}, {}, None
    for path in sorted((root / "ablations").glob(f"{name}-s*/metrics.json")):
        result = json.loads(path.read_text())
        seed = int(path.parent.name.rsplit("-s", 1)[1])
        acc[seed] = macro_score(result["tuned"])
        if "macro_exact_match" in result["tuned"]:
            em[seed] = result["tuned"]["macro_exact_match"]
        params = result["trainable_params"]
    return acc, em, params


def ablation_table(root: Path) -> list[str]:
    """Markdown table of the finished ablations.

    ``Δ acc`` is the mean over the seeds both have of (variant − its method's reference run,
    :data:`REFERENCE`), in points: the runs of one seed share data order and initialisation of
    everything the option leaves alone, so the paired difference is less noisy than the difference
    of the two means.
    """
    rows = []
    for name, (method, options) in ABLATIONS.items():
        acc, em, params = _ablation_scores(root, name)
        if not acc:
            continue
        default = REFERENCE[method]
        base_acc = _ablation_scores(root, default)[0]
        paired = [acc[s] - base_acc[s] for s in sorted(acc) if s in base_acc]
        delta = "-" if name == default or not paired else f"{100 * sum(paired) / len(paired):+.1f}"
        per_seed = ", ".join(f"{100 * acc[s]:.1f}" for s in sorted(acc))
        opts = (
            ", ".join(f"order_lr={v:g}" if k == "__order_lr" else f"{k}={v}" for k, v in options.items())
            or "defaults"
        )
        rows.append(
            f"| {name} | {method} | {opts} | {params:,} | {_fmt(list(acc.values()))} | {per_seed} | {delta} | "
            f"{_fmt(list(em.values()))} |"
        )
    if not rows:
        return []
    return [
        "## Ablations (LLM setting; test split, mean ± std over seeds)",
        "",
        "| ablation | method | options | params | macro acc | per seed | Δ acc vs reference (paired) | "
        "macro exact match (arithmetic) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def cmd_report(args: argparse.Namespace) -> None:
    root = Path(args.out)
    lines = ["# Study results (generated by `python benchmarks/study.py report`)", ""]
    for md in sorted(root.glob("**/results.md")):
        rel = md.relative_to(root.parent)
        text = md.read_text().replace("](figures/", f"]({md.parent.relative_to(root.parent)}/figures/")
        lines += [f"## {md.parent.relative_to(root)} (from `{rel}`)", "", *text.splitlines()[1:], ""]
    lines += ablation_table(root)
    target = root.parent / "study_tables.md"
    target.write_text("\n".join(lines) + "\n")
    print(target)


def cmd_figures(args: argparse.Namespace) -> None:
    """``spectral-moe analyze`` on the LLM setting's seed-0 FourierMoE and FRAME runs (reused when a run
    was analyzed already, unless ``--force``), then every figure the issue asks for copied to
    ``results/figures/`` under one flat naming scheme."""
    import shutil

    from spectral_moe.analysis.figures import analyze_run

    root = Path(args.out)
    dest = root.parent / "figures"
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for method in ("fouriermoe", "frame"):
        run = root / "llm" / "runs" / f"{method}-s0"
        if not (run / "metrics.json").is_file():
            print(f"skipping {method}: {run} has not finished")
            continue
        done = (run / "figures" / "expert_load.json").is_file() and not args.force
        paths = (
            sorted((run / "figures").glob("*.png"))
            if done
            else analyze_run(run, max_examples=args.max_examples)
        )
        for path in paths:
            target = dest / f"llm_{method}_{path.name}"
            shutil.copyfile(path, target)
            copied.append(target)
    for setting in sorted(p.parent.parent for p in root.glob("**/figures/accuracy_vs_params.png")):
        if setting.parent.name in ("runs", "sweep"):
            continue
        tag = str(setting.relative_to(root)).replace("/", "_")
        for name in ("accuracy_vs_params.png", "accuracy_by_method.png"):
            if (setting / "figures" / name).is_file():
                target = dest / f"{tag}_{name}"
                shutil.copyfile(setting / "figures" / name, target)
                copied.append(target)
    print("\n".join(str(p) for p in copied))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("main", "ablations", "report", "figures"):
        p = sub.add_parser(name)
        p.add_argument("--out", default="results/study")
        if name == "figures":
            p.add_argument("--max-examples", type=int, default=8, help="examples per task for analyze")
            p.add_argument("--force", action="store_true", help="re-analyze runs already analyzed")
        if name in ("report", "figures"):
            continue
        p.add_argument("--seeds", default="0,1,2" if name == "main" else "0,1")
        for key in ("steps", "max_train", "max_eval", "batch_size", "max_length"):
            p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=int)
        if name == "main":
            p.add_argument("--setting", choices=list(SETTINGS), required=True)
            p.add_argument("--methods", default=",".join(METHODS))
            p.add_argument("--lr-sweep", default="0.3,1,3")
            p.add_argument(
                "--lr-extend", type=int, default=0, help="points tried past a winning grid edge, per side"
            )
            p.add_argument("--budget", type=int, help="trainable parameters (default: FourierMoE's)")
            p.add_argument("--single-tasks", help="encoder-single: comma list of tasks (default: all three)")
        else:
            p.add_argument("--only", help="comma list of ablation names")
    args = ap.parse_args()
    {"main": cmd_main, "ablations": cmd_ablations, "report": cmd_report, "figures": cmd_figures}[args.cmd](
        args
    )


if __name__ == "__main__":
    main()

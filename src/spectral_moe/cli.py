"""``spectral-moe`` command line: train, eval, compare, analyze, demo.

Every wrong option value ends in one line on stderr (``spectral-moe: error: ...``) and exit code 2;
nothing is written for a run that fails validation. ``--debug`` (before or after the command) or the
environment variable ``SPECTRAL_MOE_DEBUG=1`` also prints the full traceback behind that line.

``--set`` takes run options (``lr=1e-3``), method options for every method that has them
(``adapter.r=4``) and one method's own options (``frame.transform=hermite``).

One cohesive module (over 400 lines): the command line, i.e. its parser, one ``cmd_*`` per command and
the option checks that turn a bad value into one line; the work itself is in :mod:`spectral_moe.pipeline`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .training.methods import METHODS


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def _parse_value(text: str) -> Any:
    """``--set`` values: JSON when it parses (numbers, true/false, lists), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _apply_sets(
    values: dict[str, Any], sets: list[str], per_method: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """``--set`` items into run options ``values``: ``KEY=V`` a run option, ``adapter.KEY=V`` a method
    option, ``METHOD.KEY=V`` (``frame.transform=hermite``) one method's option, into ``per_method``."""
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CliError(f"--set takes key=value, got {item!r}")
        value = _parse_value(raw)
        prefix, dot, option = key.partition(".")
        if dot and not option:
            raise CliError(f"--set {item!r}: no option name after {prefix + '.'!r}")
        if prefix == "adapter" and dot:
            values.setdefault("adapter", {})[option] = value
        elif prefix in METHODS and dot:
            per_method.setdefault(prefix, {})[option] = value
        else:
            values[key] = value
    return values


def _load_config_file(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as err:
        raise CliError(f"config file {path} does not exist") from err
    except yaml.YAMLError as err:
        raise CliError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise CliError(f"config file {path} must hold a mapping of run options")
    return data


def _run_config(args: argparse.Namespace, per_method: dict[str, dict[str, Any]] | None = None, **fixed: Any):
    """The run config of the command line. ``METHOD.KEY=V`` sets go into ``per_method`` when it is given
    (compare); otherwise (train) they must name the method trained and join its adapter options."""
    from .training.config import RunConfig

    values = _load_config_file(getattr(args, "config", None))
    for key in ("method", "model", "tasks", "steps", "seed", "out", "on_nan"):
        value = getattr(args, key, None)
        if value is not None:
            values[key] = value
    values.update(fixed)
    own: dict[str, dict[str, Any]] = {} if per_method is None else per_method
    values = _apply_sets(values, getattr(args, "set", None) or [], own)
    try:
        cfg = RunConfig.from_dict(values)
        cfg.validate()
    except (TypeError, ValueError) as err:
        raise CliError(str(err)) from err
    if per_method is None and own:
        others = sorted(set(own) - {cfg.method})
        if others:
            raise CliError(
                f"--set {others[0]}.KEY applies to method {others[0]!r}, but this run trains {cfg.method!r} "
                f"(use adapter.KEY or {cfg.method}.KEY)"
            )
        cfg.adapter = {**cfg.adapter, **own.get(cfg.method, {})}
    return cfg


def _check_out_dir(path: str) -> None:
    """The nearest existing ancestor must be a writable directory."""
    import os

    probe = Path(path).absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise CliError(f"output directory {path} is not writable (choose another --out)")


def _check_model(name: str) -> None:
    """A built-in alias, a GGUF file, a local model folder, or something shaped like a hub id (``org/name``)."""
    from .models import MODEL_ALIASES, inspect_gguf, is_gguf_path

    if name.strip().lower() in MODEL_ALIASES:
        return
    path = Path(name).expanduser()
    if is_gguf_path(name):
        if not path.is_file():
            raise CliError(f"GGUF file {name} not found; pass --model with an existing .gguf file")
        try:
            inspect_gguf(path)  # header only: a truncated or foreign file fails before anything is written
        except ValueError as err:
            raise CliError(str(err)) from err
        return
    if path.exists():
        if not (path / "config.json").is_file():
            raise CliError(f"{name} is not a model folder (no config.json); pass a save_pretrained() folder")
        return
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
        raise CliError(
            f"model {name!r} not found: no such folder, and not a built-in model "
            f"({', '.join(MODEL_ALIASES)}); pass --model with one of those or a local model folder"
        )


def _check_tasks(spec: str) -> None:
    from .data import resolve_tasks

    try:
        names = resolve_tasks(spec)
    except ValueError as err:
        raise CliError(str(err)) from err
    for name in names:
        if name.startswith("jsonl:") and not Path(name[len("jsonl:") :]).expanduser().is_file():
            raise CliError(
                f"jsonl task file not found: {name[len('jsonl:') :]} (give an existing .jsonl path)"
            )


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from .pipeline.run import train

    cfg = _run_config(args)
    _check_out_dir(cfg.out)
    _check_model(cfg.model)
    _check_tasks(cfg.tasks)
    metrics = train(cfg, resume=args.resume, progress=not args.quiet)
    if "rank" in metrics:  # a non-zero rank of a multi-process run: rank 0 reports
        return 0
    print(format_metrics_table(metrics))
    print(f"run directory: {cfg.out}")
    return 0


def _run_tasks(run_dir: str | None) -> str:
    """The task spec a run directory was trained on (``suite:core`` without one)."""
    if run_dir is None:
        return "suite:core"
    return json.loads((Path(run_dir) / "run_config.json").read_text())["tasks"]


def _check_code_execution(spec: str, allow: bool | None) -> None:
    """Code tasks need the opt-in before anything is loaded: a one-line error naming how to give it."""
    from .data import resolve_tasks
    from .data.registry import needs_code_execution
    from .evaluation.code import CodeExecutionNotAllowed, require_code_execution

    if needs_code_execution(resolve_tasks(spec)):
        try:
            require_code_execution(allow)
        except CodeExecutionNotAllowed as err:
            raise CliError(str(err)) from err


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation.runs import evaluate_run

    if bool(args.run_dir) == bool(args.base):
        raise CliError("give either RUN_DIR or --base MODEL")
    if args.run_dir and not (Path(args.run_dir) / "run_config.json").is_file():
        raise CliError(f"{args.run_dir} is not a run directory (no run_config.json)")
    if args.tasks:
        _check_tasks(args.tasks)
    allow = True if args.allow_code_execution else None  # None: $SPECTRAL_MOE_ALLOW_CODE_EVAL decides
    _check_code_execution(args.tasks or _run_tasks(args.run_dir), allow)
    result = evaluate_run(
        run_dir=args.run_dir,
        base_model=args.base,
        tasks=args.tasks,
        split=args.split,
        max_eval=args.max_eval,
        task_type=args.task_type,
        allow_code_execution=allow,
        precision=args.precision,
    )
    print(json.dumps(result, indent=2))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .pipeline.compare import method_adapters, run_compare

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise CliError(f"--methods must be a comma list of {list(METHODS)}, got {args.methods!r}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError as err:
        raise CliError(f"--seeds must be a comma list of integers, got {args.seeds!r}") from err
    per_method: dict[str, dict[str, Any]] = {}
    base_cfg = _run_config(args, per_method, method=methods[0], out=str(Path(args.out) / "runs"))
    try:
        method_adapters(methods, base_cfg.adapter, per_method)
    except ValueError as err:
        raise CliError(str(err)) from err
    _check_out_dir(args.out)
    _check_tasks(base_cfg.tasks)
    try:
        mults = [float(m) for m in args.lr_sweep.split(",")] if args.lr_sweep else None
    except ValueError as err:
        raise CliError(f"--lr-sweep must be a comma list of numbers, got {args.lr_sweep!r}") from err
    if mults and not all(m > 0 for m in mults):
        raise CliError(f"--lr-sweep multipliers must be > 0, got {args.lr_sweep!r}")
    if args.lr_extend < 0:
        raise CliError(f"--lr-extend must be >= 0, got {args.lr_extend}")
    if args.lr_extend and not mults:
        raise CliError("--lr-extend needs --lr-sweep")
    report = run_compare(
        base_cfg,
        methods,
        seeds,
        Path(args.out),
        budget_params=args.budget_params,
        lr_multipliers=mults,
        lr_extend=args.lr_extend,
        method_options=per_method,
    )
    print(report)
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis.figures import analyze_run

    if not (Path(args.run_dir) / "run_config.json").is_file():
        raise CliError(f"{args.run_dir} is not a run directory (no run_config.json)")
    paths = analyze_run(Path(args.run_dir), max_examples=args.max_examples)
    for p in paths:
        print(p)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .pipeline.demo import demo_config
    from .pipeline.run import train

    cfg = demo_config(out=args.out, steps=args.steps, max_eval=args.max_eval)
    _check_out_dir(cfg.out)
    t0 = time.time()
    metrics = train(cfg, progress=not args.quiet)
    print()
    print(format_metrics_table(metrics))
    print(
        f"\ntrainable parameters: {metrics['trainable_params']:,}; training {metrics['train']['train_seconds']:.0f} s, "
        f"evaluation {metrics['eval_seconds']:.0f} s (tuned), total {time.time() - t0:.0f} s"
    )
    print(f"run directory: {cfg.out}")
    return 0


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """Per-task base vs tuned accuracy (acc / acc_norm / exact_match) as a markdown table."""
    tuned = metrics.get("tuned", {}).get("tasks", {})
    base = metrics.get("base", {}).get("tasks", {})
    lines = ["| task | metric | base | tuned |", "|---|---|---|---|"]

    def fmt(v):
        return "-" if v is None else f"{100 * v:.1f}"

    for task, m in tuned.items():
        for metric in ("acc", "exact_match"):
            if metric in m:
                lines.append(
                    f"| {task} | {metric} | {fmt(base.get(task, {}).get(metric))} | {fmt(m.get(metric))} |"
                )
    for metric in ("acc", "acc_norm", "exact_match"):
        key = f"macro_{metric}"
        if key in metrics.get("tuned", {}):
            lines.append(
                f"| **macro** | {metric} | {fmt(metrics.get('base', {}).get(key))} | {fmt(metrics['tuned'][key])} |"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_run_options(p: argparse.ArgumentParser, with_method: bool = True) -> None:
    if with_method:
        p.add_argument("--method", choices=METHODS, help="adapter to train (default fouriermoe)")
    p.add_argument("--model", help="smollm2-135m (default), minilm-l6, a hub id or a local path")
    p.add_argument("--tasks", help="task specs, e.g. suite:core or bigbench:social_iqa,gsm8k or jsonl:FILE")
    p.add_argument("--steps", type=int, help="optimizer steps (default 100)")
    p.add_argument("--config", help="YAML file of run options (RunConfig fields)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a run option (e.g. lr=1e-3, batch_size=4), a method option for every method that has "
        "it (adapter.n_frequency=500) or one method's option (frame.transform=hermite)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


DEBUG_ENV = "SPECTRAL_MOE_DEBUG"
_DEBUG_HELP = f"on an error, print the full traceback as well as the one-line message (or set {DEBUG_ENV}=1)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spectral-moe", description="Spectral mixture-of-experts fine-tuning.")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    # each command takes --debug too; SUPPRESS keeps a subcommand from resetting the top-level flag
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", parents=[common], help="fine-tune one method on tasks and evaluate it")
    _add_run_options(p)
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--out", help="run directory (default runs/run)")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument(
        "--on-nan",
        choices=["stop", "skip"],
        help="non-finite loss: stop (default; keeps the last good checkpoint) or skip that step",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", parents=[common], help="evaluate a run directory or a base model")
    p.add_argument("run_dir", nargs="?", help="a run directory written by train")
    p.add_argument("--base", help="evaluate this base model without adaptation")
    p.add_argument("--tasks", help="task specs (default: the run's tasks, or suite:core)")
    p.add_argument("--split", choices=["validation", "test"], default="test")
    p.add_argument("--max-eval", type=int, help="examples per task (default: the run's, else 50)")
    p.add_argument("--task-type", choices=["causal_lm", "seq_cls"], default="causal_lm")
    p.add_argument(
        "--allow-code-execution",
        action="store_true",
        help="run generated programs of code tasks (humaneval, mbpp) in the sandbox; required for them",
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "auto"],
        help="scoring precision: bf16 autocast, fp32, or auto (bf16 where fast); default the run's, else fp32",
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "compare", parents=[common], help="train several methods and seeds; markdown table + bar chart"
    )
    p.add_argument("--methods", required=True, help=f"comma list of {', '.join(METHODS)}")
    p.add_argument("--seeds", default="0", help="comma list of seeds (default 0)")
    p.add_argument("--budget-params", type=int, help="match every method's trainable parameters to this")
    p.add_argument(
        "--lr-sweep",
        help="comma list of learning-rate multipliers (e.g. 0.3,1,3) tried per method on the validation "
        "split with the first seed; the best is used for all seeds",
    )
    p.add_argument(
        "--lr-extend",
        type=int,
        default=0,
        help="when a sweep's best multiplier is at the grid's edge, try up to this many more points "
        "past it, continuing the grid geometrically (default 0: the grid as given)",
    )
    p.add_argument("--out", required=True, help="results directory")
    _add_run_options(p, with_method=False)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "analyze", parents=[common], help="figures of a run: expert load, orders, spectra, training curve"
    )
    p.add_argument("run_dir")
    p.add_argument("--max-examples", type=int, default=20, help="examples per task for the load figures")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "demo", parents=[common], help="the README's main job: FourierMoE on smollm2-135m over suite:core"
    )
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--max-eval", type=int, default=20, help="test examples per task (default 20)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def debug_enabled(args: argparse.Namespace) -> bool:
    """``--debug`` given, or ``SPECTRAL_MOE_DEBUG`` set to anything but ``""``, ``0``, ``false``, ``no``."""
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return bool(getattr(args, "debug", False)) or env not in ("", "0", "false", "no")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as err:
        if debug_enabled(args):
            traceback.print_exc(file=sys.stderr)
        print(f"spectral-moe {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError) as err:  # OSError: files, permissions, model loading
        if debug_enabled(args):
            traceback.print_exc(file=sys.stderr)
        message = " ".join(str(err).split())  # one line, whatever the library wrote
        if isinstance(err, OSError) and "huggingface.co" in message:
            message = (
                f"could not load the model from the Hugging Face Hub ({message[:200]}); use a built-in "
                "model (smollm2-135m, minilm-l6) or a local model folder"
            )
        print(f"spectral-moe {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_parser", "format_metrics_table", "main"]

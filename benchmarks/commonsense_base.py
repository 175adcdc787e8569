"""Zero-shot accuracy of a base model on the full test splits of ``suite:commonsense``, resumable.

Scores each task's test split in chunks of ``--chunk`` examples with the library's own
log-likelihood scorer (``spectral_moe.evaluation.scoring.score_multiple_choice``: acc and
length-normalised acc_norm, BOS first, the run-independent ``max_length``), and writes after every
chunk ``<out>/<task>.json`` with the per-example correctness (so a later study can pair examples in a
bootstrap) and the running totals. A killed run resumes at the next unscored chunk. ``report``
writes the markdown table with 95 % binomial intervals.

    python benchmarks/commonsense_base.py run [--model smollm2-135m] [--tasks oe:openbookqa,...]
    python benchmarks/commonsense_base.py report            # -> results/commonsense_base_table.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "results" / "commonsense_base"


def _atomic_write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def run(model_name: str, tasks: list[str], out: Path, chunk: int, batch_size: int, max_length: int) -> None:
    import torch

    from spectral_moe.data import load_tasks
    from spectral_moe.evaluation.scoring import score_multiple_choice
    from spectral_moe.models import load_model

    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_model(model_name, "causal_lm")
    model.eval()
    for task in load_tasks(tasks):
        path = out / f"{task.name.replace(':', '_')}.json"
        state = json.loads(path.read_text()) if path.exists() else None
        if state is None or state.get("model") != model_name or state.get("n_test") != len(task.test):
            state = {
                "model": model_name,
                "task": task.name,
                "n_test": len(task.test),
                "hit": [],
                "hit_norm": [],
            }
            state["seconds"] = 0.0
        done = len(state["hit"])
        while done < len(task.test):
            t0 = time.time()
            part = task.test[done : done + chunk]
            with torch.inference_mode():
                _, results = score_multiple_choice(model, tokenizer, part, batch_size, max_length)
            state["hit"] += [int(r.pred == r.label) for r in results]
            state["hit_norm"] += [int(r.pred_norm(ex.choices) == r.label) for r, ex in zip(results, part)]
            state["seconds"] += time.time() - t0
            done = len(state["hit"])
            _atomic_write(path, state)
            print(f"{task.name}: {done}/{len(task.test)} ({state['seconds']:.0f} s)", flush=True)


def _interval(hits: list[int]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % normal-approximation binomial interval, in points."""
    n = len(hits)
    p = sum(hits) / n
    return 100 * p, 100 * 1.96 * math.sqrt(p * (1 - p) / n)


def report(out: Path, dest: Path) -> str:
    rows = ["| task | n scored / test | acc | acc_norm | examples/s |", "|---|---|---|---|---|"]
    for path in sorted(out.glob("*.json")):
        s = json.loads(path.read_text())
        if not s["hit"]:
            continue
        acc, acc_ci = _interval(s["hit"])
        norm, norm_ci = _interval(s["hit_norm"])
        speed = len(s["hit"]) / max(s["seconds"], 1e-9)
        rows.append(
            f"| {s['task']} | {len(s['hit'])} / {s['n_test']} | {acc:.1f} ± {acc_ci:.1f} | "
            f"{norm:.1f} ± {norm_ci:.1f} | {speed:.1f} |"
        )
    text = "\n".join(rows) + "\n"
    dest.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", default="smollm2-135m")
    r.add_argument("--tasks", default="suite:commonsense")
    r.add_argument("--out", type=Path, default=DEFAULT_OUT)
    r.add_argument("--chunk", type=int, default=100)
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--max-length", type=int, default=1024)
    p = sub.add_parser("report")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--dest", type=Path, default=DEFAULT_OUT.parent / "commonsense_base_table.md")
    args = parser.parse_args()
    if args.cmd == "run":
        run(
            args.model,
            [t for t in args.tasks.split(",") if t],
            args.out,
            args.chunk,
            args.batch_size,
            args.max_length,
        )
    else:
        print(report(args.out, args.dest))


if __name__ == "__main__":
    main()

"""Multiple-choice scoring throughput: the batched scorer against the one it replaced and lm-eval's HFLM.

For each task set (``--tasks``, repeatable) the first ``--n`` test examples (round robin over the set's
multiple-choice tasks) are scored, in one process, by

* ``old``: the scorer before issue 15 (``tests.oracles.score_fitted_kv_cache``: each context alone at
  batch 1, then its choices against the repeated KV cache);
* ``shared``: ``spectral_moe.evaluation.likelihood.score_fitted`` (the default ``strategy="shared"``:
  contexts batched, each run once, its choices batched on its gathered KV cache, the vocabulary only at
  the positions that predict a choice token);
* ``packed``: the same with ``strategy="packed"`` (whole ``context + choice`` rows, ``--batch-size`` to a
  forward, longest first, as lm-eval packs them);
* ``hflm``: lm-evaluation-harness's ``HFLM`` through ``spectral_moe.evaluation.lm_eval``
  (``SpectralMoELM``, the in-memory model, ``add_bos_token=True``), fed ``loglikelihood`` requests
  ``Instance("loglikelihood", args=(input, choice))`` built from the same examples;

each in fp32 and under ``torch.autocast(bfloat16)`` (``--precisions``). Every scorer gets the same
fitted tokens (BOS + context, the library's truncation policy; HFLM tokenises the strings itself, equal
when nothing is truncated). The table reports examples/s, the speed-up over ``old`` at fp32, acc and
acc_norm, and the largest ``|Δ log-likelihood|`` against ``old`` fp32::

    python benchmarks/scoring.py --tasks suite:core --tasks oe:piqa --n 200 --threads 2
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.oracles holds the old scorer
    sys.path.insert(0, str(ROOT))

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
SCORERS = ("old", "shared", "packed", "hflm")


def select_examples(spec: str, n: int) -> list:
    """The first ``n`` test examples of ``spec``'s multiple-choice tasks, taken round robin."""
    from spectral_moe.data import load_tasks

    tests = [t.test for t in load_tasks(spec) if t.kind == "multiple_choice" and t.test]
    out: list = []
    for i in range(max((len(t) for t in tests), default=0)):
        out += [t[i] for t in tests if i < len(t)]
        if len(out) >= n:
            break
    return out[:n]


def accuracies(examples: Sequence, loglik: Sequence[float]) -> tuple[float, float]:
    """``(acc, acc_norm)`` of per-choice log-likelihoods (flattened over examples, in order)."""
    from spectral_moe.evaluation.likelihood import ChoiceResult

    hit = hit_norm = 0
    k = 0
    for ex in examples:
        r = ChoiceResult(list(loglik[k : k + len(ex.choices)]), ex.label)
        k += len(ex.choices)
        hit += r.pred == r.label
        hit_norm += r.pred_norm(ex.choices) == r.label
    return hit / len(examples), hit_norm / len(examples)


def _timed(fn: Callable[[], list[float]]) -> tuple[float, list[float]]:
    start = time.perf_counter()
    with torch.inference_mode():
        out = fn()
    return time.perf_counter() - start, out


def scorers(
    model, tokenizer, examples: Sequence, batch_size: int, max_length: int, names: Sequence[str]
) -> dict[str, Callable]:
    """``{name: fn(autocast_dtype) -> per-choice log-likelihoods}`` on ``examples`` for ``names``."""
    from tests.oracles import score_fitted_kv_cache

    from spectral_moe.evaluation.likelihood import fit_pairs, score_fitted

    pairs = [(ex.input, c) for ex in examples for c in ex.choices]
    spans = [ex.passage_span for ex in examples for _ in ex.choices]
    fitted = fit_pairs(tokenizer, pairs, max_length, spans)
    device = next(model.parameters()).device

    def autocast(dtype):
        return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    def old(dtype):
        with autocast(dtype):
            return [s for s, _ in score_fitted_kv_cache(model, tokenizer, fitted, batch_size)]

    def new(strategy, dtype):
        kw = dict(autocast_dtype=dtype, strategy=strategy)
        return [s for s, _ in score_fitted(model, tokenizer, fitted, batch_size, **kw)]

    out = {
        "old": old,
        "shared": functools.partial(new, "shared"),
        "packed": functools.partial(new, "packed"),
    }
    if "hflm" in names:
        from lm_eval.api.instance import Instance

        from spectral_moe.evaluation.lm_eval import SpectralMoELM

        lm = SpectralMoELM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(device))
        # BOS as text: HFLM's add_bos_token only asks the tokenizer for its special tokens, which
        # smollm2's does not add; a context that starts with BOS's text is encoded with it, as ours
        bos = tokenizer.bos_token if tokenizer.bos_token_id is not None else ""
        requests = [
            Instance("loglikelihood", doc={}, arguments=(bos + c, s), idx=i, metadata=("bench", i, 1))
            for i, (c, s) in enumerate(pairs)
        ]

        def hflm(dtype):
            with autocast(dtype):
                return [ll for ll, _ in lm.loglikelihood(requests, disable_tqdm=True)]

        out["hflm"] = hflm
    return {name: out[name] for name in names}


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument(
        "--tasks", action="append", help="a task set (repeatable); default suite:core, oe:piqa"
    )
    parser.add_argument("--n", type=int, default=200, help="examples per task set")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="fp32,bf16", help=f"comma list of {sorted(PRECISIONS)}")
    parser.add_argument("--scorers", default=",".join(SCORERS), help=f"comma list of {SCORERS}, old first")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)
    precisions = [p.strip() for p in args.precisions.split(",")]
    if not precisions or not set(precisions) <= set(PRECISIONS):
        raise ValueError(f"--precisions must be a comma list of {sorted(PRECISIONS)}, got {precisions}")
    names = [s.strip() for s in args.scorers.split(",")]
    if not set(names) <= set(SCORERS) or names[0] != "old":
        raise ValueError(f"--scorers must be old (the reference) then any of {SCORERS[1:]}, got {names}")
    torch.set_num_threads(args.threads)

    from spectral_moe.models import load_model

    model, tokenizer = load_model(args.model, "causal_lm")
    model.eval()
    lines = [
        f"model {args.model}, batch size {args.batch_size}, {args.threads} threads, torch {torch.__version__}",
        "",
        "| task set | n | scorer | precision | examples/s | × old fp32 | acc | acc_norm | max abs Δll | max rel Δll |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for spec in args.tasks or ["suite:core", "oe:piqa"]:
        examples = select_examples(spec, args.n)
        fns = scorers(model, tokenizer, examples, args.batch_size, args.max_length, names)
        warm = scorers(model, tokenizer, examples[:4], args.batch_size, args.max_length, names)
        ref_time, ref = 1.0, None
        for name in names:
            for precision in precisions:
                dtype = PRECISIONS[precision]
                _timed(functools.partial(warm[name], dtype))
                seconds, ll = _timed(functools.partial(fns[name], dtype))
                if ref is None:  # old, the first precision (fp32 by default)
                    ref_time, ref = seconds, ll
                acc, acc_norm = accuracies(examples, ll)
                diff = max(abs(a - b) for a, b in zip(ll, ref))
                rel = max(abs(a - b) / max(abs(b), 1.0) for a, b in zip(ll, ref))
                row = (
                    f"| {spec} | {len(examples)} | {name} | {precision} | {len(examples) / seconds:.1f} | "
                    f"{ref_time / seconds:.2f} | {100 * acc:.1f} | {100 * acc_norm:.1f} | {diff:.1e} | {rel:.1e} |"
                )
                print(row, flush=True)
                lines.append(row)
    report = "\n".join(lines) + "\n"
    if args.out is not None:
        args.out.write_text(report)
    return report


if __name__ == "__main__":
    print(main())

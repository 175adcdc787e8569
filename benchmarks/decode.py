"""Decode throughput with a KV cache, per method, in one process (round robin), on SmolLM2-135M.

    python benchmarks/decode.py --methods base,lora,fouriermoe,moelora,frame --batch-sizes 1,8 \\
        --prompt-len 32 --new-tokens 16 --rounds 3 --threads 1 --precision bf16 --out results/x.md

Every method wraps its own copy of the same model (``spectral_moe.models.load_model``, float32), built
as ``benchmarks/e2e_throughput.py`` builds it (``training.methods.build_peft_config`` with the harness
defaults, the same ``--target-modules``; ``base`` is the model without adapter). The adapters get
random weights (``--init random``, default: the same work as trained ones and a non-degenerate
output; ``zero`` keeps each method's own initialisation).

One measurement, for a batch of ``B`` prompts of ``--prompt-len`` real tokens: ``model.eval()``, under
``torch.inference_mode()`` and ``spectral_moe.precision.autocast(--precision)`` (as evaluation runs):
one prefill forward (untimed), then ``--new-tokens`` greedy steps of one token per row against the KV
cache (``cache``; transformers ≥ 5.24 naming), timed together: decode tokens/s = ``B · new_tokens / seconds``. Round
``i`` measures every method once per batch size (round robin, so load from other processes hits them
alike); the first ``--warmup`` rounds are dropped, the median of the rest is reported with the ratio
to LoRA (``× lora``: tokens/s over LoRA's; ``ms/step``: one decode step, all ``B`` rows; ``× lora
(time)``: that step time over LoRA's, the "cost per decoded token" ratio).

FourierMoE in ``eval()`` without grad reuses its mixing coefficients, or its dense ``ΔW`` where the
cost model picks dense, between decode steps (``tuners/fouriermoe/layer.py``); ``fouriermoe`` runs
``forward_mode="auto"`` (the library default), ``fouriermoe-fft`` / ``fouriermoe-dense`` force a path.

``--model tiny-llama`` builds a 2-layer random Llama in memory (no download; for tests).
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from typing import Any

import torch

try:
    from benchmarks import _common as common
    from benchmarks import e2e_throughput as e2e
except ModuleNotFoundError:  # run as a script: benchmarks/ is sys.path[0]
    import _common as common
    import e2e_throughput as e2e

METHODS = ("base", "lora", "fouriermoe", "fouriermoe-fft", "fouriermoe-dense", "moelora", "frame")
# FourierMoE with its forward path forced (``forward_mode``) instead of the cost model's choice
FORCED_MODES = {"fouriermoe-fft": "fft", "fouriermoe-dense": "dense"}
REFERENCE = "lora"
HEADERS = ["method", "batch", "decode tok/s", "× lora", "ms/step", "× lora (time)"]


def build_models(
    model_name: str,
    methods: list[str],
    targets: list[str],
    overrides: dict[str, dict[str, Any]],
    init: str,
    device: torch.device,
) -> tuple[dict[str, torch.nn.Module], torch.Tensor]:
    """``({method: model in eval mode}, token stream)``: one copy of the loaded model per method."""
    from peft import get_peft_model

    import spectral_moe  # noqa: F401  (registers the methods with peft)
    from spectral_moe.training.methods import build_peft_config

    torch.manual_seed(0)
    base, ids = e2e.load(model_name, device)
    models = {}
    for method in methods:
        model = copy.deepcopy(base)
        if method != "base":
            family = method.split("-")[0]
            options = dict(overrides.get(family, {}))
            if method in FORCED_MODES:
                options["forward_mode"] = FORCED_MODES[method]
            config = build_peft_config(family, targets, "causal_lm", **options)
            model = get_peft_model(model, config).to(device)
            if init == "random":
                torch.manual_seed(1)
                with torch.no_grad():
                    for p in model.parameters():
                        if p.requires_grad:
                            p.normal_(0.0, 0.02)
        models[method] = model.eval()
    return models, ids


def decode_seconds(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int, precision: str) -> float:
    """Seconds (on ``common.clock``: wall, or this process's CPU time) of ``new_tokens`` greedy
    single-token steps against the KV cache of ``prompt`` [B, P]."""
    from spectral_moe.precision import autocast

    read = common.CLOCKS[common.clock]
    with torch.inference_mode(), autocast(precision, prompt.device.type):
        out = model(input_ids=prompt, use_cache=True)
        past, nxt = out.cache, out.logits[:, -1:].argmax(-1)
        common.synchronize(prompt.device)
        start = read()
        for _ in range(new_tokens):
            out = model(input_ids=nxt, cache=past, use_cache=True)
            past, nxt = out.cache, out.logits[:, -1:].argmax(-1)
        common.synchronize(prompt.device)
        return read() - start


def decode_step_profile(
    model: torch.nn.Module, prompt: torch.Tensor, precision: str, top: int = 12
) -> tuple[int, str]:
    """``(aten ops of one decode step, profiler table of that step)``: the prefill and one warm-up step
    untimed, then one single-token step against the KV cache under ``torch.profiler`` (self CPU time).

    The op count is what bounds decoding at batch 1 on a CPU (each eager op costs microseconds of
    dispatch whatever its size), and it does not depend on the machine's load."""
    from torch.profiler import ProfilerActivity, profile

    from spectral_moe.precision import autocast

    with torch.inference_mode(), autocast(precision, prompt.device.type):
        out = model(input_ids=prompt, use_cache=True)
        past, nxt = out.cache, out.logits[:, -1:].argmax(-1)
        out = model(input_ids=nxt, cache=past, use_cache=True)
        past, nxt = out.cache, out.logits[:, -1:].argmax(-1)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(input_ids=nxt, cache=past, use_cache=True)
            common.synchronize(prompt.device)
    events = prof.key_averages()
    ops = sum(e.count for e in events if e.key.startswith("aten::"))
    return ops, events.table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=40)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--methods", default="base,lora,fouriermoe,moelora,frame", help=f"comma list of {list(METHODS)}"
    )
    ap.add_argument(
        "--model", default="smollm2-135m", help="smollm2-135m, a hub id / local path, or tiny-llama"
    )
    ap.add_argument("--target-modules", default="q_proj,v_proj", help="comma list, the same for every method")
    ap.add_argument("--batch-sizes", default="1,8", help="comma list of decode batch sizes")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=16, help="decode steps timed per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="round-robin rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="rounds dropped first")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    common.add_clock_argument(ap, "decode steps")
    ap.add_argument(
        "--profile",
        default="",
        help="comma list of methods whose decode step is profiled (aten ops per step for every method "
        "listed here, and their top ops); 'all' for every method",
    )
    ap.add_argument("--profile-top", type=int, default=12, help="rows of each profile table")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"))
    ap.add_argument("--init", default="random", choices=("random", "zero"), help="adapter weights")
    ap.add_argument(
        "--set", action="append", default=[], help="METHOD.OPTION=VALUE adapter option (repeatable)"
    )
    ap.add_argument("--out", default=None, help="write the table as markdown here")
    return ap


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> str:
    """Run the benchmark; returns (and with ``--out`` writes) the markdown report."""
    from spectral_moe.precision import resolve_precision

    args = build_parser().parse_args(argv)
    methods = common.parse_names(args.methods, list(METHODS), "--methods")
    batch_sizes = common.parse_ints(args.batch_sizes, "--batch-sizes")
    if args.rounds <= args.warmup or args.warmup < 0 or args.new_tokens < 1 or args.prompt_len < 1:
        raise ValueError("--rounds must exceed --warmup >= 0; --new-tokens and --prompt-len must be >= 1")
    device = common.resolve_device(args.device)
    common.use_clock(args.clock, device)
    profiled = (
        []
        if not args.profile
        else list(methods)
        if args.profile == "all"
        else common.parse_names(args.profile, list(methods), "--profile")
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    precision = resolve_precision(args.precision, device.type)
    targets = [t.strip() for t in args.target_modules.split(",") if t.strip()]
    overrides = e2e.parse_overrides(args.set)
    env_start = common.environment(device)
    log(env_start)
    models, ids = build_models(args.model, methods, targets, overrides, args.init, device)
    prompts = {b: e2e.batches(ids, 1, b, args.prompt_len, device)[0] for b in batch_sizes}
    times: dict[tuple[str, int], list[float]] = {(m, b): [] for m in methods for b in batch_sizes}
    for round_index in range(args.rounds):
        for b in batch_sizes:
            for method in methods:
                seconds = decode_seconds(models[method], prompts[b], args.new_tokens, precision)
                if round_index >= args.warmup:
                    times[(method, b)].append(seconds)
                log(f"  round {round_index + 1} B={b} {method}: {b * args.new_tokens / seconds:.1f} tok/s")
    rows = []
    for b in batch_sizes:
        ref = common.median(times[(REFERENCE, b)]) if REFERENCE in methods else float("nan")
        for method in methods:
            t = common.median(times[(method, b)])
            rows.append(
                [
                    method,
                    b,
                    f"{b * args.new_tokens / t:.1f}",
                    common.fmt(ref / t),
                    common.fmt(1e3 * t / args.new_tokens, 1),
                    common.fmt(t / ref),
                ]
            )
    op_rows, tables = [], []
    for b in batch_sizes:
        counts = {
            m: decode_step_profile(models[m], prompts[b], precision, args.profile_top) for m in profiled
        }
        ref_ops = counts[REFERENCE][0] if REFERENCE in counts else float("nan")
        for method, (ops, table) in counts.items():
            op_rows.append([method, b, ops, common.fmt(ops / ref_ops)])
            tables.append(f"{method}, batch {b}, one decode step (self CPU time):\n\n```\n{table}\n```")
    command = "python benchmarks/decode.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = "\n".join(
        [
            "# Decode throughput (KV cache)",
            "",
            f"Command: `{command}`",
            "",
            f"Start: {env_start}. End: {common.environment(device)}.",
            "",
            f"Model {args.model}, targets {targets}, precision {args.precision} (resolved {precision}), "
            f"prompt {args.prompt_len} tokens, {args.new_tokens} greedy decode steps timed per measurement, "
            f"{args.clock} clock, median over {args.rounds - args.warmup} round(s) after {args.warmup} warm-up round(s), methods "
            f"round robin in one process; adapter weights {args.init}. `× lora`: decode tokens/s over "
            "LoRA's; `× lora (time)`: time per decoded token over LoRA's.",
            "",
            common.markdown_table(HEADERS, rows),
        ]
    )
    if op_rows:
        report += "\n\n## aten ops per decode step (torch.profiler, one step, all rows of the batch)\n\n"
        report += common.markdown_table(["method", "batch", "aten ops", "× lora"], op_rows)
        report += "\n\n" + "\n\n".join(tables)
    report += "\n"
    common.write_report(report, args.out)
    log(common.markdown_table(HEADERS, rows))
    if op_rows:
        log(common.markdown_table(["method", "batch", "aten ops", "× lora"], op_rows))
    return report


if __name__ == "__main__":
    main()

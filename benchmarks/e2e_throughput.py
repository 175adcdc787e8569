"""End-to-end training and evaluation throughput of each method on a real model (SmolLM2-135M).

    python benchmarks/e2e_throughput.py --methods lora,fourierft,moelora,fouriermoe,frame \\
        --steps 10 --batch-size 8 --seq-len 128 --out results/x.md

Each method runs in a fresh subprocess (so its peak resident memory is its own): load the model
with ``spectral_moe.models.load_model`` (the library's loader: SmolLM2-135M from its PyPI package,
float32), build the adapter with ``spectral_moe.training.methods.build_peft_config`` (the harness
defaults, the same ``--target-modules`` for every method), ``peft.get_peft_model``, and
``spectral_moe.create_optimizer`` with the harness learning rates, exactly as ``spectral-moe
train`` does. Batches are fixed-length windows of a real English text tokenized by the model's own
tokenizer (``--batch-size`` × ``--seq-len`` tokens, labels = inputs).

* train tokens/s: ``model(ids, labels=ids).loss`` (router aux loss included) → backward →
  optimizer step → zero_grad, ``--warmup`` untimed steps then the median of ``--steps``.
* eval tokens/s: ``model.eval()`` under ``torch.inference_mode()``, the same batches, same count.
* ``--precision fp32|bf16|auto``: resolved by ``spectral_moe.precision.resolve_precision`` and applied
  as training applies it (``training.loop.training_arguments`` → the Trainer's ``bf16=True``): the
  forward and the loss under ``spectral_moe.precision.autocast`` (bf16 autocast, float32 weights and
  adapter master copies), backward and optimizer step outside it; evaluation forwards under the same
  autocast. The resolved precision is printed with the table.
* ``--clock cpu``: the steps timed by the worker's process CPU time instead of the wall clock (a shared
  machine; with ``--threads 1``).
* ``fouriermoe-fused``: FourierMoE with ``fused_kernels=True`` (the FFT path's compiled kernels), so
  the fused and unfused paths are timed in the same rounds.
* peak RSS: the process's resident-set high-water mark (``VmHWM``), reset after the model is loaded
  (``/proc/self/clear_refs``) and read after the training steps, so it covers training only
  (model weights included); ``RSS loaded``: resident memory before training. On CUDA the columns are
  ``torch.cuda.max_memory_allocated`` instead.

``--model tiny-llama`` builds a 2-layer random Llama in memory (no download; for tests).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch

try:
    from benchmarks import _common as common
except ModuleNotFoundError:  # run as a script: benchmarks/ is sys.path[0]
    import _common as common

# a variant: a library method with fixed options, timed next to the plain method in the same rounds
VARIANTS = {"fouriermoe-fused": ("fouriermoe", {"fused_kernels": True})}
METHODS = ("lora", "fourierft", "moelora", "fouriermoe", "frame", *VARIANTS)
REFERENCE = "lora"
RESULT_PREFIX = "E2E_RESULT "
TEXT = (
    "The history of the printing press begins in the fifteenth century, when movable metal type made it "
    "possible to reproduce books quickly and cheaply. Within a few decades presses were operating in "
    "hundreds of European towns, and the number of books in circulation grew from thousands to millions. "
    "Scholars argue about how much the new technology changed the way people thought, but few doubt that "
    "it made knowledge travel faster. Letters, pamphlets and newspapers followed the books, and with them "
    "came new questions about who should be allowed to print what. Questions like these are still with us "
    "today, now asked about computers, networks and language models that write text of their own. "
)


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Release freed heap to the OS and reset the RSS high-water mark (Linux); False if unsupported."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    hwm = _rss_kib("VmHWM")
    if hwm is None:
        import resource

        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return hwm / 1024


def load(model_name: str, device: torch.device):
    """``(model, token_source)``: the causal LM and a 1-D tensor of real token ids to cut batches from."""
    if model_name == "tiny-llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=256,
            hidden_size=128,
            intermediate_size=192,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
        )
        ids = torch.tensor(list(TEXT.encode("ascii")), dtype=torch.long)  # bytes as tokens
        return LlamaForCausalLM(config).to(device), ids
    from spectral_moe.models import load_model

    model, tokenizer = load_model(model_name, "causal_lm")
    ids = torch.tensor(tokenizer(TEXT, add_special_tokens=False)["input_ids"], dtype=torch.long)
    return model.to(device), ids


def batches(
    ids: torch.Tensor, count: int, batch_size: int, seq_len: int, device: torch.device
) -> list[torch.Tensor]:
    """``count`` batches ``[batch_size, seq_len]`` of consecutive windows of the (tiled) token stream."""
    need = (count * batch_size + 1) * seq_len
    stream = ids.repeat(need // ids.numel() + 1)
    out = []
    for b in range(count):
        rows = [stream[(b * batch_size + i) * seq_len :][:seq_len] for i in range(batch_size)]
        out.append(torch.stack(rows).to(device))
    return out


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """One method end to end in this process; returns the measurements."""
    from peft import get_peft_model

    import spectral_moe  # noqa: F401  (registers the methods with peft)
    from spectral_moe import create_optimizer
    from spectral_moe.precision import autocast, resolve_precision
    from spectral_moe.training.methods import (
        DEFAULT_LR,
        DEFAULT_ORDER_LR,
        DEFAULT_SPECTRUM_LR,
        build_peft_config,
    )

    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    device = common.resolve_device(cfg["device"])
    common.use_clock(cfg.get("clock", "wall"), device)
    precision = resolve_precision(cfg.get("precision", "fp32"), device.type)
    torch.manual_seed(0)
    model, ids = load(cfg["model"], device)
    method = cfg["method"]
    family, fixed = VARIANTS.get(method, (method, {}))
    options = {**fixed, **cfg["overrides"].get(method, {})}
    peft_config = build_peft_config(family, cfg["target_modules"], "causal_lm", **options)
    model = get_peft_model(model, peft_config).to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = create_optimizer(
        model,
        DEFAULT_LR[family],
        order_lr=DEFAULT_ORDER_LR,
        spectrum_lr=DEFAULT_SPECTRUM_LR if family == "fouriermoe" else DEFAULT_LR[family],
    )
    total = cfg["warmup"] + cfg["steps"]
    data = batches(ids, total, cfg["batch_size"], cfg["seq_len"], device)
    tokens = cfg["batch_size"] * cfg["seq_len"]

    def train_step(batch: torch.Tensor) -> None:
        with autocast(precision, device.type):  # as the Trainer's bf16=True: forward and loss only
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    loaded_mib = (_rss_kib("VmRSS") or 0) / 1024
    reset_ok = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    train_times = [common.timed(lambda b=b: train_step(b), device) for b in data]
    train_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _peak_rss_mib()
    model.eval()
    eval_times = []
    with torch.inference_mode(), autocast(precision, device.type):
        for b in data:
            eval_times.append(common.timed(lambda b=b: model(input_ids=b, labels=b), device))
    warm = cfg["warmup"]
    return {
        "method": method,
        "trainable": trainable,
        "train_tok_s": tokens / common.median(train_times[warm:]),
        "eval_tok_s": tokens / common.median(eval_times[warm:]),
        "train_peak_mib": train_peak,
        "loaded_mib": loaded_mib if device.type == "cpu" else torch.cuda.memory_allocated(device) / 2**20,
        "peak_reset": reset_ok,
        "threads": torch.get_num_threads(),
        "precision": precision,
    }


def run_method(cfg: dict[str, Any], subprocess_per_method: bool) -> dict[str, Any]:
    if not subprocess_per_method:
        return worker(cfg)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"worker for {cfg['method']} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def combine_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median throughput and largest peak memory over the rounds of one method."""
    out = dict(rounds[-1])
    for key in ("train_tok_s", "eval_tok_s"):
        out[key] = common.median([r[key] for r in rounds])
    for key in ("train_peak_mib", "loaded_mib"):
        out[key] = max(r[key] for r in rounds)
    return out


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["fouriermoe.n_frequency=1000"]`` → ``{"fouriermoe": {"n_frequency": 1000}}`` (JSON values)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, option = key.partition(".")
        if not sep or not dot or method not in METHODS:
            raise ValueError(
                f"--set must look like METHOD.OPTION=VALUE with METHOD in {list(METHODS)}, got {item!r}"
            )
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(method, {})[option] = parsed
    return out


HEADERS = [
    "method",
    "trainable",
    "train tok/s",
    "× lora",
    "eval tok/s",
    "× lora",
    "peak RSS MB (train)",
    "× lora",
    "RSS loaded MB",
]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {list(METHODS)} or 'all'")
    ap.add_argument(
        "--model", default="smollm2-135m", help="smollm2-135m, a hub id / local path, or tiny-llama"
    )
    ap.add_argument("--target-modules", default="q_proj,v_proj", help="comma list, the same for every method")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--rounds", type=int, default=1, help="run the method list this many times, alternating")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16", "auto"),
        help="as RunConfig.precision: bf16 autocast around forward + loss (training's path), or fp32",
    )
    ap.add_argument(
        "--set", action="append", default=[], help="METHOD.OPTION=VALUE adapter option (repeatable)"
    )
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="run every method in this process (peak RSS then not per method)",
    )
    ap.add_argument("--out", default=None, help="write the table as markdown here")
    common.add_clock_argument(ap, "the steps")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> str:
    """Run the benchmark; returns (and with ``--out`` writes) the markdown report."""
    args = build_parser().parse_args(argv)
    if args.worker is not None:
        print(RESULT_PREFIX + json.dumps(worker(json.loads(args.worker))), flush=True)
        return ""
    methods = common.parse_names(args.methods, list(METHODS), "--methods")
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0 or args.batch_size < 1 or args.seq_len < 2:
        raise ValueError("--steps, --rounds, --batch-size must be >= 1, --warmup >= 0, --seq-len >= 2")
    device = common.resolve_device(args.device)
    common.use_clock(args.clock, device)  # checked here; each worker sets it again
    if args.threads:
        torch.set_num_threads(args.threads)
    targets = [t.strip() for t in args.target_modules.split(",") if t.strip()]
    overrides = parse_overrides(args.set)
    env_start = common.environment(device)
    log(env_start)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for round_index in range(args.rounds):
        for method in methods:
            cfg = {
                "method": method,
                "model": args.model,
                "target_modules": targets,
                "steps": args.steps,
                "warmup": args.warmup,
                "batch_size": args.batch_size,
                "seq_len": args.seq_len,
                "threads": args.threads,
                "device": args.device,
                "overrides": overrides,
                "precision": args.precision,
                "clock": args.clock,
            }
            r = run_method(cfg, not args.in_process)
            runs[method].append(r)
            log(
                f"  round {round_index + 1} {method}: train {r['train_tok_s']:.0f} tok/s, "
                f"eval {r['eval_tok_s']:.0f} tok/s, peak RSS {r['train_peak_mib']:.0f} MB"
            )
    results = {m: combine_rounds(rs) for m, rs in runs.items()}
    ref = results.get(REFERENCE)
    rows = []
    for method, r in results.items():
        rows.append(
            [
                method,
                f"{r['trainable']:,}",
                f"{r['train_tok_s']:.0f}",
                common.fmt(r["train_tok_s"] / ref["train_tok_s"]) if ref else "n/a",
                f"{r['eval_tok_s']:.0f}",
                common.fmt(r["eval_tok_s"] / ref["eval_tok_s"]) if ref else "n/a",
                f"{r['train_peak_mib']:.0f}",
                common.fmt(r["train_peak_mib"] / ref["train_peak_mib"]) if ref else "n/a",
                f"{r['loaded_mib']:.0f}",
            ]
        )
    command = "python benchmarks/e2e_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    memory_note = (
        "peak RSS = resident-set high-water mark of the method's own process during the training steps"
        if not args.in_process
        else "all methods ran in one process (--in-process): peak RSS is not per method"
    )
    report = "\n".join(
        [
            "# End-to-end throughput",
            "",
            f"Command: `{command}`",
            "",
            f"Start: {env_start}. End: {common.environment(device)}.",
            "",
            f"Precision {args.precision} (resolved: {sorted({r['precision'] for r in results.values()})}). "
            f"Model {args.model}, targets {targets}, batch {args.batch_size} × {args.seq_len} tokens, "
            f"median of {args.steps} steps after {args.warmup} warm-up steps, median over {args.rounds} "
            f"round(s) (methods alternate, a fresh process each); {memory_note} (largest over rounds).",
            "",
            common.markdown_table(HEADERS, rows),
        ]
    )
    report += "\n"
    common.write_report(report, args.out)
    log(common.markdown_table(HEADERS, rows))
    return report


if __name__ == "__main__":
    main()

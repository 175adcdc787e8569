"""FourierMoE layer: FFT path vs dense path, forward + backward, same process, same inputs.

    python benchmarks/fft_vs_dense.py --shapes 2048x2048 --tokens 1024

Prints the median time of each path and the dense/fft ratio (>1: the FFT path is faster), plus
what ``forward_mode="auto"`` chooses (``spectral.cost_model.fft_is_cheaper``) and whether that was the
faster path. A check of the cost model, not its fit: the constants in spectral/cost_model.py are fitted
by ``python benchmarks/adapter_step.py --calibrate --threads 1``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spectral_moe.spectral.cost_model import fft_is_cheaper
from spectral_moe.tuners.fouriermoe import FourierMoEConfig, FourierMoELinear


def time_step(layer: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    times = []
    for i in range(repeats + 2):
        layer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        layer(x).sum().backward()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="2048x2048", help="comma list of OUTxIN")
    ap.add_argument("--tokens", default="1024", help="comma list of token counts")
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--n-frequency", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| shape | tokens | fft s | dense s | dense/fft | auto picks | auto right |")
    print("|---|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        d_out, d_in = map(int, shape.split("x"))
        base = torch.nn.Linear(d_in, d_out, bias=False)
        base.weight.requires_grad_(False)
        times = {}
        for mode in ("fft", "dense"):
            cfg = FourierMoEConfig(
                target_modules=["x"],
                num_experts=args.experts,
                top_k=args.top_k,
                n_frequency=args.n_frequency,
                forward_mode=mode,
                init_weights=False,
            )
            layer = FourierMoELinear(base, "default", cfg)
            for tokens in map(int, args.tokens.split(",")):
                x = torch.randn(tokens, d_in)
                times[(mode, tokens)] = time_step(layer, x, args.repeats)
        for tokens in map(int, args.tokens.split(",")):
            tf, td = times[("fft", tokens)], times[("dense", tokens)]
            cheaper = fft_is_cheaper(tokens, d_out, d_in, args.experts, args.n_frequency, args.top_k)
            pick = "fft" if cheaper else "dense"
            right = pick == ("fft" if tf < td else "dense")
            print(f"| {shape} | {tokens} | {tf:.4f} | {td:.4f} | {td / tf:.2f} | {pick} | {right} |")


if __name__ == "__main__":
    main()

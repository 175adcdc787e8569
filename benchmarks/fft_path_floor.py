"""Where FourierMoE's training step goes, and how low its FFT path can go (issue 15, item 2).

    python benchmarks/fft_path_floor.py --shapes 576x576,192x576 --tokens 1024 --rounds 9 \
        --warmup 2 --threads 1 --clock cpu --precision bf16

Per shape (``OUTxIN``; smollm2's q_proj is 576x576, v_proj 192x576) and ``T = --tokens``, one process
times, round robin (``--rounds``, the first ``--warmup`` dropped, medians reported):

* ``lora-r8 layer`` and ``fouriermoe layer``: one adapted layer's whole training step (forward,
  router aux loss, backward, AdamW; ``benchmarks/adapter_step.py``'s runner, under ``--precision``),
  FourierMoE with the library defaults (``Z = 8`` experts, top-2, ``n = 500``, FFT path);
* ``FFT path``: ``spectral.fourier.apply_fft`` forward + backward alone (``∂x``, ``∂c''``, ``∂g``) on
  that layer's positions, routed as the router routes (``experts`` given): the part of the layer that
  the sparse spectral update costs;
* ``FFT path, fused kernels``: the same result from ``spectral.fourier_fused``'s two kernels, eager
  (their formulas, unfused) and compiled through ``apply_fft``'s ``fused=True`` (the
  ``FourierMoEConfig(fused_kernels=True)`` path; ``--no-compile`` leaves that row out);
* ``four FFTs``: ``rfft(x)``, ``irfft(G)``, ``rfft(∂L/∂y)``, ``irfft(∂L/∂R)`` alone, the part of the FFT
  path that no gather kernel removes;
* ``one pass over the terms``: one gather of the ``T·k·n`` complex terms from ``S = [R, conj R]``; the
  FFT path makes at least five such passes (forward: gather, scatter; backward: gather ``dG`` and
  ``S``, scatter ``∂S``).

Each row prints its time, its multiple of the ``lora-r8`` layer step, and for the fused rows the
largest relative difference to ``apply_fft`` (forward output and the three gradients).

The kernels' formulas are in ``spectral/fourier_fused.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch

from spectral_moe.spectral import fourier, fourier_fused

try:
    from benchmarks import _common as common
    from benchmarks import adapter_step
except ModuleNotFoundError:  # run as a script: benchmarks/ is sys.path[0]
    import _common as common
    import adapter_step


def fouriermoe_method(n_frequency: int) -> str:
    """The name of ``adapter_step``'s FourierMoE FFT-path method with ``n_frequency`` (registered if new)."""
    name = f"fouriermoe-n{n_frequency}-fft"
    options = dict(n_frequency=n_frequency, forward_mode="fft", **adapter_step.ROUTED)
    adapter_step.METHODS.setdefault(name, adapter_step.Method("fouriermoe", tuple(options.items())))
    return name


def gates_full(gates: torch.Tensor, experts: torch.Tensor, num_experts: int) -> torch.Tensor:
    """``[T, Z]`` gates, zero outside each token's ``experts`` (as the router's scatter makes them)."""
    return torch.zeros(gates.shape[0], num_experts).scatter(1, experts, gates)


class FftCase:
    """The FFT path's inputs at one layer: positions of a real FourierMoE layer, routed gates."""

    def __init__(self, layer: torch.nn.Module, tokens: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.plan = layer.fft_plan("default")
        real, imag = layer.coefficients("default")
        scaling = layer.fouriermoe_config["default"].scaling
        self.coef = fourier.mixing_coefficients(real, imag, self.plan, scaling, torch.float32).detach()
        z, k = self.coef.shape[0], layer.fouriermoe_config["default"].top_k
        d_in, d_out = self.plan.d_in, self.plan.d_out
        self.x = torch.randn(tokens, d_in, generator=g)
        logits = torch.randn(tokens, z, generator=g)
        self.experts = logits.topk(k, dim=-1).indices
        self.gates = torch.softmax(logits.gather(1, self.experts), dim=-1)
        self.grad_y = torch.randn(tokens, d_out, generator=g)

    def apply_fft(self, fused: bool = False) -> tuple[torch.Tensor, ...]:
        """``apply_fft``'s forward + backward (``fused``: its compiled kernels): ``(y, ∂x, ∂c'', ∂g)``."""
        x = self.x.clone().requires_grad_()
        coef = self.coef.clone().requires_grad_()
        gates = self.gates.clone().requires_grad_()
        y = fourier.apply_fft(
            x,
            coef.real,
            coef.imag,
            None,
            None,
            gates_full(gates, self.experts, self.coef.shape[0]),
            self.plan.d_out,
            1.0,
            top_k=self.experts.shape[1],
            plan=self.plan,
            mixed=coef,
            experts=self.experts,
            fused=fused,
        )
        return (y.detach(), *torch.autograd.grad(y, (x, coef, gates), self.grad_y))

    def ffts(self) -> None:
        """The four FFTs of one forward + backward, nothing else."""
        spec = torch.fft.rfft(self.x, dim=-1)
        torch.fft.irfft(
            torch.zeros(spec.shape[0], self.plan.d_out // 2 + 1, dtype=spec.dtype), n=self.plan.d_out
        )
        torch.fft.rfft(self.grad_y, dim=-1)
        torch.fft.irfft(torch.zeros_like(spec), n=self.plan.d_in)

    def one_pass(self) -> None:
        """One gather of the ``T·k·n`` complex terms (the unit of the FFT path's memory passes)."""
        spec = getattr(self, "_doubled", None)
        if spec is None:
            r = torch.fft.rfft(self.x, dim=-1)
            spec = self._doubled = torch.cat([r, r.conj()], dim=-1)
            self._index = self.plan.in_index.index_select(0, self.experts.reshape(-1)).view(
                self.x.shape[0], -1
            )
        spec.gather(1, self._index)


def relative_error(reference: tuple[torch.Tensor, ...], other: tuple[torch.Tensor, ...]) -> float:
    """Largest ``max|a − b| / max|a|`` over the tensors."""
    return max(
        ((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item() for a, b in zip(reference, other)
    )


def run_shape(d_out: int, d_in: int, args: argparse.Namespace, device: torch.device, log) -> list[list[str]]:
    torch.manual_seed(0)
    base = torch.nn.Linear(d_in, d_out, bias=False).to(device).requires_grad_(False)
    x = torch.randn(args.tokens, d_in, device=device, requires_grad=True)
    grad_out = torch.randn(args.tokens, d_out, device=device)
    lora = adapter_step.build_runner(adapter_step.REFERENCE, base, x, grad_out, device, args.precision)
    fmoe = adapter_step.build_runner(
        fouriermoe_method(args.n_frequency), base, x, grad_out, device, args.precision
    )
    case = FftCase(fmoe.layer(), args.tokens)
    reference = case.apply_fft()
    fns: dict[str, Callable[[], object]] = {
        "lora-r8 layer step": lora.step,
        f"fouriermoe layer step (n={args.n_frequency}, 8 experts, top-2)": fmoe.step,
        "FFT path (apply_fft forward + backward)": case.apply_fft,
    }
    errors: dict[str, float] = {}
    eager = "FFT path, fused kernels (eager)"

    def eager_fused() -> tuple[torch.Tensor, ...]:
        with fourier_fused.eager():
            return case.apply_fft(fused=True)

    fns[eager] = eager_fused
    errors[eager] = relative_error(reference, fns[eager]())
    compile_seconds = None
    if not args.no_compile:
        name = "FFT path, fused kernels (compiled: fused_kernels=True)"
        t0 = time.perf_counter()
        out = case.apply_fft(fused=True)  # the first call compiles
        if fourier_fused.fused_unavailable() is not None:
            log(
                f"{d_out}x{d_in}: torch.compile unavailable ({fourier_fused.fused_unavailable()}); row left out"
            )
        else:
            compile_seconds = time.perf_counter() - t0
            errors[name] = relative_error(reference, out)
            fns[name] = lambda: case.apply_fft(fused=True)
    fns["four FFTs alone"] = case.ffts
    fns["one pass over the T·k·n terms (a gather)"] = case.one_pass
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(args.rounds):
        for name, fn in fns.items():
            t = common.timed(fn, device)
            if i >= args.warmup:
                times[name].append(t)
    ref = common.median(times["lora-r8 layer step"])
    rows = []
    for name, ts in times.items():
        ms = common.median(ts) * 1e3
        err = f"{errors[name]:.1e}" if name in errors else ""
        rows.append([f"{d_out}x{d_in}", name, common.fmt(ms), common.fmt(ms / (ref * 1e3)), err])
    if compile_seconds is not None:
        log(f"{d_out}x{d_in}: first call of the compiled kernels (compile included): {compile_seconds:.1f} s")
    return rows


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="576x576,192x576", help="OUTxIN list")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument(
        "--n-frequency", type=int, default=500, help="FourierMoE's n per expert (500: the default)"
    )
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16", help="of the two layer steps")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    ap.add_argument("--out", default=None, help="also write the report to this markdown file")
    common.add_clock_argument(ap, "the rows")
    return ap


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> str:
    args = build_parser().parse_args(argv)
    if args.warmup >= args.rounds:
        raise SystemExit("--warmup must be smaller than --rounds")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    common.use_clock(args.clock, device)
    rows: list[list[str]] = []
    for d_out, d_in in common.parse_shapes(args.shapes):
        rows += run_shape(d_out, d_in, args, device, log)
    table = common.markdown_table(["shape", "what", "ms", "× lora-r8 layer step", "max rel. diff"], rows)
    report = (
        f"{common.environment(device)}\n\n{args.tokens} tokens, layer steps under {args.precision}, "
        f"{args.clock} clock, median of {args.rounds - args.warmup} rounds\n\n{table}\n"
    )
    log(report)
    common.write_report(report, args.out)
    return report


if __name__ == "__main__":
    sys.exit(main() and 0)

"""One adapted linear layer: forward + backward + optimizer step, and its peak memory, per method.

    python benchmarks/adapter_step.py --shapes 4096x4096 --tokens 4096 --repeats 3 --out results/x.md

Every method wraps the same frozen ``nn.Linear(d_in, d_out)`` (``OUTxIN`` shapes) in a one-module
``nn.Module`` and goes through ``peft.get_peft_model`` (peft's LoRA and FourierFT, spectral-moe's
FourierMoE, FRAME and MoE-LoRA). One step is::

    opt.zero_grad(set_to_none=True); y = model(x)                  x [T, d_in], requires_grad
    backward(y, grad=g) (+ router aux loss for routed methods);    g [T, d_out], fixed random
    opt.step()                                                      AdamW over the trainable params

``x`` requires grad, as inside a network, so every method also pays for ``dL/dx``. All methods of a
(shape, tokens) pair live in one process and are timed round-robin (round ``i`` steps every method
once), so a load spike from other processes hits all of them alike; the first ``--warmup`` rounds are
dropped and the median of the rest is reported, with the ratio to peft LoRA r=8.

Peak memory (``peak MB``): the adapter's persistent tensors (trainable parameters, adapter buffers,
AdamW state) plus the peak of tensor memory allocated during one step above the level before it
(activations, gradients, temporaries; see ``_common.peak_tensor_bytes``: the torch profiler's
allocation records on CPU, ``max_memory_allocated`` on CUDA). The base weight, ``x`` and ``g`` are the
same for every method and are not counted.

``--precision bf16`` runs every method's forward (and the router aux loss) under
``spectral_moe.precision.autocast("bf16", device)``, as training does (float32 weights, bf16 matmuls);
the backward follows the forward's dtypes. ``fp32`` (default) runs plain float32.

``forward_mode="auto"`` rows print the cost model's choice and whether it was the faster of the
measured fft and dense paths. The dense path of FourierMoE builds ``Z`` dense ``ΔW``; beyond
``--dense-max-gmac`` (``T·Z·d_out·d_in`` multiply-adds per matmul) it is skipped and marked so.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

try:
    from benchmarks import _common as common
except ModuleNotFoundError:  # run as a script: benchmarks/ is sys.path[0]
    import _common as common


@dataclasses.dataclass(frozen=True)
class Method:
    """A benchmarked method: peft config class name and its options."""

    family: str  # lora | fourierft | moelora | fouriermoe | frame
    options: tuple[tuple[str, Any], ...]

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.options)


def _m(family: str, **options: Any) -> Method:
    return Method(family, tuple(options.items()))


ROUTED = dict(num_experts=8, top_k=2)
METHODS: dict[str, Method] = {
    "lora-r8": _m("lora", r=8, lora_alpha=16),
    "lora-r16": _m("lora", r=16, lora_alpha=32),
    "fourierft-n1000": _m("fourierft", n_frequency=1000, scaling=150.0),
    "moelora-r8": _m("moelora", r=8, lora_alpha=16, **ROUTED),
    "moelora-r16": _m("moelora", r=16, lora_alpha=32, **ROUTED),  # FRAME's floor: a rank-2r MoE-LoRA
    **{
        f"fouriermoe-n{n}-{mode}": _m("fouriermoe", n_frequency=n, forward_mode=mode, **ROUTED)
        for n in (250, 500, 1000)  # 500: the library's default n_frequency
        for mode in ("fft", "dense", "auto")
    },
    **{
        f"frame-{t}": _m("frame", r=8, lora_alpha=16, transform=t, **ROUTED)
        for t in ("chirp", "hermite", "weighted")
    },
}
REFERENCE = "lora-r8"
DEFAULT_SHAPES = "576x576,576x1536,2048x2048,4096x4096,4096x14336"


def peft_config(method: Method, target: str = "proj"):
    """The peft config of ``method`` adapting module ``target``."""
    from peft import FourierFTConfig, LoraConfig

    from spectral_moe import FourierMoEConfig, FrameConfig, MoELoraConfig

    classes = {
        "lora": LoraConfig,
        "fourierft": FourierFTConfig,
        "moelora": MoELoraConfig,
        "fouriermoe": FourierMoEConfig,
        "frame": FrameConfig,
    }
    kwargs = method.kwargs
    if method.family in ("fouriermoe", "fourierft"):
        kwargs["init_weights"] = False  # non-zero coefficients: the same work, a non-degenerate output
    if method.family in ("moelora", "frame"):
        kwargs["init_lora_weights"] = False
    return classes[method.family](target_modules=[target], **kwargs)


def unsupported_reason(method: Method, d_out: int, d_in: int) -> str | None:
    """Why ``method`` cannot run on this shape (``n_frequency`` larger than the layer allows), else None."""
    from spectral_moe.spectral.bands import band_capacity

    kw = method.kwargs
    if method.family == "fouriermoe":
        cap = band_capacity(d_out, d_in, kw["num_experts"], "radial")
        if kw["n_frequency"] > cap:
            return f"n/a: n={kw['n_frequency']} > band capacity {cap}"
    if method.family == "fourierft" and kw["n_frequency"] > d_out * d_in:
        return f"n/a: n={kw['n_frequency']} > {d_out * d_in}"
    return None


def dense_gmac(method: Method, tokens: int, d_out: int, d_in: int) -> float:
    """Multiply-adds (1e9) of the dense path's expert matmul, ``T·Z·d_out·d_in``."""
    return tokens * method.kwargs.get("num_experts", 1) * d_out * d_in / 1e9


@dataclasses.dataclass
class Runner:
    """One method's model, optimizer and step on a fixed input."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    x: torch.Tensor
    grad_out: torch.Tensor
    base_params: tuple[torch.Tensor, ...]
    precision: str = "fp32"
    times: list[float] = dataclasses.field(default_factory=list)

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.x.grad = None
        self.forward_backward()
        self.optimizer.step()

    def forward_backward(self) -> None:
        from spectral_moe.precision import autocast

        with autocast(self.precision, self.x.device.type):
            y = self.model(self.x)
            aux = getattr(self.model.base_model, "get_router_aux_loss", lambda **_: None)(weighted=True)
        outputs, grads = [y], [self.grad_out.to(y.dtype)]
        if aux is not None:
            outputs.append(aux)
            grads.append(torch.ones_like(aux))
        torch.autograd.backward(outputs, grads)

    def layer(self) -> nn.Module:
        return self.model.base_model.model.proj

    def persistent_bytes(self) -> int:
        """Adapter tensors (parameters and buffers other than the base layer's) plus optimizer state."""
        base = {t.data_ptr() for t in self.base_params}
        tensors = [
            t for t in list(self.model.parameters()) + list(self.model.buffers()) if t.data_ptr() not in base
        ]
        for state in self.optimizer.state.values():
            tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
        return common.tensor_bytes(tensors)

    def peak_bytes(self, device: torch.device) -> int:
        self.optimizer.zero_grad(set_to_none=True)
        self.x.grad = None

        def work() -> None:
            self.forward_backward()
            self.optimizer.step()

        return self.persistent_bytes() + common.peak_tensor_bytes(work, device)


def build_runner(
    name: str,
    base: nn.Linear,
    x: torch.Tensor,
    grad_out: torch.Tensor,
    device: torch.device,
    precision: str = "fp32",
) -> Runner:
    import peft

    import spectral_moe  # noqa: F401  (registers the methods with peft)

    model = peft.get_peft_model(common.OneLinear(base), peft_config(METHODS[name])).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    return Runner(name, model, optimizer, x, grad_out, tuple(base.parameters()), precision)


def auto_choice(runner: Runner, tokens: int) -> str:
    from spectral_moe.precision import autocast

    with autocast(runner.precision, runner.x.device.type):  # the choice depends on the active precision
        return runner.layer().resolve_forward_mode("default", tokens)


def run_case(
    d_out: int,
    d_in: int,
    tokens: int,
    names: list[str],
    args: argparse.Namespace,
    device: torch.device,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Time and measure every method on one (shape, tokens); returns rows and auto-path checks."""
    torch.manual_seed(0)
    base = nn.Linear(d_in, d_out, bias=False).to(device).requires_grad_(False)
    x = torch.randn(tokens, d_in, device=device, requires_grad=True)
    grad_out = torch.randn(tokens, d_out, device=device)
    runners: dict[str, Runner] = {}
    skipped: dict[str, str] = {}
    for name in names:
        method = METHODS[name]
        reason = unsupported_reason(method, d_out, d_in)
        if (
            reason is None
            and name.endswith("-dense")
            and dense_gmac(method, tokens, d_out, d_in) > args.dense_max_gmac
        ):
            reason = f"skipped: {dense_gmac(method, tokens, d_out, d_in):.0f} GMAC > --dense-max-gmac"
        if reason is not None:
            skipped[name] = reason
            continue
        runners[name] = build_runner(name, base, x, grad_out, device, args.precision)
    for i in range(args.warmup + args.repeats):
        for runner in runners.values():
            seconds = common.timed(runner.step, device)
            if i >= args.warmup:
                runner.times.append(seconds)
    peaks = {n: r.peak_bytes(device) for n, r in runners.items()} if args.memory else {}
    profiles = {}
    for name in args.profile:
        if name in runners:
            runners[name].optimizer.zero_grad(set_to_none=True)
            profiles[name] = common.profile_table(runners[name].step, device, top=args.profile_top)

    ref_time = common.median(runners[REFERENCE].times) if REFERENCE in runners else float("nan")
    ref_peak = peaks.get(REFERENCE, float("nan"))
    rows = []
    for name in names:
        shape = f"{d_out}x{d_in}"
        if name in skipped:
            rows.append([shape, tokens, name, skipped[name], "", "", "", ""])
            continue
        runner = runners[name]
        t = common.median(runner.times)
        trainable = sum(p.numel() for p in runner.model.parameters() if p.requires_grad)
        peak = peaks.get(name, float("nan"))
        rows.append(
            [
                shape,
                tokens,
                name,
                common.fmt(1e3 * t, 1),
                common.fmt(t / ref_time),
                common.fmt_mib(peak),
                common.fmt(peak / ref_peak),
                f"{trainable:,}",
            ]
        )
        log(f"  {shape} T={tokens} {name}: {1e3 * t:.1f} ms ({t / ref_time:.2f}x lora-r8)")

    autos = []
    for name in names:
        if not (name.startswith("fouriermoe") and name.endswith("-auto")) or name not in runners:
            continue
        prefix = name[: -len("auto")]
        pick = auto_choice(runners[name], tokens)
        t_fft = common.median(runners[prefix + "fft"].times) if prefix + "fft" in runners else float("nan")
        t_dense = (
            common.median(runners[prefix + "dense"].times) if prefix + "dense" in runners else float("nan")
        )
        if t_fft == t_fft and t_dense == t_dense:
            faster = "fft" if t_fft < t_dense else "dense"
            right = str(pick == faster)
        elif t_fft == t_fft and prefix + "dense" in skipped:
            faster, right = "fft (dense skipped)", str(pick == "fft")
        else:
            faster, right = "n/a", "n/a"
        autos.append(
            [
                f"{d_out}x{d_in}",
                tokens,
                name[: -len("-auto")],
                pick,
                common.fmt(1e3 * t_fft, 1),
                common.fmt(1e3 * t_dense, 1),
                common.fmt(t_dense / t_fft),
                faster,
                right,
            ]
        )
        log(f"  auto {name}: picks {pick}, faster measured: {faster}, right: {right}")
    return {"rows": rows, "autos": autos, "profiles": profiles}


CALIBRATION_SHAPES = "64x64,128x128,256x256,576x576,576x192,576x1536,1024x1024,2048x2048"
CALIBRATION_TOKENS = "16,128,1024"
CALIBRATION_N = (64, 250, 1000)


def _path_steps(
    d_out: int,
    d_in: int,
    tokens: int,
    n: int,
    device: torch.device,
    experts: int = 8,
    top_k: int = 2,
    precision: str = "fp32",
) -> dict[str, Callable[[], None]]:
    """Forward + backward of the FourierMoE update alone (FFT path and dense path), same inputs; the
    forwards run under ``precision``'s autocast (``spectral_moe.precision.autocast``)."""
    from spectral_moe.precision import autocast
    from spectral_moe.spectral import bands, fourier

    rows, cols = bands.sample_positions(d_out, d_in, experts, n, "radial", 777)
    rows, cols = rows.to(device), cols.to(device)
    plan = fourier.fft_plan(rows, cols, d_out, d_in)
    coef_real = torch.randn(experts, n, device=device, requires_grad=True)
    coef_imag = torch.randn(experts, n, device=device, requires_grad=True)
    x = torch.randn(tokens, d_in, device=device, requires_grad=True)
    logits = torch.randn(tokens, experts, device=device, requires_grad=True)
    grad_out = torch.randn(tokens, d_out, device=device)

    def gates() -> torch.Tensor:
        probs = torch.softmax(logits, -1)
        top, index = probs.topk(top_k, -1)
        return torch.zeros_like(probs).scatter(-1, index, top / top.sum(-1, keepdim=True))

    def fft_step() -> None:
        with autocast(precision, device.type):
            y = fourier.apply_fft(
                x, coef_real, coef_imag, rows, cols, gates(), d_out, 150.0, top_k=top_k, plan=plan
            )
        y.backward(grad_out.to(y.dtype))

    def dense_step() -> None:
        with autocast(precision, device.type):
            dw = fourier.dense_delta_weight(coef_real, coef_imag, rows, cols, d_out, d_in, 150.0)
            y = fourier.apply_dense(x, dw, gates())
        y.backward(grad_out.to(y.dtype))

    return {"fft": fft_step, "dense": dense_step}


def _nonnegative_fit(features: torch.Tensor, seconds: torch.Tensor) -> torch.Tensor:
    """Least squares on relative error with non-negative coefficients (best over feature subsets)."""
    weighted = features / seconds[:, None]
    norms = weighted.abs().amax(0).clamp_min(1e-300)  # equilibrate: the columns span ~10 decades
    weighted = weighted / norms
    target = torch.ones_like(seconds)
    best, best_err = torch.zeros(features.shape[1], dtype=torch.float64), float("inf")
    count = features.shape[1]
    for mask in range(1, 2**count):
        cols = [i for i in range(count) if mask >> i & 1]
        sol = torch.linalg.lstsq(weighted[:, cols], target[:, None]).solution[:, 0]
        if (sol < 0).any():
            continue
        err = float(((weighted[:, cols] @ sol - target) ** 2).sum())
        if err < best_err:
            best_err, best = err, torch.zeros(count, dtype=torch.float64)
            best[cols] = sol
    return best / norms


def calibrate(args: argparse.Namespace, device: torch.device, log: Callable[[str], None]) -> str:
    """Measure both FourierMoE paths on a grid, fit the cost-model constants of ``--precision``
    (``FITTED_SECONDS[precision]``), check the choices the library's constants make."""
    from spectral_moe.spectral import cost_model
    from spectral_moe.spectral.bands import band_capacity

    precision = args.precision
    table_constants = cost_model.FITTED_SECONDS[precision]

    shapes = common.parse_shapes(args.shapes if args.shapes != DEFAULT_SHAPES else CALIBRATION_SHAPES)
    tokens_list = common.parse_ints(
        args.tokens if args.tokens != "1024,4096" else CALIBRATION_TOKENS, "--tokens"
    )
    cases = []
    for d_out, d_in in shapes:
        cap = band_capacity(d_out, d_in, 8, "radial")
        for n in sorted({min(n, cap) for n in CALIBRATION_N}):
            for tokens in tokens_list:
                steps = _path_steps(d_out, d_in, tokens, n, device, precision=precision)
                if tokens * 8 * d_out * d_in / 1e9 > args.dense_max_gmac / 20:
                    steps.pop("dense")  # far slower: measured on the benchmark shapes instead
                times: dict[str, list[float]] = {k: [] for k in steps}
                for i in range(args.warmup + args.repeats):
                    for key, step in steps.items():
                        seconds = common.timed(step, device)
                        if i >= args.warmup:
                            times[key].append(seconds)
                med = {k: min(v) for k, v in times.items()}  # the fit wants the work, not the interruptions
                cases.append((d_out, d_in, tokens, n, med))
                log(
                    f"  {d_out}x{d_in} T={tokens} n={n}: "
                    + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in med.items())
                )
    fits = {}
    for path, terms in table_constants.items():
        rows = [
            ([cost_model.path_work(t, o, i, 8, n, 2)[path][term] for term in terms], m[path])
            for o, i, t, n, m in cases
            if path in m
        ]
        feats = torch.tensor([r[0] for r in rows], dtype=torch.float64)
        secs = torch.tensor([r[1] for r in rows], dtype=torch.float64)
        fits[path] = _nonnegative_fit(feats, secs)
    constants = [
        f'FITTED_SECONDS["{precision}"]["{path}"]["{term}"] = {value:.2e}'
        for path, terms in table_constants.items()
        for term, value in zip(terms, fits[path].tolist())
    ]
    table = []
    for d_out, d_in, tokens, n, med in cases:
        work = cost_model.path_work(tokens, d_out, d_in, 8, n, 2)
        pred_fft, pred_dense = (
            float(torch.tensor(list(work[path].values()), dtype=torch.float64) @ fits[path])
            for path in ("fft", "dense")
        )
        cheaper = cost_model.fft_is_cheaper(tokens, d_out, d_in, 8, n, 2, precision=precision)
        pick = "fft" if cheaper else "dense"
        t_dense = med.get("dense", float("nan"))
        faster = ("fft" if med["fft"] < t_dense else "dense") if t_dense == t_dense else "fft (dense not run)"
        table.append(
            [
                f"{d_out}x{d_in}",
                tokens,
                n,
                common.fmt(1e3 * med["fft"], 2),
                common.fmt(1e3 * t_dense, 2),
                common.fmt(1e3 * pred_fft, 2),
                common.fmt(1e3 * pred_dense, 2),
                pick,
                faster,
                str(faster.startswith(pick)),
            ]
        )
    headers = [
        "shape",
        "tokens",
        "n",
        "fft ms",
        "dense ms",
        "fit fft ms",
        "fit dense ms",
        "auto picks (library)",
        "faster",
        "right",
    ]
    report = (
        "\n".join(
            [
                f"## Cost-model calibration, {precision} (FourierMoE update alone, 8 experts, top-2, fwd + bwd)",
                "",
                "Fitted constants (seconds per unit):",
                "",
                "```",
                *constants,
                "```",
                "",
                common.markdown_table(headers, table),
            ]
        )
        + "\n"
    )
    log(report)
    return report


HEADERS = ["shape", "tokens", "method", "step ms", "× lora-r8", "peak MB", "mem × lora-r8", "trainable"]
AUTO_HEADERS = [
    "shape",
    "tokens",
    "method",
    "auto picks",
    "fft ms",
    "dense ms",
    "dense/fft",
    "faster",
    "auto right",
]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma list of OUTxIN (d_out x d_in)")
    ap.add_argument("--tokens", default="1024,4096", help="comma list of token counts T")
    ap.add_argument("--methods", default="all", help=f"comma list of {list(METHODS)} or 'all'")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    common.add_clock_argument(ap, "steps")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16"),
        help="fp32, or bf16 autocast around every forward (as training with precision=bf16)",
    )
    ap.add_argument("--dense-max-gmac", type=float, default=600.0, help="skip FourierMoE dense beyond this")
    ap.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory step")
    ap.add_argument(
        "--profile", default="", help="comma list of methods to profile (torch.profiler, one step)"
    )
    ap.add_argument("--profile-top", type=int, default=15, help="rows of each profile")
    ap.add_argument(
        "--calibrate", action="store_true", help="fit the auto-path cost model instead (see calibrate)"
    )
    ap.add_argument("--out", default=None, help="write the tables as markdown here")
    return ap


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> str:
    """Run the benchmark; returns (and with ``--out`` writes) the markdown report."""
    args = build_parser().parse_args(argv)
    shapes = common.parse_shapes(args.shapes)
    tokens_list = common.parse_ints(args.tokens, "--tokens")
    names = common.parse_names(args.methods, list(METHODS), "--methods")
    args.profile = common.parse_names(args.profile, list(METHODS), "--profile") if args.profile else []
    if args.repeats < 1 or args.warmup < 0:
        raise ValueError("--repeats must be >= 1 and --warmup >= 0")
    device = common.resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    common.use_clock(args.clock, device)
    env_start = common.environment(device)
    log(env_start)
    if args.calibrate:
        command = "python benchmarks/adapter_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
        report = f"# FourierMoE cost-model calibration ({args.precision})\n\nCommand: `{command}`\n\nStart: {env_start}.\n\n"
        report += calibrate(args, device, log)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(report)
        return report
    rows, autos, profiles = [], [], []
    for d_out, d_in in shapes:
        for tokens in tokens_list:
            result = run_case(d_out, d_in, tokens, names, args, device, log)
            rows += result["rows"]
            autos += result["autos"]
            profiles += [(f"{d_out}x{d_in}", tokens, n, text) for n, text in result["profiles"].items()]
    command = "python benchmarks/adapter_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    parts = [
        "# Adapter step benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Start: {env_start}. End: {common.environment(device)}.",
        "",
        f"Precision {args.precision}, {args.clock} clock. Median of {args.repeats} timed round(s) after {args.warmup} "
        "warm-up round(s); methods timed "
        "round-robin in one process. `step ms`: forward + backward (x requires grad) + AdamW step. "
        "`peak MB`: adapter tensors + optimizer state + peak of tensor memory allocated during one step "
        "(base weight, x and the output gradient excluded).",
        "",
        common.markdown_table(HEADERS, rows),
    ]
    if autos:
        parts += ["", '## forward_mode="auto"', "", common.markdown_table(AUTO_HEADERS, autos)]
    for shape, tokens, name, text in profiles:
        parts += ["", f"## Profile: {name}, {shape}, T={tokens}", "", "```", text.rstrip(), "```"]
    report = "\n".join(parts) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(report)
    log(common.markdown_table(HEADERS, rows))
    if autos:
        log(common.markdown_table(AUTO_HEADERS, autos))
    for shape, tokens, name, text in profiles:
        log(f"profile {name} {shape} T={tokens}\n{text}")
    return report


if __name__ == "__main__":
    main()

"""Mechanism evidence: planted-structure targets on one adapted linear layer, at matched parameters.

    python benchmarks/mechanism.py all                  # every experiment, then the report
    python benchmarks/mechanism.py frame                # one experiment (frame | band | groups | lowrank)
    python benchmarks/mechanism.py orderscan            # diagnostic: FRAME-1 at fixed orders
    python benchmarks/mechanism.py report               # tables and figures from the finished results

Setup (every experiment). One frozen ``nn.Linear(d, d, bias=False)`` with ``W0 ~ N(0, 1/d)`` wrapped by
``peft.get_peft_model`` with each method's config (``spectral_moe.training.methods.build_peft_config``,
its defaults updated by the size options below). The adapter is trained to fit::

    y = (W0 + ΔW*_g) x          x [T, d] = ξ + μ_g,  ξ ~ N(0, I_d),  g the token's group      y [T, d]

with MSE, fresh batches of 64 tokens, ``create_optimizer`` (AdamW, no weight decay; FRAME's orders at
their default learning rate in their own Adam), learning rates decayed linearly to 0 (Trainer's default),
plus ``get_router_aux_loss(weighted=True)`` (the library's load-balancing term, coefficient 0.01) for
routed methods, exactly what training adds. One group (``μ = 0``) except in ``groups``. Reported: the
held-out loss relative to the target's power (every method starts at 1: the updates start at zero)::

    rel = E‖ŷ − y‖² / E‖ΔW*_g x‖²        over a fixed probe of 1024 tokens per group

every ``--eval-every`` steps; the final ``rel`` (mean ± std over seeds), the first step at which ``rel``
reaches 0.1 and 0.01 (10 % and 1 % of the target's power), and the curves.

Matched parameters: every method is sized to ``--budget`` trainable parameters (routers, router biases
and FRAME orders included); the counts of the built models are in the tables. Routed methods use
``Z = 4`` experts, top-2 (the library's default 8 experts would spend 40 % of the budget on the router at
d = 128). Methods:

========== =====================================================================================
lora       peft LoRA, rank r, α = 2r (α/r as the library default)
moelora    MoE-LoRA: 4 LoRA experts of rank r, top-2, router with bias
frame      FRAME: 4 experts of rank r, top-2, weighted transform, orders spread 0, 1/3, 2/3, 1, learned
frame1     FRAME with one expert (no router), rank r, order initialised at 0.5, learned
fourierft  peft FourierFT, n real coefficients at seeded uniform positions, scaling 150
fouriermoe FourierMoE: 4 experts × n complex coefficients in radial bands, top-2, router without bias
fouriermoe-bias  the same with a learnable router logit bias (``router_bias=True``, 4 more parameters)
frame1-aX  FRAME-1 with its order fixed at X (``orderscan`` only)
========== =====================================================================================

Learning rates: each method runs its grid (``LR_GRID``, 3 points; FourierMoE's grid is its spectrum
learning rate, its router at 1e-2) on the first seed; the other seeds run at the grid point with the
lowest final ``rel`` there (the same selection for every method, made on a seed that is also reported;
every grid point's json is kept and the tables list them).

Experiments (targets normalised to ``‖ΔW*‖_F² = d/4``, i.e. an output RMS of 0.5 against 1 for ``W0 x``):

``frame``   ``ΔW* = Re(𝓕^{−a*} B* A* 𝓕^{a*})`` (weighted transform, ``frame_orders.delta_weight``), ``A*``
            ``[r*, d]``, ``B*`` ``[d, r*]`` Gaussian, ``r* = 8``, ``a* ∈ {0.3, 0.7}``: a rank-``2r*``
            matrix that one FRAME expert of rank 8 represents exactly. Reported: the learned orders.
``band``    a Hermitian spectrum (``ΔW*`` real) with complex Gaussian coefficients on radial band ``b`` of
            the 4-band partition FourierMoE uses (``spectral.bands.band_partition``): ``dense-low`` (all of
            band 0), ``dense-high`` (all of band 3), ``grid`` (only the positions FourierMoE's expert 1
            samples: exactly representable by FourierMoE).
``groups``  4 groups, ``μ_g = 4 u_g`` (random unit vectors ``u_g``, visible to a linear router); group
            ``g``'s target lives on band ``g`` (``grid``: on FourierMoE's expert-``g`` positions;
            ``dense``: the whole band). Reported: the per-group expert load (``router_stats``
            ``dispatch_fraction`` on each group's probe) and the loss per group.
``lowrank`` ``ΔW* = B* A*`` with Gaussian factors of rank 8 (exactly representable by LoRA; the variant
            is called ``r8`` whatever ``--rank``).
``orderscan`` the ``lowrank`` target fitted by FRAME-1 at fixed orders 0, 0.25, 0.5, 0.75, 1 (lr 1e-2):
            the loss as a function of the order, to read the learned orders against.

"capacity floor" in the tables: the smallest ``rel`` the method's structure allows on that target
(``capacity_floor``: Eckart–Young for LoRA, the captured spectrum for FourierFT/FourierMoE), so a
measured loss can be read as "optimisation did not reach it" or "the structure cannot represent it".

Results: one json per (experiment, variant, method, learning rate, seed) under ``results/mechanism/``,
skipped when present (delete it to rerun); ``report`` writes ``results/mechanism/tables.md``, the
tables section of ``results/mechanism.md`` (between its ``<!-- tables -->`` markers) and
``results/figures/mechanism_*.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

try:
    from benchmarks.frame_orders import delta_weight

    from benchmarks import _common as common
except ModuleNotFoundError:  # run as a script: benchmarks/ is sys.path[0]
    import _common as common
    from frame_orders import delta_weight

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "mechanism"
FIGURES = ROOT / "results" / "figures"
REPORT_MD = ROOT / "results" / "mechanism.md"
MARK_BEGIN, MARK_END = "<!-- tables -->", "<!-- /tables -->"

EXPERTS, TOP_K = 4, 2
TARGET_POWER = 0.25  # ‖ΔW*‖_F² / d
GROUP_OFFSET = 4.0
ROUTER_LR = 1e-2  # FourierMoE's router when its grid is the spectrum learning rate

SCAN_ORDERS = (0.0, 0.25, 0.5, 0.75, 1.0)
SCAN_METHODS = tuple(f"frame1-a{a:g}" for a in SCAN_ORDERS)  # FRAME-1 with its order fixed at a
METHOD_NAMES = (
    "lora",
    "moelora",
    "frame",
    "frame1",
    "fourierft",
    "fouriermoe",
    "fouriermoe-bias",
    *SCAN_METHODS,
)
LR_GRID: dict[str, tuple[float, ...]] = {
    "lora": (3e-3, 1e-2, 3e-2),
    "moelora": (3e-3, 1e-2, 3e-2),
    "frame": (3e-3, 1e-2, 3e-2),
    "frame1": (3e-3, 1e-2, 3e-2),
    "fourierft": (1.5e-2, 5e-2, 1.5e-1),
    "fouriermoe": (1.5e-2, 5e-2, 1.5e-1),
    "fouriermoe-bias": (1.5e-2, 5e-2, 1.5e-1),
    **{m: (1e-2,) for m in SCAN_METHODS},  # frame1's best grid point on the frame and lowrank targets
}


@dataclass(frozen=True)
class Experiment:
    """One planted-target experiment: its variants and the methods compared on it."""

    name: str
    variants: tuple[str, ...]
    methods: tuple[str, ...]
    question: str


EXPERIMENTS: dict[str, Experiment] = {
    "frame": Experiment(
        "frame",
        ("a0.3", "a0.7"),
        ("frame1", "frame", "moelora", "lora"),
        "planted FRAME expert (weighted, rank 8) at order a*",
    ),
    "band": Experiment(
        "band",
        ("dense-low", "dense-high", "grid"),
        ("fouriermoe", "fouriermoe-bias", "fourierft", "lora", "moelora"),
        "planted band-limited spectrum (one radial band)",
    ),
    "groups": Experiment(
        "groups",
        ("grid", "dense"),
        ("fouriermoe", "fouriermoe-bias", "fourierft", "lora", "moelora"),
        "4 input groups, group g's target on band g",
    ),
    "lowrank": Experiment(
        "lowrank",
        ("r8",),
        ("lora", "fouriermoe", "fouriermoe-bias", "fourierft", "frame", "frame1", "moelora"),
        "planted spatial low-rank update (rank 8)",
    ),
    "orderscan": Experiment(
        "orderscan",
        ("lowrank",),
        SCAN_METHODS,
        "diagnostic: FRAME-1 at fixed orders on the lowrank target (why a learned order misses 0)",
    ),
}


@dataclass(frozen=True)
class Setup:
    """What every run of one invocation shares."""

    d: int = 128
    budget: int = 2560
    steps: int = 600
    batch: int = 64
    eval_every: int = 10
    probe: int = 1024
    rank: int = 8  # r* of the planted FRAME and low-rank targets


# ---------------------------------------------------------------- methods and their sizes


def method_options(method: str, setup: Setup) -> dict[str, Any]:
    """Options (over ``build_peft_config``'s defaults) that size ``method`` to ``setup.budget`` parameters.

    Counts for ``d_in = d_out = d``: LoRA ``2dr``; MoE-LoRA ``Z(2dr + d + 1)`` (router with bias); FRAME
    the same ``+ Z`` orders; FRAME-1 ``2dr + 1``; FourierFT ``n``; FourierMoE ``2Zn + Zd`` (complex, router
    without bias). The size knob is rounded to the nearest count."""
    d, p = setup.d, setup.budget
    routed = dict(num_experts=EXPERTS, top_k=TOP_K)
    if method == "lora":
        r = max(1, round(p / (2 * d)))
        return dict(r=r, lora_alpha=2.0 * r)
    if method in ("moelora", "frame"):
        extra = EXPERTS * (d + 1) + (EXPERTS if method == "frame" else 0)
        r = max(1, round((p - extra) / (2 * d * EXPERTS)))
        return dict(r=r, lora_alpha=2.0 * r, **routed)
    if method == "frame1":
        r = max(1, round((p - 1) / (2 * d)))
        return dict(r=r, lora_alpha=2.0 * r, num_experts=1, top_k=1, order_init=0.5)
    if method in SCAN_METHODS:
        fixed = dict(order_init=float(method.removeprefix("frame1-a")), learn_order=False)
        return {**method_options("frame1", setup), **fixed}
    if method == "fourierft":
        return dict(n_frequency=max(1, min(p, d * d)))
    if method in ("fouriermoe", "fouriermoe-bias"):
        from spectral_moe.spectral.bands import band_capacity

        bias = method == "fouriermoe-bias"
        n = max(1, round((p - EXPERTS * (d + bias)) / (2 * EXPERTS)))
        extra = dict(router_bias=True) if bias else {}
        return dict(n_frequency=min(n, band_capacity(d, d, EXPERTS)), **routed, **extra)
    raise ValueError(f"method must be one of {list(METHOD_NAMES)}, got {method!r}")


def library_method(method: str) -> str:
    if method.startswith("frame1"):
        return "frame"
    return {"fouriermoe-bias": "fouriermoe"}.get(method, method)


def build_model(method: str, setup: Setup, w0: torch.Tensor) -> nn.Module:
    """``peft.get_peft_model`` of a frozen ``nn.Linear`` with weight ``w0`` and ``method``'s sized config."""
    import peft

    import spectral_moe  # noqa: F401  (registers the methods with peft)
    from spectral_moe.training.methods import build_peft_config

    base = nn.Linear(setup.d, setup.d, bias=False)
    with torch.no_grad():
        base.weight.copy_(w0)
    config = build_peft_config(library_method(method), ["proj"], **method_options(method, setup))
    config.task_type = None  # a bare module: PeftModel, not PeftModelForCausalLM
    return peft.get_peft_model(common.OneLinear(base), config)


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def adapted_layer(model: nn.Module) -> nn.Module:
    return model.base_model.model.proj


# ---------------------------------------------------------------- planted targets


@dataclass
class Task:
    """Per-group targets ``ΔW*_g`` ``[G, d, d]`` and input offsets ``μ_g`` ``[G, d]`` (zero for one group)."""

    delta: torch.Tensor
    offsets: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def groups(self) -> int:
        return self.delta.shape[0]

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` [n, d] and the group of each row [n] (uniform over groups)."""
        d = self.delta.shape[-1]
        g = torch.randint(self.groups, (n,), generator=gen)
        return torch.randn(n, d, generator=gen) + self.offsets[g], g

    def target(self, w0: torch.Tensor, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``y_t = (W0 + ΔW*_{g_t}) x_t`` [n, d]."""
        return x @ w0.T + self.update(x, g)

    def update(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``ΔW*_{g_t} x_t`` [n, d]: every group's map on every token ``[G, n, d]``, then each token's own."""
        every = x[None] @ self.delta.transpose(1, 2)
        return every[g, torch.arange(x.shape[0])]


def normalise(delta: torch.Tensor) -> torch.Tensor:
    """``delta`` scaled to ``‖ΔW‖_F² = TARGET_POWER · d`` (float32)."""
    d = delta.shape[-1]
    return (delta * math.sqrt(TARGET_POWER * d) / delta.norm()).float()


def band_delta(d: int, positions: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Real ``ΔW = Re(IDFT2(Σ_j c_j δ[u_j, v_j]))`` [d, d] for flat half-plane ``positions`` [S] and complex
    Gaussian ``c``: a Hermitian spectrum on exactly those positions and their mirrors
    (``spectral.fourier.dense_delta_weight``, float64)."""
    from spectral_moe.spectral.fourier import dense_delta_weight

    s = positions.numel()
    real = torch.randn(1, s, generator=gen, dtype=torch.float64)
    imag = torch.randn(1, s, generator=gen, dtype=torch.float64)
    rows, cols = (positions // d)[None], (positions % d)[None]
    return dense_delta_weight(real, imag, rows, cols, d, d, 1.0)[0]


def band_positions(d: int, band: int, variant: str) -> torch.Tensor:
    """Flat positions of radial band ``band`` (``dense``: all of it; ``grid``: the ones FourierMoE's expert
    ``band`` samples at the sized ``n_frequency`` and its default seed)."""
    from spectral_moe.spectral import bands

    if variant.startswith("dense"):
        return bands.band_partition(d, d, EXPERTS, "radial")[band]
    raise ValueError(variant)


def grid_positions(d: int, band: int, setup: Setup) -> torch.Tensor:
    from spectral_moe.spectral import bands
    from spectral_moe.tuners.fouriermoe import FourierMoEConfig

    n = method_options("fouriermoe", setup)["n_frequency"]
    rows, cols = bands.sample_positions(d, d, EXPERTS, n, "radial", FourierMoEConfig.random_loc_seed)
    return rows[band] * d + cols[band]


def make_task(experiment: str, variant: str, setup: Setup, seed: int) -> Task:
    """The planted target of ``(experiment, variant)``, drawn from ``seed`` (one target per seed)."""
    d = setup.d
    gen = torch.Generator().manual_seed(10_000 + seed)
    zero = torch.zeros(1, d)
    if experiment == "frame":
        a_star = float(variant.removeprefix("a"))
        a_mat = torch.randn(setup.rank, d, generator=gen, dtype=torch.float64)
        b_mat = torch.randn(d, setup.rank, generator=gen, dtype=torch.float64)
        delta = delta_weight(a_mat, b_mat, a_star, "weighted")
        return Task(normalise(delta)[None], zero, {"a_star": a_star, "rank": setup.rank})
    if experiment == "band":
        band = {"dense-low": 0, "dense-high": 3, "grid": 1}[variant]
        pos = grid_positions(d, band, setup) if variant == "grid" else band_positions(d, band, variant)
        return Task(normalise(band_delta(d, pos, gen))[None], zero, {"band": band, "support": pos.numel()})
    if experiment == "groups":
        deltas = []
        for g in range(EXPERTS):
            pos = grid_positions(d, g, setup) if variant == "grid" else band_positions(d, g, "dense")
            deltas.append(normalise(band_delta(d, pos, gen)))
        u = torch.randn(EXPERTS, d, generator=gen)
        offsets = GROUP_OFFSET * u / u.norm(dim=-1, keepdim=True)
        return Task(torch.stack(deltas), offsets, {"groups": EXPERTS})
    if experiment == "orderscan":
        return make_task(variant, EXPERIMENTS[variant].variants[0], setup, seed)
    if experiment == "lowrank":
        a_mat = torch.randn(setup.rank, d, generator=gen, dtype=torch.float64)
        b_mat = torch.randn(d, setup.rank, generator=gen, dtype=torch.float64)
        return Task(normalise(b_mat @ a_mat)[None], zero, {"rank": setup.rank})
    raise ValueError(f"experiment must be one of {list(EXPERIMENTS)}, got {experiment!r}")


# ---------------------------------------------------------------- one run


def relative_loss(
    model: nn.Module, task: Task, w0: torch.Tensor, x: torch.Tensor, g: torch.Tensor
) -> tuple[float, list[float]]:
    """``E‖ŷ − y‖² / E‖ΔW*_g x‖²`` on the probe, overall and per group."""
    with torch.no_grad():
        err = (model(x) - task.target(w0, x, g)).pow(2).sum(-1)
        power = task.update(x, g).pow(2).sum(-1)
    per_group = [float(err[g == k].sum() / power[g == k].sum()) for k in range(task.groups)]
    return float(err.sum() / power.sum()), per_group


def probe_inputs(task: Task, setup: Setup) -> tuple[torch.Tensor, torch.Tensor]:
    """``setup.probe`` tokens per group, fixed (seed 12345)."""
    gen = torch.Generator().manual_seed(12345)
    d = task.delta.shape[-1]
    g = torch.arange(task.groups).repeat_interleave(setup.probe)
    return torch.randn(g.numel(), d, generator=gen) + task.offsets[g], g


def first_step_below(steps: Sequence[int], values: Sequence[float], threshold: float) -> int | None:
    """First step whose value is ≤ ``threshold`` (None if none)."""
    return next((s for s, v in zip(steps, values) if v <= threshold), None)


def routing_report(model: nn.Module, task: Task, x: torch.Tensor, g: torch.Tensor) -> dict[str, Any] | None:
    """Per group: the router's ``dispatch_fraction`` and ``mean_prob`` on that group's probe tokens, read
    from the library's ``router_stats`` (``tuners.introspection.routed_layers``)."""
    from spectral_moe.tuners.introspection import routed_layers

    layers = routed_layers(model)
    if not layers or not adapted_layer(model).is_routed("default"):
        return None
    _, layer = layers[0]
    out: dict[str, Any] = {"dispatch_fraction": [], "mean_prob": []}
    model.eval()
    with torch.no_grad():
        for k in range(task.groups):
            model(x[g == k])
            stats = layer.router_stats["default"]
            out["dispatch_fraction"].append([round(float(v), 4) for v in stats["dispatch_fraction"]])
            out["mean_prob"].append([round(float(v), 4) for v in stats["mean_prob"]])
    return out


def frame_orders(model: nn.Module) -> list[float] | None:
    layer = adapted_layer(model)
    if not hasattr(layer, "frame_orders"):
        return None
    return [float(v) for v in layer.frame_orders("default").detach()]


def train_run(
    experiment: str, variant: str, method: str, lr: float, seed: int, setup: Setup
) -> dict[str, Any]:
    """Train ``method`` on the planted target of ``(experiment, variant, seed)``; the result dict (json)."""
    from spectral_moe.training.optim import create_optimizer

    task = make_task(experiment, variant, setup, seed)
    w0 = torch.randn(setup.d, setup.d, generator=torch.Generator().manual_seed(seed)) / math.sqrt(setup.d)
    torch.manual_seed(seed)
    model = build_model(method, setup, w0)
    model.train()
    main_lr, spectrum_lr = (ROUTER_LR, lr) if method.startswith("fouriermoe") else (lr, None)
    opt = create_optimizer(model, lr=main_lr, spectrum_lr=spectrum_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / setup.steps)
    gen = torch.Generator().manual_seed(seed + 1)
    probe_x, probe_g = probe_inputs(task, setup)
    base_model = model.base_model
    steps, curve, order_curve = [0], [relative_loss(model, task, w0, probe_x, probe_g)[0]], []
    orders = frame_orders(model)
    if orders is not None:
        order_curve.append(orders)
    t0 = time.perf_counter()
    for step in range(1, setup.steps + 1):
        x, g = task.sample(setup.batch, gen)
        loss = (model(x) - task.target(w0, x, g)).pow(2).mean()
        aux = getattr(base_model, "get_router_aux_loss", lambda **_: None)(weighted=True)
        if aux is not None:
            loss = loss + aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % setup.eval_every == 0 or step == setup.steps:
            model.eval()
            steps.append(step)
            curve.append(relative_loss(model, task, w0, probe_x, probe_g)[0])
            model.train()
            if orders is not None:
                order_curve.append(frame_orders(model))
    wall = time.perf_counter() - t0
    model.eval()
    final, per_group = relative_loss(model, task, w0, probe_x, probe_g)
    result = {
        "experiment": experiment,
        "variant": variant,
        "method": method,
        "lr": lr,
        "seed": seed,
        "setup": asdict(setup),
        "options": method_options(method, setup),
        "trainable_params": trainable_count(model),
        "task": task.info,
        "steps": steps,
        "rel_loss": curve,
        "final_rel_loss": final,
        "final_rel_loss_per_group": per_group,
        "steps_to_10pct": first_step_below(steps, curve, 0.1),
        "steps_to_1pct": first_step_below(steps, curve, 0.01),
        "train_seconds": round(wall, 2),
    }
    if orders is not None:
        result["orders"] = order_curve[-1]
        result["order_curve"] = order_curve
    routing = routing_report(model, task, probe_x, probe_g)
    if routing is not None:
        result["routing"] = routing
    return result


# ---------------------------------------------------------------- resumable sweep


def result_path(root: Path, experiment: str, variant: str, method: str, lr: float, seed: int) -> Path:
    return root / experiment / variant / f"{method}_lr{lr:g}_s{seed}.json"


def run_experiment(
    experiment: str,
    setup: Setup,
    seeds: Sequence[int],
    root: Path = RESULTS,
    methods: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    lr_grid: dict[str, tuple[float, ...]] | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Every (variant, method, learning rate, seed) of ``experiment`` whose json is missing: the whole
    learning-rate grid on the first seed, the other seeds at the grid point best on it (lowest final
    ``rel``). Returns the paths of all its results (finished before or now); writes are atomic."""
    spec = EXPERIMENTS[experiment]
    grid = lr_grid or LR_GRID
    seeds = list(seeds)
    paths = []

    def one(variant: str, method: str, lr: float, seed: int) -> dict[str, Any]:
        path = result_path(root, experiment, variant, method, lr, seed)
        paths.append(path)
        if path.exists():
            return json.loads(path.read_text())
        result = train_run(experiment, variant, method, lr, seed, setup)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        os.replace(tmp, path)
        log(
            f"{experiment}/{variant} {method} lr {lr:g} seed {seed}: rel {result['final_rel_loss']:.3e}"
            f" ({result['trainable_params']} params, {result['train_seconds']:.1f} s)"
        )
        return result

    for variant in variants or spec.variants:
        for method in methods or spec.methods:
            sweep = [one(variant, method, lr, seeds[0]) for lr in grid[method]]
            lr = min(sweep, key=lambda r: r["final_rel_loss"])["lr"]
            for seed in seeds[1:]:
                one(variant, method, lr, seed)
    return paths


# ---------------------------------------------------------------- report


def load_results(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("*/*/*.json"))]


def geo_mean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(max(v, 1e-30)) for v in values))


def best_lr(runs: list[dict[str, Any]]) -> float:
    """The learning rate run on the most seeds (the one selected on the first seed), ties broken by the
    lowest geometric mean final ``rel`` over seeds."""
    by_lr: dict[float, list[float]] = {}
    for r in runs:
        by_lr.setdefault(r["lr"], []).append(r["final_rel_loss"])
    return min(by_lr, key=lambda lr: (-len(by_lr[lr]), geo_mean(by_lr[lr])))


def mean_std(values: Sequence[float], fmt: str = "{:.2e}") -> str:
    if len(values) < 2:
        return fmt.format(values[0]) if values else "n/a"
    return f"{fmt.format(statistics.fmean(values))} ± {fmt.format(statistics.stdev(values))}"


def steps_cell(values: Sequence[int | None], steps: int) -> str:
    """Mean steps to a threshold over seeds, ``k/n`` reached when not all seeds reached it."""
    reached = [v for v in values if v is not None]
    if not reached:
        return f"> {steps}"
    text = f"{statistics.fmean(reached):.0f}"
    return text if len(reached) == len(values) else f"{text} ({len(reached)}/{len(values)} seeds)"


def selected(results: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """``(experiment, variant, method) → runs at the best learning rate`` (seed order)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["experiment"], r["variant"], r["method"]), []).append(r)
    out = {}
    for key, runs in groups.items():
        lr = best_lr(runs)
        out[key] = sorted((r for r in runs if r["lr"] == lr), key=lambda r: r["seed"])
    return out


def lr_table(results: list[dict[str, Any]], experiment: str, variant: str) -> str:
    """Geometric-mean final ``rel`` at every grid point (the selection's evidence)."""
    cells: dict[str, dict[float, list[float]]] = {}
    for r in results:
        if (r["experiment"], r["variant"]) == (experiment, variant):
            cells.setdefault(r["method"], {}).setdefault(r["lr"], []).append(r["final_rel_loss"])
    rows = [
        [m, ", ".join(f"{lr:g}: {geo_mean(v):.1e} ({len(v)})" for lr, v in sorted(by_lr.items()))]
        for m, by_lr in cells.items()
    ]
    return common.markdown_table(["method", "lr: geometric-mean final rel (seeds run at that lr)"], rows)


def floor_cell(runs: list[dict[str, Any]]) -> str:
    floors = [capacity_floor(r) for r in runs]
    return "—" if any(f is None for f in floors) else mean_std(floors)


def capacity_floor(run: dict[str, Any]) -> float | None:
    """The smallest ``rel`` the method's structure allows on this run's (one-group) target, or None.

    With ``F = DFT2(ΔW*)`` and ``‖ΔW*‖_F² ∝ Σ|F|²`` (Parseval):

    * LoRA rank r: ``Σ_{i>r} σ_i² / Σ σ_i²`` (Eckart–Young; ``σ`` the singular values of ``ΔW*``);
    * FourierFT (real coefficients at positions ``q``, basis ``Re e_q = cos``): it captures
      ``2 (Re F_q)²`` per distinct conjugate pair hit (``|F_q|²`` at self-conjugate positions);
    * FourierMoE (complex coefficients, both phases): expert ``z`` captures ``Σ_{q ∈ P_z} 2|F_q|²``; the
      floor is for constant gates over the best two experts (top-2), ``1 − (best two)/total``.

    Other methods (and multi-group targets): None."""
    method, setup = run["method"], Setup(**run["setup"])
    if run["experiment"] == "groups" or method not in ("lora", "fourierft", "fouriermoe", "fouriermoe-bias"):
        return None
    delta = make_task(run["experiment"], run["variant"], setup, run["seed"]).delta[0].double()
    d = setup.d
    if method == "lora":
        sv2 = torch.linalg.svdvals(delta).pow(2)
        return float(sv2[run["options"]["r"] :].sum() / sv2.sum())
    from spectral_moe.spectral import bands

    spec = torch.fft.fft2(delta).flatten()
    total = spec.abs().pow(2).sum()
    layer = adapted_layer(build_model(method, setup, torch.zeros(d, d)))
    if method == "fourierft":
        rows, cols = layer.indices["default"]
        flat = rows * d + cols
        rep = torch.unique(torch.minimum(flat, bands.mirror_index(flat, d, d)))  # one per conjugate pair
        self_conj = rep == bands.mirror_index(rep, d, d)
        captured = torch.where(self_conj, spec[rep].abs().pow(2), 2 * spec[rep].real.pow(2)).sum()
        return float(1 - captured / total)
    flat = layer.fouriermoe_rows["default"] * d + layer.fouriermoe_cols["default"]  # [Z, n]
    per_expert = 2 * spec[flat].abs().pow(2).sum(-1)  # [Z]
    return float(1 - per_expert.topk(TOP_K).values.sum() / total)


def summary_table(runs_by_method: dict[str, list[dict[str, Any]]]) -> str:
    headers = [
        "method",
        "trainable params",
        "lr",
        "seeds",
        "final loss / power",
        "capacity floor",
        "steps to 10 %",
        "steps to 1 %",
    ]
    rows = []
    for method, runs in runs_by_method.items():
        steps = runs[0]["setup"]["steps"]
        opts = ", ".join(f"{k}={v}" for k, v in runs[0]["options"].items() if k in ("r", "n_frequency"))
        rows.append(
            [
                f"{method} ({opts})",
                runs[0]["trainable_params"],
                f"{runs[0]['lr']:g}",
                len(runs),
                mean_std([r["final_rel_loss"] for r in runs]),
                floor_cell(runs),
                steps_cell([r["steps_to_10pct"] for r in runs], steps),
                steps_cell([r["steps_to_1pct"] for r in runs], steps),
            ]
        )
    return common.markdown_table(headers, rows)


def folded_order(a: float) -> float:
    """The representative in ``[0, 1]`` of ``a``'s family: ``ΔW`` is even and 4-periodic in the order, and
    ``ΔW(2 − a; A, B) = J ΔW(a; A, B) J = ΔW(a; A J, J B)`` (``J`` the parity), so with learned factors
    ``a``, ``−a``, ``2 − a`` and ``a + 4`` fit the same targets."""
    b = a % 2.0
    return min(b, 2.0 - b)


def orders_table(runs_by_method: dict[str, list[dict[str, Any]]], a_star: float) -> str:
    rows = []
    for method, runs in runs_by_method.items():
        if "orders" not in runs[0]:
            continue
        for r in runs:
            orders = r["orders"]
            load = r.get("routing", {}).get("dispatch_fraction", [[1.0]])[0]
            top = max(range(len(orders)), key=lambda z: load[z]) if len(load) == len(orders) else 0
            rows.append(
                [
                    method,
                    r["seed"],
                    ", ".join(f"{o:.3f}" for o in orders),
                    ", ".join(f"{v:.2f}" for v in load),
                    f"{abs(folded_order(orders[top]) - a_star):.1e}",
                ]
            )
    headers = [
        "method",
        "seed",
        "final orders",
        "expert load (dispatch fraction)",
        "|fold(a) − a*| (most-loaded expert)",
    ]
    return common.markdown_table(headers, rows)


def routing_table(runs: list[dict[str, Any]], experiment: str) -> str:
    """Per probe group, mean over seeds of each expert's dispatch fraction ``f_z`` (share of the
    (token, slot) pairs: 0.5 = in every token's top-2) and mean router probability ``P_z``, and the
    group's final ``rel``."""
    routing = [r["routing"] for r in runs]
    groups, experts = len(routing[0]["dispatch_fraction"]), len(routing[0]["dispatch_fraction"][0])
    rows = []
    for g in range(groups):
        cells = []
        for z in range(experts):
            f = statistics.fmean(x["dispatch_fraction"][g][z] for x in routing)
            p = statistics.fmean(x["mean_prob"][g][z] for x in routing)
            cells.append(f"{f:.2f} / {p:.2f}")
        rel = [r["final_rel_loss_per_group"][g] for r in runs]
        label = f"group {g} (band {g})" if experiment == "groups" else "all tokens"
        rows.append([label, *cells, mean_std(rel)])
    headers = ["probe", *[f"expert {z}: f / P" for z in range(experts)], "final rel of the probe"]
    return common.markdown_table(headers, rows)


def plot_curves(key: tuple[str, str], runs_by_method: dict[str, list[dict[str, Any]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, runs in runs_by_method.items():
        steps = runs[0]["steps"]
        curves = torch.tensor([r["rel_loss"] for r in runs], dtype=torch.float64).clamp_min(1e-15)
        mid = curves.log().mean(0).exp()
        line = ax.plot(steps, mid, label=f"{method} ({runs[0]['trainable_params']} p, lr {runs[0]['lr']:g})")[
            0
        ]
        ax.fill_between(steps, curves.min(0).values, curves.max(0).values, color=line.get_color(), alpha=0.2)
    ax.set_yscale("log")
    ax.axhline(0.1, color="grey", lw=0.5, ls="--")
    ax.axhline(0.01, color="grey", lw=0.5, ls="--")
    ax.set_xlabel("step")
    ax.set_ylabel("held-out loss / target power")
    ax.set_title(f"{key[0]} / {key[1]} (geometric mean, min-max over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_orders(runs_by_method: dict[str, list[dict[str, Any]]], a_star: float, out: Path) -> None:
    """Every learned order against the step (FRAME-1 thick, routed FRAME thin), folded to ``[0, 1]``
    (``folded_order``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    styles = {"frame1": dict(lw=2.0, color="C0"), "frame": dict(lw=0.8, color="C1")}
    for method, style in styles.items():
        for i, r in enumerate(runs_by_method.get(method, [])):
            orders = torch.tensor(r["order_curve"], dtype=torch.float64).remainder(2.0)  # [evals, Z]
            orders = torch.minimum(orders, 2.0 - orders)
            for z in range(orders.shape[1]):
                label = method if i == 0 and z == 0 else None
                ax.plot(r["steps"], orders[:, z], label=label, alpha=0.8, **style)
    ax.axhline(a_star, color="k", ls="--", lw=0.8, label="a*")
    ax.set_xlabel("step")
    ax.set_ylabel("order, folded to [0, 1]")
    ax.set_title(f"learned orders, planted a* = {a_star} (all seeds and experts)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def report(root: Path = RESULTS, figures: Path | None = FIGURES, md: Path | None = REPORT_MD) -> str:
    """Tables (markdown) of every finished result under ``root``; figures and ``md``'s tables section."""
    results = load_results(root)
    chosen = selected(results)
    lines = []
    for name, spec in EXPERIMENTS.items():
        for variant in spec.variants:
            runs_by_method = {
                m: chosen[(name, variant, m)] for m in spec.methods if (name, variant, m) in chosen
            }
            if not runs_by_method:
                continue
            setup = next(iter(runs_by_method.values()))[0]["setup"]
            lines += [
                f"### {name} / {variant}: {spec.question}",
                "",
                f"d = {setup['d']}, budget {setup['budget']} parameters, {setup['steps']} steps of "
                f"{setup['batch']} tokens.",
                "",
                summary_table(runs_by_method),
                "",
                "Learning-rate grid:",
                "",
                lr_table(results, name, variant),
                "",
            ]
            if name == "frame":
                a_star = float(variant.removeprefix("a"))
                lines += [orders_table(runs_by_method, a_star), ""]
                if figures is not None:
                    fig = figures / f"mechanism_{name}_{variant}_orders.png"
                    plot_orders(runs_by_method, a_star, fig)
                    lines += [f"![{name} {variant} orders](figures/{fig.name})", ""]
            for method in ("fouriermoe", "fouriermoe-bias", "moelora"):
                runs = runs_by_method.get(method)
                if name in ("groups", "band") and runs and "routing" in runs[0]:
                    lines += [
                        f"Routing of {method} (dispatch fraction f / mean router probability P per expert, "
                        "mean over seeds):",
                        "",
                        routing_table(runs, name),
                        "",
                    ]
            if figures is not None:
                fig = figures / f"mechanism_{name}_{variant}.png"
                plot_curves((name, variant), runs_by_method, fig)
                lines += [f"![{name} {variant}](figures/{fig.name})", ""]
    text = "\n".join(lines)
    root.mkdir(parents=True, exist_ok=True)
    (root / "tables.md").write_text(text)
    if md is not None:
        body = md.read_text() if md.exists() else f"# Mechanism evidence\n\n{MARK_BEGIN}\n{MARK_END}\n"
        if MARK_BEGIN not in body:
            body += f"\n{MARK_BEGIN}\n{MARK_END}\n"
        head, rest = body.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1] if MARK_END in rest else ""
        md.write_text(f"{head}{MARK_BEGIN}\n{text}\n{MARK_END}{tail}")
    return text


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=[*EXPERIMENTS, "all", "report"])
    p.add_argument("--d", type=int, default=Setup.d)
    p.add_argument("--budget", type=int, default=Setup.budget, help="trainable parameters per method")
    p.add_argument("--steps", type=int, default=Setup.steps)
    p.add_argument("--batch", type=int, default=Setup.batch)
    p.add_argument("--eval-every", type=int, default=Setup.eval_every)
    p.add_argument("--probe", type=int, default=Setup.probe, help="held-out tokens per group")
    p.add_argument("--rank", type=int, default=Setup.rank, help="r* of the frame and lowrank targets")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--methods", default="all", help=f"comma list of {list(METHOD_NAMES)} or all")
    p.add_argument("--variants", default=None, help="comma list (default: the experiment's)")
    p.add_argument("--one-lr", action="store_true", help="only the middle point of each method's grid")
    p.add_argument("--root", type=Path, default=RESULTS, help="where the json results go")
    p.add_argument("--md", type=Path, default=REPORT_MD, help="markdown whose tables section is rewritten")
    p.add_argument("--figures", type=Path, default=FIGURES)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    setup = Setup(args.d, args.budget, args.steps, args.batch, args.eval_every, args.probe, args.rank)
    grid = {m: (g[len(g) // 2],) for m, g in LR_GRID.items()} if args.one_lr else LR_GRID
    names = list(EXPERIMENTS) if args.what == "all" else [] if args.what == "report" else [args.what]
    for name in names:
        methods = None
        if args.methods != "all":
            methods = [
                m
                for m in common.parse_names(args.methods, METHOD_NAMES, "--methods")
                if m in EXPERIMENTS[name].methods
            ]
        variants = args.variants.split(",") if args.variants else None
        run_experiment(name, setup, range(args.seeds), args.root, methods, variants, grid, log)
    log(f"load average {os.getloadavg()}")
    return report(args.root, args.figures, args.md)


if __name__ == "__main__":
    main()

"""FRAME orders: how sensitive ΔW is to the order, and what the orders can learn (planted targets).

    python benchmarks/frame_orders.py sensitivity --widths 64 576 2048
    python benchmarks/frame_orders.py planted --transforms weighted hermite chirp

``sensitivity``: for each transform and width ``d`` (square ``d × d`` expert, rank ``r``, random
Gaussian ``A``, ``B``), the relative change of one expert's update when its order moves by ``δ``::

    ρ(δ) = ‖ΔW(a + δ) − ΔW(a)‖_F / ‖ΔW(a)‖_F          ΔW(a) = Re(𝓕^{−a} B A 𝓕^{a})   [d, d]

median over the orders ``a`` and seeds, and ``δ_ρ*``: the move at which ``ρ`` reaches the threshold
``ρ* = 2 %`` (log-log interpolation). Adam moves a parameter by about its learning rate per step,
so ``δ_ρ*`` is the largest order learning rate at which one step changes an expert by less than ρ*.

``planted``: one ``nn.Linear(d, d)`` with zero base weight and bias; the target ``ΔW* x`` with
``ΔW*`` one FRAME expert of rank 1 at order ``a*`` (random ``A*``, ``B*``, the same transform).
FRAME is trained with ``create_optimizer`` (AdamW, ``lr = 1e-2`` for the factors, the library's default
order learning rate unless ``--order-lr``; both decayed linearly to 0, as ``Trainer`` does) on the MSE
against the target for random Gaussian ``x`` (batch 64);
printed: the final order and the held-out loss relative to the target's power
``E‖ΔW* x‖² / E‖ΔW* x‖²`` for FRAME and for MoE-LoRA with the same experts and rank. The spatial
case (``a* = 0``) is also run with the default ``order_init`` at 4 experts, top-2, with and without
the router bias (``router_bias``) and with the load-balancing loss off and at 0.01 (``--spatial-only``:
this case alone).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn

from spectral_moe import FrameConfig, MoELoraConfig, create_optimizer
from spectral_moe.routing import route, router_loss_stats, router_losses_from_stats
from spectral_moe.spectral.frame import transformed_factors
from spectral_moe.tuners.frame import FrameLinear

THRESHOLD = 0.02


def delta_weight(a_mat: torch.Tensor, b_mat: torch.Tensor, order: float, method: str) -> torch.Tensor:
    """``Re(𝓕^{−a} B A 𝓕^{a})`` [M, N] of one expert via its transformed factors (float64)."""
    a2, b2 = transformed_factors(a_mat[None], b_mat[None], torch.tensor([order], dtype=torch.float64), method)
    return b2[0] @ a2[0]


def sensitivity(
    method: str,
    d: int,
    deltas: list[float],
    orders: tuple[float, ...] = (0.3, 0.5, 0.8),
    seeds: int = 3,
    r: int = 4,
) -> list[float]:
    """Median over ``orders`` × ``seeds`` of ``ρ(δ)`` for each ``δ`` in ``deltas``."""
    out = []
    rows = []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        a_mat = torch.randn(r, d, generator=g, dtype=torch.float64)
        b_mat = torch.randn(d, r, generator=g, dtype=torch.float64)
        for a in orders:
            w0 = delta_weight(a_mat, b_mat, a, method)
            n0 = w0.norm()
            rows.append(
                [float((delta_weight(a_mat, b_mat, a + dl, method) - w0).norm() / n0) for dl in deltas]
            )
    table = torch.tensor(rows)
    out = table.median(dim=0).values.tolist()
    return out


def crossing(deltas: list[float], rho: list[float], threshold: float = THRESHOLD) -> float:
    """``δ`` where ``ρ(δ)`` first reaches ``threshold`` (log-log interpolation between grid points)."""
    for i in range(1, len(deltas)):
        if rho[i] >= threshold > rho[i - 1]:
            t = (math.log(threshold) - math.log(rho[i - 1])) / (math.log(rho[i]) - math.log(rho[i - 1]))
            return math.exp(math.log(deltas[i - 1]) + t * (math.log(deltas[i]) - math.log(deltas[i - 1])))
    return float("nan")


def run_sensitivity(methods: list[str], widths: list[int]) -> None:
    deltas = [10 ** (k / 4) for k in range(-24, -3)]  # 1e-6 .. 0.1
    print(
        f"\nthreshold rho* = {THRESHOLD:.0%}; rho(delta) medians over orders (0.3, 0.5, 0.8) x 3 seeds, r = 4\n"
    )
    print("| transform | d | rho(1e-4) | rho(1e-3) | rho(2.5e-3) | rho(1e-2) | delta at rho* | d · delta |")
    print("|---|---|---|---|---|---|---|---|")
    for method in methods:
        for d in widths:
            t0 = time.perf_counter()
            grid = deltas + [2.5e-3]
            rho = sensitivity(method, d, grid)
            at = dict(zip(grid, rho))
            dl = crossing(deltas, rho[: len(deltas)])
            pick = {k: at[min(grid, key=lambda g: abs(math.log(g / k)))] for k in (1e-4, 1e-3, 1e-2)}
            print(
                f"| {method} | {d} | {pick[1e-4]:.2e} | {pick[1e-3]:.2e} | {at[2.5e-3]:.2e} | {pick[1e-2]:.2e} "
                f"| {dl:.2e} | {d * dl:.3g} |  ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )


def _layer(config, d: int) -> FrameLinear:
    base = nn.Linear(d, d)
    with torch.no_grad():
        base.weight.zero_()
        base.bias.zero_()
    base.requires_grad_(False)  # frozen, as under get_peft_model: only the adapter trains
    return FrameLinear(base, "default", config)


def train_planted(
    config,
    target: torch.Tensor,
    steps: int = 600,
    lr: float = 1e-2,
    order_lr: float | None = None,
    batch: int = 64,
    seed: int = 0,
    aux_coef: float = 0.0,
) -> tuple[FrameLinear, float]:
    """Train a FRAME/MoE-LoRA layer on ``y = target @ x`` (+ ``aux_coef · L_aux``, the Switch
    load-balancing loss of its router); returns the layer and the held-out relative loss."""
    torch.manual_seed(seed)
    d = target.shape[1]
    layer = _layer(config, d)
    opt = create_optimizer(layer, lr=lr, order_lr=order_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)  # Trainer's default: linear decay
    for _ in range(steps):
        x = torch.randn(batch, d)
        loss = (layer(x) - x @ target.T).pow(2).mean()
        if aux_coef and layer.is_routed("default"):
            routing = route(layer.frame_router["default"](x), config.top_k, config.router_temperature)
            aux, _ = router_losses_from_stats([router_loss_stats(routing)])  # [1]: this layer's L_aux
            loss = loss + aux_coef * aux[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        x = torch.randn(4096, d, generator=torch.Generator().manual_seed(12345))
        ref = x @ target.T
        rel = float((layer(x) - ref).pow(2).mean() / ref.pow(2).mean())
    return layer, rel


def planted_target(method: str, a_star: float, d: int, seed: int = 0) -> torch.Tensor:
    """``ΔW*`` [d, d] (float32): a rank-1 expert at order ``a*`` with the ``A`` a FRAME layer initialised
    under ``torch.manual_seed(seed)`` starts from (Kaiming) and a random ``B* ~ N(0, 1)``."""
    torch.manual_seed(seed)
    a_mat = _layer(FrameConfig(target_modules=["x"], num_experts=1, top_k=1, r=1), d).frame_A["default"][0]
    b_mat = torch.randn(d, 1, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return delta_weight(a_mat.detach().double(), b_mat, a_star, method).float()


def run_planted(
    methods: list[str], d: int, steps: int, order_lr: float | None, a_stars: list[float], spatial_only: bool
) -> None:
    common = dict(target_modules=["x"], r=1, lora_alpha=1.0, router_aux_loss_coef=0.0)
    if not spatial_only:
        print(
            f"\nplanted single expert (d = {d}, r = 1, order_init = 0.5, {steps} steps, lr 1e-2, order_lr "
            f"{'default' if order_lr is None else order_lr})\n"
        )
        print("| transform | a* | learned order | FRAME loss / power | MoE-LoRA r=1 loss / power |")
        print("|---|---|---|---|---|")
        for method in methods:
            for a_star in a_stars:
                target = planted_target(method, a_star, d)
                cfg = FrameConfig(
                    num_experts=1, top_k=1, transform=method, order_init=0.5, learn_order=True, **common
                )
                layer, rel = train_planted(cfg, target, steps=steps, order_lr=order_lr)
                _, rel_lora = train_planted(
                    MoELoraConfig(num_experts=1, top_k=1, **common), target, steps=steps
                )
                order = float(layer.frame_orders("default").detach()[0])
                print(f"| {method} | {a_star} | {order:.4f} | {rel:.2e} | {rel_lora:.2e} |", flush=True)
    print(f"\nplanted spatial target (a* = 0), 4 experts, top-2, r = 1, default order_init, {steps} steps\n")
    print(
        "| transform | router_bias | aux coef | learn_order | final orders | router bias | mean gates "
        "| FRAME loss / power | MoE-LoRA loss / power |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    spatial = planted_target("weighted", 0.0, d)
    probe = torch.randn(4096, d, generator=torch.Generator().manual_seed(54321))
    for bias in (False, True):
        for aux in (0.0, 0.01):
            lora_cfg = MoELoraConfig(num_experts=4, top_k=2, router_bias=bias, **common)
            _, rel_lora = train_planted(lora_cfg, spatial, steps=steps, aux_coef=aux)
            for method in methods:
                cfg = FrameConfig(num_experts=4, top_k=2, transform=method, router_bias=bias, **common)
                layer, rel = train_planted(cfg, spatial, steps=steps, order_lr=order_lr, aux_coef=aux)
                final = [round(v, 3) for v in layer.frame_orders("default").detach().tolist()]
                router = layer.frame_router["default"]
                b = "—" if router.bias is None else [round(v, 2) for v in router.bias.detach().tolist()]
                with torch.no_grad():
                    gates = [round(v, 3) for v in layer.router_weights("default", probe).mean(0).tolist()]
                print(
                    f"| {method} | {bias} | {aux} | {cfg.learn_order} | {final} | {b} | {gates} | {rel:.2e} "
                    f"| {rel_lora:.2e} |",
                    flush=True,
                )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["sensitivity", "planted"])
    p.add_argument("--transforms", nargs="+", default=["weighted", "hermite", "chirp"])
    p.add_argument("--widths", nargs="+", type=int, default=[64, 576, 2048])
    p.add_argument("--d", type=int, default=64, help="width of the planted-target layer")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument(
        "--order-lr", type=float, default=None, help="default: the library's per-transform default"
    )
    p.add_argument("--a-stars", nargs="+", type=float, default=[0.2, 0.53, 0.7, 0.95])
    p.add_argument("--spatial-only", action="store_true", help="planted: only the spatial (a* = 0) case")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.what == "sensitivity":
        run_sensitivity(args.transforms, args.widths)
    else:
        run_planted(args.transforms, args.d, args.steps, args.order_lr, args.a_stars, args.spatial_only)


if __name__ == "__main__":
    main()

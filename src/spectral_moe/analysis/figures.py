"""``spectral-moe analyze``: figures of what a run's experts learned.

* ``training_curve.png`` — loss (and router aux loss) over steps from ``train_log.jsonl``.
* ``expert_load_per_task.png`` — for each task, the dispatched fraction per expert averaged over
  the adapted layers (router statistics collected on that task's evaluation examples).
* ``expert_load_per_layer.png`` — dispatched fraction per layer (rows) and expert (columns), all tasks.
* ``expert_load_per_task_and_layer.png`` — one panel per task: dispatched fraction per layer and expert.
  FlyLoRA's "experts" are its ranks: its three load figures are ``rank_activation_per_task.png``,
  ``rank_activation_per_layer.png`` and ``rank_activation_per_task_and_layer.png``, the fraction of
  (token, selected rank) pairs that went to each rank (``c_i / Σ_j c_j``).
* ``mixing_weights.png`` (HMoRA) — the learned ``α_l = σ(θ_l)`` of every hybrid router per layer, with
  the initial schedule ``σ(ε(2l/L − 1) + shift)``; layers with one router drawn at 0 (token) or 1 (task).
* ``weight_psd.png`` — radially averaged power spectral density ``|fft2(W0)|²`` of the pretrained
  weights of a few adapted layers, early to deep.
* ``coefficient_magnitude.png`` (FourierMoE) — mean ``|c_z|`` per expert across layers.
* ``orders.png`` (FRAME) — learned order per layer and expert, and the router-weighted order
  ``Σ_z f_z a_z`` per task.
* ``hidden_spectra.png`` (causal LMs) — per task, the power spectrum over the feature axis
  ``|rfft(h_t)|²`` (orthonormal) of the pretrained model's hidden states at a middle layer, averaged
  over the tokens of the task's examples: what a spectral router sees.

One cohesive module (over 400 lines): every figure of ``spectral-moe analyze``, one small function each,
reading the model only through public accessors (``router_stats``, ``frame_orders``, ``coefficients``,
``mixing_weight``; :mod:`spectral_moe.tuners.introspection`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data.features import PadCollator, causal_lm_features, num_labels_for
from ..tuners.flylora import FlyLoraLayer
from ..tuners.fouriermoe import FourierMoELayer
from ..tuners.frame import FrameLayer
from ..tuners.hmora import HMoRALayer
from ..tuners.introspection import routed_layers
from ..tuners.moe_common import RoutedLayerMixin


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def radial_psd(weight: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """Power ``|fft2(W)|²/(MN)`` averaged in ``bins`` rings of normalised radial frequency ρ ∈ [0, 1/√2]."""
    from ..spectral.bands import radial_frequency

    w = weight.detach().float()
    power = torch.fft.fft2(w).abs().square().flatten() / w.numel()
    rho = radial_frequency(*w.shape).flatten().float()
    idx = torch.clamp((rho / rho.max() * bins).long(), max=bins - 1)
    total = torch.zeros(bins).index_add(0, idx, power)
    count = torch.zeros(bins).index_add(0, idx, torch.ones_like(power))
    return total / count.clamp_min(1)


@torch.no_grad()
def expert_load_by_task(
    model, tokenizer, tasks, max_examples: int = 20
) -> dict[str, dict[str, torch.Tensor]]:
    """``{task: {layer: dispatch fraction [Z]}}`` over each task's test examples (prompt + answer).

    Layers that record no statistics (HMoRA's plain-LoRA modules, ``lora_modules``) are left out."""
    layers = routed_layers(model)
    collate = PadCollator(tokenizer.pad_token_id)
    result = {}
    for task in tasks:
        examples = task.test[:max_examples]
        if not examples:
            continue
        sums = {name: 0 for name, _ in layers}
        for ex in examples:
            batch = collate([causal_lm_features(tokenizer, ex, 256)])
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            for name, layer in layers:
                for stats in layer.router_stats.values():
                    sums[name] = sums[name] + stats["dispatch_fraction"]
        result[task.name] = {
            name: s / len(examples) for name, s in sums.items() if isinstance(s, torch.Tensor)
        }
    return result


def plot_training_curve(log_path: Path, out: Path) -> Path | None:
    if not log_path.is_file():
        return None
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="loss")
    aux = [(r["step"], r["router_aux_loss"]) for r in rows if "router_aux_loss" in r]
    if aux:
        ax2 = ax.twinx()
        ax2.plot(*zip(*aux), color="tab:orange", label="router aux loss")
        ax2.set_ylabel("router aux loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("training curve")
    fig.tight_layout()
    path = out / "training_curve.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def heatmap(
    matrix: torch.Tensor,
    rows: list[str],
    path: Path,
    title: str,
    xlabel: str = "expert",
    cmap: str = "viridis",
) -> Path:
    """One labelled heatmap (rows × columns) with a colour bar, written to ``path``."""
    plt = _plt()
    fontsize = 7 if len(rows) < 20 else 5
    fig, ax = plt.subplots(
        figsize=(0.5 * matrix.shape[1] + 3, (0.35 if len(rows) < 20 else 0.18) * len(rows) + 1.5)
    )
    im = ax.imshow(matrix.numpy(), aspect="auto", cmap=cmap)
    ax.set_yticks(range(len(rows)), rows, fontsize=fontsize)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_expert_load(load: dict[str, dict[str, torch.Tensor]], out: Path, unit: str = "expert") -> list[Path]:
    """Dispatch fraction per task (mean over layers), per layer (mean over tasks) and per task and layer.

    ``unit="rank"`` (FlyLoRA, whose experts are its ranks) names the files ``rank_activation_*.png``
    instead of ``expert_load_*.png`` and labels the columns "rank"."""
    if unit not in ("expert", "rank"):
        raise ValueError(f"unit must be 'expert' or 'rank', got {unit!r}")
    if not load or not next(iter(load.values())):
        return []
    stem, what = (
        ("expert_load", "expert load") if unit == "expert" else ("rank_activation", "rank activation")
    )
    tasks = list(load)
    layers = list(next(iter(load.values())))
    grid = torch.stack([torch.stack([load[t][name] for name in layers]) for t in tasks])  # [tasks, layers, Z]
    return [
        heatmap(
            grid.mean(1),
            [t.split(":")[-1] for t in tasks],
            out / f"{stem}_per_task.png",
            f"{what} per task (mean over layers)",
            xlabel=unit,
        ),
        heatmap(
            grid.mean(0), layers, out / f"{stem}_per_layer.png", f"{what} per layer (all tasks)", xlabel=unit
        ),
        plot_load_per_task_and_layer(grid, tasks, layers, out / f"{stem}_per_task_and_layer.png", what, unit),
    ]


def plot_load_per_task_and_layer(
    grid: torch.Tensor, tasks: list[str], layers: list[str], path: Path, what: str, unit: str
) -> Path:
    """One heatmap per task of ``grid [tasks, layers, Z]`` (rows: layers, columns: experts or ranks), one
    colour scale for all."""
    plt = _plt()
    cols = min(len(tasks), 3)
    rows = -(-len(tasks) // cols)
    height = (0.3 if len(layers) < 20 else 0.12) * len(layers) + 1.5
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(cols * (0.35 * grid.shape[-1] + 3) + 2, rows * height + 0.5),
        squeeze=False,
        layout="constrained",
    )
    fontsize = 6 if len(layers) < 20 else 4
    vmax = float(grid.max()) if grid.numel() else 1.0
    for i, ax in enumerate(axes.flat):
        if i >= len(tasks):
            ax.axis("off")
            continue
        im = ax.imshow(grid[i].numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=vmax)
        ax.set_yticks(range(len(layers)), layers if i % cols == 0 else [""] * len(layers), fontsize=fontsize)
        ax.set_xticks(range(0, grid.shape[-1], max(1, grid.shape[-1] // 8)))
        ax.set_xlabel(unit, fontsize=7)
        ax.set_title(Path(tasks[i].split(":")[-1]).name, fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist())
    fig.suptitle(f"{what} per task and layer")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def mixing_weights_by_layer(
    layers: list[tuple[str, torch.nn.Module]],
) -> dict[str, list[tuple[int, float, str]]]:
    """HMoRA: ``{module kind (q_proj, …): [(l, α_l, mode), …]}`` over the routed HMoRA layers, ``mode``
    ``"hybrid"`` (``α_l = σ(θ_l)`` learned), ``"token"`` (``α = 0``) or ``"task"`` (``α = 1``)."""
    out: dict[str, list[tuple[int, float, str]]] = {}
    for name, layer in layers:
        if not isinstance(layer, HMoRALayer):
            continue
        for adapter, router in layer.hmora_router.items():
            alpha = layer.mixing_weight(adapter)
            value = float(alpha.detach()) if alpha is not None else (1.0 if router.mode == "task" else 0.0)
            index = layer.hmora_layer_index[adapter][0]
            out.setdefault(name.rsplit(".", 1)[-1], []).append((index, value, router.mode))
    return out


def plot_mixing_weights(layers: list[tuple[str, torch.nn.Module]], out: Path) -> Path | None:
    """HMoRA's learned ``α_l`` per layer (one line per module kind) and the initial schedule."""
    from ..tuners.hmora.layer import alpha_logit_init

    hmora = [(n, m) for n, m in layers if isinstance(m, HMoRALayer) and m.hmora_router]
    weights = mixing_weights_by_layer(hmora)
    if not weights:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for kind, points in weights.items():
        points = sorted(points)
        hybrid = [(i, a) for i, a, mode in points if mode == "hybrid"]
        fixed = [(i, a) for i, a, mode in points if mode != "hybrid"]
        color = None
        if hybrid:
            color = ax.plot(*zip(*hybrid), "o-", ms=3, lw=1, label=f"{kind} (learned)")[0].get_color()
        if fixed:
            ax.plot(*zip(*fixed), "x", color=color, ms=5, label=f"{kind} (one router)")
    layer = hmora[0][1]
    adapter = next(iter(layer.hmora_router))
    config, (_, last) = layer.hmora_config[adapter], layer.hmora_layer_index[adapter]
    grid = torch.arange(last + 1, dtype=torch.float64)
    init = [alpha_logit_init(int(i), last, config.alpha_epsilon, config.alpha_shift) for i in grid]
    ax.plot(
        grid.numpy(), torch.sigmoid(torch.tensor(init)).numpy(), "--", color="gray", lw=1, label="initial"
    )
    ax.set_ylim(-0.05, 1.05)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("layer l")
    ax.set_ylabel("α_l (weight of the task router)")
    ax.set_title("HMoRA mixing weight per layer")
    ax.legend(fontsize=6)
    fig.tight_layout()
    path = out / "mixing_weights.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_weight_psd(layers: list[tuple[str, RoutedLayerMixin]], out: Path, count: int = 4) -> Path | None:
    if not layers:
        return None
    plt = _plt()
    picks = [layers[round(i * (len(layers) - 1) / max(count - 1, 1))] for i in range(min(count, len(layers)))]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, layer in picks:
        psd = radial_psd(layer.get_base_layer().weight)
        ax.semilogy(
            torch.linspace(0, 1, len(psd)).numpy(), psd.numpy(), label=name.replace("model.layers.", "L")
        )
    ax.set_xlabel("normalised radial frequency")
    ax.set_ylabel("power")
    ax.set_title("PSD of pretrained weights")
    ax.legend(fontsize=6)
    fig.tight_layout()
    path = out / "weight_psd.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_coefficients(layers: list[tuple[str, RoutedLayerMixin]], out: Path) -> Path | None:
    rows, names = [], []
    for name, layer in layers:
        if isinstance(layer, FourierMoELayer):
            for adapter in layer.fouriermoe_spectrum_real:
                real, imag = layer.coefficients(adapter)
                mag = real.detach().abs() if imag is None else torch.complex(real, imag).detach().abs()
                rows.append(mag.mean(-1))
                names.append(name)
    if not rows:
        return None
    return heatmap(
        torch.stack(rows),
        names,
        out / "coefficient_magnitude.png",
        "mean |coefficient| per expert",
        xlabel="expert (low → high frequency band)",
        cmap="magma",
    )


def plot_orders(layers, load: dict[str, dict[str, torch.Tensor]], out: Path) -> Path | None:
    frame = [(n, m) for n, m in layers if isinstance(m, FrameLayer)]
    if not frame:
        return None
    plt = _plt()
    orders = {n: m.frame_orders(next(iter(m.frame_config))).detach().float() for n, m in frame}
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.18 * len(frame) + 2))
    im = axes[0].imshow(
        torch.stack(list(orders.values())).numpy(), aspect="auto", cmap="coolwarm", vmin=0, vmax=2
    )
    axes[0].set_yticks(range(len(orders)), list(orders), fontsize=5)
    axes[0].set_xlabel("expert")
    axes[0].set_title("learned order a_z")
    fig.colorbar(im, ax=axes[0])
    if load:
        weighted = {
            t: float(torch.stack([(per_layer[n] * orders[n]).sum() for n in orders]).mean())
            for t, per_layer in load.items()
        }
        axes[1].barh([t.split(":")[-1] for t in weighted], list(weighted.values()))
        axes[1].set_xlabel("router-weighted order Σ f_z a_z")
        axes[1].tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    path = out / "orders.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@torch.no_grad()
def hidden_state_spectra(
    model, tokenizer, tasks, layer: int | None = None, max_examples: int = 20
) -> dict[str, torch.Tensor]:
    """``{task: P [d//2 + 1]}``: ``P_k = mean_t |rfft(h_t, norm="ortho")_k|²`` over the tokens ``t``
    of the task's test examples except each sequence's first, ``h_t`` the hidden state after decoder
    layer ``layer`` (default: the middle one). One example at a time (no padding).

    The first position is left out because decoder LMs park a few huge "attention sink" activations
    there (on smollm2 at the middle layer its squared norm is ~2x10^4 times the other tokens' mean,
    measured), which would make short-prompt tasks look louder at every frequency."""
    spectra = {}
    for task in tasks:
        examples = task.test[:max_examples]
        if not examples:
            continue
        total, count = 0.0, 0
        for ex in examples:
            ids = torch.tensor([causal_lm_features(tokenizer, ex, 256)["input_ids"]])
            states = model(input_ids=ids, output_hidden_states=True).hidden_states  # [L+1] x [1, S, d]
            index = layer if layer is not None else (len(states) - 1) // 2
            h = states[index][0, 1:].float()  # [S - 1, d]
            if h.shape[0] == 0:
                continue
            total = total + torch.fft.rfft(h, dim=-1, norm="ortho").abs().square().sum(0)
            count += h.shape[0]
        if count:
            spectra[task.name] = total / count
    return spectra


def plot_hidden_spectra(spectra: dict[str, torch.Tensor], out: Path, bins: int = 32) -> Path | None:
    """One line per task: ``P`` averaged over ``bins`` equal frequency bands and divided by its mean
    over all frequencies, so the lines compare spectral shape (where the power sits), not loudness."""
    if not spectra:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, power in spectra.items():
        n = min(bins, len(power))
        banded = torch.stack([chunk.mean() for chunk in torch.tensor_split(power, n)])
        ax.semilogy(
            torch.linspace(0, 1, n).numpy(), (banded / power.mean()).numpy(), label=name.split(":")[-1], lw=1
        )
    ax.set_xlabel("normalised frequency over the feature axis")
    ax.set_ylabel("relative power (band mean / overall mean)")
    ax.set_title("hidden-state spectra per task (middle layer, pretrained model)")
    ax.legend(fontsize=5, ncol=2)
    fig.tight_layout()
    path = out / "hidden_spectra.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def analyze_run(run_dir: Path, max_examples: int = 20) -> list[Path]:
    """Write every figure of ``run_dir`` into ``run_dir/figures``; returns their paths."""
    from ..data import load_tasks
    from ..evaluation.runs import load_run_model

    cfg = json.loads((run_dir / "run_config.json").read_text())
    tasks = load_tasks(cfg["tasks"], max_train=cfg.get("max_train"), max_eval=max_examples, seed=0)
    model, tokenizer, _ = load_run_model(run_dir, num_labels=num_labels_for(tasks))
    out = run_dir / "figures"
    out.mkdir(exist_ok=True)
    layers = routed_layers(model)
    unit = "rank" if layers and all(isinstance(m, FlyLoraLayer) for _, m in layers) else "expert"
    load = (
        expert_load_by_task(model, tokenizer, tasks, max_examples)
        if cfg.get("task_type") != "seq_cls"
        else {}
    )
    if load:
        (out / "expert_load.json").write_text(
            json.dumps({t: {n: v.tolist() for n, v in d.items()} for t, d in load.items()}, indent=1)
        )
    spectra = {}
    if cfg.get("task_type") != "seq_cls":
        with model.disable_adapter():
            spectra = hidden_state_spectra(model, tokenizer, tasks, max_examples=max_examples)
    paths = [
        plot_training_curve(run_dir / "train_log.jsonl", out),
        plot_hidden_spectra(spectra, out),
        *plot_expert_load(load, out, unit=unit),
        plot_weight_psd(layers, out),
        plot_coefficients(layers, out),
        plot_orders(layers, load, out),
        plot_mixing_weights(layers, out),
    ]
    return [p for p in paths if p is not None]

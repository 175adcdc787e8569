"""``spectral-moe analyze``: figures of what a run's experts learned.

* ``training_curve.png`` — loss (and router aux loss) over steps from ``train_log.jsonl``.
* ``expert_load_per_task.png`` — for each task, the dispatched fraction per expert averaged over
  the adapted layers (router statistics collected on that task's evaluation examples).
* ``expert_load_per_layer.png`` — dispatched fraction per layer (rows) and expert (columns), all tasks.
* ``weight_psd.png`` — radially averaged power spectral density ``|fft2(W0)|²`` of the pretrained
  weights of a few adapted layers, early to deep.
* ``coefficient_magnitude.png`` (FourierMoE) — mean ``|c_z|`` per expert across layers.
* ``orders.png`` (FRAME) — learned order per layer and expert, and the router-weighted order
  ``Σ_z f_z a_z`` per task.
* ``hidden_spectra.png`` (causal LMs) — per task, the power spectrum over the feature axis
  ``|rfft(h_t)|²`` (orthonormal) of the pretrained model's hidden states at a middle layer, averaged
  over the tokens of the task's examples: what a spectral router sees.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..tuners.fouriermoe import FourierMoELayer
from ..tuners.frame import FrameLayer
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


def routed_layers(model: torch.nn.Module) -> list[tuple[str, RoutedLayerMixin]]:
    return [
        (n.removeprefix("base_model.model."), m)
        for n, m in model.named_modules()
        if isinstance(m, RoutedLayerMixin)
    ]


@torch.no_grad()
def expert_load_by_task(
    model, tokenizer, tasks, max_examples: int = 20
) -> dict[str, dict[str, torch.Tensor]]:
    """``{task: {layer: dispatch fraction [Z]}}`` over each task's test examples (prompt + answer)."""
    from ..training.run import PadCollator, causal_lm_features

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
        result[task.name] = {name: s / len(examples) for name, s in sums.items()}
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


def plot_expert_load(load: dict[str, dict[str, torch.Tensor]], out: Path) -> list[Path]:
    """Dispatch fraction per task (mean over layers) and per layer (mean over tasks)."""
    if not load:
        return []
    tasks = list(load)
    layers = list(next(iter(load.values())))
    per_task = torch.stack([torch.stack([load[t][name] for name in layers]).mean(0) for t in tasks])
    per_layer = torch.stack([torch.stack([load[t][name] for t in tasks]).mean(0) for name in layers])
    return [
        heatmap(
            per_task,
            [t.split(":")[-1] for t in tasks],
            out / "expert_load_per_task.png",
            "expert load per task (mean over layers)",
        ),
        heatmap(per_layer, layers, out / "expert_load_per_layer.png", "expert load per layer (all tasks)"),
    ]


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
                real, imag = layer._coefficients(adapter)
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
    from ..training.run import causal_lm_features

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
    from ..evaluation.runs import load_run_model, num_labels_for

    cfg = json.loads((run_dir / "run_config.json").read_text())
    tasks = load_tasks(cfg["tasks"], max_train=cfg.get("max_train"), max_eval=max_examples, seed=0)
    model, tokenizer, _ = load_run_model(run_dir, num_labels=num_labels_for(tasks))
    out = run_dir / "figures"
    out.mkdir(exist_ok=True)
    layers = routed_layers(model)
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
        *plot_expert_load(load, out),
        plot_weight_psd(layers, out),
        plot_coefficients(layers, out),
        plot_orders(layers, load, out),
    ]
    return [p for p in paths if p is not None]

"""Top-k token router, load-balancing losses and router statistics (shared by FourierMoE and FRAME).

For router logits ``ℓ = W_r f(x)`` ([..., Z], ``f`` the router features)::

    p = softmax(ℓ / τ)                                   [..., Z]
    K = topk(p, k)                                       the k chosen experts per token
    g_z = p_z / Σ_{z'∈K} p_{z'}   if z ∈ K, else 0       [..., Z], rows sum to 1

Switch-style load-balancing loss over ``T`` tokens::

    f_z = (1/(T·k)) Σ_t [z ∈ K_t]        fraction of dispatched (token, slot) pairs that go to z
    P_z = (1/T) Σ_t p_{t,z}              mean router probability
    L_aux = Z · Σ_z f_z P_z              = 1 for perfectly balanced routing, Z when it collapses

Router z-loss (ST-MoE): ``L_z = mean_t (logsumexp_z ℓ_{t,z})²``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

ROUTER_FEATURES = ("hidden", "spectral")


@dataclass
class Routing:
    """Result of one routing call: probabilities, sparse gates, chosen experts, raw logits."""

    probs: torch.Tensor  # [..., Z]
    gates: torch.Tensor  # [..., Z], zero outside the top-k, rows sum to 1
    topk_index: torch.Tensor  # [..., k] int64
    logits: torch.Tensor  # [..., Z]


def route(logits: torch.Tensor, top_k: int, temperature: float = 1.0) -> Routing:
    """Softmax with temperature, keep the top-k, renormalise them to sum 1 (module docstring)."""
    num_experts = logits.shape[-1]
    if not 1 <= top_k <= num_experts:
        raise ValueError(f"top_k must be in [1, num_experts={num_experts}], got {top_k}")
    work = torch.float64 if logits.dtype == torch.float64 else torch.float32  # softmax never in half
    probs = F.softmax(logits.to(work) / temperature, dim=-1)
    top_p, top_i = probs.topk(top_k, dim=-1)
    top_g = top_p / top_p.sum(-1, keepdim=True)
    gates = torch.zeros_like(probs).scatter(-1, top_i, top_g)
    return Routing(probs=probs, gates=gates, topk_index=top_i, logits=logits)


def dispatch_fraction(topk_index: torch.Tensor, num_experts: int) -> torch.Tensor:
    """``f_z``: share of (token, slot) pairs dispatched to each expert, ``[Z]``, sums to 1."""
    counts = torch.bincount(topk_index.reshape(-1), minlength=num_experts).float()
    return counts / counts.sum().clamp_min(1.0)


def load_balancing_loss(routing: Routing) -> torch.Tensor:
    """``L_aux = Z · Σ_z f_z P_z`` (Switch Transformer), differentiable through ``P_z``."""
    num_experts = routing.probs.shape[-1]
    f = dispatch_fraction(routing.topk_index, num_experts).to(routing.probs)
    p_mean = routing.probs.reshape(-1, num_experts).mean(0)
    return num_experts * (f * p_mean).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """``mean_t (logsumexp_z ℓ_{t,z})²`` (ST-MoE router z-loss)."""
    work = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return torch.logsumexp(logits.to(work), dim=-1).square().mean()


def router_statistics(routing: Routing) -> dict[str, torch.Tensor]:
    """Detached per-expert statistics for logging: ``mean_prob`` (P_z) and ``dispatch_fraction`` (f_z)."""
    num_experts = routing.probs.shape[-1]
    return {
        "mean_prob": routing.probs.detach().reshape(-1, num_experts).mean(0),
        "dispatch_fraction": dispatch_fraction(routing.topk_index.detach(), num_experts),
    }

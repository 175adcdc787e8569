"""Top-k token router, load-balancing losses and router statistics (shared by FourierMoE and FRAME).

For router logits ``ℓ = W_r f(x) (+ b_r)`` ([..., Z], ``f`` the router features, ``b_r`` the optional
learnable bias, ``router_bias``)::

    p = softmax(ℓ / τ)                                   [..., Z]
    K = topk(p, k)                                       the k chosen experts per token
    k ≥ 2:  g_z = p_z / Σ_{z'∈K} p_{z'}   if z ∈ K, else 0   [..., Z], rows sum to 1
    k = 1:  g_z = p_z                     if z ∈ K, else 0   (Switch Transformer)

For ``k = 1`` a renormalised gate would be identically 1, so the task loss would give the router no
gradient (only the load-balancing loss would train it); the Switch gate ``p_z`` keeps
``∂L/∂ℓ ≠ 0``. With one expert (``Z = 1``) ``p ≡ 1`` either way.

Switch-style load-balancing loss over ``T`` tokens::

    f_z = (1/(T·k)) Σ_t [z ∈ K_t]        fraction of dispatched (token, slot) pairs that go to z
    P_z = (1/T) Σ_t p_{t,z}              mean router probability
    L_aux = Z · Σ_z f_z P_z              = 1 for perfectly balanced routing, Z when it collapses

Router z-loss (ST-MoE): ``L_z = mean_t (logsumexp_z ℓ_{t,z})²``.

Both losses are functions of per-layer sufficient statistics (:class:`RouterLossStats`): dispatch
counts ``c_z``, probability sums ``s_z = Σ_t p_{t,z}``, the token count ``T`` and ``Σ_t lse_t²``.
Under data parallelism (``R`` ranks, rank ``r`` holding ``T_r`` of the global batch's ``T_g``
tokens) the global ``f_z`` is not the mean of the ranks' ``f_z``: :func:`router_losses_from_stats`
all-reduces the detached counts ``c_z`` and ``T`` and returns on rank ``r``::

    L_aux^r = Z · Σ_z f_z^g · R · s_z^r / T_g        f^g = c^g / (T_g · k)
    L_z^r   = R · Σ_{t ∈ r} lse_t² / T_g

whose mean over ranks is exactly ``L_aux`` and ``L_z`` of the global batch, and whose gradient,
averaged over ranks as DDP averages every gradient, is the global batch's gradient. With one
process it is the formula above.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ROUTER_FEATURES = ("hidden", "spectral")


@dataclass
class Routing:
    """Result of one routing call: probabilities, sparse gates, chosen experts, raw logits."""

    probs: torch.Tensor  # [..., Z]
    gates: torch.Tensor  # [..., Z], zero outside the top-k; rows sum to 1 for k >= 2, = p_z for k = 1
    topk_index: torch.Tensor  # [..., k] int64
    logits: torch.Tensor  # [..., Z]

    def detached(self) -> Routing:
        """This routing without autograd graph (views); itself when nothing has one (no grad, inference)."""
        if not (self.probs.requires_grad or self.gates.requires_grad or self.logits.requires_grad):
            return self
        return Routing(self.probs.detach(), self.gates.detach(), self.topk_index, self.logits.detach())


def route(logits: torch.Tensor, top_k: int, temperature: float = 1.0) -> Routing:
    """Softmax with temperature, keep the top-k; renormalise them to sum 1 for k ≥ 2, keep ``p_z`` for
    k = 1 (Switch; module docstring)."""
    num_experts = logits.shape[-1]
    if not 1 <= top_k <= num_experts:
        raise ValueError(f"top_k must be in [1, num_experts={num_experts}], got {top_k}")
    work = torch.float64 if logits.dtype == torch.float64 else torch.float32  # softmax never in half
    scaled = logits.to(work) if temperature == 1.0 else logits.to(work) / temperature
    probs = F.softmax(scaled, dim=-1)
    top_p, top_i = probs.topk(top_k, dim=-1)
    top_g = top_p if top_k == 1 else top_p / top_p.sum(-1, keepdim=True)  # [..., k]
    gates = torch.zeros_like(probs).scatter(-1, top_i, top_g)
    return Routing(probs=probs, gates=gates, topk_index=top_i, logits=logits)


def expert_counts(
    index: torch.Tensor,
    num_experts: int,
    weights: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``c_z = Σ_i w_i [index_i = z]`` ``[Z]`` by ``scatter_add`` (no host sync: ``bincount`` reads the
    largest index back to size its output, ``one_hot`` checks the range on the host)."""
    flat = index.reshape(-1)
    dtype = dtype or (weights.dtype if weights is not None else torch.float32)
    values = torch.ones(flat.shape, dtype=dtype, device=flat.device) if weights is None else weights.to(dtype)
    return torch.zeros(num_experts, dtype=dtype, device=flat.device).scatter_add_(0, flat, values.reshape(-1))


def dispatch_fraction(topk_index: torch.Tensor, num_experts: int) -> torch.Tensor:
    """``f_z``: share of (token, slot) pairs dispatched to each expert, ``[Z]``, sums to 1."""
    counts = expert_counts(topk_index, num_experts)
    return counts / counts.sum().clamp_min(1.0)


@dataclass
class RouterLossStats:
    """Sufficient statistics of one layer's router for ``L_aux`` and ``L_z`` (module docstring)."""

    counts: torch.Tensor  # [Z] detached, dispatched (token, slot) pairs per expert
    prob_sum: torch.Tensor  # [Z] Σ_t p_{t,z}, differentiable
    tokens: torch.Tensor  # [] detached, T
    lse_sq_sum: torch.Tensor  # [] Σ_t (logsumexp_z ℓ_{t,z})², differentiable
    top_k: int


def router_loss_stats(routing: Routing, mask: torch.Tensor | None = None) -> RouterLossStats:
    """The statistics of one routing call (any leading shape ``[...]``; every position is a token).

    ``mask`` (``[...]``, e.g. the attention mask) weights the tokens: padding (0) counts neither in
    ``f_z``, ``P_z`` nor ``T``, so the losses do not depend on how a batch is padded.
    """
    num_experts = routing.probs.shape[-1]
    probs = routing.probs.reshape(-1, num_experts)  # [T, Z]
    work = probs.dtype
    top_k = routing.topk_index.shape[-1]
    w = (
        torch.ones(probs.shape[0], dtype=work, device=probs.device)
        if mask is None
        else mask.reshape(-1).to(device=probs.device, dtype=work)
    )  # [T]
    index = routing.topk_index.detach().reshape(-1, top_k)  # [T, k]
    counts = expert_counts(index, num_experts, w[:, None].expand(-1, top_k), dtype=work)  # [Z]
    lse = torch.logsumexp(routing.logits.reshape(-1, num_experts).to(work), dim=-1)  # [T]
    return RouterLossStats(
        counts=counts,
        prob_sum=(probs * w[:, None]).sum(0),
        tokens=w.sum(),
        lse_sq_sum=(lse.square() * w).sum(),
        top_k=top_k,
    )


def data_parallel_world_size() -> int:
    """Number of ranks whose router statistics are pooled: the default process group's size, else 1."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def router_losses_from_stats(
    stats: list[RouterLossStats], sync: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer ``(L_aux [L], L_z [L])`` from ``L`` layers' statistics.

    ``sync=True`` with an initialised process group all-reduces the detached counts and token
    counts (one collective for all layers; every rank must call it) and returns the rank shares of
    the module docstring, whose mean over ranks is the global batch's loss.
    """
    counts = torch.stack([s.counts for s in stats])  # [L, Z]
    tokens = torch.stack([s.tokens for s in stats])  # [L]
    prob_sum = torch.stack([s.prob_sum.to(counts.device) for s in stats])  # [L, Z]
    lse_sq = torch.stack([s.lse_sq_sum.to(counts.device) for s in stats])  # [L]
    top_k = torch.tensor([float(s.top_k) for s in stats], dtype=counts.dtype, device=counts.device)
    world = data_parallel_world_size() if sync else 1
    if world > 1:
        import torch.distributed as dist

        pooled = torch.cat([counts.reshape(-1), tokens]).detach().clone()
        dist.all_reduce(pooled)
        counts, tokens = pooled[: counts.numel()].reshape(counts.shape), pooled[counts.numel() :]
    num_experts = counts.shape[-1]
    t_g = tokens.clamp_min(1.0)
    f = counts / (t_g * top_k)[:, None]
    aux = num_experts * (f * prob_sum).sum(-1) * world / t_g
    z = lse_sq * world / t_g
    return aux, z


def router_statistics(routing: Routing) -> dict[str, torch.Tensor]:
    """Detached per-expert statistics for logging: ``mean_prob`` (P_z) and ``dispatch_fraction`` (f_z)."""
    num_experts = routing.probs.shape[-1]
    return {
        "mean_prob": routing.probs.detach().reshape(-1, num_experts).mean(0),
        "dispatch_fraction": dispatch_fraction(routing.topk_index.detach(), num_experts),
    }


class RouterStatistics(Mapping):
    """:func:`router_statistics` of one routing call, computed on first access (``mean_prob``,
    ``dispatch_fraction``): a forward only keeps the detached probabilities and chosen experts, and the
    statistics cost nothing unless they are read (logged)."""

    KEYS = ("mean_prob", "dispatch_fraction")

    def __init__(self, routing: Routing) -> None:
        kept = routing.detached()
        self.probs, self.topk_index = kept.probs, kept.topk_index
        self.computed: dict[str, torch.Tensor] | None = None

    def values_now(self) -> dict[str, torch.Tensor]:
        if self.computed is None:
            self.computed = router_statistics(Routing(self.probs, self.probs, self.topk_index, self.probs))
        return self.computed

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.values_now()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)

    def __repr__(self) -> str:
        return f"RouterStatistics({dict(self.values_now())!r})"

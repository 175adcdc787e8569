"""Direct formulas the library computes another way, kept here only to test it against.

* ``hermitian_spectrum``: the dense Hermitian spectra ``F_z`` of ``spectral/fourier.py``'s module
  docstring, complex ``[Z, M, N]`` (the library only ever builds their stored half,
  ``fourier.half_hermitian_spectrum``, or never forms them at all, ``fourier.apply_fft``).
* ``load_balancing_loss``, ``router_z_loss``: the Switch and ST-MoE losses of one routing call
  (``routing.py``'s docstring), which the library computes from per-layer sufficient statistics
  (``routing.router_loss_stats`` → ``routing.router_losses_from_stats``).
* ``score_fitted_kv_cache``: multiple-choice log-likelihoods as scored before issue 15 (each context
  alone, then its continuations against the repeated KV cache), against which the batched
  ``evaluation.likelihood.score_fitted`` is tested.
"""

from __future__ import annotations

import copy

import torch

from spectral_moe.routing import Routing, dispatch_fraction
from spectral_moe.spectral.fourier import complex_coefficients


def hermitian_spectrum(
    coef_real: torch.Tensor,
    coef_imag: torch.Tensor | None,
    rows: torch.Tensor,
    cols: torch.Tensor,
    d_out: int,
    d_in: int,
) -> torch.Tensor:
    """``F_z = ½ Σ_j (c_{z,j} δ[u, v] + conj(c_{z,j}) δ[−u, −v])``, complex ``[Z, d_out, d_in]``.

    Scatter-add, so repeated or self-conjugate positions add up; ``rows``, ``cols`` are ``[Z, n]``.
    """
    c = complex_coefficients(coef_real, coef_imag)  # [Z, n]
    num_experts = c.shape[0]
    flat = rows * d_in + cols
    mirror = ((-rows) % d_out) * d_in + (-cols) % d_in
    spec = torch.zeros(num_experts, d_out * d_in, dtype=c.dtype, device=c.device)
    spec = spec.scatter_add(1, flat, 0.5 * c).scatter_add(1, mirror, 0.5 * c.conj())
    return spec.view(num_experts, d_out, d_in)


def load_balancing_loss(routing: Routing) -> torch.Tensor:
    """``L_aux = Z · Σ_z f_z P_z`` (Switch Transformer) over every position, differentiable through ``P_z``."""
    num_experts = routing.probs.shape[-1]
    f = dispatch_fraction(routing.topk_index, num_experts).to(routing.probs)  # [Z]
    p_mean = routing.probs.reshape(-1, num_experts).mean(0)  # [Z]
    return num_experts * (f * p_mean).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """``L_z = mean_t (logsumexp_z ℓ_{t,z})²`` (ST-MoE router z-loss) of logits ``[..., Z]``."""
    work = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return torch.logsumexp(logits.to(work), dim=-1).square().mean()


def _context_forward(model, input_ids: torch.Tensor):
    try:
        return model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
    except TypeError:
        return model(input_ids=input_ids, use_cache=True)


@torch.no_grad()
def score_fitted_kv_cache(model, tokenizer, fitted, batch_size: int = 16) -> list[tuple[float, int]]:
    """The scorer before batching (``evaluation/likelihood.py`` up to issue 15): each distinct context
    runs alone (batch 1, no mask), then its continuations run ``batch_size`` at a time against the
    context's KV cache repeated per continuation; ``(Σ log p(continuation | context), K)`` per pair."""
    device = next(model.parameters()).device
    groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
    for i, f in enumerate(fitted):
        groups.setdefault(tuple(f.context), []).append((i, f.continuation))
    results: list[tuple[float, int]] = [(0.0, 0)] * len(fitted)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for ctx, members in groups.items():
        out = _context_forward(model, torch.tensor([ctx], device=device))
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            width = max(len(c) for _, c in chunk)
            if width == 0:
                continue
            cont_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.ones((len(chunk), len(ctx) + width), dtype=torch.long)
            for row, (_, c) in enumerate(chunk):
                cont_ids[row, : len(c)] = torch.tensor(c, dtype=torch.long)
                mask[row, len(ctx) + len(c) :] = 0
            past = copy.deepcopy(out.cache)
            past.batch_repeat_interleave(len(chunk))
            logits = model(
                input_ids=cont_ids.to(device), attention_mask=mask.to(device), cache=past, use_cache=True
            ).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            for row, (i, c) in enumerate(chunk):
                if not c:
                    continue
                total = first[c[0]]
                if len(c) > 1:
                    nxt = torch.tensor(c[1:], device=logp.device)
                    total = total + logp[row, torch.arange(len(c) - 1, device=logp.device), nxt].sum()
                results[i] = (total.item(), len(c))
    return results

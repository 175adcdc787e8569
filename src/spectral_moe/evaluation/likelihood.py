"""Multiple choice by log-likelihood (the lm-evaluation-harness convention).

For context ``c`` and choice ``s``::

    ll(s) = Σ_{i ∈ continuation tokens} log p(tok_i | tok_<i)
    acc      = [argmax_s ll(s) == answer]
    acc_norm = [argmax_s ll(s) / len_bytes(s) == answer]

Tokenisation as the harness does it (trailing spaces of the context move to the continuation,
``whole = enc(c + s)``, ``ctx = enc(c)``, continuation = ``whole[len(ctx):]``); the choices of one
question share one context, fitted to ``max_length`` for the longest of them (only the passage loses
tokens, :mod:`spectral_moe.data.prompts`), and one forward of the context serves all its choices.
Examples with ``meta["subject"]`` (MMLU) report the macro mean over subjects as ``acc``/``acc_norm``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data.prompts import FittedPrompt, bos_ids, eos_ids, fit_to_length, split_prompt
from ..data.types import Example

__all__ = ["ChoiceResult", "continuation_logprobs", "fit_pairs", "score_multiple_choice"]


def fit_pairs(
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    max_length: int | None = 1024,
    passages: Sequence[tuple[int, int] | None] | None = None,
) -> list[FittedPrompt]:
    """``BOS + context`` and continuation tokens of each pair, truncated by the data policy.

    Pairs with the same context (and passage span) share one fitted context, sized for their longest
    continuation plus EOS, as training sizes ``prompt + answer + EOS``: the choices of one question are
    scored against the same tokens, and against the tokens training saw when the choices have equal
    lengths.
    """
    spans = (
        [None if s is None else tuple(s) for s in passages] if passages is not None else [None] * len(pairs)
    )
    if len(spans) != len(pairs):
        raise ValueError(f"passages must have one span per pair: {len(spans)} spans, {len(pairs)} pairs")
    parts = [split_prompt(tokenizer, c, s, span) for (c, s), span in zip(pairs, spans)]
    longest: dict[tuple, int] = {}
    for (context, _), span, p in zip(pairs, spans, parts):
        key = (context, span)
        longest[key] = max(longest.get(key, 0), len(p.continuation))
    bos, n_eos = bos_ids(tokenizer), len(eos_ids(tokenizer))
    return [
        fit_to_length(p, max_length, bos=bos, reserve=longest[(context, span)] + n_eos)
        for (context, _), span, p in zip(pairs, spans, parts)
    ]


def _context_forward(model, input_ids: torch.Tensor):
    """Forward of a shared context for its KV cache and the last position's logits only.

    ``logits_to_keep=1`` skips the vocabulary projection of every earlier position (a fifth of the
    forward's cost on a 135M model with a 49k vocabulary); models whose forward does not take it
    (older or custom ones) get the plain call.
    """
    try:
        return model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
    except TypeError:
        return model(input_ids=input_ids, use_cache=True)


@torch.no_grad()
def continuation_logprobs(
    model,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 16,
    max_length: int | None = 1024,
    passages: Sequence[tuple[int, int] | None] | None = None,
) -> list[tuple[float, int]]:
    """``(Σ log p(continuation | BOS + context), number of continuation tokens)`` for each pair.

    Pairs whose context tokens are equal (the choices of one question) share one forward pass of
    the context: its KV cache is repeated over the continuations, which run as one batch. Contexts are
    fitted to ``max_length`` by :func:`fit_pairs` (``passages``: the span of each context that may be
    truncated, default all of it; BOS is always kept). ``batch_size`` caps the continuations per pass.
    """
    return _score_fitted(model, tokenizer, fit_pairs(tokenizer, pairs, max_length, passages), batch_size)


@torch.no_grad()
def _score_fitted(
    model, tokenizer, fitted: Sequence[FittedPrompt], batch_size: int
) -> list[tuple[float, int]]:
    device = next(model.parameters()).device
    groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
    for i, f in enumerate(fitted):
        groups.setdefault(tuple(f.context), []).append((i, f.continuation))
    results: list[tuple[float, int]] = [(0.0, 0)] * len(fitted)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for ctx, members in groups.items():
        out = _context_forward(model, torch.tensor([ctx], device=device))
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # predicts each continuation's 1st token
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
            past = copy.deepcopy(out.cache)  # transformers ≥ 5.24 names it `cache` (was past_key_values)
            past.batch_repeat_interleave(len(chunk))
            logits = model(
                input_ids=cont_ids.to(device),
                attention_mask=mask.to(device),
                cache=past,
                use_cache=True,
            ).logits.float()
            logp = torch.log_softmax(logits, dim=-1)  # position j predicts continuation token j+1
            for row, (i, c) in enumerate(chunk):
                if not c:
                    continue
                total = first[c[0]]
                if len(c) > 1:
                    nxt = torch.tensor(c[1:], device=logp.device)
                    total = total + logp[row, torch.arange(len(c) - 1, device=logp.device), nxt].sum()
                results[i] = (total.item(), len(c))
    return results


@dataclass
class ChoiceResult:
    """Scores of one multiple-choice example."""

    loglik: list[float]
    label: int

    @property
    def pred(self) -> int:
        return max(range(len(self.loglik)), key=lambda i: self.loglik[i])

    def pred_norm(self, choices: Sequence[str]) -> int:
        norm = [ll / max(len(c.encode("utf-8")), 1) for ll, c in zip(self.loglik, choices)]
        return max(range(len(norm)), key=lambda i: norm[i])


def score_multiple_choice(
    model, tokenizer, examples: Sequence[Example], batch_size: int = 16, max_length: int | None = 1024
) -> tuple[dict[str, float], list[ChoiceResult]]:
    """``{"acc", "acc_norm", "n", "truncated"}`` over ``examples`` and the per-example log-likelihoods."""
    pairs = [(ex.input, choice) for ex in examples for choice in ex.choices]
    spans = [ex.passage_span for ex in examples for _ in ex.choices]
    fitted = fit_pairs(tokenizer, pairs, max_length, spans)
    scores = _score_fitted(model, tokenizer, fitted, batch_size)
    out, k, truncated = [], 0, 0
    for ex in examples:
        n = len(ex.choices)
        out.append(ChoiceResult([s for s, _ in scores[k : k + n]], ex.label))
        truncated += any(f.truncated for f in fitted[k : k + n])
        k += n
    hit = [float(r.pred == r.label) for r in out]
    hit_norm = [float(r.pred_norm(ex.choices) == r.label) for r, ex in zip(out, examples)]
    total = max(len(examples), 1)
    metrics = {"acc": sum(hit) / total, "acc_norm": sum(hit_norm) / total, "n": len(examples)}
    if examples and all("subject" in ex.meta for ex in examples):
        metrics.update(_subject_macro(examples, hit, hit_norm))
    return {**metrics, "truncated": truncated / total}, out


def _subject_macro(examples: Sequence[Example], hit: list[float], hit_norm: list[float]) -> dict:
    """``acc = (1/S) Σ_s mean_{i ∈ s} hit_i`` over the S subjects (MMLU), the micro means and per subject."""
    per: dict[str, list[tuple[float, float]]] = {}
    for ex, h, hn in zip(examples, hit, hit_norm):
        per.setdefault(str(ex.meta["subject"]), []).append((h, hn))
    subjects = {
        s: {"acc": sum(h for h, _ in v) / len(v), "acc_norm": sum(hn for _, hn in v) / len(v), "n": len(v)}
        for s, v in sorted(per.items())
    }
    return {
        "acc": sum(m["acc"] for m in subjects.values()) / len(subjects),
        "acc_norm": sum(m["acc_norm"] for m in subjects.values()) / len(subjects),
        "acc_micro": sum(hit) / len(hit),
        "acc_norm_micro": sum(hit_norm) / len(hit_norm),
        "n_subjects": len(subjects),
        "subjects": subjects,
    }

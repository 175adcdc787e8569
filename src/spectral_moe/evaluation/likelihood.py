"""Multiple choice by log-likelihood (the lm-evaluation-harness convention).

For context ``c`` and choice ``s``::

    ll(s) = Σ_{i ∈ continuation tokens} log p(tok_i | tok_<i)
    acc      = [argmax_s ll(s) == answer]
    acc_norm = [argmax_s ll(s) / len_bytes(s) == answer]

Tokenisation as the harness does it (trailing spaces of the context move to the continuation,
``whole = enc(c + s)``, ``ctx = enc(c)``, continuation = ``whole[len(ctx):]``); the choices of one
question share one context, fitted to ``max_length`` for the longest of them (only the passage loses
tokens, :mod:`spectral_moe.data.prompts`). Scoring is batched across examples and choices
(:func:`score_fitted`): by default the contexts of many questions run in one forward, each once, and
their choices in a second one on the gathered KV cache; only the positions that predict a choice token
meet the vocabulary (``logits_to_keep``); ``autocast_dtype`` runs it under ``torch.autocast``.
Examples with ``meta["subject"]`` (MMLU) report the macro mean over subjects as ``acc``/``acc_norm``.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data.prompts import FittedPrompt, bos_ids, eos_ids, fit_to_length, split_prompt
from ..data.types import Example

__all__ = [
    "AUTOCAST_DTYPES",
    "SCORING_STRATEGIES",
    "ChoiceResult",
    "continuation_logprobs",
    "fit_pairs",
    "score_fitted",
    "score_multiple_choice",
]


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


@torch.no_grad()
def continuation_logprobs(
    model,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 16,
    max_length: int | None = 1024,
    passages: Sequence[tuple[int, int] | None] | None = None,
    *,
    autocast_dtype: torch.dtype | None = None,
) -> list[tuple[float, int]]:
    """``(Σ log p(continuation | BOS + context), number of continuation tokens)`` for each pair.

    Contexts are fitted to ``max_length`` by :func:`fit_pairs` (``passages``: the span of each context
    that may be truncated, default all of it; BOS is always kept); the ``context + continuation``
    sequences are then scored in batches of ``batch_size`` (:func:`score_fitted`). ``autocast_dtype``
    (``torch.bfloat16``, ``torch.float16``) runs the forwards under ``torch.autocast``; ``None`` (default)
    or ``torch.float32`` in the model's own precision.
    """
    fitted = fit_pairs(tokenizer, pairs, max_length, passages)
    return score_fitted(model, tokenizer, fitted, batch_size, autocast_dtype=autocast_dtype)


AUTOCAST_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"autocast_dtype must be a torch.dtype or None, got {type(dtype).__name__}")
    if dtype is not None and dtype not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast_dtype must be one of None, {AUTOCAST_DTYPES}, got {dtype}")
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _reads_prompt(model) -> bool:
    """Whether the model's tuner computes something from the prompt as a whole (HMoRA's task
    representation: ``model.base_model.prompt_mask``)."""
    return callable(getattr(getattr(model, "base_model", None), "prompt_mask", None))


def _score_by_context(
    model, tokenizer, fitted: Sequence[FittedPrompt], batch_size: int
) -> list[tuple[float, int]]:
    """Each distinct context alone (batch 1, its own width), then its continuations ``batch_size`` at a
    time against its KV cache repeated per continuation (the scorer before packing).

    For tuners that read the whole prompt: HMoRA's task encoder adds the authors' positions
    ``5000 − T … 4999`` of the forward's width ``T``, so its ``s`` depends on the padded width and a
    packed row would change it; here it sees exactly the context, at the context's width.
    """
    device = next(model.parameters()).device
    groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
    for i, f in enumerate(fitted):
        if f.continuation:
            groups.setdefault(tuple(f.context), []).append((i, f.continuation))
    results: list[tuple[float, int]] = [(0.0, 0)] * len(fitted)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for ctx, members in groups.items():
        ctx_ids = torch.tensor([ctx], device=device)
        try:
            out = model(input_ids=ctx_ids, use_cache=True, logits_to_keep=1)
        except TypeError:
            out = model(input_ids=ctx_ids, use_cache=True)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # predicts each continuation's 1st token
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            n_cont = torch.tensor([len(c) for _, c in chunk])
            width = int(n_cont.max())
            cont_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            for row, (_, c) in enumerate(chunk):
                cont_ids[row, : len(c)] = torch.tensor(c, dtype=torch.long)
            real = torch.arange(width) < n_cont[:, None]  # [B, W]
            mask = torch.cat([torch.ones(len(chunk), len(ctx), dtype=torch.long), real.long()], dim=1)
            past = copy.deepcopy(out.cache)  # transformers ≥ 5.24 names it `cache` (was past_key_values)
            past.batch_repeat_interleave(len(chunk))
            cont_ids, real = cont_ids.to(device), real.to(device)
            logits = model(
                input_ids=cont_ids, attention_mask=mask.to(device), cache=past, use_cache=True
            ).logits.float()  # [B, W, V]: position j predicts continuation token j+1
            logp = torch.cat([first.expand(len(chunk), 1, -1), torch.log_softmax(logits[:, :-1], -1)], dim=1)
            token_ll = logp.gather(2, cont_ids[..., None])[..., 0]  # [B, W]
            sums = torch.where(real, token_ll, torch.zeros_like(token_ll)).sum(1)
            for (i, _), total, k in zip(chunk, sums.tolist(), n_cont.tolist()):
                results[i] = (total, k)
    return results


def _kept_logits(
    model, ids: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor, use_cache: bool = False, **kwargs
):
    """``(logits [N, V] at the N true positions of keep [B, T] in row-major order, the model output)``.

    ``logits_to_keep=keep`` (a boolean ``[B, T]``, transformers ≥ 5.24) projects only those hidden
    states onto the vocabulary; models whose forward does not take it get the plain call and the
    positions are picked from the full ``[B, T, V]`` logits.
    """
    try:
        out = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=use_cache, **kwargs)
    except TypeError:
        out = model(input_ids=ids, attention_mask=mask, use_cache=use_cache, **kwargs)
    logits = out.logits
    if logits.dim() == 3 and tuple(logits.shape[:2]) == tuple(keep.shape):
        logits = logits[keep]
    return logits, out


Batch = list[tuple[tuple[int, ...], list[int]]]  # (context tokens, indices of the pairs continuing it)


def _group(order: list[tuple[tuple[int, ...], list[int]]], batch_size: int) -> list[Batch]:
    batches: list[Batch] = []
    rows = 0
    for ctx, members in order:
        if not batches or rows + len(members) > batch_size:
            batches.append([])
            rows = 0
        batches[-1].append((ctx, members))
        rows += len(members)
    return batches


def _shared_context_batches(fitted: Sequence[FittedPrompt], batch_size: int) -> list[Batch]:
    """Distinct contexts with the pairs that continue them, in batches of at most ``batch_size``
    continuations (a context with more choices than that gets a batch of its own).

    Contexts are ordered longest first by context, by longest choice, or by their sum, whichever
    runs the fewest padded tokens ``Σ_batches Q·Wc + R·Wk`` (``Wk`` counted when above 1): short
    contexts with long choices (PIQA) want the second, long passages with short choices the first.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, f in enumerate(fitted):
        if f.continuation:
            groups.setdefault(tuple(f.context), []).append(i)
    items = [(ctx, m, max(len(fitted[i].continuation) for i in m)) for ctx, m in groups.items()]

    def padded(batches: list[Batch]) -> int:
        total = 0
        for batch in batches:
            wk = max(len(fitted[i].continuation) for _, m in batch for i in m)
            rows = sum(len(m) for _, m in batch)
            total += len(batch) * max(len(c) for c, _ in batch) + (rows * wk if wk > 1 else 0)
        return total

    keys = (
        lambda it: (-len(it[0]), -it[2]),
        lambda it: (-it[2], -len(it[0])),
        lambda it: (-(len(it[0]) + it[2]), -it[2]),
    )
    candidates = [_group([(c, m) for c, m, _ in sorted(items, key=key)], batch_size) for key in keys]
    return min(candidates, key=padded)


def _score_shared_contexts(
    model, tokenizer, fitted: Sequence[FittedPrompt], batch_size: int
) -> list[tuple[float, int]]:
    """Contexts batched, each run once, its choices on its KV cache; see :func:`score_fitted`."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    results: list[tuple[float, int]] = [(0.0, 0)] * len(fitted)
    for batch in _shared_context_batches(fitted, batch_size):
        members = [i for _, m in batch for i in m]
        n_ctx = torch.tensor([len(c) for c, _ in batch])  # [Q]
        n_cont = torch.tensor([len(fitted[i].continuation) for i in members])  # [R]
        question = torch.repeat_interleave(torch.arange(len(batch)), torch.tensor([len(m) for _, m in batch]))
        wc, wk = int(n_ctx.max()), int(n_cont.max())
        ctx_ids = torch.full((len(batch), wc), pad, dtype=torch.long)
        for q, (c, _) in enumerate(batch):
            ctx_ids[q, : len(c)] = torch.tensor(c, dtype=torch.long)
        ctx_mask = (torch.arange(wc) < n_ctx[:, None]).long()  # [Q, Wc]
        last = torch.arange(wc) == (n_ctx - 1)[:, None]  # [Q, Wc]: predicts each choice's first token
        first, out = _kept_logits(
            model, ctx_ids.to(device), ctx_mask.to(device), last.to(device), use_cache=wk > 1
        )
        first = first.float()  # [Q, V]
        first_tok = torch.tensor([fitted[i].continuation[0] for i in members], device=device)
        q_dev = question.to(device)
        first_ll = first[q_dev].gather(1, first_tok[:, None])[:, 0]  # [R]
        token_ll = first_ll - torch.logsumexp(first, dim=-1)[q_dev]
        sums = token_ll.clone()
        if wk > 1:
            cont_ids = torch.full((len(members), wk), pad, dtype=torch.long)
            for row, i in enumerate(members):
                cont_ids[row, : n_cont[row]] = torch.tensor(fitted[i].continuation, dtype=torch.long)
            j = torch.arange(wk)
            mask = torch.cat([ctx_mask[question], (j < n_cont[:, None]).long()], dim=1)  # [R, Wc+Wk]
            keep = j < (n_cont - 1)[:, None]  # [R, Wk]: position j predicts continuation token j+1
            cache = out.cache  # transformers ≥ 5.24 names it `cache` (was past_key_values)
            cache.batch_select_indices(q_dev)
            rest, _ = _kept_logits(
                model,
                cont_ids.to(device),
                mask.to(device),
                keep.to(device),
                use_cache=True,
                cache=cache,
                position_ids=(n_ctx[question][:, None] + j).to(device),
            )
            rest = rest.float()  # [N, V]
            targets = torch.tensor([t for i in members for t in fitted[i].continuation[1:]], device=device)
            rest_ll = rest.gather(1, targets[:, None])[:, 0] - torch.logsumexp(rest, dim=-1)  # [N]
            rows = torch.repeat_interleave(torch.arange(len(members), device=device), (n_cont - 1).to(device))
            sums = sums.index_add(0, rows, rest_ll)
        for i, total, k in zip(members, sums.tolist(), n_cont.tolist()):
            results[i] = (total, k)
    return results


def _score_packed(
    model, tokenizer, fitted: Sequence[FittedPrompt], batch_size: int
) -> list[tuple[float, int]]:
    """Whole ``context + continuation`` rows packed ``batch_size`` to a forward; see :func:`score_fitted`."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    results: list[tuple[float, int]] = [(0.0, 0)] * len(fitted)
    todo = sorted(
        (i for i, f in enumerate(fitted) if f.continuation),
        key=lambda i: -(len(fitted[i].context) + len(fitted[i].continuation)),
    )
    for start in range(0, len(todo), batch_size):
        chunk = [fitted[i] for i in todo[start : start + batch_size]]
        n_ctx = torch.tensor([len(f.context) for f in chunk])
        n_cont = torch.tensor([len(f.continuation) for f in chunk])
        width = int((n_ctx + n_cont).max())
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        for row, f in enumerate(chunk):
            ids[row, : len(f.context) + len(f.continuation)] = torch.tensor(f.ids, dtype=torch.long)
        t = torch.arange(width)
        mask = (t < (n_ctx + n_cont)[:, None]).long()
        keep = (t >= (n_ctx - 1)[:, None]) & (t < (n_ctx + n_cont - 1)[:, None])
        targets = torch.tensor([tok for f in chunk for tok in f.continuation], device=device)
        logits, _ = _kept_logits(model, ids.to(device), mask.to(device), keep.to(device))
        logits = logits.float()  # [N, V], row-major over keep
        token_ll = logits.gather(1, targets[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)  # [N]
        rows = torch.repeat_interleave(torch.arange(len(chunk), device=device), n_cont.to(device))
        sums = torch.zeros(len(chunk), dtype=torch.float32, device=device).index_add_(0, rows, token_ll)
        for i, total, k in zip(todo[start : start + batch_size], sums.tolist(), n_cont.tolist()):
            results[i] = (total, k)
    return results


def _takes(model, *names: str) -> bool:
    """Whether ``model.forward`` accepts every keyword of ``names`` (or any keyword: ``**kwargs``)."""
    params = inspect.signature(model.forward).parameters.values()
    return any(p.kind is p.VAR_KEYWORD for p in params) or set(names) <= {p.name for p in params}


SCORING_STRATEGIES = ("shared", "packed")


@torch.no_grad()
def score_fitted(
    model,
    tokenizer,
    fitted: Sequence[FittedPrompt],
    batch_size: int = 16,
    *,
    autocast_dtype: torch.dtype | None = None,
    strategy: str = "shared",
) -> list[tuple[float, int]]:
    """``(Σ log p(continuation | context), len(continuation))`` of each fitted ``context + continuation``.

    ``ll = Σ_{j<K} log softmax(ℓ_{C−1+j})[x_{C+j}]`` for context length ``C``, continuation length ``K``,
    log-softmax in float32, and only the ``K`` positions that predict a continuation token meet the
    vocabulary (``logits_to_keep``); everything is batched, right-padded with an attention mask:

    ``"shared"`` (default): the distinct contexts, longest first, are batched so that their choices
    number at most ``batch_size`` (a context with more choices gets a batch of its own); one forward
    runs the contexts ``[Q, Wc]`` (logits only at each context's last position: the first choice
    token), the KV cache is gathered per choice, and one forward runs the choices ``[R, Wk]`` after it
    (``position_ids = C + j``, the context's padding masked). Each context runs once, as before.
    Choices of one token need no second forward.

    ``"packed"``: whole ``context + continuation`` rows ``[B, C+K]``, longest first, ``batch_size`` to a
    forward (as lm-eval does); a context runs once per choice. Also the path for models whose forward
    takes no ``cache``/``position_ids``.

    Causal attention never lets a position see the padding to its right, so each row equals its own
    unpadded forward (and the scorer before issue 15, context alone then its choices on the KV cache,
    to rounding). Models whose tuner reads the whole prompt (HMoRA, ``base_model.prompt_mask``) are
    scored context by context (:func:`_score_by_context`): HMoRA's task representation depends on the
    forward's width, so it must see the context alone. ``autocast_dtype`` (``torch.bfloat16``,
    ``torch.float16``) runs the forwards under ``torch.autocast``. A pair with no continuation tokens
    scores ``(0.0, 0)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if strategy not in SCORING_STRATEGIES:
        raise ValueError(f"strategy must be one of {SCORING_STRATEGIES}, got {strategy!r}")
    if any(f.continuation and not f.context for f in fitted):
        raise ValueError(
            "every fitted context must hold at least one token (BOS) to predict its continuation"
        )
    device = next(model.parameters()).device
    with _autocast(device, autocast_dtype):
        if _reads_prompt(model):
            return _score_by_context(model, tokenizer, fitted, batch_size)
        if strategy == "shared" and _takes(model, "cache", "position_ids"):
            return _score_shared_contexts(model, tokenizer, fitted, batch_size)
        return _score_packed(model, tokenizer, fitted, batch_size)


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
    model,
    tokenizer,
    examples: Sequence[Example],
    batch_size: int = 16,
    max_length: int | None = 1024,
    *,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[dict[str, float], list[ChoiceResult]]:
    """``{"acc", "acc_norm", "n", "truncated"}`` over ``examples`` and the per-example log-likelihoods.

    All choices of all examples are scored together, ``batch_size`` ``context + choice`` sequences per
    forward (:func:`score_fitted`); ``autocast_dtype`` as in :func:`continuation_logprobs`.
    """
    pairs = [(ex.input, choice) for ex in examples for choice in ex.choices]
    spans = [ex.passage_span for ex in examples for _ in ex.choices]
    fitted = fit_pairs(tokenizer, pairs, max_length, spans)
    scores = score_fitted(model, tokenizer, fitted, batch_size, autocast_dtype=autocast_dtype)
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

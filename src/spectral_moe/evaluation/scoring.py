"""Evaluation: multiple-choice log-likelihood scoring and exact match of generated answers.

Multiple choice (the lm-evaluation-harness convention). For context ``c`` and choice ``s``::

    ll(s) = Σ_{i ∈ continuation tokens} log p(tok_i | tok_<i)
    acc      = [argmax_s ll(s) == answer]
    acc_norm = [argmax_s ll(s) / len_bytes(s) == answer]

Tokenisation as the harness does it: trailing spaces of the context move to the continuation,
``whole = enc(c + s)``, ``ctx = enc(c)``, continuation tokens = ``whole[len(ctx):]``.

Prompts are built and truncated as in training (:mod:`spectral_moe.data.prompts`): BOS + instruction
+ passage + choice list / answer prefix, and only the passage loses tokens (from its left) when
``context + continuation`` exceeds ``max_length``; the choices of one question share one context,
fitted for the longest of them. Each task's metrics include ``truncated``, the fraction of its
examples whose prompt lost tokens.

Free-form tasks (GSM8K) and multiple-choice tasks whose examples carry a numeric reference
(BIG-bench arithmetic, ``meta["target"]``): greedy decoding after ``BOS + prompt`` until EOS or
``max_new_tokens``, the completion cut at the example's ``meta["stop"]`` strings, then its number
compared with the reference number (``exact_match``). Which number: the first one (short answers,
``max_new_tokens`` 32, 8 for arithmetic), or for examples with ``meta["answer_style"] ==
"final_number"`` (GSM8K, trained on worked solutions) the final answer, the number after ``####`` or
else the last number (:func:`spectral_moe.data.gsm8k.gsm8k_completion_answer`), with at least
:data:`SOLUTION_MAX_NEW_TOKENS` new tokens to write the solution.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data.gsm8k import gsm8k_completion_answer
from ..data.prompts import (
    FittedPrompt,
    bos_ids,
    build_prompt,
    encode_pair,
    eos_ids,
    fit_to_length,
    split_prompt,
)
from ..data.types import Example

SOLUTION_MAX_NEW_TOKENS = 256
SHORT_MAX_NEW_TOKENS = 32

__all__ = [
    "SOLUTION_MAX_NEW_TOKENS",
    "SHORT_MAX_NEW_TOKENS",
    "ChoiceResult",
    "completion_answer",
    "continuation_logprobs",
    "encode_pair",
    "evaluate_task",
    "first_number",
    "fit_pairs",
    "generate_answers",
    "macro_average",
    "numeric_target",
    "score_exact_match",
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
            past = copy.deepcopy(out.past_key_values)
            past.batch_repeat_interleave(len(chunk))
            logits = model(
                input_ids=cont_ids.to(device),
                attention_mask=mask.to(device),
                past_key_values=past,
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
    acc = sum(r.pred == r.label for r in out)
    acc_norm = sum(r.pred_norm(ex.choices) == r.label for r, ex in zip(out, examples))
    total = max(len(examples), 1)
    metrics = {"acc": acc / total, "acc_norm": acc_norm / total, "n": len(examples)}
    return {**metrics, "truncated": truncated / total}, out


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def first_number(text: str) -> str | None:
    """The first number in ``text`` with thousands separators removed (``"1,234"`` → ``"1234"``)."""
    m = _NUMBER.search(text)
    if m is None:
        return None
    value = m.group(0).replace(",", "")
    return value[:-2] if value.endswith(".0") else value


@torch.no_grad()
def _generate(
    model, tokenizer, prompts: Sequence[list[int]], max_new_tokens: int, batch_size: int
) -> list[str]:
    """Greedy completions of token-id prompts (left-padded batches), stopping at EOS."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pad = 0 if pad is None else pad
    outputs: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, p in enumerate(batch):
            ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[row, width - len(p) :] = 1
        gen = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad,
        )
        outputs.extend(tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True))
    return outputs


def generate_answers(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = SHORT_MAX_NEW_TOKENS,
    batch_size: int = 8,
    max_length: int | None = 1024,
    passages: Sequence[tuple[int, int] | None] | None = None,
) -> list[str]:
    """Greedy completions (decoded text after each prompt) of ``BOS + prompt``, fitted to ``max_length``
    by the data policy (``passages``: the truncatable span of each prompt), stopping at EOS."""
    spans = list(passages) if passages is not None else [None] * len(prompts)
    fitted = [
        build_prompt(tokenizer, p, "", max_length, passage=span, reserve=0) for p, span in zip(prompts, spans)
    ]
    return _generate(model, tokenizer, [f.context for f in fitted], max_new_tokens, batch_size)


def numeric_target(example: Example) -> str | None:
    """The reference number of a generation-scored example: ``meta["target"]`` when it is a number
    (BIG-bench arithmetic keeps its plain answer there), else ``answer`` for free-form tasks."""
    target = example.meta.get("target") if example.choices else example.answer
    if not isinstance(target, str):
        return None
    number = first_number(target)
    return (
        number if number is not None and target.strip().replace(",", "") in (number, number + ".0") else None
    )


def _solution_style(example: Example) -> bool:
    return example.meta.get("answer_style") == "final_number"


def completion_answer(example: Example, text: str) -> str | None:
    """The number a completion answers with: cut at the first of ``meta["stop"]``, then the final answer
    (``answer_style == "final_number"``: after ``####``, else the last number) or the first number."""
    for stop in example.meta.get("stop", ()):
        text = text.split(stop, 1)[0]
    return gsm8k_completion_answer(text) if _solution_style(example) else first_number(text)


def score_exact_match(
    model,
    tokenizer,
    examples: Sequence[Example],
    max_new_tokens: int = SHORT_MAX_NEW_TOKENS,
    batch_size: int = 8,
    max_length: int | None = 1024,
) -> tuple[dict[str, float], list[str]]:
    """``{"exact_match", "n", "truncated"}``: the completion's number (:func:`completion_answer`) equals
    the reference number. Examples scored by their final answer get at least
    :data:`SOLUTION_MAX_NEW_TOKENS` new tokens."""
    fitted = [
        build_prompt(tokenizer, ex.input, "", max_length, passage=ex.passage_span, reserve=0)
        for ex in examples
    ]
    completions: list[str] = [""] * len(examples)
    for solution in (False, True):
        idx = [i for i, ex in enumerate(examples) if _solution_style(ex) == solution]
        if not idx:
            continue
        n_new = max(max_new_tokens, SOLUTION_MAX_NEW_TOKENS) if solution else max_new_tokens
        texts = _generate(model, tokenizer, [fitted[i].context for i in idx], n_new, batch_size)
        for i, text in zip(idx, texts):
            completions[i] = text
    hits = 0
    for ex, text in zip(examples, completions):
        want = numeric_target(ex) or first_number(ex.answer) or ex.answer.strip()
        got = completion_answer(ex, text)
        hits += got is not None and got == want
    total = max(len(examples), 1)
    truncated = sum(f.truncated for f in fitted)
    return {"exact_match": hits / total, "n": len(examples), "truncated": truncated / total}, completions


def evaluate_task(
    model,
    tokenizer,
    examples: Sequence[Example],
    kind: str,
    batch_size: int = 16,
    max_new_tokens: int = SHORT_MAX_NEW_TOKENS,
    max_length: int | None = 1024,
) -> dict[str, float]:
    """Metrics of one task: log-likelihood accuracy for multiple choice, exact match for free-form;
    ``truncated`` is the fraction of examples whose prompt did not fit ``max_length`` whole."""
    if not examples:
        return {"n": 0}
    was_training = model.training
    model.eval()
    try:
        if kind == "multiple_choice":
            metrics = score_multiple_choice(model, tokenizer, examples, batch_size, max_length)[0]
            if all(numeric_target(ex) is not None for ex in examples):  # arithmetic: also by generation
                em = score_exact_match(
                    model, tokenizer, examples, max_new_tokens=8, batch_size=batch_size, max_length=max_length
                )[0]
                metrics["exact_match"] = em["exact_match"]
            return metrics
        if kind == "free_form":
            return score_exact_match(
                model, tokenizer, examples, max_new_tokens, max(batch_size // 2, 1), max_length
            )[0]
        raise ValueError(f"task kind must be 'multiple_choice' or 'free_form', got {kind!r}")
    finally:
        model.train(was_training)


def macro_average(per_task: dict[str, dict[str, float]], metric: str) -> float | None:
    """Unweighted mean of ``metric`` over the tasks that report it."""
    values = [m[metric] for m in per_task.values() if metric in m]
    return sum(values) / len(values) if values else None

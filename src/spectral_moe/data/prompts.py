"""Token layout of a prompt and the one truncation policy of training and evaluation.

Every causal-LM sequence, in training (``prompt + answer``), log-likelihood scoring
(``prompt + choice``) and exact-match generation (``prompt``, then generated tokens), is::

    [BOS] + head + passage + tail + continuation [+ EOS]

where, for an example with ``passage_span = (s, e)`` (:attr:`Example.passage_span`)::

    head    = tokens of input[:s]    the task instruction and input prefix ("...\\nQ: ")
    passage = tokens of input[s:e]   the example's own text (question, passage, review)
    tail    = tokens of input[e:]    the choice list and the answer prefix ("\\n  choice: ...\\nA:")

The context is tokenised as one string (``encode_pair``, the lm-evaluation-harness convention:
trailing spaces of the context move to the continuation, context tokens = the first ``len(enc(context))``
tokens of ``enc(context + continuation)``), and each context token is assigned to head, passage or
tail by its character offsets: head = tokens that end at or before ``s``, tail = tokens that start at
or after ``e``, passage = the rest (a token straddling a boundary counts as passage). Tokenizers
without offsets (slow ones) count ``len(enc(input[:s]))`` and ``len(enc(input[:e]))`` instead.

Policy (:func:`fit_to_length`), with ``L = max_length`` and ``need = |BOS| + |head| + |passage| + |tail|
+ reserve`` (``reserve`` = the continuation's length incl. EOS unless given)::

    excess  = max(0, need - L)
    dropped = min(excess, |passage|)           passage tokens dropped from the LEFT (its end, next to
                                               the question and the answer, is kept)
    overflow = min(excess - dropped, |head + tail|)   only when the passage alone cannot absorb the
                                               excess: the rest of the context is cut from the left

BOS and the continuation are never dropped (a continuation longer than ``L`` gives a sequence longer
than ``L``); the instruction and the tail are dropped only in the ``overflow`` case, which callers count
separately. Without truncation the tokens are exactly ``BOS + encode_pair(...)``.

Encoders use the same policy with the tokenizer's special tokens (``[CLS] ... [SEP]``) in place of
BOS (:func:`encoder_input_ids`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "FittedPrompt",
    "PromptParts",
    "bos_ids",
    "build_prompt",
    "encode_pair",
    "encoder_input_ids",
    "eos_ids",
    "fit_to_length",
    "special_tokens_around",
    "split_prompt",
]


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of ``context`` and of ``continuation`` given it (harness convention, no special tokens)."""
    parts = split_prompt(tokenizer, context, continuation)
    return parts.context, parts.continuation


def bos_ids(tokenizer) -> list[int]:
    """``[bos_token_id]``, or ``[]`` for tokenizers without a BOS token."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return [bos] if bos is not None else []


def eos_ids(tokenizer) -> list[int]:
    """``[eos_token_id]``, or ``[]`` for tokenizers without an EOS token."""
    eos = getattr(tokenizer, "eos_token_id", None)
    return [eos] if eos is not None else []


@dataclass(frozen=True)
class PromptParts:
    """A prompt's tokens split into ``head + passage + tail`` (the context) and the ``continuation``."""

    head: list[int]
    passage: list[int]
    tail: list[int]
    continuation: list[int]

    @property
    def context(self) -> list[int]:
        return self.head + self.passage + self.tail


@dataclass(frozen=True)
class FittedPrompt:
    """The tokens of one sequence after :func:`fit_to_length`.

    ``context`` includes BOS, ``continuation`` includes EOS when asked for; ``dropped`` passage tokens
    and ``overflow`` other context tokens were cut (see the module docstring).
    """

    context: list[int]
    continuation: list[int]
    dropped: int = 0
    overflow: int = 0

    @property
    def ids(self) -> list[int]:
        return self.context + self.continuation

    @property
    def truncated(self) -> bool:
        return self.dropped > 0 or self.overflow > 0


def _check_span(context: str, passage: tuple[int, int] | None) -> tuple[int, int]:
    if passage is None:
        return 0, len(context)
    start, end = (int(v) for v in passage)
    if not 0 <= start <= end <= len(context):
        raise ValueError(
            f"passage must be (start, end) with 0 <= start <= end <= len(context) = {len(context)}, "
            f"got {tuple(passage)!r}"
        )
    return start, end


def split_prompt(
    tokenizer, context: str, continuation: str = "", passage: tuple[int, int] | None = None
) -> PromptParts:
    """Tokenise ``context + continuation`` (no special tokens) and split the context tokens into
    head / passage / tail around the character span ``passage`` of ``context`` (default: all of it)."""
    start, end = _check_span(context, passage)
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    start, end = min(start, len(context)), min(end, len(context))
    enc = tokenizer(
        context + continuation,
        add_special_tokens=False,
        return_offsets_mapping=bool(getattr(tokenizer, "is_fast", False)),
    )
    whole = list(enc["input_ids"])
    n_ctx = len(tokenizer(context, add_special_tokens=False)["input_ids"])
    # BPE may merge across the boundary; the harness takes the split at len(ctx) all the same.
    ctx, cont = whole[:n_ctx], whole[n_ctx:]
    if "offset_mapping" in enc:
        offsets = enc["offset_mapping"][: len(ctx)]
        ends = [b for _, b in offsets]
        starts = [a for a, _ in offsets]
        n_head = bisect.bisect_right(ends, start) if start > 0 else 0
        n_before_tail = bisect.bisect_left(starts, end) if end < len(context) else len(ctx)
    else:
        n_head = len(tokenizer(context[:start], add_special_tokens=False)["input_ids"]) if start else 0
        n_before_tail = len(tokenizer(context[:end], add_special_tokens=False)["input_ids"])
    n_head = min(n_head, len(ctx))
    n_before_tail = min(max(n_before_tail, n_head), len(ctx))
    return PromptParts(ctx[:n_head], ctx[n_head:n_before_tail], ctx[n_before_tail:], cont)


def fit_to_length(
    parts: PromptParts,
    max_length: int | None,
    *,
    bos: Sequence[int] = (),
    eos: Sequence[int] = (),
    reserve: int | None = None,
) -> FittedPrompt:
    """``bos + head + passage + tail`` and ``continuation + eos`` within ``max_length`` tokens.

    ``reserve`` is the room kept for what follows the context (default ``|continuation + eos|``; the
    choices of one question pass their longest so that they share one context; generation passes 0).
    See the module docstring for the policy. ``max_length=None`` never truncates.
    """
    bos, cont = list(bos), parts.continuation + list(eos)
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"max_length must be None or a positive integer, got {max_length!r}")
    room = len(cont) if reserve is None else reserve
    need = len(bos) + len(parts.head) + len(parts.passage) + len(parts.tail) + room
    excess = 0 if max_length is None else max(0, need - max_length)
    dropped = min(excess, len(parts.passage))
    fixed = parts.head + parts.passage[dropped:] + parts.tail
    overflow = min(excess - dropped, len(fixed))
    return FittedPrompt(bos + fixed[overflow:], cont, dropped, overflow)


def build_prompt(
    tokenizer,
    context: str,
    continuation: str = "",
    max_length: int | None = None,
    *,
    passage: tuple[int, int] | None = None,
    add_bos: bool = True,
    add_eos: bool = False,
    reserve: int | None = None,
) -> FittedPrompt:
    """:func:`split_prompt` then :func:`fit_to_length` with the tokenizer's BOS (and EOS if asked)."""
    parts = split_prompt(tokenizer, context, continuation, passage)
    return fit_to_length(
        parts,
        max_length,
        bos=bos_ids(tokenizer) if add_bos else (),
        eos=eos_ids(tokenizer) if add_eos else (),
        reserve=reserve,
    )


def special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one sequence (``[CLS]``, ``[SEP]``),
    read from how it encodes a probe text with and without them."""
    probe = "a"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return full[:i], full[i + len(plain) :]
    raise ValueError(f"cannot locate the text among the special tokens of {type(tokenizer).__name__}")


def encoder_input_ids(
    tokenizer, text: str, max_length: int | None, passage: tuple[int, int] | None = None
) -> tuple[list[int], FittedPrompt]:
    """Encoder ids ``before + head + passage + tail + after`` within ``max_length``, where ``before`` and
    ``after`` are the tokenizer's special tokens (``[CLS]``, ``[SEP]``: kept and counted), and the fitted
    prompt (its context starts with ``before``). ``max_length`` is capped at the tokenizer's
    ``model_max_length`` when it has a real one."""
    limit = getattr(tokenizer, "model_max_length", None)  # an encoder's position limit (512 for BERTs)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        max_length = limit if max_length is None else min(max_length, limit)
    before, after = special_tokens_around(tokenizer)
    fitted = fit_to_length(
        split_prompt(tokenizer, text, "", passage), max_length, bos=before, reserve=len(after)
    )
    return fitted.context + after, fitted

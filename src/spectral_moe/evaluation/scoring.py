"""Evaluation: multiple-choice log-likelihood scoring and exact match of generated answers.

This module dispatches per task (:func:`evaluate_task`) and holds generation and exact match; the
log-likelihood scoring itself is :mod:`spectral_moe.evaluation.likelihood`, MATH answer normalisation
:mod:`spectral_moe.evaluation.math_answers`, the code sandbox :mod:`spectral_moe.evaluation.code`.

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

Scoring dispatches on ``meta["answer_style"]``:

``"final_number"`` (GSM8K)   the final number, as above.
``"math_final"`` (MATH)       the final answer of the completion (:func:`extract_math_answer`: the last
                              ``\\boxed{...}``, else Minerva's ``"The final answer is X"``, else the last
                              ``$...$``) and the reference are equal after :func:`normalize_math_answer`
                              (``exact_match``), with at least :data:`SOLUTION_MAX_NEW_TOKENS` new tokens.
``"code_execution"``          (HumanEval, MBPP) the completion, cut at ``meta["stop"]``, runs against the
                              example's tests in the sandbox of :mod:`spectral_moe.evaluation.code`
                              (``pass@1``, greedy, at least :data:`CODE_MAX_NEW_TOKENS` new tokens). The
                              program is ``input + completion`` (HumanEval: the prompt is the function's
                              signature and docstring) or ``completion`` alone (``meta["program"] ==
                              "completion"``, MBPP). The prompt keeps its trailing newline (generation
                              starts on the function body's line). Needs the opt-in
                              (``allow_code_execution=True`` / ``SPECTRAL_MOE_ALLOW_CODE_EVAL=1``), checked
                              before anything is generated; the metrics record the sandbox's ``isolation``.

Multiple-choice examples with ``meta["subject"]`` (MMLU) report ``acc`` / ``acc_norm`` as the unweighted
mean over subjects (macro), ``acc_micro`` / ``acc_norm_micro`` over examples, and ``subjects`` =
``{subject: {"acc", "acc_norm", "n"}}``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from ..data.gsm8k import gsm8k_completion_answer
from ..data.prompts import (
    build_prompt,
    encode_pair,
)
from ..data.types import Example
from .code import probe_isolation, require_code_execution, run_programs
from .likelihood import ChoiceResult, continuation_logprobs, fit_pairs, score_fitted, score_multiple_choice
from .math_answers import extract_math_answer, math_answers_equal, normalize_math_answer

SOLUTION_MAX_NEW_TOKENS = 256
SHORT_MAX_NEW_TOKENS = 32
CODE_MAX_NEW_TOKENS = 512
CODE_TIMEOUT_S = 10.0

__all__ = [
    "CODE_MAX_NEW_TOKENS",
    "CODE_TIMEOUT_S",
    "SOLUTION_MAX_NEW_TOKENS",
    "SHORT_MAX_NEW_TOKENS",
    "ChoiceResult",
    "completion_answer",
    "continuation_logprobs",
    "encode_pair",
    "code_program",
    "cut_at_stop",
    "evaluate_task",
    "extract_math_answer",
    "first_number",
    "fit_pairs",
    "generate_answers",
    "macro_average",
    "math_answers_equal",
    "normalize_math_answer",
    "numeric_target",
    "score_code_execution",
    "score_exact_match",
    "score_fitted",
    "score_multiple_choice",
]


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
    model,
    tokenizer,
    prompts: Sequence[list[int]],
    max_new_tokens: int,
    batch_size: int,
    stop: Sequence[str] = (),
) -> list[str]:
    """Greedy completions of token-id prompts (left-padded batches), stopping at EOS (and, where the
    installed transformers supports it, when every row has produced one of ``stop``: the completions are
    cut there anyway, so this only saves time)."""
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
        kwargs = dict(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad,
        )
        if stop:
            try:
                gen = model.generate(**kwargs, stop_strings=list(stop), tokenizer=tokenizer)
            except (TypeError, ValueError):  # no stop-string support: generate to the end and cut
                gen = model.generate(**kwargs)
        else:
            gen = model.generate(**kwargs)
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
    return example.meta.get("answer_style") in ("final_number", "math_final")


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the earliest occurrence of any of ``stops`` (all of it when none occurs)."""
    at = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:at]


def completion_answer(example: Example, text: str) -> str | None:
    """The answer of a completion: cut at the earliest of ``meta["stop"]``, then the final answer
    (``answer_style == "final_number"``: after ``####``, else the last number; ``"math_final"``:
    :func:`extract_math_answer`) or the first number."""
    text = cut_at_stop(text, example.meta.get("stop", ()))
    style = example.meta.get("answer_style")
    if style == "math_final":
        return extract_math_answer(text)
    return gsm8k_completion_answer(text) if style == "final_number" else first_number(text)


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
        stops = _common_stops([examples[i] for i in idx])
        texts = _generate(model, tokenizer, [fitted[i].context for i in idx], n_new, batch_size, stops)
        for i, text in zip(idx, texts):
            completions[i] = text
    hits = 0
    for ex, text in zip(examples, completions):
        got = completion_answer(ex, text)
        if ex.meta.get("answer_style") == "math_final":
            hits += math_answers_equal(got, ex.answer)
            continue
        want = numeric_target(ex) or first_number(ex.answer) or ex.answer.strip()
        hits += got is not None and got == want
    total = max(len(examples), 1)
    truncated = sum(f.truncated for f in fitted)
    return {"exact_match": hits / total, "n": len(examples), "truncated": truncated / total}, completions


def _common_stops(examples: Sequence[Example]) -> list[str]:
    """The stop strings all ``examples`` share (generation may end early at them)."""
    if not examples:
        return []
    common = set(examples[0].meta.get("stop", ()))
    for ex in examples[1:]:
        common &= set(ex.meta.get("stop", ()))
    return sorted(common)


def code_program(example: Example, completion: str) -> str:
    """The program a completion of a code task makes: cut at ``meta["stop"]``, then ``input +
    completion`` (HumanEval) or the completion alone (``meta["program"] == "completion"``, MBPP)."""
    text = cut_at_stop(completion, example.meta.get("stop", ()))
    return text if example.meta.get("program") == "completion" else example.input + text


def score_code_execution(
    model,
    tokenizer,
    examples: Sequence[Example],
    max_new_tokens: int = CODE_MAX_NEW_TOKENS,
    batch_size: int = 8,
    max_length: int | None = 1024,
    *,
    allow_code_execution: bool | None = None,
    timeout_s: float = CODE_TIMEOUT_S,
    max_workers: int | None = None,
) -> tuple[dict, list[str]]:
    """``{"pass@1", "n", "truncated", "isolation", "sandbox_warnings", "errors"}`` of greedy completions run
    against ``meta["test_program"]`` (:func:`code_program`, :func:`spectral_moe.evaluation.code.run_programs`)
    and the raw completions.

    ``pass@1 = (1/n) Σ_i [program_i + test_i exits 0 within timeout_s]`` (one greedy sample per problem).
    Raises :class:`spectral_moe.evaluation.code.CodeExecutionNotAllowed` before generating anything unless
    code execution was opted into. ``isolation`` lists the sandbox layers that applied on this machine
    (:func:`spectral_moe.evaluation.code.probe_isolation`); ``errors`` counts the first line of each failure.
    """
    require_code_execution(allow_code_execution)
    probe = probe_isolation(allow_code_execution=True)
    fitted = [
        build_prompt(tokenizer, ex.input, "", max_length, passage=ex.passage_span, reserve=0)
        for ex in examples
    ]
    # split_prompt moves the prompt's trailing whitespace (HumanEval/MBPP end in "\n") into the
    # continuation; generation must start after it, so it goes back into the prompt.
    prompts = [f.context + f.continuation for f in fitted]
    n_new = max(max_new_tokens, CODE_MAX_NEW_TOKENS)
    completions = _generate(model, tokenizer, prompts, n_new, batch_size, _common_stops(examples))
    programs = [(code_program(ex, c), ex.meta["test_program"]) for ex, c in zip(examples, completions)]
    results = run_programs(programs, timeout_s, allow_code_execution=True, max_workers=max_workers)
    errors: dict[str, int] = {}
    for r in results:
        if not r.passed:
            key = r.error.splitlines()[0][:80] if r.error else "failed"
            errors[key] = errors.get(key, 0) + 1
    total = max(len(examples), 1)
    metrics = {
        "pass@1": sum(r.passed for r in results) / total,
        "n": len(examples),
        "truncated": sum(f.truncated for f in fitted) / total,
        "isolation": list(probe.isolation),
        "sandbox_warnings": list(probe.warnings),
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:10]),
    }
    return metrics, completions


def evaluate_task(
    model,
    tokenizer,
    examples: Sequence[Example],
    kind: str,
    batch_size: int = 16,
    max_new_tokens: int = SHORT_MAX_NEW_TOKENS,
    max_length: int | None = 1024,
    *,
    allow_code_execution: bool | None = None,
    autocast_dtype: torch.dtype | None = None,
    hits: dict[str, list[int]] | None = None,
) -> dict:
    """Metrics of one task: log-likelihood accuracy for multiple choice, exact match for free-form,
    pass@1 for code (``answer_style == "code_execution"``, which needs ``allow_code_execution`` or
    ``$SPECTRAL_MOE_ALLOW_CODE_EVAL=1``, checked before the model runs); ``truncated`` is the fraction of
    examples whose prompt did not fit ``max_length`` whole. ``autocast_dtype`` (``torch.bfloat16``,
    ``torch.float16``; default ``None``: the model's own precision) runs the log-likelihood forwards
    under ``torch.autocast``; generation keeps the model's precision. ``hits``, when given, receives
    each multiple-choice example's 0/1 correctness in order (``hits["acc"]``, ``hits["acc_norm"]``; the
    per-example records of ``evaluation.tasks``)."""
    styles = {ex.meta.get("answer_style") for ex in examples}
    if "code_execution" in styles:
        if len(styles) > 1:
            raise ValueError(
                f"a task mixes code_execution with other answer styles: {sorted(map(str, styles))}"
            )
        require_code_execution(allow_code_execution)
    if not examples:
        return {"n": 0}
    was_training = model.training
    model.eval()
    try:
        if kind == "multiple_choice":
            metrics, results = score_multiple_choice(
                model, tokenizer, examples, batch_size, max_length, autocast_dtype=autocast_dtype
            )
            if hits is not None:
                hits["acc"] = [int(r.pred == r.label) for r in results]
                hits["acc_norm"] = [
                    int(r.pred_norm(ex.choices) == r.label) for r, ex in zip(results, examples)
                ]
            if all(numeric_target(ex) is not None for ex in examples):  # arithmetic: also by generation
                em = score_exact_match(
                    model, tokenizer, examples, max_new_tokens=8, batch_size=batch_size, max_length=max_length
                )[0]
                metrics["exact_match"] = em["exact_match"]
            return metrics
        if kind == "free_form" and "code_execution" in styles:
            return score_code_execution(
                model,
                tokenizer,
                examples,
                max(max_new_tokens, CODE_MAX_NEW_TOKENS),
                max(batch_size // 2, 1),
                max_length,
                allow_code_execution=True,
            )[0]
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

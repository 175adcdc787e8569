"""One truncation policy: BOS, the task instruction, the choice list and the answer survive; only the
passage loses tokens (from its left), in training features, log-likelihood scoring and generation."""

from __future__ import annotations

import pytest

from spectral_moe.data import parse_bigbench_task
from spectral_moe.data.features import causal_lm_features, seq_cls_features
from spectral_moe.data.prompts import (
    build_prompt,
    encode_pair,
    encoder_input_ids,
    fit_to_length,
    split_prompt,
)
from spectral_moe.data.types import Example
from spectral_moe.evaluation.scoring import fit_pairs
from tests.helpers import tiny_tokenizer

INSTRUCTION = "Answer the question about the story."
PASSAGE = " ".join(["The answer is yes or no."] * 12) + " Question: what is 2 plus 3?"
TASK = {
    "task_prefix": INSTRUCTION,
    "examples": [{"input": PASSAGE, "target_scores": {"5": 1, "3": 0}}],
}


def _example() -> Example:
    _, (ex,), _ = parse_bigbench_task(TASK, "bigbench:toy")
    return ex


def test_bigbench_examples_record_where_their_passage_is():
    ex = _example()
    start, end = ex.passage_span
    assert ex.passage == PASSAGE and ex.input[start:end] == PASSAGE
    assert ex.input[:start] == INSTRUCTION + "\nQ: "
    assert (
        ex.input[end:] == "\n  choice: 5\n  choice: 3\nA:"
        or ex.input[end:] == "\n  choice: 3\n  choice: 5\nA:"
    )
    # an empty input has an empty passage, so it is neither truncated nor grouped
    _, (empty,), _ = parse_bigbench_task(
        {"examples": [{"input": "", "target_scores": {"a": 1, "b": 0}}]}, "bigbench:toy"
    )
    assert empty.passage_span == (0, 0)


def test_head_passage_tail_tokens_reassemble_the_prompt():
    tok = tiny_tokenizer()
    ex = _example()
    parts = split_prompt(tok, ex.input, ex.answer, ex.passage_span)
    assert parts.context + parts.continuation == sum(encode_pair(tok, ex.input, ex.answer), [])
    assert tok.decode(parts.head).startswith(INSTRUCTION) and tok.decode(parts.head).rstrip().endswith("Q:")
    assert tok.decode(parts.tail).endswith("\nA:") and "choice: 5" in tok.decode(parts.tail)
    assert tok.decode(parts.passage).strip() == PASSAGE


def test_training_features_truncate_only_the_passage():
    tok = tiny_tokenizer()
    ex = _example()
    parts = split_prompt(tok, ex.input, ex.answer, ex.passage_span)
    full = causal_lm_features(tok, ex, max_length=1024)
    assert full["input_ids"] == [tok.bos_token_id] + parts.context + parts.continuation + [tok.eos_token_id]
    assert not full["truncated"]

    max_length = len(full["input_ids"]) - 20
    feats = causal_lm_features(tok, ex, max_length=max_length)
    ids, labels = feats["input_ids"], feats["labels"]
    assert feats["truncated"] and len(ids) == max_length
    assert ids[0] == tok.bos_token_id  # left truncation used to drop BOS and the instruction first
    assert ids[1 : 1 + len(parts.head)] == parts.head
    n_answer = len(parts.continuation) + 1
    assert ids[-n_answer - len(parts.tail) : -n_answer] == parts.tail
    assert labels[-n_answer:] == parts.continuation + [tok.eos_token_id] == ids[-n_answer:]
    assert labels[:-n_answer] == [-100] * (len(ids) - n_answer)
    kept = ids[1 + len(parts.head) : -n_answer - len(parts.tail)]
    assert kept == parts.passage[len(parts.passage) - len(kept) :]  # the passage's end is kept


def test_scoring_and_generation_use_the_training_context():
    tok = tiny_tokenizer()
    ex = _example()
    max_length = len(causal_lm_features(tok, ex, 1024)["input_ids"]) - 20
    train_ids = causal_lm_features(tok, ex, max_length)["input_ids"]
    fitted = fit_pairs(tok, [(ex.input, c) for c in ex.choices], max_length, [ex.passage_span] * 2)
    # one shared context for the choices, equal to the training context (" 5" and " 3" are one token each)
    assert fitted[0].context == fitted[1].context == train_ids[: len(fitted[0].context)]
    assert all(f.truncated and f.context[0] == tok.bos_token_id for f in fitted)
    prompt = build_prompt(tok, ex.input, "", max_length, passage=ex.passage_span, reserve=0)
    assert prompt.context[0] == tok.bos_token_id and len(prompt.context) == max_length


def test_overflow_cuts_the_rest_of_the_context_but_never_bos_or_the_answer():
    tok = tiny_tokenizer()
    ex = _example()
    parts = split_prompt(tok, ex.input, ex.answer, ex.passage_span)
    fixed = 1 + len(parts.head) + len(parts.tail) + len(parts.continuation)
    fitted = fit_to_length(parts, fixed - 3, bos=[tok.bos_token_id])
    assert fitted.dropped == len(parts.passage) and fitted.overflow == 3
    assert fitted.context == [tok.bos_token_id] + (parts.head + parts.tail)[3:]
    assert fitted.continuation == parts.continuation and len(fitted.ids) == fixed - 3
    with pytest.raises(ValueError, match="max_length"):
        fit_to_length(parts, 0)
    with pytest.raises(ValueError, match="passage"):
        split_prompt(tok, "abc", "", (2, 9))


def _bert_tokenizer(tmp_path):
    from transformers import BertTokenizerFast

    words = "the answer is yes or no . question : what 2 plus 3 ? q a choice 5 6 story about".split()
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(words)]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab))


def test_encoder_features_keep_special_tokens_instruction_and_choices(tmp_path):
    tok = _bert_tokenizer(tmp_path)
    ex = _example()
    full = seq_cls_features(tok, ex, 1024)
    assert full["input_ids"] == tok(ex.input)["input_ids"] and not full["truncated"]
    feats = seq_cls_features(tok, ex, 24)
    ids = feats["input_ids"]
    assert feats["truncated"] and len(ids) == 24
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    # the answer prefix and choice list stay (right truncation used to cut them)
    assert tok.decode(ids[-8:-1]).replace(" ", "") == tok.decode(full["input_ids"][-8:-1]).replace(" ", "")
    assert ids[:5] == full["input_ids"][:5]  # [CLS] + the start of the instruction
    same, _ = encoder_input_ids(tok, ex.input, 24, ex.passage_span)
    assert same == ids
    tok.model_max_length = 20  # an encoder's position limit caps any longer max_length
    assert len(seq_cls_features(tok, ex, 1024)["input_ids"]) == 20

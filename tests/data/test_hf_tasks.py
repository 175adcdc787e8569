"""``hf:`` tasks: Hugging Face ``datasets`` data sets by a field spec, tested offline on saved folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from spectral_moe.data import load_task, resolve_tasks
from spectral_moe.data.registry import hf_examples, parse_hf_spec


def _piqa_like(n: int, start: int = 0, label=None) -> dict:
    return {
        "goal": [f"Goal number {i}" for i in range(start, start + n)],
        "sol1": [f"first way {i}" for i in range(start, start + n)],
        "sol2": [f"second way {i}" for i in range(start, start + n)],
        "label": [(i % 2) if label is None else label for i in range(start, start + n)],
    }


@pytest.fixture
def piqa_folder(tmp_path: Path) -> Path:
    """A saved DatasetDict with the official layout of many hub data sets: train, validation, and a test
    split without labels (-1)."""
    import datasets

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(_piqa_like(48)),
            "validation": datasets.Dataset.from_dict(_piqa_like(12, start=100)),
            "test": datasets.Dataset.from_dict(_piqa_like(6, start=200, label=-1)),
        }
    )
    path = tmp_path / "piqa_saved"
    dd.save_to_disk(str(path))
    return path


def test_saved_folder_by_field_spec_official_splits(piqa_folder):
    spec = f"hf:{piqa_folder}?input=goal&choices=sol1+sol2&answer=label"
    assert resolve_tasks([spec]) == [spec]
    t = load_task(spec)
    assert t.name == spec and t.kind == "multiple_choice"
    # the test split has no labels: the validation split is the test, validation is carved from train
    assert len(t.test) == 12 and t.info["official_splits"] == {"train": "train", "test": "validation"}
    assert t.info["skipped_unlabelled"]["test"] == 6
    assert len(t.train) + len(t.validation) == 48 and len(t.validation) > 0
    ex = next(e for e in t.test if e.input == "Question: Goal number 101\nAnswer:")
    assert ex.choices == (" first way 101", " second way 101") and ex.answer == " second way 101"
    assert ex.passage == "Goal number 101"
    assert not {e.input for e in t.train + t.validation} & {e.input for e in t.test}
    capped = load_task(spec, max_eval=5, max_train=7)
    # the task name (with its tmp path) is part of each example's hash: the carved validation size varies
    assert capped.split_sizes() == {"train": 7, "validation": min(5, len(t.validation)), "test": 5}
    forced = load_task(
        f"hf:{piqa_folder}?input=goal&choices=sol1+sol2&answer=label&test=validation&train=test"
    )
    assert forced.info["official_splits"] == {"all": "validation"}  # no labelled train: hash split of one


def test_default_field_names_dict_choices_letters_and_free_form(tmp_path):
    import datasets

    arc = {  # ARC / CSQA layout: choices as {"text", "label"}, answerKey a label
        "question": ["What melts ice?", "What is wet?", "Which is cold?"],
        "choices": [
            {"text": ["heat", "cold"], "label": ["A", "B"]},
            {"text": ["water", "sand", "dust"], "label": ["1", "2", "3"]},
            {"text": ["snow", "fire"], "label": ["A", "B"]},
        ],
        "answerKey": ["A", "1", "Z"],  # Z: not a label, skipped
    }
    datasets.Dataset.from_dict(arc).save_to_disk(str(tmp_path / "arc"))
    t = load_task(f"hf:{tmp_path / 'arc'}")  # a single saved Dataset: hash-split
    exs = t.train + t.validation + t.test
    assert len(exs) == 2 and t.info["skipped_unlabelled"] == {"data": 1}
    wet = next(e for e in exs if "wet" in e.input)
    assert wet.answer == " water" and wet.choices == (" water", " sand", " dust")

    rows = [{"context": "Tom has 3 apples.", "question": "How many?", "answer": "3"}]
    (ex,), skipped = hf_examples(rows, {}, "hf:x")
    assert skipped == 0 and ex.choices == () and ex.answer == "3" and ex.meta["completion"] == " 3"
    assert (
        ex.input == "Tom has 3 apples.\nQuestion: How many?\nAnswer:"
        and ex.passage == "Tom has 3 apples.\nQuestion: How many?"
    )
    one_based = [{"question": "q", "choices": ["a", "b", "c"], "label": "3"}]
    (ex,), _ = hf_examples(one_based, {"answer_base": "1"}, "hf:x")
    assert ex.answer == " c"
    (ex,), _ = hf_examples([{"question": "q", "choices": ["a", "b"], "answer": "b"}], {}, "hf:x")
    assert ex.answer == " b"  # the answer given as a choice's text


def test_spec_errors(tmp_path):
    assert parse_hf_spec("allenai/ai2_arc:ARC-Easy?answer=answerKey") == (
        "allenai/ai2_arc",
        "ARC-Easy",
        {"answer": "answerKey"},
    )
    with pytest.raises(ValueError, match="unknown field key.*'question'.*allowed: input"):
        resolve_tasks(["hf:x?question=q"])
    with pytest.raises(ValueError, match="answer_base must be 0 or 1"):
        resolve_tasks(["hf:x?answer_base=2"])
    import datasets

    datasets.Dataset.from_dict({"foo": ["a"], "bar": ["b"]}).save_to_disk(str(tmp_path / "odd"))
    with pytest.raises(ValueError, match="no input column among \\['bar', 'foo'\\]"):
        load_task(f"hf:{tmp_path / 'odd'}")

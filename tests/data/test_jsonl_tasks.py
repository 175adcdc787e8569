"""jsonl:<path> tasks: schema and error messages."""

from __future__ import annotations

import json

import pytest

from spectral_moe.data import load_task, read_jsonl_task


def _write(path, rows):
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8"
    )
    return path


def test_multiple_choice_file(tmp_path):
    rows = [{"input": f"Q{i}:", "choices": [" a", " b"], "answer": " b", "id": i} for i in range(50)]
    path = _write(tmp_path / "mc.jsonl", rows)
    td = load_task(f"jsonl:{path}")
    assert td.kind == "multiple_choice"
    assert td.name == f"jsonl:{path}"
    assert sum(td.split_sizes().values()) == 50
    ex = td.train[0]
    assert ex.task == td.name and ex.label == 1 and ex.meta["id"] == int(ex.input[1:-1])


def test_free_form_file_and_blank_lines(tmp_path):
    path = _write(
        tmp_path / "ff.jsonl", [{"input": "2+3=", "answer": "5"}, "", {"input": "1+1=", "answer": "2"}]
    )
    kind, exs = read_jsonl_task(path, "jsonl:ff")
    assert kind == "free_form"
    assert [e.meta["line"] for e in exs] == [1, 3]
    assert exs[0].choices == () and exs[0].label == -1 and exs[0].meta["completion"] == "5"


@pytest.mark.parametrize(
    ("bad_line", "pattern"),
    [
        ('{"input": "x", "answer": ', r":2: invalid JSON"),
        ('["input", "answer"]', r":2: expected a JSON object"),
        ('{"answer": "a"}', r":2: field 'input' is missing"),
        ('{"input": "x"}', r":2: field 'answer' is missing"),
        ('{"input": 3, "answer": "a"}', r":2: field 'input' must be a string"),
        ('{"input": "x", "choices": [], "answer": "a"}', r":2: field 'choices' is empty"),
        (
            '{"input": "x", "choices": ["a", 1], "answer": "a"}',
            r":2: field 'choices' must be a list of strings",
        ),
        ('{"input": "x", "choices": ["a", "a"], "answer": "a"}', r":2: field 'choices' contains duplicates"),
        ('{"input": "x", "choices": ["a", "b"], "answer": "c"}', r":2: field 'answer' 'c' is not one of"),
        ('{"input": "x", "answer": "a"}', r":2: field 'choices' is missing, but line 1"),
        ('{"input": "x", "choices": ["a"], "answer": "a", "meta": 5}', r":2: field 'meta' must be an object"),
        (
            '{"input": "xy", "choices": ["a"], "answer": "a", "meta": {"passage": [1, 5]}}',
            r":2: field 'meta.passage': meta\['passage'\] must be \[start, end\]",
        ),
    ],
)
def test_schema_errors_name_file_line_and_field(tmp_path, bad_line, pattern):
    good = '{"input": "y", "choices": ["a", "b"], "answer": "a"}'
    path = _write(tmp_path / "bad.jsonl", [good, bad_line])
    with pytest.raises(ValueError, match=pattern) as info:
        load_task(f"jsonl:{path}")
    assert str(path) in str(info.value)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="no examples"):
        load_task(f"jsonl:{empty}")
    with pytest.raises(FileNotFoundError):
        load_task(f"jsonl:{tmp_path / 'nope.jsonl'}")

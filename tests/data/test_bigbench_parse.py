"""BIG-bench task.json parsing and archive handling, on small fixtures (no network)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from spectral_moe.data import bigbench_task_names, load_task, load_tasks, parse_bigbench_task

MC_TASK = {
    "name": "toy_mc",
    "task_prefix": "Answer the question.",
    "example_input_prefix": "\nQuestion:",
    "choice_prefix": "\n choice:",
    "examples": [
        {"input": "What is 2 plus 2? ", "target_scores": {"3": 0, "4": 1, "banana": 0}, "target": "4"},
        {"input": "Pick the colour.", "target_scores": {"red": 0.5, "blue": 0.5, "dog": 0}},  # tie: first max
        {"input": "No correct answer", "target_scores": {"x": 0, "y": 0}},  # skipped
        {"input": "Is water wet?", "target_scores": {"Yes": 1, "No": 0}},
    ],
}
FREE_TASK = {
    "name": "toy_free",
    "example_output_prefix": "\nA:\n",
    "examples": [
        {"input": "Say hi", "target": ["hi ", "hello"]},
        {"input": "Count to two", "target": "1 2"},
        {"input": "Nothing", "target": ""},  # skipped
    ],
}


def test_multiple_choice_format():
    kind, exs, stats = parse_bigbench_task(MC_TASK, "bigbench:toy_mc")
    assert kind == "multiple_choice"
    assert stats == {"skipped_malformed": 1}
    assert len(exs) == 3
    first = exs[0]
    assert first.task == "bigbench:toy_mc"
    # task prefix on its own line, a space after "Question:", choices listed, prompt ends at "A:".
    assert first.input.startswith("Answer the question.\nQuestion: What is 2 plus 2?\n choice: ")
    assert first.input.endswith("\nA:")
    assert sorted(first.choices) == [" 3", " 4", " banana"]
    assert first.answer == " 4" and first.choices[first.label] == " 4"
    for c in first.choices:
        assert f"\n choice: {c.strip()}\n" in first.input + "\n"
    assert first.meta["target"] == "4"
    assert exs[1].answer == " red"  # first of the tied maxima, as BIG-bench does
    # choice order does not depend on correctness but is stable
    assert parse_bigbench_task(MC_TASK, "bigbench:toy_mc")[1] == exs


def test_defaults_and_no_choice_list():
    task = {
        "examples": [{"input": "Is it?", "target_scores": {"True": 1, "False": 0}}],
        "append_choices_to_input": False,
    }
    _, [ex], _ = parse_bigbench_task(task, "t")
    assert ex.input == "Q: Is it?\nA:"
    assert set(ex.choices) == {" True", " False"}
    # multiemo-style empty choice_prefix: choices are not glued into the prompt
    task = {
        "choice_prefix": "",
        "examples": [{"input": "Good.", "target_scores": {"positive": 1, "negative": 0}}],
    }
    _, [ex], _ = parse_bigbench_task(task, "t")
    assert ex.input == "Q: Good.\nA:"


def test_fixed_label_sets_keep_one_order():
    task = {
        "examples": [
            {
                "input": f"Review {i}",
                "target_scores": {
                    "positive": int(i % 3 == 0),
                    "negative": int(i % 3 == 1),
                    "neutral": int(i % 3 == 2),
                },
            }
            for i in range(30)
        ]
    }
    _, exs, _ = parse_bigbench_task(task, "t")
    assert {e.choices for e in exs} == {(" positive", " negative", " neutral")}
    assert [e.label for e in exs] == [i % 3 for i in range(30)]
    # varying choice sets are reordered per example instead
    _, varying, _ = parse_bigbench_task(
        {
            "examples": [
                {"input": f"{i}+1?", "target_scores": {str(i + 1): 1, "banana": 0, str(i): 0}}
                for i in range(40)
            ]
        },
        "t",
    )
    assert len({e.label for e in varying}) == 3


def test_free_form_format():
    kind, exs, stats = parse_bigbench_task(FREE_TASK, "bigbench:toy_free")
    assert kind == "free_form"
    assert len(exs) == 2 and stats == {"skipped_malformed": 1}
    assert exs[0].input == "Q: Say hi\nA:\n"
    assert exs[0].choices == () and exs[0].answer == "hi"
    assert exs[0].meta["targets"] == ["hi", "hello"]
    assert exs[0].meta["completion"] == "hi"  # prompt ends with a newline: no leading space
    assert exs[1].answer == "1 2"


def test_mixed_or_empty_tasks_are_rejected():
    with pytest.raises(ValueError, match="target_scores"):
        parse_bigbench_task({"examples": [{"input": "a", "target_scores": {"x": 1}}, {"input": "b"}]}, "t")
    with pytest.raises(ValueError, match="no examples"):
        parse_bigbench_task({"name": "group"}, "t")


def _fake_archive(cache):
    """A tiny stand-in for the bigbench sdist in <cache>/pkgs (fetch_package then never calls pip)."""
    files = {
        "toy_mc/task.json": json.dumps(MC_TASK),
        "toy_free/task.json": json.dumps(FREE_TASK),
        "toy_group/task.json": json.dumps({"name": "toy_group"}),
        "toy_group/sub_a/task.json": json.dumps(MC_TASK),
        "toy_prog/task.py": "# programmatic",
    }
    (cache / "pkgs").mkdir(parents=True)
    with tarfile.open(cache / "pkgs" / "bigbench-1.0.0.tar.gz", "w:gz") as tar:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_archive_index_extraction_and_errors(tmp_path):
    _fake_archive(tmp_path)
    tds = load_tasks("bigbench:toy_mc, bigbench:toy_group/sub_a", cache_dir=tmp_path)
    assert [t.name for t in tds] == ["bigbench:toy_mc", "bigbench:toy_group/sub_a"]
    assert tds[0].source.endswith("bigbench/benchmark_tasks/toy_mc/task.json")
    assert (tmp_path / "bigbench" / "tasks" / "toy_mc" / "task.json").is_file()
    assert not (tmp_path / "bigbench" / "tasks" / "toy_free").exists()  # only what was asked for
    assert sorted(bigbench_task_names(cache_dir=tmp_path)) == ["toy_free", "toy_group/sub_a", "toy_mc"]

    with pytest.raises(ValueError, match=r"group of subtasks; name one of: bigbench:toy_group/sub_a"):
        load_task("bigbench:toy_group", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="programmatic"):
        load_task("bigbench:toy_prog", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"unknown BIG-bench task 'toy_mcq'.*Close matches: bigbench:toy_mc"):
        load_task("bigbench:toy_mcq", cache_dir=tmp_path)

    free = load_task("bigbench:toy_free", cache_dir=tmp_path)  # second scan, index reused
    assert free.kind == "free_form"
    # extracted files are used without the archive
    (tmp_path / "pkgs" / "bigbench-1.0.0.tar.gz").unlink()
    assert load_task("bigbench:toy_mc", cache_dir=tmp_path).split_sizes() == tds[0].split_sizes()

"""Task specs, suites and their errors."""

from __future__ import annotations

import pytest

from spectral_moe.data import SUITES, canonical_task_name, load_task, resolve_tasks


def test_resolve_suite_and_comma_lists():
    core = resolve_tasks("suite:core")
    assert core == list(SUITES["core"])
    assert len(core) == 16
    assert "bigbench:arithmetic/3_digit_division" in core
    assert "bigbench:multiemo/hotels_text_en" in core
    assert resolve_tasks("gsm8k, bigbench:navigate,,gsm8k") == ["gsm8k", "bigbench:navigate"]
    assert resolve_tasks(["suite:core", "bigbench:social_iqa", "gsm8k"]) == [*core, "gsm8k"]
    assert resolve_tasks(["jsonl:./a,b.jsonl"]) == ["jsonl:a,b.jsonl"]
    assert canonical_task_name(" bigbench:social_iqa ") == "bigbench:social_iqa"


@pytest.mark.parametrize("spec", ["social_iqa", "hf:gsm8k", "bigbench:", "jsonl:", "", "gsm8k:train"])
def test_unknown_specs_explain_how_to_name_tasks(spec):
    with pytest.raises(ValueError) as info:
        load_task(spec)
    msg = str(info.value)
    for form in ("bigbench:<task>", "gsm8k", "jsonl:<path", "suite:<name>"):
        assert form in msg


def test_suggests_bigbench_prefix():
    with pytest.raises(ValueError, match="Did you mean 'bigbench:social_iqa'"):
        resolve_tasks("social_iqa")


def test_suite_errors():
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        resolve_tasks("suite:nope")
    with pytest.raises(ValueError, match="is a suite"):
        load_task("suite:core")
    with pytest.raises(ValueError, match="no tasks"):
        resolve_tasks(" , ")


def test_bad_bigbench_names_fail_before_any_download(tmp_path):
    with pytest.raises(ValueError, match="invalid BIG-bench task name"):
        load_task("bigbench:a/b/c", cache_dir=tmp_path)
    assert not (tmp_path / "pkgs").exists()

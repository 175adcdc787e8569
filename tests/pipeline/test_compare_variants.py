"""pipeline/compare.py variants and sweep changes; pipeline/report.py hit matrices and bootstrap cells."""

import json

import pytest

import spectral_moe.pipeline.compare as compare
from spectral_moe.evaluation.runs import save_records
from spectral_moe.pipeline.report import bootstrap_difference, ci_cell, hit_matrices, paired_hits
from spectral_moe.training.config import RunConfig


def _fake_runs(monkeypatch):
    seen = []

    def fake(cfg, log=None):
        seen.append(cfg)
        return {
            "tuned": {"tasks": {"t": {"acc": 0.5}}, "macro_acc": 0.4 + 0.1 * (cfg.lr or 0) * 1000},
            "train": {"train_seconds": 1.0, "train_tokens_per_second": 10.0},
            "trainable_params": 100,
        }

    monkeypatch.setattr(compare, "train_or_reuse", fake)
    return seen


def test_variants_run_under_their_label_with_their_options(tmp_path, monkeypatch):
    seen = _fake_runs(monkeypatch)
    variants = {"frame-chirp": ("frame", {"transform": "chirp"})}
    md = compare.run_compare(
        RunConfig(steps=1, adapter={"r": 2}), ["frame", "frame-chirp"], [0], tmp_path, variants=variants
    )
    assert [(c.method, c.adapter, c.out) for c in seen] == [
        ("frame", {"r": 2}, str(tmp_path / "runs" / "frame-s0")),
        ("frame", {"r": 2, "transform": "chirp"}, str(tmp_path / "runs" / "frame-chirp-s0")),
    ]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["runs"]) == {"frame", "frame-chirp"}
    assert results["variants"] == {"frame-chirp": ["frame", {"transform": "chirp"}]}
    assert "| frame-chirp |" in md


def test_sweep_changes_reach_the_sweep_runs_only(tmp_path, monkeypatch):
    seen = _fake_runs(monkeypatch)
    base = RunConfig(method="lora", steps=10, max_eval=100)
    compare.run_compare(
        base, ["lora"], [0, 1], tmp_path, lr_multipliers=[1, 3], sweep_changes={"max_eval": 7, "steps": 3}
    )
    sweep = [c for c in seen if c.eval_split == "validation"]
    final = [c for c in seen if c.eval_split == "test"]
    assert len(sweep) == 2 and all((c.max_eval, c.steps) == (7, 3) for c in sweep)
    assert len(final) == 2 and all((c.max_eval, c.steps) == (100, 10) for c in final)
    assert [c.lr for c in final] == pytest.approx([3e-3, 3e-3])  # the sweep winner (the fake favours high lr)
    assert json.loads((tmp_path / "results.json").read_text())["sweep_changes"] == {"max_eval": 7, "steps": 3}
    with pytest.raises(ValueError, match="not run options"):
        compare.run_compare(base, ["lora"], [0], tmp_path, lr_multipliers=[1], sweep_changes={"bogus": 1})


def _run(tmp_path, name, hits, uids=("a", "b", "c", "d"), which="tuned"):
    run = tmp_path / name
    run.mkdir()
    rec = {
        task: {"index": list(range(len(h))), "uid": list(uids[: len(h)]), "acc": h, "acc_norm": h}
        for task, h in hits.items()
    }
    save_records(run, "test", {which: rec})
    return run


def test_hit_matrices_stack_runs_and_pair_by_uid(tmp_path):
    a0 = _run(tmp_path, "a0", {"x": [1, 1, 0, 1], "y": [1, 0]})
    a1 = _run(tmp_path, "a1", {"x": [1, 0, 0, 1], "y": [1, 1]})
    a = hit_matrices([a0, a1])
    assert a["x"] == (["a", "b", "c", "d"], [[1, 1, 0, 1], [1, 0, 0, 1]])
    b = hit_matrices([_run(tmp_path, "b0", {"x": [0, 0, 1], "y": [0, 0]}, uids=("d", "c", "a", "b"))])
    pa, pb = paired_hits(a, b)
    # b scored x's examples d, c, a: in a's order a, c, d -> b's hits 1, 0, 0
    assert pa["x"] == [[1, 0, 1], [1, 0, 1]] and pb["x"] == [[1, 0, 0]]
    res = bootstrap_difference(a, b, n_resamples=200)
    # x: 2/3 - 1/3 = 1/3 on the shared examples a, c, d; b's y examples are d, c, a's a, b: none
    # shared, so y is left out
    assert set(pb) == {"x"}
    assert res.difference == pytest.approx(1 / 3)
    assert ci_cell(res).startswith("+33.3 [")
    assert hit_matrices([a0, tmp_path / "older"]) is None
    _run(tmp_path, "odd", {"x": [1, 1, 0, 1], "y": [1, 0]}, uids=("a", "b", "c", "e"))
    with pytest.raises(ValueError, match="differ"):
        hit_matrices([a0, tmp_path / "odd"])

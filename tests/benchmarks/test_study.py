"""benchmarks/study.py: every ablation is a valid config; the report collects finished runs."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from spectral_moe.training.methods import build_peft_config

_spec = importlib.util.spec_from_file_location("study", Path(__file__).parents[2] / "benchmarks" / "study.py")
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)


@pytest.mark.parametrize("name", list(study.ABLATIONS))
def test_every_ablation_is_a_valid_config(name):
    method, options = study.ABLATIONS[name]
    options = {k: v for k, v in options.items() if not k.startswith("__")}
    build_peft_config(method, ["q_proj", "v_proj"], **options)


def test_report_collects_ablations(tmp_path, monkeypatch):
    root = tmp_path / "study"
    arms = (
        ("fm-real", (0.4, 0.5)),
        ("fm-n250", (0.3, 0.3)),
        ("frame-orderlr10", (0.2,)),
        ("frame-hermite", (0.1,)),
    )
    for name, scores in arms:
        for seed, acc in enumerate(scores):
            run = root / "ablations" / f"{name}-s{seed}"
            run.mkdir(parents=True)
            tuned = {"macro_acc": acc, "macro_exact_match": 0.1}
            (run / "metrics.json").write_text(json.dumps({"trainable_params": 123, "tuned": tuned}))
    monkeypatch.setattr(sys, "argv", ["study.py", "report", "--out", str(root)])
    study.main()
    text = (tmp_path / "study_tables.md").read_text()
    assert (
        "| fm-real | fouriermoe | n_frequency=250, complex_coefficients=False | 123 | 45.0 ± 7.1 (n=2) | 40.0, 50.0 | +15.0 | "
        "10.0 ± 0.0 (n=2) |" in text
    )
    assert "| fm-n250 | fouriermoe | n_frequency=250 | 123 | 30.0 ± 0.0 (n=2) | 30.0, 30.0 | - |" in text
    assert (
        "| frame-orderlr10 | frame | transform=hermite, order_lr=0.1 | 123 | 20.0 ± 0.0 (n=1) | 20.0 | +10.0 |"
        in text
    )


def test_figures_collects_analyze_output_and_comparison_plots(tmp_path, monkeypatch):
    import spectral_moe.analysis.figures as figures

    root = tmp_path / "study"
    fm = root / "llm" / "runs" / "fouriermoe-s0"  # finished; frame-s0 has not finished
    fm.mkdir(parents=True)
    (fm / "metrics.json").write_text("{}")
    (root / "llm" / "runs" / "frame-s0").mkdir()
    for setting in ("llm", "encoder-single/strategyqa"):
        (root / setting / "figures").mkdir(parents=True, exist_ok=True)
        (root / setting / "figures" / "accuracy_vs_params.png").write_bytes(b"png")
    analyzed = []

    def fake_analyze(run_dir, max_examples):
        analyzed.append((run_dir, max_examples))
        (run_dir / "figures").mkdir(exist_ok=True)
        path = run_dir / "figures" / "expert_load_per_task.png"
        path.write_bytes(b"load")
        return [path]

    monkeypatch.setattr(figures, "analyze_run", fake_analyze)
    monkeypatch.setattr(sys, "argv", ["study.py", "figures", "--out", str(root), "--max-examples", "3"])
    study.main()
    assert analyzed == [(fm, 3)]
    dest = tmp_path / "figures"
    assert sorted(p.name for p in dest.iterdir()) == [
        "encoder-single_strategyqa_accuracy_vs_params.png",
        "llm_accuracy_vs_params.png",
        "llm_fouriermoe_expert_load_per_task.png",
    ]
    assert (dest / "llm_fouriermoe_expert_load_per_task.png").read_bytes() == b"load"

    # analyzed already (expert_load.json written): reused, not re-analyzed, unless --force
    (fm / "figures" / "expert_load.json").write_text("{}")
    study.main()
    assert analyzed == [(fm, 3)]
    monkeypatch.setattr(sys, "argv", ["study.py", "figures", "--out", str(root), "--force"])
    study.main()
    assert analyzed == [(fm, 3), (fm, 8)]


def test_main_encoder_single_runs_the_chosen_tasks_with_the_sweep_options(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(study, "fouriermoe_budget", lambda cfg: 1000)
    monkeypatch.setattr(study, "run_compare", lambda cfg, *a, **kw: calls.append((cfg.tasks, a[2], kw)))
    argv = ["study.py", "main", "--setting", "encoder-single", "--out", str(tmp_path), "--lr-extend", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--single-tasks", "bigbench:strategyqa"])
    study.main()
    assert calls == [
        (
            "bigbench:strategyqa",
            tmp_path / "encoder-single" / "strategyqa",
            {"budget_params": 1000, "lr_multipliers": [0.3, 1.0, 3.0], "lr_extend": 1},
        ),
    ]
    monkeypatch.setattr(sys, "argv", [*argv, "--single-tasks", "bigbench:nope"])
    with pytest.raises(SystemExit, match="unknown single task"):
        study.main()


def test_ablations_train_each_variant_with_its_options_and_order_lr(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(study, "train_or_reuse", lambda cfg, log=None: calls.append(cfg))
    argv = ["study.py", "ablations", "--seeds", "0", "--out", str(tmp_path), "--only"]
    monkeypatch.setattr(sys, "argv", [*argv, "frame-orderlr10,frame-hermite,fm-real"])
    study.main()
    got = {Path(c.out).name: (c.method, c.adapter, c.order_lr, c.eval_base) for c in calls}
    assert got == {
        "frame-orderlr10-s0": ("frame", {"transform": "hermite"}, 0.1, False),
        "frame-hermite-s0": ("frame", {"transform": "hermite"}, None, False),  # None: the library default
        "fm-real-s0": ("fouriermoe", {"n_frequency": 250, "complex_coefficients": False}, None, False),
    }

"""benchmarks/commonsense_study.py end to end on a tiny model: main (sweep + seeds), ablations reusing the
main runs as references, a report with bootstrap intervals and the commands; a rerun trains nothing."""

import json

import pytest

import spectral_moe.pipeline.run as run_module
from tests.benchmarks._load import load
from tests.helpers import save_tiny_llama, write_jsonl_task

study = load("commonsense_study")


def test_every_ablation_arm_is_a_valid_config():
    from spectral_moe.training.methods import build_peft_config

    for method, change in study.ablation_arms(500).values():
        build_peft_config(method, ["q_proj", "v_proj"], **change)
    for method, change in study.VARIANTS.values():
        build_peft_config(method, ["q_proj", "v_proj"], **change)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cs")
    return save_tiny_llama(root / "model"), "jsonl:" + write_jsonl_task(root / "task.jsonl", n=60)


def test_main_ablations_report_end_to_end(tmp_path, tiny, monkeypatch):
    model, task = tiny
    out = tmp_path / "study"
    size = ["--model", model, "--tasks", task, "--steps", "1", "--batch-size", "2", "--max-train", "8"]
    size += ["--max-eval", "6", "--max-length", "64", "--precision", "fp32", "--budget", "6000"]
    study.main(
        [
            "main",
            "--out",
            str(out),
            "--seeds",
            "0",
            "--methods",
            "lora,frame",
            "--lr-sweep",
            "1,3",
            "--lr-extend",
            "0",
            "--sweep-max-eval",
            "3",
            *size,
        ]
    )
    main = out / "main"
    assert sorted(p.name for p in (main / "sweep").iterdir()) == [
        "frame-lr1",
        "frame-lr3",
        "lora-lr1",
        "lora-lr3",
    ]
    for run in ("lora-s0", "frame-s0"):
        assert (main / "runs" / run / "predictions.json").is_file()
    sweep_cfg = json.loads((main / "sweep" / "lora-lr1" / "run_config.json").read_text())
    assert (sweep_cfg["max_eval"], sweep_cfg["eval_split"]) == (3, "validation")
    budget = json.loads((main / "budget.json").read_text())
    assert all(abs(v["count"] / 6000 - 1) <= 0.1 for k, v in budget.items() if k != "budget")

    trained = []
    real_train = run_module.train
    monkeypatch.setattr(
        run_module, "train", lambda cfg, **kw: trained.append(cfg.out) or real_train(cfg, **kw)
    )
    # the FourierMoE arms need FourierMoE's main runs: without them the command says so
    with pytest.raises(SystemExit, match="run `main` with fouriermoe first"):
        study.main(["ablations", "--out", str(out), "--seeds", "0", "--only", "fm-real", *size])
    study.main(["ablations", "--out", str(out), "--seeds", "0", "--only", "frame-fixed", *size])
    assert trained == [str(out / "ablations" / "frame-fixed-s0")]  # the reference is main's frame-s0
    arms = json.loads((out / "ablations" / "arms.json").read_text())
    assert arms["references"]["frame"] == [str(main / "runs" / "frame-s0")]

    tables = tmp_path / "tables.md"
    study.main(["report", "--out", str(out), "--tables", str(tables), "--resamples", "200"])
    text = tables.read_text()
    assert "| lora | 1 |" in text and "| frame | 1 |" in text and "| base | - | 0 |" in text
    assert "best baseline (lora" in text and "| frame | " in text.split("best baseline")[1]
    assert "| frame-fixed | frame | {'learn_order': False} | 1 |" in text
    assert "Precision (resolved, per run's metrics.json): fp32." in text
    assert text.count("python benchmarks/commonsense_study.py main") == 1
    assert text.count("python benchmarks/commonsense_study.py ablations") == 2

    # a rerun of main reuses every run
    trained.clear()
    study.main(
        [
            "main",
            "--out",
            str(out),
            "--seeds",
            "0",
            "--methods",
            "lora,frame",
            "--lr-sweep",
            "1,3",
            "--lr-extend",
            "0",
            "--sweep-max-eval",
            "3",
            *size,
        ]
    )
    assert trained == []


def test_measure_times_steps_and_evaluation(tmp_path, tiny):
    model, task = tiny
    out = tmp_path / "m"
    study.main(["measure", "--out", str(out), "--methods", "lora", "--model", model, "--tasks", task,
                "--steps", "3", "--batch-size", "2", "--max-train", "8", "--max-eval", "5", "--max-length", "64",
                "--precision", "fp32", "--budget", "6000"])  # fmt: skip
    (row,) = json.loads((out / "measure.json").read_text())
    assert row["method"] == "lora" and row["n_eval"] == 5 and row["precision"] == "fp32"
    assert len(row["steps_wall_s"]) == len(row["steps_cpu_s"]) == 3
    assert row["step_cpu_s"] > 0 and row["eval_cpu_s_per_100"] > 0


def test_budget_file_keeps_methods_of_earlier_invocations_with_the_same_budget(tmp_path):
    path = tmp_path / "budget.json"
    study.write_budget(path, 1000, {"lora": ({"r": 4}, 990)})
    study.write_budget(path, 1000, {"frame": ({"r": 2}, 1010)})  # main split over two processes
    assert json.loads(path.read_text()) == {
        "budget": 1000,
        "lora": {"adapter": {"r": 4}, "count": 990},
        "frame": {"adapter": {"r": 2}, "count": 1010},
    }
    study.write_budget(path, 2000, {"dora": ({"r": 8}, 2000)})  # another budget: the old sizes are void
    assert json.loads(path.read_text()) == {"budget": 2000, "dora": {"adapter": {"r": 8}, "count": 2000}}

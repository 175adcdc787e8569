import json
import subprocess
import sys
from pathlib import Path

import pytest

from spectral_moe.cli import main
from tests.helpers import save_tiny_llama, write_jsonl_task


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return save_tiny_llama(root / "model"), write_jsonl_task(root / "task.jsonl", n=60)


def _train(tiny, out, *extra):
    model, task = tiny
    return main(
        [
            "train",
            "--model",
            model,
            "--tasks",
            f"jsonl:{task}",
            "--out",
            str(out),
            "--quiet",
            "--set",
            "logging_steps=2",
            "--set",
            "batch_size=4",
            "--set",
            "adapter.num_experts=4",
            *extra,
        ]
    )


@pytest.mark.parametrize("method,option", [("fouriermoe", "adapter.n_frequency=8"), ("frame", "adapter.r=2")])
def test_train_eval_analyze_end_to_end(tiny, tmp_path, capsys, method, option):
    out = tmp_path / "run"
    assert _train(tiny, out, "--method", method, "--steps", "6", "--set", option) == 0
    for name in (
        "run_config.json",
        "metrics.json",
        "train_log.jsonl",
        "splits.json",
        "figures/training_curve.png",
    ):
        assert (out / name).is_file(), name
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["trainable_params"] > 0 and "macro_acc" in metrics["tuned"] and "macro_acc" in metrics["base"]
    )
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [r for r in log if "loss" in r]
    assert losses and losses[0]["router_load"] and "router_aux_loss" in losses[0]
    assert sum(losses[0][f"router_load/expert_{z}"] for z in range(4)) == pytest.approx(1.0, abs=1e-3)
    if method == "frame":
        assert losses[0]["orders"] and "order/expert_0" in losses[0]
    splits = json.loads((out / "splits.json").read_text())
    assert sum(next(iter(splits.values()))["split_sizes"].values()) > 0
    capsys.readouterr()

    assert main(["eval", str(out), "--split", "test"]) == 0
    result = json.loads(capsys.readouterr().out)
    task = next(iter(metrics["tuned"]["tasks"]))
    assert (
        result["tasks"][task]["acc"] == metrics["tuned"]["tasks"][task]["acc"]
    )  # reloaded adapter, same numbers

    assert main(["analyze", str(out)]) == 0
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {
        "training_curve.png",
        "expert_load_per_task.png",
        "expert_load_per_layer.png",
        "weight_psd.png",
    } <= figures
    assert ("orders.png" if method == "frame" else "coefficient_magnitude.png") in figures


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > len(PNG_MAGIC) and path.read_bytes()[:8] == PNG_MAGIC


# the figures analyze draws for each of the FRAME paper's baselines (#16)
BASELINE_FIGURES = {
    # FlyLoRA's experts are its ranks: their activation frequency per task, per layer, per task and layer
    "flylora": (
        "rank_activation_per_task.png",
        "rank_activation_per_layer.png",
        "rank_activation_per_task_and_layer.png",
    ),
    # HMoRA: each router's load per task and layer, and the learned α_l per layer
    "hmora": ("expert_load_per_task_and_layer.png", "expert_load_per_layer.png", "mixing_weights.png"),
    "dora": (),
}


@pytest.mark.parametrize(
    "method,options",
    [
        ("flylora", ["--set", "adapter.r=4", "--set", "flylora.top_k=2"]),
        ("hmora", ["--set", "adapter.r=2", "--set", "hmora.num_experts=4"]),
        ("dora", ["--set", "adapter.r=2"]),
    ],
)
def test_baselines_train_eval_analyze_end_to_end(tiny, tmp_path, capsys, method, options):
    model, task = tiny
    out = tmp_path / "run"
    argv = ["train", "--method", method, "--model", model, "--tasks", f"jsonl:{task}", "--out", str(out)]
    argv += ["--quiet", "--steps", "4", "--set", "logging_steps=2", "--set", "batch_size=4", *options]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainable_params"] > 0 and "macro_acc" in metrics["tuned"]
    saved = json.loads((out / "adapter" / "adapter_config.json").read_text())
    if method == "hmora":  # the task token starts as the embedding of "?" of the run model's tokenizer
        from transformers import AutoTokenizer

        assert AutoTokenizer.from_pretrained(model).convert_ids_to_tokens(saved["task_token_id"]) == "?"
    assert saved.get("use_dora", False) == (method == "dora")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [r for r in log if "loss" in r]
    if method != "dora":  # router load (FlyLoRA: rank activation frequency) per layer, summing to 1
        assert losses and losses[0]["router_load"]
        row = next(iter(losses[0]["router_load"].values()))["dispatch_fraction"]  # r = 4 ranks, 4 experts
        assert len(row) == 4 and sum(row) == pytest.approx(1.0, abs=1e-3)
    capsys.readouterr()
    assert main(["eval", str(out), "--split", "test"]) == 0
    result = json.loads(capsys.readouterr().out)
    name = next(iter(metrics["tuned"]["tasks"]))
    assert result["tasks"][name]["acc"] == metrics["tuned"]["tasks"][name]["acc"]  # reloaded, same numbers
    assert main(["analyze", str(out)]) == 0
    for figure in ("training_curve.png", *BASELINE_FIGURES[method]):
        assert _is_png(out / "figures" / figure), figure


def test_compare_reuses_finished_hmora_and_flylora_runs(tiny, tmp_path):
    """The adapter config train() saved (HMoRA's task_token_id from the tokenizer included) is the one the
    reuse check rebuilds: a second compare retrains nothing."""
    model, task = tiny
    out = tmp_path / "cmp"
    argv = ["compare", "--methods", "hmora,flylora", "--model", model, "--tasks", f"jsonl:{task}"]
    argv += ["--steps", "1", "--out", str(out), "--quiet", "--set", "adapter.r=2"]
    argv += ["--set", "hmora.num_experts=2", "--set", "flylora.top_k=1", "--set", "eval_batch_size=64"]
    assert main(argv) == 0
    stamps = {p.parent.name: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    assert set(stamps) == {"hmora-s0", "flylora-s0"}
    assert main(argv) == 0
    assert {p.parent.name: p.stat().st_mtime_ns for p in out.rglob("metrics.json")} == stamps
    md = (out / "results.md").read_text()
    assert "| hmora |" in md and "| flylora |" in md and "FlyLoRA counts B only" in md


def test_resume_continues_from_last_checkpoint(tiny, tmp_path):
    out = tmp_path / "run"
    assert _train(tiny, out, "--steps", "4", "--set", "save_steps=2", "--set", "adapter.n_frequency=8") == 0
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
    assert (
        _train(
            tiny, out, "--steps", "6", "--set", "save_steps=2", "--set", "adapter.n_frequency=8", "--resume"
        )
        == 0
    )
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    # a restart from step 0 would log steps 2, 4 again; a resumed run logs only step 6 after the first run
    assert [r["step"] for r in records if "loss" in r] == [2, 4, 6]


def test_compare_writes_table_and_chart(tiny, tmp_path, capsys):
    model, task = tiny
    out = tmp_path / "cmp"
    rc = main(
        [
            "compare",
            "--methods",
            "lora,moelora",
            "--seeds",
            "0,1",
            "--model",
            model,
            "--tasks",
            f"jsonl:{task}",
            "--steps",
            "2",
            "--budget-params",
            "3000",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    md = (out / "results.md").read_text()
    assert "| lora |" in md and "| moelora |" in md and "| base |" in md
    assert (out / "figures" / "accuracy_by_method.png").is_file()
    results = json.loads((out / "results.json").read_text())
    params = {m: r[0]["trainable_params"] for m, r in results["runs"].items()}
    assert all(abs(p - 3000) / 3000 < 0.5 for p in params.values()), params
    # the budget solved r; α/r stayed each method's default (lora 16/8, moelora 8/4) and the table says so
    assert results["scale"] == {"lora": "α/r=2", "moelora": "α/r=2"}
    for method in ("lora", "moelora"):
        opts = results["options"][method]
        assert opts["lora_alpha"] == 2 * opts["r"]
        saved = json.loads((out / "runs" / f"{method}-s0" / "adapter" / "adapter_config.json").read_text())
        assert saved["lora_alpha"] == 2 * saved["r"]
    assert "α/r=2" in md


def test_compare_retrains_only_runs_whose_library_default_changed(tiny, tmp_path, monkeypatch):
    from spectral_moe.training.methods import DEFAULTS

    model, task = tiny
    out = tmp_path / "cmp"
    argv = ["compare", "--methods", "lora,moelora", "--model", model, "--tasks", f"jsonl:{task}"]
    argv += [
        "--steps",
        "1",
        "--out",
        str(out),
        "--quiet",
        "--set",
        "adapter.r=2",
        "--set",
        "adapter.num_experts=2",
    ]
    assert main(argv) == 0
    stamps = {p.parent.name: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    assert main(argv) == 0  # real runs' saved adapter configs match the ones built now: all reused
    assert {p.parent.name: p.stat().st_mtime_ns for p in out.rglob("metrics.json")} == stamps
    monkeypatch.setitem(DEFAULTS["moelora"], "top_k", 1)  # a library default moves; lora is unaffected
    assert main(argv) == 0
    now = {p.parent.name: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    assert now["lora-s0"] == stamps["lora-s0"] and now["moelora-s0"] != stamps["moelora-s0"]
    saved = json.loads((out / "runs" / "moelora-s0" / "adapter" / "adapter_config.json").read_text())
    assert saved["top_k"] == 1


def test_compare_lr_sweep_picks_on_validation_and_resumes(tiny, tmp_path, capsys):
    model, task = tiny
    out = tmp_path / "cmp"
    argv = ["compare", "--methods", "frame", "--seeds", "0,1", "--model", model, "--tasks", f"jsonl:{task}"]
    argv += ["--steps", "2", "--lr-sweep", "0.5,2", "--out", str(out), "--quiet", "--set", "adapter.r=2"]
    argv += ["--set", "adapter.num_experts=2"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    scores = {float(k): v for k, v in results["lr_sweep"]["frame"].items()}
    assert set(scores) == {0.5, 2.0}
    for mult in (0.5, 2.0):  # sweep runs are scored on the validation split, at seed 0
        cfg = json.loads((out / "sweep" / f"frame-lr{mult:g}" / "run_config.json").read_text())
        assert cfg["eval_split"] == "validation" and cfg["seed"] == 0
        # the main rates are swept; FRAME's order LR is its own axis: the library default (None) every time
        assert cfg["lr"] == pytest.approx(1e-3 * mult) and cfg["order_lr"] is None
    best = max(scores, key=lambda m: (scores[m], -abs(m - 1)))
    for seed in (0, 1):
        cfg = json.loads((out / "runs" / f"frame-s{seed}" / "run_config.json").read_text())
        assert cfg["eval_split"] == "test" and cfg["lr"] == pytest.approx(1e-3 * best)
    assert "Learning-rate sweep" in (out / "results.md").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    assert len(stamps) == 4
    assert main(argv) == 0  # everything finished: reused, nothing retrained
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")} == stamps


def test_compare_lr_extend_goes_past_a_winning_edge(tiny, tmp_path, monkeypatch):
    """--lr-extend reaches run_compare's sweep: scores rigged so the top edge keeps winning once."""
    import spectral_moe.pipeline.compare as compare

    model, task = tiny
    real = compare.train_or_reuse
    rigged = {0.5: 0.1, 2.0: 0.2, 8.0: 0.3, 32.0: 0.25}  # validation macro acc by multiplier

    def fake(cfg, log=None):
        metrics = real(cfg, log)
        if cfg.eval_split == "validation":
            mult = round(cfg.lr / 1e-3, 6)
            metrics["tuned"] = {**metrics["tuned"], "macro_acc": rigged[mult]}
        return metrics

    monkeypatch.setattr(compare, "train_or_reuse", fake)
    out = tmp_path / "cmp"
    argv = ["compare", "--methods", "lora", "--model", model, "--tasks", f"jsonl:{task}", "--steps", "1"]
    argv += ["--lr-sweep", "0.5,2", "--lr-extend", "3", "--out", str(out), "--quiet", "--set", "adapter.r=2"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert sorted(float(k) for k in results["lr_sweep"]["lora"]) == [0.5, 2.0, 8.0, 32.0]
    assert results["options"]["lora"]["lr×"] == 8.0
    cfg = json.loads((out / "runs" / "lora-s0" / "run_config.json").read_text())
    assert cfg["lr"] == pytest.approx(8e-3)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "--method", "nope"], "invalid choice"),
        (["train", "--tasks", "nonsense_task", "--steps", "1"], "bigbench:"),
        (["train", "--set", "batch_size"], "key=value"),
        (["train", "--set", "not_an_option=1"], "unknown run option"),
        (["train", "--steps", "0"], "steps must be a positive integer"),
        (["compare", "--methods", "lora,nope", "--out", "x"], "--methods"),
        (["eval"], "RUN_DIR or --base"),
        (["compare", "--methods", "lora", "--lr-sweep", "1,x", "--out", "x"], "--lr-sweep"),
        (["compare", "--methods", "lora", "--lr-extend", "1", "--out", "x"], "--lr-extend needs --lr-sweep"),
        (["compare", "--methods", "lora", "--lr-sweep", "1", "--lr-extend", "-1", "--out", "x"], ">= 0"),
        (["train", "--model", "/no/such/model", "--steps", "1"], "not found"),
        (["train", "--model", "./missing-model", "--steps", "1"], "smollm2-135m"),
        (["train", "--tasks", "jsonl:missing.jsonl", "--steps", "1"], "not found"),
        (
            ["compare", "--methods", "lora,frame", "--set", "adapter.n_frequency=8", "--out", "x"],
            "belong to none",
        ),
        (["compare", "--methods", "lora", "--set", "frame.r=2", "--out", "x"], "options for method 'frame'"),
        (["compare", "--methods", "frame", "--set", "frame.nope=2", "--out", "x"], "frame has no option"),
        (["train", "--method", "lora", "--set", "frame.r=2"], "applies to method 'frame'"),
        (["train", "--set", "frame.=2"], "no option name"),
    ],
)
def test_bad_input_is_one_line_error(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) if needle == "invalid choice" else _noop():
        rc = main(argv)
        assert rc == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing half-written


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_debug_shows_the_traceback_behind_the_one_line_error(where, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPECTRAL_MOE_DEBUG", raising=False)
    argv = ["train", "--steps", "0"]
    assert main(argv) == 2 and "Traceback" not in capsys.readouterr().err
    if where == "env":
        monkeypatch.setenv("SPECTRAL_MOE_DEBUG", "1")
    argv = {"before": ["--debug", *argv], "after": [*argv, "--debug"], "env": argv}[where]
    assert main(argv) == 2
    err = capsys.readouterr().err
    # the traceback, down to the ValueError the config raised, then the same one-line message last
    assert (
        "Traceback (most recent call last)" in err and "ValueError: steps must be a positive integer" in err
    )
    assert (
        err.strip().splitlines()[-1].startswith("spectral-moe train: error: steps must be a positive integer")
    )


def test_debug_traceback_for_library_errors(tiny, tmp_path, capsys, monkeypatch):
    """A ValueError from inside a run (exit code 1) also shows its traceback under --debug."""
    model, _ = tiny
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "choices": ["x", "y"], "answer": "x"}\n{"input": "b", "choices": [\n')
    argv = [
        "train",
        "--model",
        model,
        "--tasks",
        f"jsonl:{bad}",
        "--steps",
        "1",
        "--out",
        str(tmp_path / "r"),
    ]
    monkeypatch.setenv("SPECTRAL_MOE_DEBUG", "0")  # "0" means off
    assert main(argv) == 1 and "Traceback" not in capsys.readouterr().err
    assert main([*argv, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "bad.jsonl:2" in err.strip().splitlines()[-1]


def test_set_reaches_every_method_that_has_the_option(tmp_path, monkeypatch):
    """``adapter.KEY`` reaches every compared method with that option, ``METHOD.KEY`` that method only."""
    import spectral_moe.pipeline.compare as compare

    seen = []

    def fake(cfg, log=None):
        seen.append((cfg.method, dict(cfg.adapter)))
        return {
            "tuned": {"tasks": {"t": {"acc": 0.5}}, "macro_acc": 0.5},
            "train": {"train_seconds": 1.0, "train_tokens_per_second": 1.0},
            "trainable_params": 1,
        }

    monkeypatch.setattr(compare, "train_or_reuse", fake)
    argv = ["compare", "--methods", "lora,fouriermoe,frame", "--out", str(tmp_path / "cmp"), "--quiet"]
    argv += ["--set", "adapter.r=2", "--set", "adapter.num_experts=2", "--set", "frame.transform=hermite"]
    argv += ["--set", "fouriermoe.n_frequency=8"]
    assert main(argv) == 0
    assert dict(seen) == {
        "lora": {"r": 2},
        "fouriermoe": {"num_experts": 2, "n_frequency": 8},
        "frame": {"r": 2, "num_experts": 2, "transform": "hermite"},
    }


def test_train_takes_its_own_method_options(tmp_path):
    from spectral_moe.cli import _run_config, build_parser

    args = build_parser().parse_args(
        ["train", "--method", "frame", "--set", "adapter.r=2", "--set", "frame.transform=chirp"]
    )
    assert _run_config(args).adapter == {"r": 2, "transform": "chirp"}


class _noop:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_malformed_jsonl_line_is_one_line_error_and_nothing_written(tiny, tmp_path, capsys):
    model, _ = tiny
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "choices": ["x", "y"], "answer": "x"}\n{"input": "b", "choices": [\n')
    out = tmp_path / "runs" / "x"
    rc = main(["train", "--model", model, "--tasks", f"jsonl:{bad}", "--steps", "1", "--out", str(out)])
    assert rc != 0
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "invalid JSON" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_model_folder_without_config(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["train", "--model", str(tmp_path / "empty"), "--steps", "1", "--out", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no config.json" in err and err.count("\n") == 1 and not (tmp_path / "r").exists()


@pytest.mark.parametrize("content", [None, b"not a gguf file at all"])
def test_missing_or_corrupt_gguf_model_is_a_one_line_error(tmp_path, capsys, content):
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    rc = main(["train", "--model", str(path), "--steps", "1", "--out", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert ("not found" if content is None else "model.gguf") in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_unwritable_output_directory(tiny, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    rc = _train(tiny, blocker / "run", "--steps", "1")
    assert rc == 2
    err = capsys.readouterr().err
    assert "not writable" in err and err.count("\n") == 1
    assert blocker.read_text() == "not a directory"


def test_console_script_help():
    exe = Path(sys.executable).with_name("spectral-moe")
    res = subprocess.run([str(exe), "train", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    for option in (
        "--method",
        "--model",
        "--tasks",
        "--steps",
        "--seed",
        "--out",
        "--config",
        "--set",
        "--resume",
    ):
        assert option in res.stdout


def test_code_tasks_need_the_opt_in_before_anything_loads(tiny, capsys, monkeypatch):
    monkeypatch.delenv("SPECTRAL_MOE_ALLOW_CODE_EVAL", raising=False)
    model, _ = tiny
    rc = main(["eval", "--base", model, "--tasks", "humaneval", "--max-eval", "2"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--allow-code-execution" in err and "SPECTRAL_MOE_ALLOW_CODE_EVAL" in err and err.count("\n") == 1


def test_eval_passes_the_code_execution_opt_in(tiny, monkeypatch):
    import spectral_moe.evaluation.runs as runs

    seen = {}
    monkeypatch.setattr(runs, "evaluate_run", lambda **kw: seen.update(kw) or {"tasks": {}})
    model, _ = tiny
    assert main(["eval", "--base", model, "--tasks", "mbpp", "--allow-code-execution"]) == 0
    assert seen["allow_code_execution"] is True


def test_eval_takes_a_precision(tiny, monkeypatch, capsys):
    import spectral_moe.evaluation.runs as runs

    seen = {}
    monkeypatch.setattr(runs, "evaluate_run", lambda **kw: seen.update(kw) or {"tasks": {}})
    model, task = tiny
    assert main(["eval", "--base", model, "--tasks", f"jsonl:{task}", "--precision", "bf16"]) == 0
    assert seen["precision"] == "bf16"
    assert main(["eval", "--base", model, "--tasks", f"jsonl:{task}"]) == 0
    assert seen["precision"] is None  # the run's own, else fp32
    with pytest.raises(SystemExit):
        main(["eval", "--base", model, "--precision", "fp16"])
    assert "fp16" in capsys.readouterr().err


def test_train_set_precision_reaches_the_run_config():
    from spectral_moe.cli import _run_config, build_parser

    args = build_parser().parse_args(["train", "--set", "precision=auto", "--set", "group_by_length=false"])
    cfg = _run_config(args)
    assert (cfg.precision, cfg.group_by_length) == ("auto", False)

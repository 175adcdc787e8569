"""pipeline/compare.py: the learning-rate sweep, run reuse, budgets and per-method options.

No test here trains a model: scores are given, and ``train`` is replaced by a fake that writes the files a
finished run has (run_config.json, splits.json, adapter/adapter_config.json via peft, metrics.json).
"""

import dataclasses
import json
from pathlib import Path

import pytest

import spectral_moe
import spectral_moe.pipeline.compare as compare
import spectral_moe.pipeline.run as run_module
from spectral_moe.pipeline.compare import (
    learning_rates,
    method_adapters,
    reuse_mismatch,
    scale_convention,
    solve_budget,
    sweep_learning_rate,
    train_or_reuse,
)
from spectral_moe.pipeline.reuse import interrupted_run
from spectral_moe.training.config import RunConfig
from spectral_moe.training.methods import (
    DEFAULTS,
    METHODS,
    build_peft_config,
    task_token_id,
    tokenizer_options,
)
from tests.helpers import save_tiny_llama, write_jsonl_task


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama and its tokenizer saved as a model folder (for counts and tokenizer options)."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


def _scorer(table):
    calls = []

    def score(mult):
        calls.append(mult)
        return table[mult]

    return score, calls


def test_interior_best_is_not_extended():
    score, calls = _scorer({0.3: 0.2, 1.0: 0.5, 3.0: 0.4})
    assert sweep_learning_rate(score, [0.3, 1, 3], extend=2) == {0.3: 0.2, 1.0: 0.5, 3.0: 0.4}
    assert calls == [0.3, 1, 3]


def test_high_edge_extends_geometrically_until_interior():
    # 3 wins, so 9 is tried; 9 wins, so 27 is tried; 27 loses: 9 is interior, stop
    score, calls = _scorer({0.3: 0.1, 1: 0.2, 3: 0.3, 9: 0.4, 27: 0.35})
    scores = sweep_learning_rate(score, [0.3, 1, 3], extend=5)
    assert calls == [0.3, 1, 3, 9, 27]
    assert max(scores, key=scores.get) == 9


def test_low_edge_extension_and_cap():
    # the low edge keeps winning; extend=1 allows one point beyond 0.3 (0.3 * 0.3 = 0.09) and no more
    score, calls = _scorer({0.09: 0.6, 0.3: 0.5, 1: 0.4, 3: 0.1})
    scores = sweep_learning_rate(score, [3, 1, 0.3], extend=1)
    assert calls == [0.3, 1, 3, 0.09]
    assert set(scores) == {0.09, 0.3, 1, 3}


def test_no_extension_by_default_and_ties_go_to_default():
    score, calls = _scorer({1: 0.5, 3: 0.5})
    assert sweep_learning_rate(score, [1, 3]) == {1: 0.5, 3: 0.5}
    # a tie between 3 and the default 1 goes to 1; 1 is the low edge here, so one step below it is tried
    score, calls = _scorer({0.333333: 0.4, 1: 0.5, 3: 0.5})  # 1/3 to 6 significant digits
    sweep_learning_rate(score, [1, 3], extend=1)
    assert calls == [1, 3, 0.333333]


def test_single_point_sweep_steps_by_ten_and_empty_is_an_error():
    score, calls = _scorer({1: 0.5, 10: 0.4, 0.1: 0.4})
    sweep_learning_rate(score, [1], extend=1)
    assert calls == [1, 0.1, 10]
    with pytest.raises(ValueError, match="must not be empty"):
        sweep_learning_rate(score, [], extend=1)


# --------------------------------------------------------------------------------------------
# reusing finished runs
# --------------------------------------------------------------------------------------------
class Trained(list):
    """The configs ``fake_train`` trained, and the ``resume`` flag of each call (``.resumed``)."""

    def __init__(self):
        super().__init__()
        self.resumed: list[bool] = []


@pytest.fixture
def fake_train(monkeypatch):
    """``train`` replaced by one that writes what a finished run holds; returns the list of configs trained."""
    trained = Trained()

    def fake(cfg, resume=False, progress=True):
        trained.append(cfg)
        trained.resumed.append(resume)
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "run_config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
        tasks = run_module.load_run_tasks(cfg)
        (out / "splits.json").write_text(json.dumps({t.name: t.describe() for t in tasks}))
        targets = cfg.target_modules or run_module.DEFAULT_TARGETS
        peft_config = build_peft_config(cfg.method, targets, cfg.task_type, **cfg.adapter)
        peft_config.inference_mode = True  # as PeftModel.save_pretrained writes it
        peft_config.base_model_name_or_path = cfg.model
        peft_config.save_pretrained(out / "adapter")
        metrics = {
            "tuned": {"tasks": {"t": {"acc": 0.5}}, "macro_acc": 0.5},
            "train": {"train_seconds": 1.0, "train_tokens_per_second": 10.0},
            "trainable_params": 100,
            **({"base": {"tasks": {"t": {"acc": 0.3}}, "macro_acc": 0.3}} if cfg.eval_base else {}),
        }
        (out / "predictions.json").write_text(json.dumps({"tuned": {}}))
        (out / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    monkeypatch.setattr(run_module, "train", fake)
    return trained


@pytest.fixture
def task(tmp_path):
    return "jsonl:" + write_jsonl_task(tmp_path / "task.jsonl", n=40)


def test_train_or_reuse_ignores_which_run_scored_the_base_model(tmp_path, fake_train, task):
    trained = fake_train
    with_base = RunConfig(method="lora", tasks=task, out=str(tmp_path / "a"), eval_base=True)
    assert "base" in train_or_reuse(with_base) and len(trained) == 1
    # the same run without the base scores: reused (it has them anyway)
    assert "base" in train_or_reuse(dataclasses.replace(with_base, eval_base=False)) and len(trained) == 1
    # any other difference retrains
    train_or_reuse(dataclasses.replace(with_base, lr=0.5))
    assert len(trained) == 2

    without = RunConfig(method="lora", tasks=task, out=str(tmp_path / "b"), eval_base=False)
    train_or_reuse(without)
    train_or_reuse(without)
    assert len(trained) == 3
    # asking for the base scores of a run that has none: retrained, with them
    assert "base" in train_or_reuse(dataclasses.replace(without, eval_base=True)) and len(trained) == 4


@pytest.mark.parametrize("task_type", ["causal_lm", "seq_cls"])
@pytest.mark.parametrize("method", METHODS)
def test_adapter_config_saved_by_a_run_matches_the_one_built_now(
    tmp_path, method, task_type, monkeypatch, tiny_model_dir
):
    """The adapter_config.json peft writes for a run (as ``train`` builds it) reads back as the same config,
    bookkeeping aside: encoders' ``modules_to_save`` (which peft extends) and set order included."""
    from peft import get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    from tests.helpers import tiny_llama

    adapter = {"n_frequency": 8} if "fourier" in method else {"r": 2}
    if method == "flylora":
        adapter["top_k"] = 1
    # HMoRA's task_token_id comes from the run model's tokenizer, as train() gives it
    cfg = RunConfig(method=method, task_type=task_type, adapter=adapter, model=tiny_model_dir)
    if task_type == "causal_lm":
        model, targets = tiny_llama(), run_module.DEFAULT_TARGETS
    else:
        bert = BertConfig(
            vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
        model, targets = BertForSequenceClassification(bert), run_module.ENCODER_TARGETS
    adapter = tokenizer_options(method, adapter, compare.load_tokenizer(tiny_model_dir))
    peft_config = build_peft_config(method, targets, task_type, **adapter)
    if task_type == "seq_cls":
        peft_config.modules_to_save = ["classifier", "score"]  # as train() does
    get_peft_model(model, peft_config).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert compare.adapter_config_difference(cfg, saved) is None
    key = "scaling" if "fourier" in method else "lora_alpha"
    monkeypatch.setitem(DEFAULTS[method], key, 123.0)
    assert compare.adapter_config_difference(cfg, saved).startswith(f"{key}: ")


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, fake_train, task):
    cfg = RunConfig(method="lora", tasks=task, out=str(tmp_path / "run"), eval_base=False)
    run = Path(cfg.out)
    (run / "checkpoints" / "checkpoint-50").mkdir(parents=True)
    (run / "run_config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    # a checkpoint still being written (no trainer_state.json) does not count
    (run / "checkpoints" / "checkpoint-50" / "adapter_model.safetensors").write_bytes(b"x")
    assert not interrupted_run(cfg)
    (run / "checkpoints" / "checkpoint-50" / "trainer_state.json").write_text("{}")
    assert interrupted_run(cfg)
    # another config in the same directory: not this run's checkpoint
    assert not interrupted_run(dataclasses.replace(cfg, lr=0.5))
    train_or_reuse(cfg)
    assert fake_train.resumed == [True]
    # finished now: reused, and a finished run is never "interrupted"
    train_or_reuse(cfg)
    assert fake_train.resumed == [True] and not interrupted_run(cfg)


def test_changed_library_default_retrains(tmp_path, fake_train, task, monkeypatch):
    cfg = RunConfig(method="moelora", tasks=task, out=str(tmp_path / "run"), eval_base=False)
    train_or_reuse(cfg)
    assert reuse_mismatch(cfg) is None
    assert (
        json.loads((tmp_path / "run" / "provenance.json").read_text())["spectral_moe"]
        == spectral_moe.__version__
    )
    train_or_reuse(cfg)
    assert len(fake_train) == 1
    # a DEFAULTS entry of training/methods.py changes: the run config is the same, the adapter is not
    monkeypatch.setitem(DEFAULTS["moelora"], "top_k", 1)
    assert "adapter config differs (top_k: 2 then, 1 now)" in reuse_mismatch(cfg)
    train_or_reuse(cfg)
    assert len(fake_train) == 2 and reuse_mismatch(cfg) is None


def test_changed_config_class_default_retrains(tmp_path, fake_train, task, monkeypatch):
    from peft import LoraConfig

    cfg = RunConfig(method="lora", tasks=task, out=str(tmp_path / "run"), eval_base=False)
    train_or_reuse(cfg)
    post_init = LoraConfig.__post_init__

    def new_default(self):  # as if peft's LoraConfig changed its lora_dropout default
        post_init(self)
        self.lora_dropout = 0.1

    monkeypatch.setattr(LoraConfig, "__post_init__", new_default)
    assert "lora_dropout" in reuse_mismatch(cfg)
    train_or_reuse(cfg)
    assert len(fake_train) == 2


def test_library_version_and_provenance_decide_reuse(tmp_path, fake_train, task, monkeypatch):
    cfg = RunConfig(method="lora", tasks=task, out=str(tmp_path / "run"), eval_base=False)
    train_or_reuse(cfg)
    then = spectral_moe.__version__
    monkeypatch.setattr(spectral_moe, "__version__", "99.0")
    assert reuse_mismatch(cfg) == f"library version differs ({then!r} then, '99.0' now)"
    train_or_reuse(cfg)
    assert len(fake_train) == 2 and reuse_mismatch(cfg) is None
    # a run from before provenance.json existed cannot show its version: retrained
    (tmp_path / "run" / "provenance.json").unlink()
    assert "provenance.json" in reuse_mismatch(cfg)
    # a run without per-example records (older harness) cannot be paired in a bootstrap: retrained
    (tmp_path / "run" / "predictions.json").unlink()
    assert "predictions.json" in reuse_mismatch(cfg)


def test_changed_data_spec_retrains_but_extra_split_fields_do_not(tmp_path, fake_train, task):
    cfg = RunConfig(method="lora", tasks=task, out=str(tmp_path / "run"), eval_base=False)
    train_or_reuse(cfg)
    path = tmp_path / "run" / "splits.json"
    splits = json.loads(path.read_text())
    (name,) = splits
    # a field the run wrote on top of the split record (e.g. truncation statistics) is not compared
    path.write_text(json.dumps({name: {**splits[name], "truncated_fraction": 0.0}}))
    assert reuse_mismatch(cfg) is None
    # splits made another way (older salt, other sizes) are a different run
    path.write_text(json.dumps({name: {**splits[name], "split_salt": "spectral-moe/splits/v0"}}))
    assert "data split of" in reuse_mismatch(cfg) and "split_salt" in reuse_mismatch(cfg)
    sizes = {**splits[name]["split_sizes"], "train": splits[name]["split_sizes"]["train"] + 1}
    path.write_text(json.dumps({name: {**splits[name], "split_sizes": sizes}}))
    assert "split_sizes" in reuse_mismatch(cfg)
    train_or_reuse(cfg)
    assert len(fake_train) == 2 and reuse_mismatch(cfg) is None


# --------------------------------------------------------------------------------------------
# learning rates, budgets, options
# --------------------------------------------------------------------------------------------
def test_learning_rate_sweep_never_scales_the_order_lr():
    from spectral_moe.training.methods import DEFAULT_LR, DEFAULT_SPECTRUM_LR

    rates = learning_rates("frame", RunConfig(method="frame"), 3.0)
    assert rates == {"lr": pytest.approx(3 * DEFAULT_LR["frame"])}  # order_lr stays the run's own (default)
    rates = learning_rates("frame", RunConfig(method="frame", order_lr=0.02, router_lr=1e-3), 0.5)
    assert "order_lr" not in rates and rates["router_lr"] == pytest.approx(5e-4)
    rates = learning_rates("fouriermoe", RunConfig(), 3.0)
    assert rates["spectrum_lr"] == pytest.approx(3 * DEFAULT_SPECTRUM_LR)


def _fake_runs(monkeypatch):
    seen = []

    def fake(cfg, log=None):
        seen.append(cfg)
        return {
            "tuned": {"tasks": {"t": {"acc": 0.4 + 0.1 * (cfg.lr or 0)}}, "macro_acc": 0.5},
            "train": {"train_seconds": 1.0, "train_tokens_per_second": 10.0},
            "trainable_params": 100,
        }

    monkeypatch.setattr(compare, "train_or_reuse", fake)
    return seen


@pytest.mark.parametrize("order_lr", [None, 0.02])
def test_compare_sweep_keeps_the_order_lr_of_the_base_config(tmp_path, monkeypatch, order_lr):
    seen = _fake_runs(monkeypatch)
    base = RunConfig(method="frame", order_lr=order_lr, steps=1)
    md = compare.run_compare(base, ["frame"], [0, 1], tmp_path, lr_multipliers=[0.3, 1, 3])
    assert len(seen) == 5
    assert sorted({c.lr for c in seen if c.eval_split == "validation"}) == pytest.approx([3e-4, 1e-3, 3e-3])
    assert all(c.order_lr == order_lr for c in seen)
    assert ("order_lr=default" if order_lr is None else "order_lr=0.02") in md


def test_solve_budget_keeps_alpha_over_r(monkeypatch):
    # c(size) = 100 + 50·size for every method: a budget of 400 gives size round(1 + 250/50) = 6
    monkeypatch.setattr(
        compare, "count_trainable", lambda m, method, t, tt, **a: 100 + 50 * a[compare.SIZE_OPTION[method]]
    )
    solved = solve_budget("m", "lora", ["q_proj"], "causal_lm", 400)
    assert solved == {"r": 6, "lora_alpha": 12.0}  # DEFAULTS lora: r=8, α=16, so α/r = 2 stays
    assert solve_budget("m", "moelora", ["q_proj"], "causal_lm", 400) == {"r": 6, "lora_alpha": 12.0}
    assert solve_budget("m", "frame", ["q_proj"], "causal_lm", 400, lora_alpha=2.0)["lora_alpha"] == 3.0
    rs = solve_budget("m", "lora", ["q_proj"], "causal_lm", 400, use_rslora=True)  # α/√r kept
    assert rs["lora_alpha"] == pytest.approx(16 * (6 / 8) ** 0.5, rel=1e-5)
    fm = solve_budget("m", "fouriermoe", ["q_proj"], "causal_lm", 400, scaling=300.0)
    assert fm == {"n_frequency": 6, "scaling": 300.0}  # scaling does not depend on n_frequency
    assert scale_convention("lora", **solved) == "α/r=2"
    assert scale_convention("lora", **rs) == "α/√r=5.657"
    assert scale_convention("fouriermoe", **fm) == "scaling=300"


def test_compare_table_states_each_methods_scale(tmp_path, monkeypatch):
    _fake_runs(monkeypatch)
    monkeypatch.setattr(
        compare, "count_trainable", lambda m, method, t, tt, **a: 100 + 50 * a[compare.SIZE_OPTION[method]]
    )
    md = compare.run_compare(RunConfig(steps=1), ["lora", "fouriermoe"], [0], tmp_path, budget_params=400)
    row = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "| α/r=2 |" in row["lora"] and "r=6, lora_alpha=12.0" in row["lora"]
    assert "| scaling=150 |" in row["fouriermoe"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["scale"] == {"lora": "α/r=2", "fouriermoe": "scaling=150"}


def test_method_adapters_reach_every_method_that_has_the_option():
    out = method_adapters(
        ["lora", "moelora", "fouriermoe", "frame"],
        {"r": 2, "num_experts": 4},
        {"frame": {"transform": "hermite"}},
    )
    assert out == {
        "lora": {"r": 2},
        "moelora": {"r": 2, "num_experts": 4},
        "fouriermoe": {"num_experts": 4},
        "frame": {"r": 2, "num_experts": 4, "transform": "hermite"},
    }
    with pytest.raises(ValueError, match=r"\['n_frequency'\] belong to none of the methods"):
        method_adapters(["lora", "frame"], {"n_frequency": 8})
    with pytest.raises(ValueError, match="frame has no option.*'nope'"):
        method_adapters(["frame"], {}, {"frame": {"nope": 1}})
    with pytest.raises(ValueError, match="options for method 'lora' given"):
        method_adapters(["frame"], {}, {"lora": {"r": 2}})


def test_compare_passes_common_and_own_options_to_each_method(tmp_path, monkeypatch):
    seen = _fake_runs(monkeypatch)
    base = RunConfig(method="lora", adapter={"r": 2}, steps=1)
    compare.run_compare(
        base, ["lora", "frame"], [0], tmp_path, method_options={"frame": {"transform": "chirp"}}
    )
    assert {c.method: c.adapter for c in seen} == {"lora": {"r": 2}, "frame": {"r": 2, "transform": "chirp"}}
    with pytest.raises(ValueError, match="belong to none"):
        compare.run_compare(RunConfig(adapter={"bogus": 1}), ["lora"], [0], tmp_path / "x")
    assert not (tmp_path / "x").exists()  # checked before anything is written


# --------------------------------------------------------------------------------------------
# the FRAME paper's baselines: FlyLoRA, HMoRA, DoRA (#16)
# --------------------------------------------------------------------------------------------
BASELINE_BUDGETS = {"flylora": 3000, "dora": 3000, "hmora": 60000}  # HMoRA's task encoder alone is ~17k


@pytest.mark.parametrize("method", ["flylora", "hmora", "dora"])
def test_budget_matching_of_the_baselines(tiny_model_dir, method):
    """The solved size gives a real trainable count within ±10 % of the budget; the scale stays."""
    targets = run_module.DEFAULT_TARGETS
    budget = BASELINE_BUDGETS[method]
    solved = solve_budget(tiny_model_dir, method, targets, "causal_lm", budget)
    count = compare.count_trainable(tiny_model_dir, method, targets, "causal_lm", **solved)
    assert abs(count - budget) / budget < 0.10, (solved, count)
    default = build_peft_config(method, targets)
    assert scale_convention(method, **solved) == scale_convention(method)  # α/r (HMoRA: α/√r) kept
    if method == "flylora":  # the density k/r is kept too (the probes ran at top_k = 1, below r = 1, 2)
        assert solved["top_k"] == max(1, round(solved["r"] * default.top_k / default.r))
        assert 1 <= solved["top_k"] <= solved["r"]


def test_flylora_counts_only_b_and_hmora_counts_routers_and_encoder(tiny_model_dir):
    """FlyLoRA's frozen A and bias are buffers: its count is Σ d_out·r (q_proj 32, v_proj 16; 2 layers)."""
    targets = run_module.DEFAULT_TARGETS
    assert (
        compare.count_trainable(tiny_model_dir, "flylora", targets, "causal_lm", r=5, top_k=1) == 2 * 48 * 5
    )
    # HMoRA: experts (8 · r · (d_in + d_out)) plus routers, mixing logits and the task encoder, which do not
    # grow with r; the count needs no tokenizer (task_token_id only picks the task token's initial value)
    c1 = compare.count_trainable(tiny_model_dir, "hmora", targets, "causal_lm", r=1)
    c2 = compare.count_trainable(tiny_model_dir, "hmora", targets, "causal_lm", r=2)
    assert c2 - c1 == 8 * 2 * ((32 + 32) + (32 + 16)) and c1 > c2 - c1


def test_scale_conventions_of_the_baselines(monkeypatch):
    monkeypatch.setattr(
        compare, "count_trainable", lambda m, method, t, tt, **a: 100 + 50 * a[compare.SIZE_OPTION[method]]
    )
    assert scale_convention("flylora") == "α/r=2"  # 64 / 32
    assert scale_convention("dora") == "α/r=2"  # 16 / 8
    assert scale_convention("hmora") == "α/√r=2.828"  # rsLoRA: 8 / √8
    solved = solve_budget("m", "hmora", ["q_proj"], "causal_lm", 400)
    assert solved["r"] == 6 and solved["lora_alpha"] == pytest.approx(8 / 8**0.5 * 6**0.5, rel=1e-5)
    fly = solve_budget("m", "flylora", ["q_proj"], "causal_lm", 400)
    assert fly == {"r": 6, "lora_alpha": 12.0, "top_k": 2}  # k/r = 8/32: round(6/4) = 2


@pytest.mark.parametrize("method", ["flylora", "hmora", "dora"])
def test_learning_rate_sweep_scales_the_baselines(method):
    from spectral_moe.training.methods import DEFAULT_LR

    expected = {"flylora": 3e-4, "hmora": 5e-5, "dora": 1e-3}[method]
    assert DEFAULT_LR[method] == expected
    assert learning_rates(method, RunConfig(method=method), 3.0) == {"lr": pytest.approx(3 * expected)}
    assert learning_rates(method, RunConfig(method=method, lr=1e-2), 0.5) == {"lr": pytest.approx(5e-3)}


def test_hmora_resolved_config_takes_the_task_token_from_the_run_models_tokenizer(tiny_model_dir):
    tokenizer = compare.load_tokenizer(tiny_model_dir)
    cfg = RunConfig(method="hmora", model=tiny_model_dir, adapter={"r": 2})
    assert compare.resolved_adapter_config(cfg)["task_token_id"] == task_token_id(tokenizer)
    given = dataclasses.replace(cfg, adapter={"r": 2, "task_token_id": 3})
    assert compare.resolved_adapter_config(given)["task_token_id"] == 3


def test_results_table_says_what_the_baselines_count(tmp_path, monkeypatch):
    _fake_runs(monkeypatch)
    md = compare.run_compare(RunConfig(steps=1), ["flylora", "hmora", "dora", "lora"], [0], tmp_path)
    assert "FlyLoRA counts B only: its frozen sparse A and routing bias are buffers" in md
    assert "HMoRA's count includes its routers, mixing logits θ_l and task encoder" in md
    assert "DoRA's count includes its magnitude vectors" in md
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["scale"] == {"flylora": "α/r=2", "hmora": "α/√r=2.828", "dora": "α/r=2", "lora": "α/r=2"}


def test_runs_saved_before_precision_and_length_grouping_are_reused_at_their_values(
    tmp_path, fake_train, task
):
    cfg = RunConfig(
        method="lora", tasks=task, out=str(tmp_path / "run"), eval_base=False, group_by_length=False
    )
    train_or_reuse(cfg)
    path = tmp_path / "run" / "run_config.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in saved.items() if k not in ("precision", "group_by_length")}))
    assert reuse_mismatch(cfg) is None  # an older run: fp32, no length grouping
    assert "precision: 'fp32' then, 'bf16' now" in reuse_mismatch(dataclasses.replace(cfg, precision="bf16"))
    assert "group_by_length" in reuse_mismatch(dataclasses.replace(cfg, group_by_length=True))

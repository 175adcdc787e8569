"""Saved FourierMoE/FRAME adapters scored by lm-evaluation-harness (HFLM), offline.

A tiny random Llama and its tokenizer are saved to a folder, adapters with random (non-identity)
weights are saved next to it, and a local multiple-choice task (YAML over a JSONL file) is run
through ``lm_eval.simple_evaluate``. The per-choice log-likelihoods lm-eval reports must equal a
direct forward of the ``PeftModel`` and differ from the base model's.
"""

from __future__ import annotations

import json
import shutil

import lm_eval
import pytest
import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from peft import PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

import spectral_moe.evaluation.lm_eval as sm_lm_eval
from spectral_moe import FourierMoEConfig, FourierMoELayer, FrameConfig, FrameLayer
from spectral_moe.evaluation.scoring import continuation_logprobs
from tests.helpers import save_tiny_llama

TASK = "spectral_moe_toy_mc"
ROWS = [(1, 2), (3, 4), (2, 2), (5, 1), (0, 7), (6, 3)]
CONFIGS = {
    "fouriermoe": lambda: FourierMoEConfig(
        target_modules=["q_proj", "v_proj"], num_experts=4, top_k=2, n_frequency=8
    ),
    "frame": lambda: FrameConfig(target_modules=["q_proj", "v_proj"], num_experts=4, top_k=2, r=4),
}
LAYERS = {"fouriermoe": FourierMoELayer, "frame": FrameLayer}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Base model folder, one saved adapter per method, and a task folder for ``TaskManager``."""
    root = tmp_path_factory.mktemp("lm_eval")
    base = save_tiny_llama(root / "base")
    adapters = {}
    for method, make_config in CONFIGS.items():
        torch.manual_seed(1)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), make_config())
        with torch.no_grad():  # move every adapter tensor away from its identity initialisation
            for param in model.parameters():
                if param.requires_grad:
                    param.add_(0.5 * torch.randn_like(param))
        model.save_pretrained(root / method)
        adapters[method] = str(root / method)

    data = root / "toy.jsonl"
    rows = [
        {
            "question": f"Question: {a} plus {b}? Answer:",
            "choices": [str(a + b), str(a * b + 10), "yes"],
            "label": 0,
        }
        for a, b in ROWS
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        f"  data_files:\n    test: {data}\n"
        f"  cache_dir: {root / 'datasets_cache'}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        "doc_to_target: label\n"
        "metric_list:\n"
        "  - metric: acc\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
    )
    return {"root": root, "base": base, "adapters": adapters, "tasks": str(tasks)}


def _evaluate(setup, model: str, model_args: str, **kwargs) -> dict:
    return lm_eval.simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=[TASK],
        task_manager=TaskManager(include_path=setup["tasks"], include_defaults=False),
        batch_size=4,
        log_samples=True,
        bootstrap_iters=0,
        **kwargs,
    )


def _direct_loglik(model, tokenizer, context: str, continuation: str, bos: bool = False) -> float:
    """Σ log p(continuation | context) by one plain forward, tokenised as lm-eval's HFLM does."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer(context + continuation)["input_ids"]
    n_cont = len(whole) - len(tokenizer(context)["input_ids"])
    ids = ([tokenizer.bos_token_id] if bos else []) + whole
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    return sum(logp[i - 1, ids[i]].item() for i in range(len(ids) - n_cont, len(ids)))


def _loaded(setup, method: str | None):
    tokenizer = AutoTokenizer.from_pretrained(setup["base"])
    model = AutoModelForCausalLM.from_pretrained(setup["base"])
    if method is not None:
        model = PeftModel.from_pretrained(model, setup["adapters"][method])
    return model.eval(), tokenizer


def _samples(results) -> list[tuple[int, list[tuple[str, str]], list[float]]]:
    """``(label, [(context, continuation)], [loglik])`` per document from ``log_samples``."""
    out = []
    for sample in results["samples"][TASK]:
        pairs = [tuple(args) for args in sample["arguments"]]
        logliks = [resp[0][0] for resp in sample["resps"]]
        out.append((sample["target"], pairs, logliks))
    assert len(out) == len(ROWS)
    return out


def _check_logliks_are_the_adapters(setup, results, method: str, bos: bool = False) -> None:
    adapted, tokenizer = _loaded(setup, method)
    base, _ = _loaded(setup, None)
    correct, largest_change = 0, 0.0
    for label, pairs, logliks in _samples(results):
        direct = [_direct_loglik(adapted, tokenizer, c, s, bos) for c, s in pairs]
        assert logliks == pytest.approx(direct, abs=1e-4)
        base_ll = [_direct_loglik(base, tokenizer, c, s, bos) for c, s in pairs]
        largest_change = max(largest_change, *(abs(a - b) for a, b in zip(direct, base_ll)))
        correct += max(range(len(direct)), key=direct.__getitem__) == label
    assert largest_change > 0.01  # the adapter changes the scores: a run without it would fail above
    assert results["results"][TASK]["acc,none"] == pytest.approx(correct / len(ROWS))


@pytest.mark.parametrize("method", list(CONFIGS))
def test_registered_model_scores_the_saved_adapter(setup, method):
    results = _evaluate(setup, "spectral-moe", f"pretrained={setup['base']},peft={setup['adapters'][method]}")
    acc = results["results"][TASK]["acc,none"]
    assert 0.0 <= acc <= 1.0
    assert results["config"]["model"] == "spectral-moe"
    _check_logliks_are_the_adapters(setup, results, method)


def test_plain_hf_model_after_import_spectral_moe(setup):
    results = _evaluate(
        setup, "hf", f"pretrained={setup['base']},peft={setup['adapters']['fouriermoe']}", device="cpu"
    )
    _check_logliks_are_the_adapters(setup, results, "fouriermoe")


@pytest.mark.parametrize("form", ["run", "adapter_only"])
def test_run_directory_or_adapter_alone(setup, form, tmp_path):
    if form == "run":
        run = tmp_path / "run"
        shutil.copytree(setup["adapters"]["frame"], run / "adapter")
        (run / "run_config.json").write_text(json.dumps({"model": setup["base"], "task_type": "causal_lm"}))
        model_args = f"run={run}"
    else:  # base model from the adapter's base_model_name_or_path
        model_args = f"peft={setup['adapters']['frame']}"
    results = _evaluate(setup, "spectral-moe", model_args)
    _check_logliks_are_the_adapters(setup, results, "frame")


def test_add_bos_token_matches_our_own_scorer(setup):
    results = _evaluate(
        setup,
        "spectral-moe",
        f"pretrained={setup['base']},peft={setup['adapters']['fouriermoe']},add_bos_token=True",
    )
    _check_logliks_are_the_adapters(setup, results, "fouriermoe", bos=True)
    model, tokenizer = _loaded(setup, "fouriermoe")
    for _, pairs, logliks in _samples(results):
        ours = [ll for ll, _ in continuation_logprobs(model, tokenizer, pairs)]
        assert logliks == pytest.approx(ours, abs=1e-4)


@pytest.mark.parametrize("method", list(CONFIGS))
def test_hflm_loads_the_adapter_unmerged_in_eval_mode(setup, method):
    lm = sm_lm_eval.SpectralMoELM(pretrained=setup["base"], peft=setup["adapters"][method], batch_size=1)
    assert isinstance(lm, HFLM) and lm.device == torch.device("cpu")
    assert isinstance(lm.model, PeftModel)
    assert lm.model.peft_config["default"].peft_type.value == method.upper()
    assert not any(module.training for module in lm.model.modules())
    layers = [m for m in lm.model.modules() if isinstance(m, LAYERS[method])]
    assert len(layers) == 4  # q_proj and v_proj of 2 blocks, still adapter layers (nothing merged)
    base = AutoModelForCausalLM.from_pretrained(setup["base"])
    q_proj = base.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(layers[0].get_base_layer().weight, q_proj)


def test_in_memory_peft_model(setup):
    model, tokenizer = _loaded(setup, "frame")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=[TASK],
        task_manager=TaskManager(include_path=setup["tasks"], include_defaults=False),
        log_samples=True,
        bootstrap_iters=0,
    )
    _check_logliks_are_the_adapters(setup, results, "frame")


class _LocalTaskManager(TaskManager):
    """Only ``include_path``'s tasks: indexing lm-eval's ~200 built-in task folders takes ~10 s."""

    def __init__(self, *args, **kwargs):
        kwargs["include_defaults"] = False
        super().__init__(*args, **kwargs)


def test_command_line(setup, tmp_path, monkeypatch):
    import lm_eval.tasks

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", _LocalTaskManager)  # speed only
    out = tmp_path / "out"
    sm_lm_eval.main(
        [
            "run",
            "--model",
            "spectral-moe",
            "--model_args",
            f"pretrained={setup['base']},peft={setup['adapters']['fouriermoe']}",
            "--tasks",
            TASK,
            "--include_path",
            setup["tasks"],
            "--batch_size",
            "4",
            "--output_path",
            str(out),
        ]
    )
    (path,) = out.rglob("results_*.json")
    results = json.loads(path.read_text())
    assert results["config"]["model"] == "spectral-moe"
    assert 0.0 <= results["results"][TASK]["acc,none"] <= 1.0


def test_bad_arguments(setup, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        sm_lm_eval.SpectralMoELM(run=str(tmp_path), pretrained=setup["base"])
    with pytest.raises(ValueError, match="needs pretrained"):
        sm_lm_eval.SpectralMoELM()
    with pytest.raises(ValueError, match="model in memory"):
        sm_lm_eval.SpectralMoELM(pretrained=torch.nn.Linear(2, 2), peft=setup["adapters"]["frame"])
    with pytest.raises(ValueError, match="not a spectral-moe run directory"):
        sm_lm_eval.resolve_run(tmp_path)
    run = tmp_path / "encoder_run"
    shutil.copytree(setup["adapters"]["frame"], run / "adapter")
    (run / "run_config.json").write_text(json.dumps({"model": "minilm-l6", "task_type": "seq_cls"}))
    with pytest.raises(ValueError, match="causal LMs only"):
        sm_lm_eval.resolve_run(run)

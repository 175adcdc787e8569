"""A non-finite loss stops training before the optimizer step (or skips the step)."""

import pytest
import torch
from peft import get_peft_model
from transformers import TrainingArguments

import spectral_moe  # noqa: F401
from spectral_moe import FourierMoEConfig, create_optimizer
from spectral_moe.training.trainer import NonFiniteLossError, SpectralTrainer
from tests.helpers import ToyLM, tiny_llama


def _trainer(tmp_path, on_nan, poison_steps):
    model = get_peft_model(
        tiny_llama(), FourierMoEConfig(target_modules=["q_proj"], n_frequency=8, num_experts=2)
    )
    calls = {"n": 0}

    def poison(module, args, output):
        calls["n"] += 1
        if calls["n"] in poison_steps:
            return output * float("nan")
        return output

    model.base_model.model.model.layers[0].self_attn.q_proj.register_forward_hook(poison)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=5,
        per_device_train_batch_size=4,
        save_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    opt = create_optimizer(model, lr=1e-2, spectrum_lr=1e-2)
    return model, SpectralTrainer(
        model=model, args=args, train_dataset=ToyLM(32), optimizers=(opt, None), on_nan=on_nan
    )


def test_stop_keeps_parameters_and_last_checkpoint(tmp_path):
    model, trainer = _trainer(tmp_path, "stop", poison_steps={3})
    with pytest.raises(NonFiniteLossError, match=r"step 3.*checkpoint-2"):
        trainer.train()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert all(torch.isfinite(p).all() for p in params.values())
    assert (tmp_path / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "checkpoint-4").exists()


def test_skip_continues_and_records_the_step(tmp_path):
    model, trainer = _trainer(tmp_path, "skip", poison_steps={3})
    trainer.train()
    assert trainer.skipped_steps == [3]
    assert trainer.state.global_step == 5
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_on_nan_value_is_checked():
    with pytest.raises(ValueError, match="on_nan"):
        SpectralTrainer(model=tiny_llama(), on_nan="ignore")

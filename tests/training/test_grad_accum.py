"""Gradient accumulation: the router aux loss keeps its weight per optimizer step."""

import torch
from peft import get_peft_model
from transformers import TrainingArguments

import spectral_moe  # noqa: F401
from spectral_moe import FourierMoEConfig
from spectral_moe.training.run import SpectralTrainer
from tests.helpers import ToyLM, tiny_llama


def test_aux_loss_is_divided_by_the_accumulation_steps(tmp_path):
    model = get_peft_model(
        tiny_llama(), FourierMoEConfig(target_modules=["q_proj"], n_frequency=8, router_aux_loss_coef=0.5)
    )
    args = TrainingArguments(
        output_dir=str(tmp_path), gradient_accumulation_steps=4, report_to=[], use_cpu=True, max_steps=1
    )
    trainer = SpectralTrainer(model=model, args=args, train_dataset=ToyLM(8))
    trainer.current_gradient_accumulation_steps = 4
    batch = {
        k: torch.stack([ToyLM(8)[i][k] for i in range(2)]) for k in ("input_ids", "labels", "attention_mask")
    }
    model.train()
    n_items = torch.tensor(batch["labels"][:, 1:].numel() * 4)  # tokens of the whole accumulated step
    loss = trainer.compute_loss(model, batch, num_items_in_batch=n_items)
    aux = model.get_router_aux_loss(weighted=True)
    with torch.no_grad():
        model.eval()  # no aux in eval: the plain LM loss, token-normalised the same way
        plain = trainer.compute_loss(model, batch, num_items_in_batch=n_items)
    assert trainer._loss_is_scaled_for_ga(n_items)
    assert torch.allclose(loss, plain + aux / 4, atol=1e-6)

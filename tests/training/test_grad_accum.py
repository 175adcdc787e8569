"""Gradient accumulation: the router aux loss keeps its weight per optimizer step."""

import torch
from peft import get_peft_model
from transformers import TrainingArguments

import spectral_moe  # noqa: F401
from spectral_moe import FourierMoEConfig
from spectral_moe.training.trainer import SpectralTrainer
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


def _one_step_update(model, rows, batch_size, grad_accum, tmp_path):
    """Parameter change of one optimizer step (SGD, lr 1: minus the accumulated gradient) of Trainer."""
    from spectral_moe.data.features import ListDataset, PadCollator

    args = TrainingArguments(
        output_dir=str(tmp_path / f"ga{grad_accum}"),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        max_steps=1,
        learning_rate=1.0,
        lr_scheduler_type="constant",
        max_grad_norm=1e9,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in params.items()}
    trainer = SpectralTrainer(
        model=model,
        args=args,
        train_dataset=ListDataset(rows),
        data_collator=PadCollator(0),
        optimizers=(torch.optim.SGD(list(params.values()), lr=1.0), None),
    )
    trainer.train()
    return {n: before[n] - p.detach() for n, p in params.items()}


def _assert_same_updates(a, b):
    scale = max(float(v.abs().max()) for v in b.values())
    assert scale > 0
    for name in b:
        assert torch.allclose(a[name], b[name], atol=1e-5 * scale, rtol=1e-4), name


def _rows(n, vocab, seed, encoder):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        length = int(torch.randint(5, 12, (1,), generator=g))
        ids = torch.randint(3, vocab, (length,), generator=g).tolist()
        if encoder:  # two tasks: heads (0, 2) and (2, 4)
            head = (0, 2) if i % 2 else (2, 4)
            rows.append({"input_ids": ids, "labels": head[0] + i % head[1], "head": head})
        else:  # the loss on the last few tokens only, of different counts per row
            n_answer = 1 + i % 4
            rows.append({"input_ids": ids, "labels": [-100] * (length - n_answer) + ids[-n_answer:]})
    return rows


def test_causal_lm_gradients_with_accumulation_equal_one_big_batch(tmp_path):
    rows = _rows(8, 64, seed=1, encoder=False)
    updates = []
    for batch_size, ga in ((8, 1), (2, 4)):
        model = get_peft_model(
            tiny_llama(),
            FourierMoEConfig(target_modules=["q_proj", "v_proj"], n_frequency=8, router_aux_loss_coef=0.0),
        )
        updates.append(_one_step_update(model, rows, batch_size, ga, tmp_path))
    _assert_same_updates(updates[1], updates[0])


def test_encoder_gradients_with_accumulation_equal_one_big_batch(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    rows = _rows(8, 64, seed=2, encoder=True)
    updates = []
    for batch_size, ga in ((8, 1), (2, 4)):
        torch.manual_seed(0)
        cfg = BertConfig(
            vocab_size=64,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=48,
            max_position_embeddings=32,
            num_labels=6,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        model = get_peft_model(
            BertForSequenceClassification(cfg),
            FourierMoEConfig(
                target_modules=["query", "value"],
                n_frequency=8,
                router_aux_loss_coef=0.0,
                task_type="SEQ_CLS",
                modules_to_save=["classifier"],
            ),
        )
        updates.append(_one_step_update(model, rows, batch_size, ga, tmp_path))
    _assert_same_updates(updates[1], updates[0])

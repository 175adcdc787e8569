"""Less work per causal-LM step: LM-head logits only at the labelled (answer) positions, and training
batches grouped by length; the loss and the updates are those of the full-logits loss."""

import torch
from peft import get_peft_model
from transformers import TrainingArguments

import spectral_moe  # noqa: F401
from spectral_moe import FourierMoEConfig
from spectral_moe.data.features import ListDataset, PadCollator
from spectral_moe.training.trainer import (
    SpectralTrainer,
    answer_logit_mask,
    length_grouped_order,
    supports_answer_logits,
)
from tests.helpers import tiny_gpt2, tiny_llama


def _rows(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        length = int(torch.randint(5, 14, (1,), generator=g))
        ids = torch.randint(3, 64, (length,), generator=g).tolist()
        n_answer = 1 + i % 4  # the loss on the last few tokens only, of different counts per row
        rows.append({"input_ids": ids, "labels": [-100] * (length - n_answer) + ids[-n_answer:]})
    return rows


def _model():
    config = FourierMoEConfig(
        target_modules=["q_proj", "v_proj"], n_frequency=8, router_aux_loss_coef=0.5, router_z_loss_coef=0.1
    )
    return get_peft_model(tiny_llama(), config)


def _args(tmp_path, batch_size=4, grad_accum=1, steps=2):
    return TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        max_steps=steps,
        learning_rate=0.05,
        lr_scheduler_type="constant",
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )


def test_mask_marks_the_positions_that_predict_a_label():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, -100, -100, -100]])
    keep = answer_logit_mask(labels)
    assert keep.tolist() == [[False, True, True, False, False], [True, False, False, False, False]]
    assert labels[:, 1:][keep[:, :-1]].tolist() == [5, 6, 7]


def test_models_that_take_a_logit_mask_and_one_that_does_not():
    assert supports_answer_logits(_model()) and supports_answer_logits(tiny_gpt2())

    class OldLM(torch.nn.Module):  # no logits_to_keep: the full-logits loss
        def forward(self, input_ids=None, labels=None):
            pass

    assert not supports_answer_logits(OldLM())


def test_loss_equals_the_full_logits_loss_and_keeps_the_router_loss(tmp_path):
    rows = _rows(6)
    batch = PadCollator(0)(rows)
    for steps, n_items in ((1, None), (1, torch.tensor(15)), (3, torch.tensor(40))):
        losses, grads = [], []
        for answer_logits in (False, True):
            model = _model()
            model.train()
            trainer = SpectralTrainer(
                model=model, args=_args(tmp_path, grad_accum=steps), answer_logits=answer_logits
            )
            trainer.current_gradient_accumulation_steps = steps
            seen = []
            head = model.get_base_model().lm_head
            handle = head.register_forward_hook(lambda m, i, o, seen=seen: seen.append(i[0].shape))
            loss = trainer.compute_loss(model, batch, num_items_in_batch=n_items)
            handle.remove()
            loss.backward()
            losses.append(loss.detach())
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
            if answer_logits:  # the LM head saw only the labelled positions
                assert seen[0][:-1] == ((batch["labels"][:, 1:] != -100).sum(),)
            else:
                assert seen[0][:2] == batch["input_ids"].shape
        aux = model.get_router_aux_loss(weighted=True)
        assert float(aux.detach()) > 1e-3  # the router loss is part of both
        assert torch.allclose(losses[0], losses[1], rtol=1e-5, atol=1e-6), (losses, steps, n_items)
        for name, g in grads[0].items():
            assert torch.allclose(g, grads[1][name], rtol=1e-4, atol=1e-6), name


def test_training_with_and_without_accumulation_matches_the_full_logits_run(tmp_path):
    rows = _rows(16, seed=3)
    for batch_size, grad_accum in ((4, 1), (2, 2)):
        runs = []
        for answer_logits in (False, True):
            model = _model()
            trainer = SpectralTrainer(
                model=model,
                args=_args(tmp_path / f"{grad_accum}{answer_logits}", batch_size, grad_accum, steps=3),
                train_dataset=ListDataset(rows),
                data_collator=PadCollator(0),
                answer_logits=answer_logits,
                group_by_length=True,
            )
            trainer.train()
            losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
            params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            runs.append((losses, params))
        (loss_a, params_a), (loss_b, params_b) = runs
        assert len(loss_a) == 3
        assert torch.allclose(torch.tensor(loss_a), torch.tensor(loss_b), rtol=1e-5, atol=1e-6)
        for name in params_a:
            assert torch.allclose(params_a[name], params_b[name], rtol=1e-4, atol=1e-6), name


def test_length_grouped_order_is_a_seeded_permutation_with_less_padding():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 200, (400,), generator=g).tolist()
    order = length_grouped_order(lengths, batch_size=8, seed=0)
    assert sorted(order) == list(range(400))
    assert order == length_grouped_order(lengths, batch_size=8, seed=0)
    assert order != length_grouped_order(lengths, batch_size=8, seed=1)

    def padded(idx):
        return sum(8 * max(lengths[i] for i in idx[s : s + 8]) for s in range(0, len(idx), 8))

    shuffled = torch.randperm(400, generator=torch.Generator().manual_seed(0)).tolist()
    assert padded(order) < 0.7 * padded(shuffled)


def test_trainer_uses_the_grouped_order(tmp_path):
    rows = _rows(16, seed=4)
    trainer = SpectralTrainer(
        model=_model(),
        args=_args(tmp_path),
        train_dataset=ListDataset(rows),
        data_collator=PadCollator(0),
        group_by_length=True,
    )
    sampler = trainer._get_train_sampler()
    assert list(sampler) == length_grouped_order([len(r["input_ids"]) for r in rows], 4, seed=0)

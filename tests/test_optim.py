import math

import pytest
import torch
from peft import get_peft_model
from transformers import TrainingArguments, get_cosine_schedule_with_warmup

import spectral_moe  # noqa: F401
from spectral_moe import FourierMoEConfig, FrameConfig, create_optimizer
from spectral_moe.spectral.frame import default_order_lr
from spectral_moe.training.optim import CombinedOptimizer, parameter_groups
from tests.helpers import tiny_llama


def test_fouriermoe_groups_get_their_own_learning_rates():
    model = get_peft_model(tiny_llama(), FourierMoEConfig(target_modules=["q_proj"], n_frequency=8))
    opt = create_optimizer(model, lr=1e-3, spectrum_lr=0.1, router_lr=1e-2, weight_decay=0.1)
    assert isinstance(opt, torch.optim.AdamW)
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"spectrum", "router"}
    assert groups["spectrum"]["lr"] == 0.1 and groups["spectrum"]["weight_decay"] == 0.0
    assert groups["router"]["lr"] == 1e-2
    n_spec = sum(p.numel() for p in groups["spectrum"]["params"])
    assert n_spec == 2 * 2 * 8 * 8  # two layers × (real + imag) × 8 experts × 8 coefficients


def test_frame_orders_live_in_their_own_optimizer():
    model = get_peft_model(tiny_llama(), FrameConfig(target_modules=["q_proj", "v_proj"], r=2))
    opt = create_optimizer(model, lr=1e-3, order_lr=0.5, order_optimizer="adamw", weight_decay=0.1)
    assert isinstance(opt, CombinedOptimizer)
    main, orders = opt.optimizers
    assert isinstance(main, torch.optim.AdamW) and isinstance(orders, torch.optim.AdamW)
    assert [g["name"] for g in orders.param_groups] == ["orders"]
    assert orders.param_groups[0]["weight_decay"] == 0.0 and orders.param_groups[0]["lr"] == 0.5
    assert {g["name"] for g in main.param_groups} == {"router", "decay"}
    assert [g["name"] for g in opt.param_groups] == ["router", "decay", "orders"]
    by_role = parameter_groups(model)
    assert len(by_role["orders"]) == 4 and all(".frame_order." in n for n, _ in by_role["orders"])


def test_scheduler_drives_both_optimizers_and_state_round_trips():
    model = get_peft_model(tiny_llama(), FrameConfig(target_modules=["q_proj"], r=2))
    opt = create_optimizer(model, lr=1e-3, order_lr=0.5)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=10)
    ids = torch.randint(0, 64, (2, 8))
    for _ in range(4):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    factor = sched.lr_lambdas[0](4)
    assert opt.optimizers[1].param_groups[0]["lr"] == pytest.approx(0.5 * factor)
    assert opt.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-3 * factor)
    state = opt.state_dict()
    fresh = create_optimizer(model, lr=1e-3, order_lr=0.5)
    fresh.load_state_dict(state)
    for a, b in zip(fresh.optimizers, opt.optimizers):
        sa, sb = a.state_dict()["state"], b.state_dict()["state"]
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"])


def test_order_lr_defaults_to_each_layers_measured_rate():
    """No order_lr: one "orders" group per (transform, width) at spectral.frame.default_order_lr."""
    model = get_peft_model(tiny_llama(), FrameConfig(target_modules=["q_proj", "up_proj"], r=2))
    model.add_adapter(
        "h", FrameConfig(target_modules=["q_proj", "up_proj"], r=2, transform="hermite", learn_order=True)
    )
    for n, p in model.named_parameters():
        if ".frame_order." in n:
            p.requires_grad_(True)
    opt = create_optimizer(model, lr=1e-3)
    rates = {}
    for module in model.modules():
        if hasattr(module, "frame_order"):
            for adapter, p in module.frame_order.items():
                rates[id(p)] = default_order_lr(
                    module.frame_config[adapter].transform, max(module.in_features, module.out_features)
                )
    groups = [g for g in opt.param_groups if g["name"] == "orders"]
    assert sorted(g["lr"] for g in groups) == sorted(set(rates.values()))
    assert len(groups) == 3  # weighted (width-free), hermite at q_proj's and at up_proj's width
    for g in groups:
        assert all(rates[id(p)] == g["lr"] for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(rates) == 8


def test_orders_are_outside_the_gradient_clip():
    """create_optimizer(max_grad_norm=...) clips the other gradients only; SpectralTrainer's clip too."""
    from spectral_moe.training.trainer import SpectralTrainer

    model = get_peft_model(tiny_llama(), FrameConfig(target_modules=["q_proj"], r=2))
    opt = create_optimizer(model, lr=0.0, max_grad_norm=1e-3)
    orders = [p for n, p in model.named_parameters() if ".frame_order." in n]
    others = [p for n, p in model.named_parameters() if p.requires_grad and ".frame_order." not in n]
    for p in orders + others:
        p.grad = torch.full_like(p, 5.0)
    opt.step()
    assert all(torch.equal(p.grad, torch.full_like(p, 5.0)) for p in orders)
    assert torch.nn.utils.get_total_norm([p.grad for p in others]) == pytest.approx(1e-3, rel=1e-4)

    args = TrainingArguments(output_dir="/tmp/unused", max_grad_norm=1e-3, report_to=[], use_cpu=True)
    trainer = SpectralTrainer(model=model, args=args, optimizers=(opt, None))
    for p in orders + others:
        p.grad = torch.full_like(p, 5.0)
    norm = trainer._clip_grad_norm(model)
    assert all(torch.equal(p.grad, torch.full_like(p, 5.0)) for p in orders)
    assert torch.nn.utils.get_total_norm([p.grad for p in others]) == pytest.approx(1e-3, rel=1e-4)
    assert float(norm) == pytest.approx(5.0 * math.sqrt(sum(p.numel() for p in others)), rel=1e-4)


def test_errors():
    model = get_peft_model(tiny_llama(), FrameConfig(target_modules=["q_proj"], r=2))
    with pytest.raises(ValueError, match="max_grad_norm"):
        create_optimizer(model, lr=1e-3, max_grad_norm=-1.0)
    with pytest.raises(ValueError, match="order_optimizer"):
        create_optimizer(model, lr=1e-3, order_lr=0.1, order_optimizer="lbfgs")
    with pytest.raises(ValueError, match="spectrum_lr"):
        create_optimizer(model, lr=1e-3, order_lr=0.1, spectrum_lr=-1.0)

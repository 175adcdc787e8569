"""training/run.py's router logging (train_log.jsonl, report_to scalars) covers FlyLoRA and HMoRA (#16)."""

import math

import pytest
import torch
from peft import get_peft_model

from spectral_moe.training.trainer import router_scalars, router_snapshot
from spectral_moe.tuners.flylora import FlyLoraConfig
from spectral_moe.tuners.hmora import HMoRAConfig
from tests.helpers import VOCAB, tiny_llama

LAYERS = [f"model.layers.{i}.self_attn.{m}" for i in range(5) for m in ("q_proj", "v_proj")]


def _forward(model):
    ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, attention_mask=torch.ones_like(ids))


def test_flylora_rank_activation_is_logged_per_layer():
    model = get_peft_model(
        tiny_llama(num_hidden_layers=5), FlyLoraConfig(target_modules=["q_proj", "v_proj"], r=4, top_k=2)
    )
    _forward(model.train())
    snap = router_snapshot(model)
    assert sorted(snap["router_load"]) == sorted(LAYERS) and "mixing_weights" not in snap
    for stats in snap["router_load"].values():
        assert len(stats["dispatch_fraction"]) == 4 and sum(stats["dispatch_fraction"]) == pytest.approx(
            1, abs=1e-4
        )
    scalars = router_scalars(model)
    assert sum(scalars[f"router_load/expert_{z}"] for z in range(4)) == pytest.approx(1, abs=1e-4)


def test_hmora_router_load_and_mixing_weights_are_logged():
    config = HMoRAConfig(target_modules=["q_proj", "v_proj"], r=2, num_experts=4, task_token_id=3)
    model = get_peft_model(tiny_llama(num_hidden_layers=5), config)
    _forward(model.train())
    snap = router_snapshot(model)
    assert sorted(snap["router_load"]) == sorted(LAYERS)
    for stats in snap["router_load"].values():
        assert len(stats["dispatch_fraction"]) == 4 and sum(stats["dispatch_fraction"]) == pytest.approx(
            1, abs=1e-4
        )
    # layers 1-3 of 0..4 are hybrid (σ(2(2l/4 − 1)) within [0.2, 0.8]); α_l = σ(θ_l) at initialisation
    hybrid = {name: 1 / (1 + math.exp(-2 * (2 * int(name.split(".")[2]) / 4 - 1))) for name in LAYERS[2:8]}
    assert snap["mixing_weights"] == pytest.approx(hybrid, abs=1e-5)
    scalars = router_scalars(model)
    assert scalars["mixing_weight/mean"] == pytest.approx(sum(hybrid.values()) / 6, abs=1e-5)
    assert scalars["router_aux_loss"] >= 0 and "router_load/expert_3" in scalars

"""Router loss statistics in evaluation: deferred until read, and then the same as training computes."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model

from spectral_moe.training.methods import build_peft_config
from spectral_moe.tuners import moe_common
from tests.helpers import tiny_llama

ROUTED = {
    "fouriermoe": {"n_frequency": 8, "num_experts": 4},
    "frame": {"num_experts": 4, "r": 2},
    "moelora": {"num_experts": 4, "r": 2},
}


@pytest.mark.parametrize("method", sorted(ROUTED))
def test_eval_forward_defers_router_loss_stats_until_read(method, monkeypatch):
    torch.manual_seed(0)
    config = build_peft_config(
        method, ["q_proj", "v_proj"], "causal_lm", init_weights=False, **ROUTED[method]
    )
    model = get_peft_model(tiny_llama(), config)
    ids = torch.randint(0, 64, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0

    model.train()
    model(input_ids=ids, attention_mask=mask)
    eager = model.base_model.get_router_aux_loss(weighted=True).detach()

    calls = []
    real = moe_common.router_loss_stats
    monkeypatch.setattr(moe_common, "router_loss_stats", lambda *a, **k: calls.append(1) or real(*a, **k))
    model.eval()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    assert calls == []  # a forward in eval mode (a decoded token) computes no loss statistics
    deferred = model.base_model.get_router_aux_loss(weighted=True)
    assert len(calls) == 4  # q_proj and v_proj of two layers, computed when read
    assert not deferred.requires_grad
    torch.testing.assert_close(deferred, eager, rtol=1e-6, atol=1e-7)

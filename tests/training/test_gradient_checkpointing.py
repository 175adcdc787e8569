"""Gradient checkpointing recomputes the adapted layers in backward: gradients must not change."""

import pytest
import torch
from peft import get_peft_model

import spectral_moe  # noqa: F401
from spectral_moe import FourierMoEConfig, FrameConfig
from tests.helpers import tiny_llama


@pytest.mark.parametrize(
    "config",
    [
        FourierMoEConfig(target_modules=["q_proj", "v_proj", "down_proj"], n_frequency=8, num_experts=4),
        FrameConfig(
            target_modules=["q_proj", "v_proj", "down_proj"], r=2, num_experts=4, transform="hermite"
        ),
    ],
    ids=["fouriermoe", "frame"],
)
def test_gradient_checkpointing_gives_the_same_gradients(config):
    """Non-reentrant checkpointing: every gradient, router aux loss included, is unchanged."""
    grads = _grads(config, reentrant=False)
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-5), n


def test_reentrant_checkpointing_warns_that_the_aux_loss_has_no_gradient():
    config = FourierMoEConfig(target_modules=["q_proj", "v_proj"], n_frequency=8, num_experts=4)
    with pytest.warns(UserWarning, match="use_reentrant"):
        _grads(config, reentrant=True)
    # without the aux loss the reentrant gradients are the plain ones
    config = FourierMoEConfig(
        target_modules=["q_proj", "v_proj"], n_frequency=8, num_experts=4, router_aux_loss_coef=0.0
    )
    grads = _grads(config, reentrant=True)
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-5), n


def _grads(config, reentrant):
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    grads = []
    for checkpointing in (False, True):
        model = get_peft_model(tiny_llama(seed=0), config)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if p.requires_grad:
                    p.copy_(
                        torch.randn(p.shape, generator=torch.Generator().manual_seed(hash(n) % 2**31)) * 0.1
                    )
        if checkpointing:
            model.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": reentrant}
            )
            model.enable_input_require_grads()
        model.train()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    return grads

"""tuners/introspection.py: the parameter roles tuner layers declare, and the public accessors other
folders read (the optimizer groups by declared role, never by attribute-name patterns)."""

import pytest
import torch
from peft import get_peft_model
from torch import nn

from spectral_moe import FourierMoEConfig, FourierMoELayer, FrameConfig
from spectral_moe.training.optim import create_optimizer, order_parameters, parameter_groups
from spectral_moe.tuners.flylora import FlyLoraLayer
from spectral_moe.tuners.frame import FrameLayer
from spectral_moe.tuners.hmora import HMoRALayer
from spectral_moe.tuners.introspection import PARAMETER_ROLES, parameter_roles, role_parameters, routed_layers
from tests.helpers import tiny_llama

LAYERS = (FourierMoELayer, FrameLayer, FlyLoraLayer, HMoRALayer)


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_every_tuner_layer_declares_valid_roles_of_its_own_attributes(cls):
    roles = cls.parameter_roles
    assert set(roles.values()) <= set(PARAMETER_ROLES)
    assert set(roles) <= set(cls.adapter_layer_names)


def test_groups_follow_declared_roles_not_names():
    class Gated(nn.Module):
        # ``gate`` holds no "router" in its name, ``frame_router_copy`` does: only the declaration counts
        parameter_roles = {"gate": "router", "mix": "spectrum"}

        def __init__(self):
            super().__init__()
            self.gate = nn.ModuleDict({"default": nn.Linear(4, 2)})
            self.mix = nn.ParameterDict({"default": nn.Parameter(torch.zeros(3))})
            self.frame_router_copy = nn.Linear(4, 4)
            self.fouriermoe_spectrum_like = nn.Parameter(torch.zeros(2, 2))

    model = Gated()
    groups = {k: sorted(n for n, _ in v) for k, v in parameter_groups(model).items()}
    assert groups["router"] == ["gate.default.bias", "gate.default.weight"]
    assert groups["spectrum"] == ["mix.default"]
    assert groups["decay"] == ["fouriermoe_spectrum_like", "frame_router_copy.weight"]
    assert groups["no_decay"] == ["frame_router_copy.bias"]
    assert set(parameter_roles(model).values()) == {"router", "spectrum"}


def test_frame_orders_are_the_declared_orders_with_their_layer_and_adapter():
    model = get_peft_model(tiny_llama(), FrameConfig(target_modules=["q_proj"], num_experts=4, top_k=2, r=2))
    found = role_parameters(model, "orders")
    layers = [m for m in model.modules() if isinstance(m, FrameLayer)]
    assert [layer for layer, _, _ in found] == layers
    assert all(adapter == "default" and p is layer.frame_order["default"] for layer, adapter, p in found)
    assert [id(p) for p in order_parameters(model)] == [id(p) for _, _, p in found]
    opt = create_optimizer(model, lr=1e-3)  # orders in their own optimizer at each layer's default rate
    assert {g["name"] for g in opt.param_groups} >= {"orders", "router", "decay"}
    with pytest.raises(ValueError, match="role must be one of"):
        role_parameters(model, "order")


def test_fouriermoe_coefficients_accessor():
    config = FourierMoEConfig(target_modules=["q_proj"], num_experts=4, top_k=2, n_frequency=8)
    model = get_peft_model(tiny_llama(), config)
    name, layer = routed_layers(model)[0]
    assert name.endswith("q_proj") and isinstance(layer, FourierMoELayer)
    real, imag = layer.coefficients("default")
    assert real.shape == imag.shape == (4, 8)
    assert (
        real is layer.fouriermoe_spectrum_real["default"]
        and imag is layer.fouriermoe_spectrum_imag["default"]
    )
    real_only = get_peft_model(
        tiny_llama(), FourierMoEConfig(**{**config.to_dict(), "complex_coefficients": False})
    )
    assert routed_layers(real_only)[0][1].coefficients("default")[1] is None

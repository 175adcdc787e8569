"""What other folders may ask of an adapted model: parameter roles and the layers with router statistics.

Parameter roles. Every tuner layer class declares ``parameter_roles``, a mapping from an adapter attribute
(a ``ParameterDict``/``ModuleDict`` keyed by adapter name) to the optimizer role of every parameter in it:

==========  ===========================================================  ================================
role        meaning                                                      declared by
==========  ===========================================================  ================================
``orders``  FRAME's fractional orders ``a_z`` (own optimizer, no decay)  ``FrameLayer.frame_order``
``spectrum`` spectral coefficients (own learning rate, no decay)         ``FourierMoELayer`` real / imag
``router``  router weights and biases (own learning rate, no decay)      FourierMoE, FRAME, HMoRA routers
==========  ===========================================================  ================================

A parameter no layer declares takes the default role of :mod:`spectral_moe.training.optim` (weight decay
for ≥ 2-D tensors, none for the rest). A new tuner declares its own attributes; nothing is matched by
name. :func:`parameter_roles` reads the declarations of a model, :func:`role_parameters` lists one role's
parameters with the layer and adapter they belong to (FRAME's default order learning rate is per layer).

Router statistics. :data:`ROUTED_LAYER_TYPES` are the layers that record ``router_stats[adapter]``
(``"dispatch_fraction"`` and ``"mean_prob"`` per expert; FlyLoRA per rank) on every forward.
"""

from __future__ import annotations

from torch import nn

from .flylora import FlyLoraLayer
from .hmora import HMoRALayer
from .moe_common import RoutedLayerMixin

PARAMETER_ROLES = ("orders", "spectrum", "router")

# Layers with per-forward router statistics (``router_stats[adapter]["dispatch_fraction"]``): the routed
# MoE layers, FlyLoRA (its rank activation frequency c_i / Σ_j c_j over the r ranks) and HMoRA.
ROUTED_LAYER_TYPES = (RoutedLayerMixin, FlyLoraLayer, HMoRALayer)


def role_parameters(model: nn.Module, role: str) -> list[tuple[nn.Module, str, nn.Parameter]]:
    """``(layer, adapter name, parameter)`` of every parameter whose layer declares ``role`` for it, in
    module order (trainable or not)."""
    if role not in PARAMETER_ROLES:
        raise ValueError(f"role must be one of {list(PARAMETER_ROLES)}, got {role!r}")
    out = []
    for module in model.modules():
        for attr, declared in getattr(type(module), "parameter_roles", {}).items():
            container = getattr(module, attr, None)
            if declared != role or not isinstance(container, (nn.ParameterDict, nn.ModuleDict)):
                continue
            for adapter, item in container.items():
                params = [item] if isinstance(item, nn.Parameter) else list(item.parameters())
                out.extend((module, adapter, p) for p in params)
    return out


def parameter_roles(model: nn.Module) -> dict[int, str]:
    """``id(parameter) → role`` for every parameter some layer of ``model`` declares a role for."""
    return {id(p): role for role in PARAMETER_ROLES for _, _, p in role_parameters(model, role)}


def routed_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every layer with router statistics (:data:`ROUTED_LAYER_TYPES`), in module order;
    names without peft's ``base_model.model.`` prefix."""
    return [
        (n.removeprefix("base_model.model."), m)
        for n, m in model.named_modules()
        if isinstance(m, ROUTED_LAYER_TYPES)
    ]

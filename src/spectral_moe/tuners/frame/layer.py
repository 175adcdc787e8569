"""FRAME tuner layer: top-k routed LoRA experts with learnable fractional-Fourier orders (DESIGN.md §4).

For an input ``x [..., d_in]`` and each active adapter::

    g = router_weights(x)                                          [..., Z]
    y = W0 x + Σ_z g_z · (α/r) · Re(𝓕^{−a_z} B_z A_z 𝓕^{a_z}) dropout(x)
    a_z = frame_order[z]      (learned: the order itself, float32)   or the fixed buffer

The transforms act on the factors once per forward (``spectral.frame.transformed_factors``), then
every token sees a real rank-2r LoRA; with all orders fixed at 0 (MoE-LoRA) no transform is
computed and the experts are rank-r LoRAs.

Precision: the orders (and the router) stay float32 when the model is cast to bf16/fp16
(``float32_adapter_attrs``): a bf16 order is off by up to ~1e-3, which moves a 576-wide hermite expert
by ~40 %. The transforms run in float32 (complex64) from the bf16 factors; the transformed factors are
cast to the factors' dtype for the per-token matmuls.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from peft.tuners._buffer_dict import BufferDict
from torch import nn

from ...precision import active_autocast_dtype
from ...spectral.frame import (
    apply_lowrank_experts,
    apply_routed_lowrank_experts,
    default_order_lr,
    dense_delta_weight,
    routed_is_cheaper,
    routed_path_available,
    transformed_factors,
)
from ..moe_common import RoutedLayerMixin, linear_features
from .config import FrameConfig


def initial_orders(config: FrameConfig) -> torch.Tensor:
    """``[Z]`` initial orders: ``"spread"`` → ``z / (Z − 1)`` (0 and 1 included; ``Z = 1`` → 0.5), else
    ``order_init`` for every expert."""
    z = config.num_experts
    if config.order_init == "spread":
        if z == 1:
            return torch.full((1,), 0.5, dtype=torch.float64)
        return torch.arange(z, dtype=torch.float64) / (z - 1)
    return torch.full((z,), float(config.order_init), dtype=torch.float64)


class FrameLayer(RoutedLayerMixin):
    """State of FRAME on one layer; parameters are keyed by adapter name.

    Per adapter: ``frame_A[a]`` ``[Z, r, d_in]``, ``frame_B[a]`` ``[Z, d_out, r]``, the router
    ``frame_router[a]``, and either the parameter ``frame_order[a]`` ``[Z]`` (learned orders, the orders
    themselves) or the persistent buffer ``frame_order_fixed[a]`` ``[Z]``; both float32 at any model dtype.
    (Earlier versions stored learned orders as logits ``frame_order_logit``; such checkpoints fail to
    load with a "missing tensor(s): ...frame_order..." error instead of loading wrong orders.)
    """

    adapter_layer_names = ("frame_A", "frame_B", "frame_order", "frame_router")
    # the optimizer role of each adapter attribute's parameters (spectral_moe.training.optim; PARAMETER_ROLES);
    # A and B take the default role (weight decay for >= 2-D tensors)
    parameter_roles = {"frame_order": "orders", "frame_router": "router"}
    other_param_names = ("frame_order_fixed", "frame_config", "frame_dropout")
    router_attr = "frame_router"
    config_attr = "frame_config"
    float32_adapter_attrs = ("frame_order", "frame_order_fixed")

    def __init__(self, base_layer: nn.Module, **kwargs: Any) -> None:
        self.base_layer = base_layer
        self.frame_A = nn.ParameterDict({})
        self.frame_B = nn.ParameterDict({})
        self.frame_order = nn.ParameterDict({})
        self.frame_order_fixed = BufferDict({}, persistent=True)
        self.frame_router = nn.ModuleDict({})
        self.frame_dropout = nn.ModuleDict({})
        self.frame_config: dict[str, FrameConfig] = {}
        self._disable_adapters = False
        self.merged_adapters = []
        self.kwargs = kwargs
        self.in_features, self.out_features = linear_features(self.get_base_layer())
        # per adapter: (parameter versions, (A', B')) of the last forward without autograd (inference)
        self._factor_cache: dict[str, tuple[tuple, tuple[torch.Tensor, torch.Tensor]]] = {}
        self._init_routing_state()

    def update_layer(self, adapter_name: str, config: FrameConfig, **kwargs: Any) -> None:
        """Create adapter ``adapter_name``: Kaiming A, zero B, orders, router."""
        z, r = config.num_experts, config.r
        self.frame_config[adapter_name] = config
        self._factor_cache.pop(adapter_name, None)
        lora_a = torch.empty(z, r, self.in_features)
        for i in range(z):  # init only: the same Kaiming-uniform bound as peft LoRA's A
            nn.init.kaiming_uniform_(lora_a[i], a=math.sqrt(5))
        self.frame_A[adapter_name] = nn.Parameter(lora_a)
        lora_b = torch.zeros(z, self.out_features, r)
        if not config.init_lora_weights:
            nn.init.normal_(lora_b, std=1.0 / r)
        self.frame_B[adapter_name] = nn.Parameter(lora_b)
        orders = initial_orders(config)
        if config.learn_order:
            self.frame_order[adapter_name] = nn.Parameter(orders.float())
        else:
            self.frame_order_fixed[adapter_name] = orders.float()
        self.frame_dropout[adapter_name] = (
            nn.Dropout(config.lora_dropout) if config.lora_dropout else nn.Identity()
        )
        self._create_router(adapter_name, config)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        cache = self.__dict__.setdefault("_spatial_only_cache", {})
        cache.pop(adapter_name, None)
        if not config.learn_order:  # the host copy of the orders: no device read later
            cache[adapter_name] = (self.frame_order_fixed[adapter_name]._version, bool((orders == 0).all()))
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def frame_orders(self, adapter_name: str) -> torch.Tensor:
        """Current orders ``[num_experts]`` (float32; the parameter itself when learned)."""
        if adapter_name in self.frame_order:
            return self.frame_order[adapter_name]
        return self.frame_order_fixed[adapter_name]

    def default_order_lr(self, adapter_name: str) -> float:
        """The order learning rate ``create_optimizer`` uses by default for this adapter's orders:
        ``spectral.frame.default_order_lr(transform, max(d_in, d_out))`` (results/frame_orders.md)."""
        transform = self.frame_config[adapter_name].transform
        return default_order_lr(transform, max(self.in_features, self.out_features))

    def _scale(self, adapter_name: str) -> float:
        config = self.frame_config[adapter_name]
        return config.lora_alpha / config.r

    def _spatial_only(self, adapter_name: str) -> bool:
        """All orders fixed at exactly 0: plain LoRA experts, no transform needed.

        Known from the initial orders on the host when the adapter is created; read back from the device only
        after an in-place write to the fixed orders (their version counter, e.g. ``load_state_dict``), never
        once per forward: no host sync on the forward path."""
        if adapter_name not in self.frame_order_fixed:
            return False
        orders = self.frame_order_fixed[adapter_name]
        key = orders._version  # a device move makes a fresh tensor (version 0) with the same values
        cache = self.__dict__.setdefault("_spatial_only_cache", {})
        cached = cache.get(adapter_name)
        if cached is None or cached[0] != key:
            cached = (key, bool((orders == 0).all()))
            cache[adapter_name] = cached
        return cached[1]

    def effective_factors(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Real factors the tokens see: ``A' [Z, k, d_in]``, ``B' [Z, d_out, k]`` (k = r or 2r).

        The transforms run once per forward on the factors (never per token). Without autograd
        (evaluation, generation) the transformed factors are cached and reused until ``A``, ``B`` or the
        orders change (tracked by their version counters), so inference costs a rank-2r MoE-LoRA.
        """
        lora_a, lora_b = self.frame_A[adapter_name], self.frame_B[adapter_name]
        if self._spatial_only(adapter_name):
            return lora_a, lora_b
        method = self.frame_config[adapter_name].transform
        order_source = self.frame_orders(adapter_name)
        if torch.is_grad_enabled():
            self._factor_cache.pop(adapter_name, None)
            return transformed_factors(lora_a, lora_b, self.frame_orders(adapter_name), method)
        sources = (lora_a, lora_b, order_source)
        key = (torch.is_inference_mode_enabled(),) + tuple(
            (id(t), t.data_ptr(), t._version, t.device, t.dtype) for t in sources
        )
        cached = self._factor_cache.get(adapter_name)
        if cached is not None and cached[0] == key:
            return cached[1]
        factors = transformed_factors(lora_a, lora_b, self.frame_orders(adapter_name), method)
        self._factor_cache[adapter_name] = (key, factors)
        return factors

    def delta_weights(self, adapter_name: str) -> torch.Tensor:
        """All experts' dense ``ΔW_z`` ``[Z, out, in]`` from dense transform matrices (reference path)."""
        return dense_delta_weight(
            self.frame_A[adapter_name],
            self.frame_B[adapter_name],
            self.frame_orders(adapter_name),
            self.frame_config[adapter_name].transform,
            self._scale(adapter_name),
        )

    def get_delta_weight(self, adapter_name: str, expert: int = 0) -> torch.Tensor:
        """Dense real ``ΔW_z = (α/r)·Re(𝓕^{−a} B A 𝓕^{a})`` of one expert, ``[out_features, in_features]``."""
        num_experts = self.frame_config[adapter_name].num_experts
        if not 0 <= expert < num_experts:
            raise ValueError(f"expert must be in [0, {num_experts - 1}], got {expert}")
        sl = slice(expert, expert + 1)
        return dense_delta_weight(
            self.frame_A[adapter_name][sl],
            self.frame_B[adapter_name][sl],
            self.frame_orders(adapter_name)[sl],
            self.frame_config[adapter_name].transform,
            self._scale(adapter_name),
        )[0]

    def adapter_delta(
        self,
        adapter_name: str,
        x: torch.Tensor,
        gates: torch.Tensor,
        spectrum: Any = None,
        experts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``Σ_z gates[..., z] · ΔW_z dropout(x)`` through the transformed factors (``spectrum`` unused:
        FRAME transforms the factors, never the tokens; ``experts``: the router's top-k index, used by
        the routed path)."""
        lora_a, lora_b = self.effective_factors(adapter_name)
        x = self.frame_dropout[adapter_name](x)
        scale = self._scale(adapter_name)
        if self._routed_path(adapter_name, x, lora_a, lora_b):
            top_k = self.frame_config[adapter_name].top_k
            return apply_routed_lowrank_experts(x, lora_a, lora_b, gates, top_k, scale, experts)
        return apply_lowrank_experts(x, lora_a, lora_b, gates, scale)

    def _routed_path(
        self, adapter_name: str, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor
    ) -> bool:
        """``expert_mode``: ``"routed"`` where the grouped matmul can run; ``"auto"``: also the cost model
        ``routed_is_cheaper`` (fitted without autocast: under autocast all experts). Shapes only, no sync."""
        config = self.frame_config[adapter_name]
        if config.expert_mode == "all" or config.top_k >= config.num_experts:
            return False
        if config.expert_mode == "auto":  # the cost model first: it never probes a device it has no fit for
            device_type = x.device.type
            if active_autocast_dtype(device_type) is not None:
                return False
            num_experts, k, d_in = lora_a.shape
            tokens = x.numel() // d_in
            if not routed_is_cheaper(
                tokens, d_in, lora_b.shape[1], num_experts, k, config.top_k, device_type
            ):
                return False
        return routed_path_available(x, lora_a, lora_b)


class FrameLinear(nn.Module, FrameLayer):
    """FRAME around an ``nn.Linear`` or transformers ``Conv1D`` (``fan_in_fan_out=True``)."""

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: FrameConfig, **kwargs: Any) -> None:
        super().__init__()
        FrameLayer.__init__(self, base_layer, **kwargs)
        self.fan_in_fan_out = config.fan_in_fan_out
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.routed_forward(x, *args, **kwargs)

    def __repr__(self) -> str:
        return "frame." + super().__repr__()

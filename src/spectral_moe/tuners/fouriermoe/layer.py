"""FourierMoE tuner layer: routed experts of sparse Hermitian Fourier coefficients (DESIGN.md §3).

For an input ``x [..., d_in]`` and each active adapter::

    g = router_weights(x)                              [..., Z]   top-k gates (g ≡ 1 for one expert)
    y = W0 x + Σ_z g_z · ΔW_z x                        [..., d_out]
    ΔW_z = scaling · IDFT2(F_z),  F_z Hermitian        (spectral/fourier.py)

``forward_mode="fft"`` computes the sum by 1-D FFTs of the token (no dense ΔW);
``"dense"`` builds every ``ΔW_z`` and multiplies; ``"auto"`` picks per call by the cost model in
``spectral.cost_model.fft_is_cheaper``. Both paths are the same function (tested to 1e-10 in fp64).

Coefficients and router stay float32 when the model is cast to bf16/fp16 (``float32_adapter_attrs``);
both paths compute in float32 (FFTs have no half-precision kernel) and the routed forward casts the
update back to the activation dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from peft.tuners._buffer_dict import BufferDict
from torch import nn

from ...spectral import bands
from ...spectral.cost_model import fft_is_cheaper
from ...spectral.fourier import FftPlan, apply_dense, apply_fft, dense_delta_weight, fft_plan
from ..moe_common import RoutedLayerMixin, linear_features
from .config import FourierMoEConfig


class FourierMoELayer(RoutedLayerMixin):
    """State of FourierMoE on one layer; parameters are keyed by adapter name.

    Parameters per adapter: ``fouriermoe_spectrum_real[a]`` ``[Z, n]``, ``fouriermoe_spectrum_imag[a]``
    ``[Z, n]`` (complex coefficients only), ``fouriermoe_router[a]`` (``nn.Linear(features, Z)``; absent
    for ``num_experts == 1``), all float32 under half-precision casts.
    Positions ``fouriermoe_rows[a]``, ``fouriermoe_cols[a]`` ``[Z, n]`` are non-persistent buffers
    re-derived from the config's seed, so they never enter checkpoints.
    """

    adapter_layer_names = ("fouriermoe_spectrum_real", "fouriermoe_spectrum_imag", "fouriermoe_router")
    # the optimizer role of each adapter attribute's parameters (spectral_moe.training.optim; PARAMETER_ROLES)
    parameter_roles = {
        "fouriermoe_spectrum_real": "spectrum",
        "fouriermoe_spectrum_imag": "spectrum",
        "fouriermoe_router": "router",
    }
    other_param_names = ("fouriermoe_rows", "fouriermoe_cols", "fouriermoe_config")
    router_attr = "fouriermoe_router"
    float32_adapter_attrs = ("fouriermoe_spectrum_real", "fouriermoe_spectrum_imag")
    config_attr = "fouriermoe_config"

    def __init__(self, base_layer: nn.Module, **kwargs: Any) -> None:
        self.base_layer = base_layer
        self.fouriermoe_spectrum_real = nn.ParameterDict({})
        self.fouriermoe_spectrum_imag = nn.ParameterDict({})
        self.fouriermoe_router = nn.ModuleDict({})
        self.fouriermoe_rows = BufferDict({}, persistent=False)
        self.fouriermoe_cols = BufferDict({}, persistent=False)
        self.fouriermoe_config: dict[str, FourierMoEConfig] = {}
        self._disable_adapters = False
        self.merged_adapters = []
        self.kwargs = kwargs
        self.in_features, self.out_features = linear_features(self.get_base_layer())
        self._fft_plans: dict[str, FftPlan] = {}  # per adapter, built on first use (positions never change)
        self._init_routing_state()

    def update_layer(self, adapter_name: str, config: FourierMoEConfig, **kwargs: Any) -> None:
        """Create adapter ``adapter_name``: seeded positions, coefficients, router."""
        rows, cols = bands.sample_positions(
            self.out_features,
            self.in_features,
            config.num_experts,
            config.n_frequency,
            config.band_layout,
            config.random_loc_seed,
        )
        self.fouriermoe_config[adapter_name] = config
        self.fouriermoe_rows[adapter_name] = rows.clone()
        self.fouriermoe_cols[adapter_name] = cols.clone()
        self._fft_plans.pop(adapter_name, None)
        shape = (config.num_experts, config.n_frequency)
        init = torch.zeros if config.init_weights else torch.randn
        self.fouriermoe_spectrum_real[adapter_name] = nn.Parameter(init(shape))
        if config.complex_coefficients:
            self.fouriermoe_spectrum_imag[adapter_name] = nn.Parameter(init(shape))
        self._create_router(adapter_name, config)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def coefficients(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(real, imag)`` coefficients of every expert, each ``[Z, n]`` (``imag`` is ``None`` with
        ``complex_coefficients=False``): expert ``z``'s ``c_z = real[z] + i·imag[z]`` at its ``n``
        frequencies (the parameters themselves; detach before plotting)."""
        imag = (
            self.fouriermoe_spectrum_imag[adapter_name]
            if adapter_name in self.fouriermoe_spectrum_imag
            else None
        )
        return self.fouriermoe_spectrum_real[adapter_name], imag

    def delta_weights(self, adapter_name: str) -> torch.Tensor:
        """All experts' dense ``ΔW_z``, ``[Z, out_features, in_features]`` (reference path)."""
        real, imag = self.coefficients(adapter_name)
        return dense_delta_weight(
            real,
            imag,
            self.fouriermoe_rows[adapter_name],
            self.fouriermoe_cols[adapter_name],
            self.out_features,
            self.in_features,
            self.fouriermoe_config[adapter_name].scaling,
        )

    def get_delta_weight(self, adapter_name: str, expert: int = 0) -> torch.Tensor:
        """Dense real ``ΔW`` of one expert, ``[out_features, in_features]``, by the dense reference path."""
        num_experts = self.fouriermoe_config[adapter_name].num_experts
        if not 0 <= expert < num_experts:
            raise ValueError(f"expert must be in [0, {num_experts - 1}], got {expert}")
        real, imag = self.coefficients(adapter_name)
        sl = slice(expert, expert + 1)
        return dense_delta_weight(
            real[sl],
            None if imag is None else imag[sl],
            self.fouriermoe_rows[adapter_name][sl],
            self.fouriermoe_cols[adapter_name][sl],
            self.out_features,
            self.in_features,
            self.fouriermoe_config[adapter_name].scaling,
        )[0]

    def resolve_forward_mode(self, adapter_name: str, num_tokens: int) -> str:
        """``"fft"`` or ``"dense"``: the config's choice, or the cost model's for ``"auto"``."""
        config = self.fouriermoe_config[adapter_name]
        if config.forward_mode != "auto":
            return config.forward_mode
        cheaper = fft_is_cheaper(
            num_tokens,
            self.out_features,
            self.in_features,
            config.num_experts,
            config.n_frequency,
            config.top_k,
        )
        return "fft" if cheaper else "dense"

    def fft_plan(self, adapter_name: str) -> FftPlan:
        """The FFT path's index plan (``spectral.fourier.fft_plan``), built once per adapter and device."""
        rows = self.fouriermoe_rows[adapter_name]
        plan = self._fft_plans.get(adapter_name)
        if plan is None:
            plan = fft_plan(rows, self.fouriermoe_cols[adapter_name], self.out_features, self.in_features)
        plan = plan.to(rows.device)
        self._fft_plans[adapter_name] = plan
        return plan

    def adapter_delta(
        self,
        adapter_name: str,
        x: torch.Tensor,
        gates: torch.Tensor,
        spectrum: Callable[[], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``Σ_z gates[..., z] · ΔW_z x`` by the FFT or the dense path, in the FFT dtype.

        ``spectrum`` returns ``rfft(x)`` (computed once per forward and shared with the routers)."""
        mode = self.resolve_forward_mode(adapter_name, x.numel() // self.in_features)
        real, imag = self.coefficients(adapter_name)
        if mode == "dense":
            return apply_dense(x, self.delta_weights(adapter_name), gates)
        config = self.fouriermoe_config[adapter_name]
        return apply_fft(
            x,
            real,
            imag,
            self.fouriermoe_rows[adapter_name],
            self.fouriermoe_cols[adapter_name],
            gates,
            self.out_features,
            config.scaling,
            spectrum=spectrum() if spectrum is not None else None,
            top_k=config.top_k,
            plan=self.fft_plan(adapter_name),
        )


class FourierMoELinear(nn.Module, FourierMoELayer):
    """FourierMoE around an ``nn.Linear`` or transformers ``Conv1D`` (``fan_in_fan_out=True``)."""

    def __init__(
        self, base_layer: nn.Module, adapter_name: str, config: FourierMoEConfig, **kwargs: Any
    ) -> None:
        super().__init__()
        FourierMoELayer.__init__(self, base_layer, **kwargs)
        self.fan_in_fan_out = config.fan_in_fan_out
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.routed_forward(x, *args, **kwargs)

    def __repr__(self) -> str:
        return "fouriermoe." + super().__repr__()

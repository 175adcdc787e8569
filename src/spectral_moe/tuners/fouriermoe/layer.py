"""FourierMoE tuner layer: routed experts of sparse Hermitian Fourier coefficients (DESIGN.md §3).

For an input ``x [..., d_in]`` and each active adapter::

    g = router_weights(x)                              [..., Z]   top-k gates (g ≡ 1 for one expert)
    y = W0 x + Σ_z g_z · ΔW_z x                        [..., d_out]
    ΔW_z = scaling · IDFT2(F_z),  F_z Hermitian        (spectral/fourier.py)

``forward_mode="fft"`` computes the sum by 1-D FFTs of the token (no dense ΔW);
``"dense"`` builds every ``ΔW_z`` and multiplies; ``"auto"`` picks per call by the cost model in
``spectral.cost_model.fft_is_cheaper``, with the constants of the active precision
(``cost_model.precision_of``: bf16 under a bf16 autocast). Both paths are the same function (tested
to 1e-10 in fp64).

Inference reuse (``reuses_inference_state``: ``eval()`` and no grad, e.g. ``torch.inference_mode()``):
what depends only on the coefficients is kept between calls, per adapter: the FFT path's mixing
coefficients ``c''`` (``spectral.fourier.mixing_coefficients``; the plan is kept always) and, where
the cost model (with ``dense_cached=True``) prefers the dense path, the dense ``ΔW`` of every expert
in the dtype the matmul runs in (bf16 under a bf16 autocast). An entry is valid while its
coefficients are the same tensors at the same version (``data_ptr`` and ``_version``: an optimizer
step, ``load_state_dict`` or any in-place write bumps the version, a device move changes the
pointer) and is dropped by ``train()``, ``merge``/``unmerge`` and ``update_layer``; in training mode,
or with grad enabled, nothing is reused, so gradients always see the coefficients.

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

from ...precision import active_autocast_dtype
from ...spectral import bands
from ...spectral.cost_model import fft_is_cheaper, precision_of
from ...spectral.fourier import (
    FftPlan,
    apply_dense,
    apply_fft,
    dense_delta_weight,
    fft_dtype,
    fft_plan,
    mixing_coefficients,
)
from ..moe_common import RoutedLayerMixin, TransientState, linear_features
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
        # per adapter: what inference reuses between calls (module docstring); copies start empty
        self._inference_cache: TransientState = TransientState()
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
        self.clear_inference_cache()
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

    def resolve_forward_mode(
        self,
        adapter_name: str,
        num_tokens: int,
        precision: str | None = None,
        dense_cached: bool | None = None,
    ) -> str:
        """``"fft"`` or ``"dense"``: the config's choice, or the cost model's for ``"auto"``.

        ``precision``: the cost model's constants (default: ``cost_model.precision_of`` float32 inputs
        under the current autocast); ``dense_cached``: the dense ``ΔW`` would be reused (default:
        ``reuses_inference_state()``)."""
        config = self.fouriermoe_config[adapter_name]
        if config.forward_mode != "auto":
            return config.forward_mode
        if precision is None:
            precision = precision_of(torch.float32, self.fouriermoe_rows[adapter_name].device.type)
        if dense_cached is None:
            dense_cached = self.reuses_inference_state()
        cheaper = fft_is_cheaper(
            num_tokens,
            self.out_features,
            self.in_features,
            config.num_experts,
            config.n_frequency,
            config.top_k,
            precision=precision,
            dense_cached=dense_cached,
        )
        return "fft" if cheaper else "dense"

    def reuses_inference_state(self) -> bool:
        """True in ``eval()`` with grad disabled (``no_grad``/``inference_mode``): the forward reuses what
        depends only on the coefficients (module docstring). Never in training mode."""
        return not self.training and not torch.is_grad_enabled()

    def clear_inference_cache(self) -> None:
        """Drop every adapter's reused inference state (the next eval call rebuilds it)."""
        self._inference_cache.clear()

    def _coefficient_key(self, adapter_name: str, *extra: object) -> tuple:
        """Identity of the coefficients' current values: tensor, storage pointer, version, per part."""
        parts = []
        for t in self.coefficients(adapter_name):
            parts += [None, None, None] if t is None else [id(t), t.data_ptr(), t._version]
        return (*parts, self.fouriermoe_config[adapter_name].scaling, *extra)

    def _reused(self, adapter_name: str, what: str, key: tuple, build: Callable[[], torch.Tensor]):
        """``build()`` once per ``key`` (coefficient identity plus ``what`` depends on), kept per adapter."""
        entries = self._inference_cache.setdefault(adapter_name, {})
        hit = entries.get(what)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = build()
        entries[what] = (key, value)
        return value

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """``RoutedLayerMixin.merge``; drops the reused inference state first."""
        self.clear_inference_cache()
        super().merge(safe_merge=safe_merge, adapter_names=adapter_names)

    def unmerge(self) -> None:
        """``RoutedLayerMixin.unmerge``; drops the reused inference state first."""
        self.clear_inference_cache()
        super().unmerge()

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
        experts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``Σ_z gates[..., z] · ΔW_z x`` by the FFT or the dense path, in the FFT dtype.

        ``spectrum`` returns ``rfft(x)`` (computed once per forward and shared with the routers);
        ``experts`` is the router's top-k index (the FFT path's routed gather uses it).
        In inference (``reuses_inference_state``) ``c''`` or the dense ``ΔW`` are reused (module docstring)."""
        reuse = self.reuses_inference_state()
        precision = precision_of(x.dtype, x.device.type)
        mode = self.resolve_forward_mode(adapter_name, x.numel() // self.in_features, precision, reuse)
        real, imag = self.coefficients(adapter_name)
        config = self.fouriermoe_config[adapter_name]
        if mode == "dense":
            if not reuse:
                return apply_dense(x, self.delta_weights(adapter_name), gates)
            matmul_dtype = active_autocast_dtype(x.device.type) or fft_dtype(real.dtype)
            delta = self._reused(
                adapter_name,
                "dense",
                self._coefficient_key(adapter_name, matmul_dtype),
                lambda: self.delta_weights(adapter_name).to(matmul_dtype),
            )
            return apply_dense(x, delta, gates)
        plan = self.fft_plan(adapter_name)
        mixed = None
        if reuse:
            dtype = fft_dtype(x.dtype)
            mixed = self._reused(
                adapter_name,
                "mixed",
                self._coefficient_key(adapter_name, dtype, plan.in_index.device),
                lambda: mixing_coefficients(real, imag, plan, config.scaling, dtype),
            )
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
            plan=plan,
            mixed=mixed,
            experts=experts,
            fused=config.fused_kernels,
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

    def train(self, mode: bool = True) -> FourierMoELinear:
        """``nn.Module.train``; entering training mode drops the reused inference state."""
        if mode:
            self.clear_inference_cache()
        return super().train(mode)

    def __repr__(self) -> str:
        return "fouriermoe." + super().__repr__()

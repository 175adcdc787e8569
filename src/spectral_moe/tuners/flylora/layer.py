"""FlyLoRA tuner layer: frozen sparse random ``A``, rank-wise top-k, a load-balancing routing bias.

Formulas follow the authors' code (``gfyddha/FlyLoRA``): ``flylora.py`` (``FlyLoRALinear.__init__``:
``A`` with exactly ``p`` non-zeros per row from ``N(0, 1/r²)``; ``forward``: top-k mask, ``B (y ⊙ mask)``)
and the peft fork's ``peft/src/peft/tuners/lora/layer.py`` (``reset_lora_parameters`` "sparse",
``Linear.forward``: signed top-k of ``A x + d``, ``d ← d + u·sign(mean(c) − c)``). For ``x [..., d_in]``::

    y     = A dropout(x)                                 [..., r]     A frozen (a buffer, no gradient)
    S     = topk_k(y + d)  or  topk_k(|y + d|)           [..., k]     config.topk_score
    Δh    = (lora_alpha / r) · (y ⊙ 1_S) Bᵀ              [..., d_out]
    c_i   = Σ_tokens [i ∈ S_t]                           [r]          padding excluded; recorded in training

The bias update itself runs in the tuner (``FlyLoraModel``) after each training forward of the whole
model, on counts pooled over data-parallel ranks: ``d = u · n`` with ``n ∈ Z^r`` the integer sum of the
steps ``sign(Σ_j c_j − r·c_i)`` (= ``sign(mean(c) − c_i)``), so ``d`` is exact and survives any dtype cast.
The forward uses the value ``d`` had when the model's forward began, so a gradient-checkpointing
recomputation in the backward pass sees the same top-k as the forward.
"""

from __future__ import annotations

import warnings
import zlib
from typing import Any

import torch
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from ..moe_common import linear_features
from .config import FlyLoraConfig


def sparse_projection(r: int, in_features: int, nonzeros: int, seed: int) -> torch.Tensor:
    """``A [r, in_features]`` float32: each row has exactly ``nonzeros`` entries ``~ N(0, 1/r²)`` at
    distinct positions drawn by a CPU generator seeded with ``seed`` (the rest zero)."""
    g = torch.Generator().manual_seed(seed)
    positions = torch.rand(r, in_features, generator=g).argsort(dim=-1)[:, :nonzeros]  # [r, p] distinct
    values = torch.randn(r, nonzeros, generator=g, dtype=torch.float64) / r
    values = torch.where(values == 0, torch.full_like(values, 1.0 / r), values)  # exactly p non-zeros
    return torch.zeros(r, in_features).scatter(1, positions, values.float())


def projection_fingerprint(a: torch.Tensor) -> torch.Tensor:
    """int64 ``[2]`` checksum of ``A``: (crc32 of its non-zero pattern, round(1e6 · Σ|A|)) — stored in
    checkpoints so a re-derived ``A`` that differs (another torch RNG, another seed) is caught on load."""
    pattern = (a != 0).to(torch.uint8).cpu().numpy().tobytes()
    return torch.tensor([zlib.crc32(pattern), round(a.double().abs().sum().item() * 1e6)], dtype=torch.int64)


def layer_seed(projection_seed: int, module_key: str) -> int:
    """The seed of one module's ``A``: ``projection_seed`` combined with a stable hash of its name."""
    return (projection_seed * 1_000_003 + zlib.crc32(module_key.encode())) % (2**63 - 1)


class FlyLoraLayer(BaseTunerLayer):
    """State of FlyLoRA on one layer; everything keyed by adapter name.

    ``flylora_B[a]`` ``[d_out, r]`` (the only trainable tensor); ``flylora_A[a]`` ``[r, d_in]``
    (non-persistent buffer, re-derived from the seed); ``flylora_bias_steps[a]`` int64 ``[r]``
    (persistent: ``d = bias_update_rate · steps``); ``flylora_A_check[a]`` int64 ``[2]`` (persistent
    fingerprint of ``A``). ``router_stats[a]["dispatch_fraction"]`` is the last forward's rank activation
    frequency ``c_i / Σ_j c_j`` (sums to 1).
    """

    adapter_layer_names = ("flylora_B",)
    # no parameter with its own optimizer role: B takes the default (spectral_moe.training.optim)
    parameter_roles: dict[str, str] = {}
    other_param_names = (
        "flylora_A",
        "flylora_bias_steps",
        "flylora_A_check",
        "flylora_config",
        "flylora_dropout",
    )

    def __init__(self, base_layer: nn.Module, **kwargs: Any) -> None:
        self.base_layer = base_layer
        self.flylora_B = nn.ParameterDict({})
        self.flylora_A = BufferDict({}, persistent=False)
        self.flylora_bias_steps = BufferDict({}, persistent=True)
        self.flylora_A_check = BufferDict({}, persistent=True)
        self.flylora_dropout = nn.ModuleDict({})
        self.flylora_config: dict[str, FlyLoraConfig] = {}
        self._disable_adapters = False
        self.merged_adapters = []
        self.kwargs = kwargs
        self.in_features, self.out_features = linear_features(self.get_base_layer())
        self.rank_counts: dict[str, torch.Tensor] = {}  # last training forward's c [r] int64, per adapter
        self.router_stats: dict[str, dict[str, torch.Tensor]] = {}
        self._bias_in_use: dict[str, torch.Tensor] = {}  # steps snapshot taken when the model forward began

    def update_layer(
        self, adapter_name: str, config: FlyLoraConfig, module_key: str = "", **kwargs: Any
    ) -> None:
        """Create adapter ``adapter_name``: seeded sparse ``A`` (and its fingerprint), zero ``B``, ``d = 0``."""
        r = config.r
        self.flylora_config[adapter_name] = config
        a = sparse_projection(
            r,
            self.in_features,
            config.nonzeros_per_row(self.in_features),
            layer_seed(config.projection_seed, module_key),
        )
        self.flylora_A[adapter_name] = a
        self.flylora_A_check[adapter_name] = projection_fingerprint(a)
        self.flylora_bias_steps[adapter_name] = torch.zeros(r, dtype=torch.int64)
        b = torch.zeros(self.out_features, r)
        if not config.init_lora_weights:
            nn.init.normal_(b, std=1.0 / r)
        self.flylora_B[adapter_name] = nn.Parameter(b)
        self.flylora_dropout[adapter_name] = (
            nn.Dropout(config.lora_dropout) if config.lora_dropout else nn.Identity()
        )
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def has_adapter(self, adapter_name: str) -> bool:
        return adapter_name in self.flylora_B

    def routing_bias(self, adapter_name: str) -> torch.Tensor:
        """The current routing bias ``d = u · steps`` ``[r]`` (float32, no gradient)."""
        u = self.flylora_config[adapter_name].bias_update_rate
        return self.flylora_bias_steps[adapter_name].to(torch.float32) * u

    def begin_forward(self) -> None:
        """Called by the tuner when the model's forward begins: clear the counts, fix ``d`` for this forward."""
        self.rank_counts.clear()
        self._bias_in_use = {name: steps.clone() for name, steps in self.flylora_bias_steps.items()}

    def apply_bias_step(self, adapter_name: str, counts: torch.Tensor) -> None:
        """``steps_i += sign(Σ_j c_j − r·c_i)`` for (pooled) counts ``c [r]``: ``d`` moves by ``±u`` (or 0)
        toward balance."""
        steps = self.flylora_bias_steps[adapter_name]
        counts = counts.to(device=steps.device, dtype=torch.int64)
        steps.add_(torch.sign(counts.sum() - counts.numel() * counts))

    def topk_mask(self, adapter_name: str, y: torch.Tensor) -> torch.Tensor:
        """``1_S`` ``[..., r]`` (y's dtype): the top-k of ``y + d`` (or ``|y + d|``) per token."""
        config = self.flylora_config[adapter_name]
        steps = self._bias_in_use.get(adapter_name, self.flylora_bias_steps[adapter_name])
        d = (steps.to(torch.float32) * config.bias_update_rate).to(device=y.device)
        score = y.to(torch.float64 if y.dtype == torch.float64 else torch.float32) + d
        if config.topk_score == "abs":
            score = score.abs()
        index = score.topk(config.top_k, dim=-1).indices
        return torch.zeros_like(y).scatter(-1, index, 1.0)

    def adapter_delta(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        """``(α/r) · (y ⊙ 1_S) Bᵀ`` in B's dtype; records the rank counts when training."""
        config = self.flylora_config[adapter_name]
        b = self.flylora_B[adapter_name]
        a = self.flylora_A[adapter_name].to(b.dtype)
        x = self.flylora_dropout[adapter_name](x.to(b.dtype))
        if config.stop_projection_gradient:
            with torch.no_grad():
                y = x @ a.T
        else:
            y = x @ a.T  # [..., r]
        mask = self.topk_mask(adapter_name, y.detach())
        selected = mask.detach().reshape(-1, config.r)  # [T, r]
        token_mask = self.__dict__.get("_token_mask")  # the attention mask, set by the tuner's pre-hook
        if token_mask is not None and tuple(token_mask.shape) == tuple(x.shape[:-1]):
            selected = selected * token_mask.reshape(-1, 1).to(selected)
        counts = selected.sum(0).round().to(torch.int64)  # [r]
        total = counts.sum().clamp_min(1)
        self.router_stats[adapter_name] = {"dispatch_fraction": counts.to(torch.float32) / total}
        if self.training:
            self.rank_counts[adapter_name] = counts
        return (y * mask) @ b.T * (config.lora_alpha / config.r)

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        raise ValueError(self._merge_error(adapter_name))

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError(self._merge_error(next(iter(self.flylora_config), "default")))

    def unmerge(self) -> None:
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)

    @staticmethod
    def _merge_error(adapter_name: str) -> str:
        return (
            f"FlyLoRA adapter {adapter_name!r} selects its top-k ranks per token, so its update cannot be "
            "merged into the base weight (merging would drop the top-k mask); keep the adapter unmerged, or "
            "call unload() to drop it."
        )


class FlyLoraLinear(nn.Module, FlyLoraLayer):
    """FlyLoRA around an ``nn.Linear`` or transformers ``Conv1D`` (``fan_in_fan_out=True``)."""

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        config: FlyLoraConfig,
        module_key: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        FlyLoraLayer.__init__(self, base_layer, **kwargs)
        self.fan_in_fan_out = config.fan_in_fan_out
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config, module_key=module_key)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters or self.merged:
            return result
        for name in self.active_adapters:
            if self.has_adapter(name):
                result = result + self.adapter_delta(name, x).to(result.dtype)
        return result

    def __repr__(self) -> str:
        return "flylora." + super().__repr__()

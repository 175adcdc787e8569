"""What FourierMoE and FRAME share: router config fields, the routed-layer mixin and the tuner mixin.

The layer mixin owns one router per adapter (``ℓ = W_r f(x) + b_r``: ``nn.Linear(features, Z,
bias=config.router_bias)``, the bias zero-initialised; none for ``num_experts == 1``, whose gate is
identically 1), computes the gates exactly as the forward uses them, and records per adapter the
load-balancing loss, the z-loss and the router statistics of the last forward. The tuner mixin
averages those over the adapted layers and adds ``router_aux_loss_coef · L_aux + router_z_loss_coef ·
L_z`` to the model's ``outputs.loss`` during training (a forward hook on the wrapped model).

Precision: the attributes named by ``float32_adapter_attrs`` (and the router) keep float32 when the
model is cast to a half-precision dtype (``.to(torch.bfloat16)``, ``.half()``, ``.bfloat16()``);
device moves and float64 casts apply as usual. Adapters added to a half-precision base are float32
through peft's ``autocast_adapter_dtype=True`` (its default; ``False`` keeps peft's contract that they
take the base dtype). The router runs in float32 (autocast off) when its weights are float32.

One cohesive module (over 400 lines): the routed-layer and routed-tuner mixins share the router state,
its float32 casting and the aux-loss bookkeeping, and are read together.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import (
    BaseTuner,
    BaseTunerLayer,
    check_adapters_to_merge,
    check_target_module_exists,
)
from peft.utils.other import transpose
from torch import nn

from ..precision import active_autocast_dtype
from ..routing import (
    ROUTER_FEATURES,
    RouterLossStats,
    RouterStatistics,
    Routing,
    data_parallel_world_size,
    route,
    router_loss_stats,
    router_losses_from_stats,
)
from ..spectral.fourier import fft_dtype, input_spectrum, log_band_energies

FORMAT_VERSION = 2  # 2: FRAME routers have a logit bias by default (FrameConfig.router_bias)
BIAS_CHOICES = ("none", "all")
MIXED_BATCH_BASE = "__base__"  # peft's name for "no adapter" in ``adapter_names``


class TransientState(dict):
    """Per-forward state holding autograd-graph tensors (router loss statistics of the last forward).

    Copies start empty: ``copy.deepcopy`` of a model after a forward works (graph tensors cannot be
    deep-copied) and pickling never stores a graph; the original keeps its values, so
    ``get_router_aux_loss()`` after a forward still works on it.
    """

    def __deepcopy__(self, memo: dict) -> TransientState:
        return type(self)()

    def __reduce__(self) -> tuple:
        return (type(self), ())


def keep_float32(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` (a ``Module._apply`` conversion), except that a float32 (or wider) tensor that ``fn`` would
    narrow to a half-precision dtype gets only ``fn``'s device and dtype float32: its values stay exact.
    Tensors already in half precision (adapters a user created so, ``autocast_adapter_dtype=False``)
    follow ``fn``."""

    def apply(t: torch.Tensor) -> torch.Tensor:
        out = fn(t)
        if (
            t.is_floating_point()
            and t.dtype.itemsize >= 4
            and out.is_floating_point()
            and out.dtype.itemsize < 4
        ):
            return t.to(device=out.device, dtype=torch.float32)
        return out

    return apply


def check_choice(name: str, value: Any, allowed: tuple) -> None:
    """``ValueError`` naming the field and its allowed values unless ``value in allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    """``TypeError``/``ValueError`` naming the field unless ``low <= value (<= high)``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")


@dataclass
class RoutedAdapterConfig(PeftConfig):
    """Fields shared by the routed spectral adapters (peft's targeting fields plus the router)."""

    target_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Module names (list, suffix match) or one regex to adapt."}
    )
    exclude_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Module names or a regex never to adapt."}
    )
    fan_in_fan_out: bool = field(
        default=False,
        metadata={"help": "True if the layer stores its weight as (in, out), e.g. GPT-2 Conv1D."},
    )
    bias: str = field(default="none", metadata={"help": "Which biases to train: 'none' or 'all'."})
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Extra modules trained and saved in full (e.g. a classifier head)."}
    )
    layers_to_transform: list[int] | int | None = field(
        default=None, metadata={"help": "Only adapt these layer indices."}
    )
    layers_pattern: list[str] | str | None = field(
        default=None,
        metadata={"help": "Name of the layer list (e.g. 'layers'), used with layers_to_transform."},
    )
    num_experts: int = field(default=8, metadata={"help": "Number of experts Z per adapted layer."})
    top_k: int = field(
        default=2, metadata={"help": "Experts each token is routed to (1 <= top_k <= num_experts)."}
    )
    router_features: str = field(
        default="hidden",
        metadata={"help": "'hidden': the router sees x; 'spectral': [x, log band energies of rfft(x)]."},
    )
    router_spectral_bands: int = field(
        default=16, metadata={"help": "Number of rfft bands in the 'spectral' router features."}
    )
    router_temperature: float = field(default=1.0, metadata={"help": "Softmax temperature τ of the router."})
    router_bias: bool = field(
        default=False,
        metadata={"help": "Learnable per-expert logit bias b_r (zero-initialised): logits W_r f(x) + b_r."},
    )
    router_aux_loss_coef: float = field(
        default=0.01,
        metadata={"help": "Weight of the Switch load-balancing loss added to the training loss."},
    )
    router_z_loss_coef: float = field(default=0.0, metadata={"help": "Weight of the router z-loss."})
    format_version: int = field(default=FORMAT_VERSION, metadata={"help": "spectral-moe checkpoint format."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.target_modules, (list, tuple)):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, (list, tuple)):
            self.exclude_modules = set(self.exclude_modules)
        if isinstance(self.target_modules, str) and self.layers_to_transform is not None:
            raise ValueError("layers_to_transform cannot be used when target_modules is a regex string")
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError("layers_pattern requires layers_to_transform")
        check_int("num_experts", self.num_experts, 1)
        check_int("top_k", self.top_k, 1, self.num_experts)
        check_choice("router_features", self.router_features, ROUTER_FEATURES)
        check_int("router_spectral_bands", self.router_spectral_bands, 1)
        check_choice("bias", self.bias, BIAS_CHOICES)
        if not isinstance(self.router_bias, bool):
            raise TypeError(
                f"router_bias must be a bool, got {type(self.router_bias).__name__} {self.router_bias!r}"
            )
        if not self.router_temperature > 0:
            raise ValueError(f"router_temperature must be > 0, got {self.router_temperature}")
        for name in ("router_aux_loss_coef", "router_z_loss_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        check_int("format_version", self.format_version, 1)
        if self.format_version > FORMAT_VERSION:
            raise ValueError(
                f"format_version {self.format_version} is newer than this spectral-moe supports "
                f"({FORMAT_VERSION}); upgrade spectral-moe to load this adapter"
            )


def linear_features(base_layer: nn.Module) -> tuple[int, int]:
    """``(in_features, out_features)`` of an ``nn.Linear`` or transformers ``Conv1D``."""
    from transformers.pytorch_utils import Conv1D

    if isinstance(base_layer, nn.Linear):
        return base_layer.in_features, base_layer.out_features
    if isinstance(base_layer, Conv1D):
        w = base_layer.weight
        return tuple(w.ds_shape) if hasattr(w, "ds_shape") else tuple(w.shape)
    raise TypeError(
        f"Unsupported layer type {type(base_layer).__name__}: spectral-moe adapts torch.nn.Linear and "
        "transformers Conv1D layers"
    )


def check_supported_target(config: Any, target: nn.Module, target_name: str) -> None:
    """``TypeError`` unless the target is an ``nn.Linear``/``Conv1D``; aligns ``config.fan_in_fan_out``."""
    from transformers.pytorch_utils import Conv1D

    base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
    if isinstance(base, nn.Linear) and config.fan_in_fan_out:
        warnings.warn("fan_in_fan_out=True but the target is torch.nn.Linear; using False.", stacklevel=3)
        config.fan_in_fan_out = False
    elif isinstance(base, Conv1D) and not config.fan_in_fan_out:
        warnings.warn("fan_in_fan_out=False but the target is Conv1D; using True.", stacklevel=3)
        config.fan_in_fan_out = True
    elif not isinstance(base, (nn.Linear, Conv1D)):
        raise TypeError(
            f"Target module {target_name} ({type(base).__name__}) is not supported: spectral-moe adapts "
            "torch.nn.Linear and transformers Conv1D layers."
        )


def resolved_loss_stats(stats: RouterLossStats | Callable[[], RouterLossStats]) -> RouterLossStats:
    """A layer's recorded loss statistics (``_router_losses``): computed now where the forward deferred them
    (evaluation: a ``functools.partial`` of ``router_loss_stats`` on the detached routing)."""
    return stats() if callable(stats) else stats


class RoutedLayerMixin(BaseTunerLayer):
    """Router state and routing for a tuner layer; subclasses set ``router_attr`` and ``config_attr``.

    ``float32_adapter_attrs`` names further adapter attributes (``ParameterDict``/``ModuleDict``/
    ``BufferDict``) whose floating tensors stay float32 under half-precision casts (module docstring);
    the router attribute is always included. A subclass that is an ``nn.Module`` gets the casting
    ``_apply`` automatically (``nn.Module`` precedes this mixin in the layer classes' MRO).
    """

    router_attr: str
    config_attr: str
    float32_adapter_attrs: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if issubclass(cls, nn.Module) and "_apply" not in cls.__dict__:
            cls._apply = RoutedLayerMixin._apply_keeping_float32

    @classmethod
    def float32_attr_names(cls) -> tuple[str, ...]:
        """Adapter attributes kept float32 under half-precision casts: the router and ``float32_adapter_attrs``."""
        return tuple(dict.fromkeys((cls.router_attr, *cls.float32_adapter_attrs)))

    def _apply_keeping_float32(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True):
        """``nn.Module._apply`` with ``keep_float32(fn)`` on the children named by ``float32_attr_names``."""
        if recurse:
            kept = set(self.float32_attr_names())
            guarded = keep_float32(fn)
            for name, child in self.named_children():
                child._apply(guarded if name in kept else fn)
        return nn.Module._apply(self, fn, recurse=False)

    def _init_routing_state(self) -> None:
        self.router_stats: dict[str, dict[str, torch.Tensor]] = {}
        # this forward's loss statistics per adapter (graph tensors while training): copies start empty
        self._router_losses: TransientState = TransientState()

    def is_routed(self, adapter_name: str) -> bool:
        """True when ``adapter_name`` has a router here (``num_experts > 1``); one expert has gate ≡ 1."""
        return adapter_name in getattr(self, self.router_attr)

    def _create_router(self, adapter_name: str, config: RoutedAdapterConfig) -> None:
        routers = getattr(self, self.router_attr)
        if adapter_name in routers:  # re-created by update_layer
            del routers[adapter_name]
        if (
            config.num_experts == 1
        ):  # gate ≡ 1: a router would be dead weight, counted and saved, never trained
            return
        in_dim = self.in_features + (
            config.router_spectral_bands if config.router_features == "spectral" else 0
        )
        router = nn.Linear(in_dim, config.num_experts, bias=bool(getattr(config, "router_bias", False)))
        nn.init.normal_(router.weight, std=in_dim**-0.5)
        if router.bias is not None:  # zero: step 0 routes exactly as a bias-free router
            nn.init.zeros_(router.bias)
        routers[adapter_name] = router

    def _routing(
        self, adapter_name: str, x: torch.Tensor, spectrum: Callable[[], torch.Tensor] | None = None
    ) -> Routing:
        """Router logits ``W_r f(x) (+ b_r)`` in the router's dtype (float32 for half-precision models,
        autocast off), then ``routing.route``. Without a router (one expert): ``p = g = 1``, index 0, logits 0."""
        config: RoutedAdapterConfig = getattr(self, self.config_attr)[adapter_name]
        if not self.is_routed(adapter_name):
            ones = torch.ones(*x.shape[:-1], 1, dtype=fft_dtype(x.dtype), device=x.device)
            index = torch.zeros(*x.shape[:-1], 1, dtype=torch.long, device=x.device)
            return Routing(probs=ones, gates=ones, topk_index=index, logits=torch.zeros_like(ones))
        router: nn.Linear = getattr(self, self.router_attr)[adapter_name]
        work = router.weight.dtype
        feats = x.to(work)
        if config.router_features == "spectral":
            spec = spectrum() if spectrum is not None else None
            energies = log_band_energies(x, config.router_spectral_bands, spectrum=spec).to(work)
            feats = torch.cat([feats, energies], dim=-1)
        device_type = x.device.type
        if active_autocast_dtype(device_type) is not None:
            with torch.autocast(device_type, enabled=False):
                logits = router(feats)
        else:
            logits = router(feats)
        return route(logits, config.top_k, config.router_temperature)

    def router_weights(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        """Gates ``[..., num_experts]`` exactly as the forward uses them (zeros outside the top-k)."""
        return self._routing(adapter_name, x).gates

    def _route_and_record(
        self,
        adapter_name: str,
        x: torch.Tensor,
        spectrum: Callable[[], torch.Tensor] | None = None,
        rows: tuple[torch.Tensor, int] | None = None,
    ) -> Routing:
        """Route ``x`` and record the router statistics; ``rows`` = (the batch rows ``x`` holds, the full
        batch size) for a sub-batch of a mixed batch.

        The loss statistics keep their autograd graph only in training mode (where the step's loss needs
        them); otherwise they are detached, so no graph outlives the forward that built it."""
        routing = self._routing(adapter_name, x, spectrum)
        mask = self.__dict__.get("_token_mask")  # the model's attention mask, set by the tuner's pre-hook
        if mask is not None and rows is not None:
            mask = mask.index_select(0, rows[0].to(mask.device)) if mask.shape[0] == rows[1] else None
        if mask is not None and tuple(mask.shape) != tuple(x.shape[:-1]):
            mask = None  # e.g. one new token against a cached context while generating
        if self.is_routed(adapter_name):
            # training: the step's loss needs them now; otherwise (evaluation, decoding) they are computed
            # only if read (``get_router_aux_loss``), so a decoded token does not pay for them
            self._router_losses[adapter_name] = (
                router_loss_stats(routing, mask)
                if self.training
                else functools.partial(router_loss_stats, routing.detached(), mask)
            )
        self.router_stats[adapter_name] = RouterStatistics(routing)  # computed when read (logged)
        return routing

    def has_adapter(self, adapter_name: str) -> bool:
        return adapter_name in getattr(self, self.adapter_layer_names[0])

    def routed_forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``W0 x + Σ_adapters Σ_z g_z ΔW_z x``; records router losses and statistics per adapter.

        ``adapter_names`` (one name per batch row, ``"__base__"`` for none; passed by
        ``model(..., adapter_names=[...])``) gives each row its own adapter, instead of the active ones."""
        adapter_names = kwargs.pop("adapter_names", None)
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if adapter_names is not None:
            return self._mixed_batch_forward(x, *args, adapter_names=adapter_names, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        # rfft(x) at most once per forward, shared by spectral routers and FFT-path experts
        spectrum = functools.cache(lambda: input_spectrum(x))
        for name in self.active_adapters:
            if self.has_adapter(name):
                routing = self._route_and_record(name, x, spectrum)
                delta = self.adapter_delta(name, x, routing.gates, spectrum, routing.topk_index)
                result = result + delta.to(result.dtype)
        return result

    def _mixed_batch_forward(
        self, x: torch.Tensor, *args: Any, adapter_names: list[str], **kwargs: Any
    ) -> torch.Tensor:
        """Row ``b`` of ``x`` (``[B, ...]``) gets ``W0 x_b + Σ_z g_z ΔW_z x_b`` of adapter ``adapter_names[b]``."""
        if x.dim() < 2 or len(adapter_names) != x.shape[0]:
            raise ValueError(
                "Length of `adapter_names` should be the same as the number of inputs, but got "
                f"{len(adapter_names)} and {x.shape[0] if x.dim() >= 2 else 1} respectively."
            )
        if self.merged:
            raise ValueError(
                "Cannot pass `adapter_names` when there are merged adapters, please call `unmerge_adapter` first."
            )
        result = self.base_layer(x, *args, **kwargs)
        for name in dict.fromkeys(adapter_names):  # one sub-batch per adapter, in order of appearance
            if name == MIXED_BATCH_BASE or not self.has_adapter(name):
                continue
            rows = torch.tensor([b for b, n in enumerate(adapter_names) if n == name], device=x.device)
            sub = x.index_select(0, rows)
            spectrum = functools.cache(lambda sub=sub: input_spectrum(sub))
            routing = self._route_and_record(name, sub, spectrum, rows=(rows, len(adapter_names)))
            delta = self.adapter_delta(name, sub, routing.gates, spectrum, routing.topk_index)
            result = result.index_add(0, rows, delta.to(result.dtype))
        return result

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Fold ``ΔW`` into the base weight; only possible for ``num_experts == 1`` (gates ≡ 1).

        Every named adapter is checked before any weight changes."""
        names = [n for n in check_adapters_to_merge(self, adapter_names) if self.has_adapter(n)]
        for name in names:
            self._check_mergeable(name)
        for name in names:
            base = self.get_base_layer()
            delta = transpose(self.get_delta_weight(name, 0), self.fan_in_fan_out).to(base.weight.dtype)
            merged = base.weight.data + delta
            if safe_merge and not torch.isfinite(merged).all():
                raise ValueError(f"NaNs detected in the merged weights; adapter {name!r} seems to be broken")
            base.weight.data = merged
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)
            return
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            if self.has_adapter(name):
                base = self.get_base_layer()
                delta = transpose(self.get_delta_weight(name, 0), self.fan_in_fan_out)
                base.weight.data -= delta.to(base.weight.dtype)

    def _check_mergeable(self, adapter_name: str) -> None:
        num_experts = getattr(self, self.config_attr)[adapter_name].num_experts
        if num_experts != 1:
            raise ValueError(
                f"Adapter {adapter_name!r} has num_experts={num_experts}: routed experts depend on each token, "
                "so their update cannot be merged into the base weight. Only num_experts=1 adapters merge; "
                "keep the adapter unmerged (or call unload() to drop it)."
            )


def _discard_adapter(model: nn.Module, adapter_name: str) -> None:
    """Remove the half-loaded adapter peft injected before loading its tensors, so a failed
    ``load_adapter`` leaves the model as it was."""
    if len(getattr(model, "peft_config", {})) > 1 and hasattr(model, "delete_adapter"):
        try:
            model.delete_adapter(adapter_name)
        except (ValueError, KeyError, AttributeError):  # best effort: the error being raised matters more
            pass


class RoutedTunerMixin(BaseTuner):
    """Injection of ``linear_cls`` layers, the routers' auxiliary losses, refusal to merge routed adapters.

    Subclasses set ``prefix``, ``tuner_layer_cls`` (the layer state class), ``linear_cls`` (the module
    that wraps an ``nn.Linear``/``Conv1D``) and ``target_module_mapping``.
    """

    linear_cls: type

    def _create_and_replace(
        self,
        config: RoutedAdapterConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **optional_kwargs: Any,
    ) -> None:
        if current_key is None:
            raise ValueError("Current Key shouldn't be `None`")
        if isinstance(target, self.tuner_layer_cls):
            target.update_layer(adapter_name, config)
            return
        check_supported_target(config, target, target_name)
        new_module = self.linear_cls(target, adapter_name, config=config)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def inject_adapter(self, model: nn.Module, adapter_name: str, **kwargs: Any) -> None:
        config = self.peft_config[adapter_name]
        if config.target_modules is not None:
            from transformers.pytorch_utils import Conv1D

            modules = dict(model.named_modules())
            tuner_names = {n for n, m in modules.items() if isinstance(m, BaseTunerLayer)}

            def inside_tuner(name: str) -> bool:
                parts = name.split(".")
                return any(".".join(parts[:i]) in tuner_names for i in range(1, len(parts)))

            names = [
                n
                for n, m in modules.items()
                if isinstance(m, (nn.Linear, Conv1D, BaseTunerLayer)) and not inside_tuner(n)
            ]
            if not any(check_target_module_exists(config, n) for n in names):
                suffixes = sorted({n.rsplit(".", 1)[-1] for n in names})
                raise ValueError(
                    f"target_modules={config.target_modules!r} matched no nn.Linear/Conv1D module of the model "
                    f"(after exclude_modules/layers_to_transform); adaptable module names: {suffixes}"
                )
        super().inject_adapter(model, adapter_name, **kwargs)

    @classmethod
    def _remap_adapter_state_dict_for_load(
        cls, model: nn.Module, config: PeftConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """peft's key remapping, then validation before anything is loaded: every adapter tensor of
        ``adapter_name`` present, with the model's shape, and finite. Errors name the tensor."""
        from peft.tuners.tuners_utils import (
            _filter_state_dict_by_key_prefixes,
            _get_tuner_state_dict_key_prefixes,
        )

        remapped = super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)
        if getattr(config, "num_experts", None) == 1:
            # one expert has no router; checkpoints written before that hold an untrained one (gate ≡ 1)
            router = f".{cls.tuner_layer_cls.router_attr}."
            remapped = {k: v for k, v in remapped.items() if router not in k}
        expected = _filter_state_dict_by_key_prefixes(
            model.state_dict(), _get_tuner_state_dict_key_prefixes(model, adapter_name=adapter_name)
        )
        prefix = "base_model.model."

        def find(key: str) -> torch.Tensor | None:
            if key in remapped:
                return remapped[key]
            return (
                remapped.get(prefix + key) if not key.startswith(prefix) else remapped.get(key[len(prefix) :])
            )

        problem = None
        missing = [k for k in expected if find(k) is None]
        if missing:
            shown = ", ".join(missing[:3]) + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else "")
            problem = f"adapter checkpoint for {adapter_name!r} is missing tensor(s): {shown}"
        for key, target in expected.items():
            value = find(key)
            if problem is not None:
                break
            if tuple(value.shape) != tuple(target.shape):
                problem = (
                    f"adapter tensor {key} has shape {tuple(value.shape)} in the checkpoint but "
                    f"{tuple(target.shape)} in the model (was it saved with another config?)"
                )
            elif value.is_floating_point() and not torch.isfinite(value).all():
                problem = f"adapter tensor {key} holds NaN or inf values: the checkpoint is corrupted"
        if problem is not None:
            _discard_adapter(model, adapter_name)
            raise ValueError(problem)
        return remapped

    def _routed_layers(self) -> list[RoutedLayerMixin]:
        return [m for m in self.model.modules() if isinstance(m, RoutedLayerMixin)]

    def _router_loss_terms(self, sync: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(mean_l L_aux, mean_l L_z)`` over adapted layers and active adapters of the last forward.

        With ``sync`` and several ranks, each layer's dispatch counts are pooled over ranks first
        (``routing.router_losses_from_stats``): the result is this rank's share, whose mean over
        ranks is the loss of the global batch. Cached until the next forward.
        """
        cached = self.__dict__.get("_router_loss_cache", {}).get(sync, False)
        if cached is not False:
            return cached
        aux, zl = [], []
        layers = self._routed_layers()
        for name in self.active_adapters:  # one collective per adapter, same order on every rank
            stats = [
                resolved_loss_stats(layer._router_losses[name])
                for layer in layers
                if name in layer._router_losses
            ]
            if stats:
                a, z = router_losses_from_stats(stats, sync=sync)
                aux.append(a)
                zl.append(z)
        terms = None
        if aux:
            device = aux[0].device
            terms = (
                torch.cat([a.to(device) for a in aux]).mean(),
                torch.cat([z.to(device) for z in zl]).mean(),
            )
        self._router_loss_cache = TransientState({sync: terms})  # graph tensors: copies start empty
        return terms

    def get_router_aux_loss(self, weighted: bool = False, sync: bool | None = None) -> torch.Tensor | None:
        """Mean load-balancing loss over adapted layers from the last forward (None before any forward).

        With ``weighted=True`` returns exactly what training adds to the loss:
        ``router_aux_loss_coef · mean L_aux + router_z_loss_coef · mean L_z``.

        ``sync`` (default: in training mode when a process group of several ranks is initialised)
        pools the routers' dispatch counts over data-parallel ranks, so that the mean over ranks of
        this value, and of its gradient, is that of one process seeing the global batch. It is a
        collective: every rank must call it.
        """
        if sync is None:
            sync = self.model.training and data_parallel_world_size() > 1
        terms = self._router_loss_terms(sync)
        if terms is None:
            return None
        if not weighted:
            return terms[0]
        config = self.peft_config[self.active_adapters[0]]
        return config.router_aux_loss_coef * terms[0] + config.router_z_loss_coef * terms[1]

    def _post_injection_hook(self, model: nn.Module, config: PeftConfig, adapter_name: str) -> None:
        # Hooks on the wrapped model, not an override of forward: PeftModel.forward calls the wrapped model
        # directly, bypassing the tuner's forward, while every path runs the wrapped model's hooks.
        super()._post_injection_hook(model, config, adapter_name)
        if "_router_hooks" not in self.__dict__:
            self._router_hooks = [
                model.register_forward_pre_hook(self._clear_router_losses, with_kwargs=True),
                model.register_forward_hook(self._add_router_losses),
            ]

    def _clear_router_losses(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        # the attention mask (when passed by keyword) keeps padding out of the load-balancing statistics
        mask = kwargs.get("attention_mask")
        mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        self.__dict__.pop("_router_loss_cache", None)
        for layer in self._routed_layers():
            layer._router_losses.clear()
            layer.__dict__["_token_mask"] = mask

    def _add_router_losses(self, module: nn.Module, args: Any, outputs: Any) -> Any:
        loss = getattr(outputs, "loss", None)
        if module.training and loss is not None:
            extra = self.get_router_aux_loss(weighted=True)
            if extra is not None:
                config = self.peft_config[self.active_adapters[0]]
                weighted = bool(config.router_aux_loss_coef or config.router_z_loss_coef)  # floats: no sync
                if loss.requires_grad and not extra.requires_grad and weighted:
                    # reentrant gradient checkpointing runs the layers under no_grad first: the losses
                    # they recorded carry no graph, so the routers would silently miss this term
                    warnings.warn(
                        "the router aux loss has no gradient in this forward (reentrant gradient "
                        "checkpointing?); use activation_checkpointing_kwargs={'use_reentrant': False} so "
                        "the routers are trained by it",
                        stacklevel=2,
                    )
                outputs.loss = loss + extra.to(loss.dtype)
        return outputs

    @contextlib.contextmanager
    def _enable_peft_forward_hooks(self, *args: Any, **kwargs: Any):
        """``model(..., adapter_names=[...])``: every batch row gets its own adapter (``"__base__"``: none).

        Inference only (as peft's LoRA); the names reach each routed layer and ``modules_to_save`` wrapper
        through forward pre-hooks for the duration of the call."""
        adapter_names = kwargs.pop("adapter_names", None)
        if adapter_names is None:
            yield
            return
        if self.training:
            raise ValueError("Cannot pass `adapter_names` when the model is in training mode.")
        if isinstance(adapter_names, str) or not all(isinstance(n, str) for n in adapter_names):
            raise TypeError(f"adapter_names must be a list of str (one per batch row), got {adapter_names!r}")
        known = set(self.peft_config) | {MIXED_BATCH_BASE}
        unknown = sorted(set(adapter_names) - known)
        if unknown:
            raise ValueError(
                f"Trying to infer with non-existing adapter(s): {', '.join(unknown)}; loaded: {sorted(self.peft_config)}"
            )
        num_beams = kwargs.get("num_beams")
        if isinstance(num_beams, int) and num_beams > 1:
            adapter_names = [n for n in adapter_names for _ in range(num_beams)]
        from peft.utils.other import AuxiliaryTrainingWrapper

        def inject(module: nn.Module, args: Any, kw: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            kw["adapter_names"] = adapter_names
            return args, kw

        handles = [
            m.register_forward_pre_hook(inject, with_kwargs=True)
            for m in self.model.modules()
            if isinstance(m, (RoutedLayerMixin, AuxiliaryTrainingWrapper))
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def add_weighted_adapter(self, *args: Any, **kwargs: Any) -> None:
        """Not supported: peft combines adapters by weighting their factors for LoRA only."""
        raise NotImplementedError(
            f"{type(self).__name__} does not support add_weighted_adapter (peft implements it for LoRA only): "
            "routed experts have no weighted combination. Supported: several adapters loaded side by side, "
            "set_adapter([...]) to run them together, or model(..., adapter_names=[...]) for one adapter per row."
        )

    def merge_adapter(self, adapter_names: list[str] | None = None, safe_merge: bool = False) -> None:
        """peft's ``merge_adapter``, refusing (before any weight changes) only when an adapter being
        merged (``adapter_names``, default the active ones) is routed."""
        self._check_merge_allowed(adapter_names)
        with self._merge_checked():
            super().merge_adapter(adapter_names=adapter_names, safe_merge=safe_merge)

    def _unload_and_optionally_merge(
        self,
        merge: bool = True,
        progressbar: bool = False,
        safe_merge: bool = False,
        adapter_names: list[str] | None = None,
    ):
        if merge:
            self._check_merge_allowed(adapter_names)  # fail before anything is changed
        for handle in self.__dict__.pop("_router_hooks", []):
            handle.remove()
        with self._merge_checked():
            return super()._unload_and_optionally_merge(
                merge, progressbar=progressbar, safe_merge=safe_merge, adapter_names=adapter_names
            )

    @contextlib.contextmanager
    def _merge_checked(self):
        """peft calls ``_check_merge_allowed()`` without the names again: skip that repeat."""
        self.__dict__["_merge_names_checked"] = True
        try:
            yield
        finally:
            self.__dict__.pop("_merge_names_checked", None)

    def _check_merge_allowed(self, adapter_names: list[str] | None = None) -> None:
        """``ValueError`` when an adapter to merge (``adapter_names``, default the active ones) is routed."""
        if self.__dict__.get("_merge_names_checked"):
            return
        super()._check_merge_allowed()
        names = self.active_adapters if adapter_names is None else adapter_names
        for name in names:
            config = self.peft_config.get(name)
            if config is not None and config.num_experts != 1:
                raise ValueError(
                    f"Adapter {name!r} has num_experts={config.num_experts}: routed experts depend on each "
                    "token, so merge_and_unload() cannot fold them into the base weights. Only num_experts=1 "
                    "adapters merge; keep the PeftModel unmerged, or call unload() to get the base model back."
                )

"""What FourierMoE and FRAME share: router config fields, the routed-layer mixin and the tuner mixin.

The layer mixin owns one router per adapter (``W_r``: ``nn.Linear(features, Z, bias=False)``), computes
the gates exactly as the forward uses them, and records per adapter the load-balancing loss, the
z-loss and the router statistics of the last forward. The tuner mixin averages those over the
adapted layers and adds ``router_aux_loss_coef · L_aux + router_z_loss_coef · L_z`` to the model's
``outputs.loss`` during training (a forward hook on the wrapped model).
"""

from __future__ import annotations

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

from ..routing import (
    ROUTER_FEATURES,
    RouterLossStats,
    Routing,
    data_parallel_world_size,
    route,
    router_loss_stats,
    router_losses_from_stats,
    router_statistics,
)
from ..spectral.fourier import input_spectrum, log_band_energies

FORMAT_VERSION = 1
BIAS_CHOICES = ("none", "all")


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


class RoutedLayerMixin(BaseTunerLayer):
    """Router state and routing for a tuner layer; subclasses set ``router_attr`` and ``config_attr``."""

    router_attr: str
    config_attr: str

    def _init_routing_state(self) -> None:
        self.router_stats: dict[str, dict[str, torch.Tensor]] = {}
        self._router_losses: dict[str, RouterLossStats] = {}  # this forward's, per adapter

    def _create_router(self, adapter_name: str, config: RoutedAdapterConfig) -> None:
        in_dim = self.in_features + (
            config.router_spectral_bands if config.router_features == "spectral" else 0
        )
        router = nn.Linear(in_dim, config.num_experts, bias=False)
        nn.init.normal_(router.weight, std=in_dim**-0.5)
        getattr(self, self.router_attr)[adapter_name] = router

    def _routing(
        self, adapter_name: str, x: torch.Tensor, spectrum: Callable[[], torch.Tensor] | None = None
    ) -> Routing:
        config: RoutedAdapterConfig = getattr(self, self.config_attr)[adapter_name]
        router: nn.Linear = getattr(self, self.router_attr)[adapter_name]
        feats = x.to(router.weight.dtype)
        if config.router_features == "spectral":
            spec = spectrum() if spectrum is not None else None
            energies = log_band_energies(x, config.router_spectral_bands, spectrum=spec).to(
                router.weight.dtype
            )
            feats = torch.cat([feats, energies], dim=-1)
        return route(router(feats), config.top_k, config.router_temperature)

    def router_weights(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        """Gates ``[..., num_experts]`` exactly as the forward uses them (zeros outside the top-k)."""
        return self._routing(adapter_name, x).gates

    def _route_and_record(
        self, adapter_name: str, x: torch.Tensor, spectrum: Callable[[], torch.Tensor] | None = None
    ) -> Routing:
        routing = self._routing(adapter_name, x, spectrum)
        mask = self.__dict__.get("_token_mask")  # the model's attention mask, set by the tuner's pre-hook
        if mask is not None and tuple(mask.shape) != tuple(x.shape[:-1]):
            mask = None  # e.g. one new token against a cached context while generating
        self._router_losses[adapter_name] = router_loss_stats(routing, mask)
        self.router_stats[adapter_name] = router_statistics(routing)
        return routing

    def has_adapter(self, adapter_name: str) -> bool:
        return adapter_name in getattr(self, self.adapter_layer_names[0])

    def routed_forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``W0 x + Σ_adapters Σ_z g_z ΔW_z x``; records router losses and statistics per adapter."""
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        # rfft(x) at most once per forward, shared by spectral routers and FFT-path experts
        spectrum = functools.cache(lambda: input_spectrum(x))
        for name in self.active_adapters:
            if self.has_adapter(name):
                routing = self._route_and_record(name, x, spectrum)
                delta = self.adapter_delta(name, x, routing.gates, spectrum)
                result = result + delta.to(result.dtype)
        return result

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Fold ``ΔW`` into the base weight; only possible for ``num_experts == 1`` (gates ≡ 1)."""
        for name in check_adapters_to_merge(self, adapter_names):
            if not self.has_adapter(name):
                continue
            self._check_mergeable(name)
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
        from transformers.pytorch_utils import Conv1D

        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        if isinstance(base, nn.Linear) and config.fan_in_fan_out:
            warnings.warn("fan_in_fan_out=True but the target is torch.nn.Linear; using False.", stacklevel=2)
            config.fan_in_fan_out = False
        elif isinstance(base, Conv1D) and not config.fan_in_fan_out:
            warnings.warn("fan_in_fan_out=False but the target is Conv1D; using True.", stacklevel=2)
            config.fan_in_fan_out = True
        elif not isinstance(base, (nn.Linear, Conv1D)):
            raise TypeError(
                f"Target module {target_name} ({type(base).__name__}) is not supported: spectral-moe adapts "
                "torch.nn.Linear and transformers Conv1D layers."
            )
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
        cached = self.__dict__.get("_router_loss_cache")
        if cached is not None and cached[0] == sync:
            return cached[1]
        aux, zl = [], []
        layers = self._routed_layers()
        for name in self.active_adapters:  # one collective per adapter, same order on every rank
            stats = [layer._router_losses[name] for layer in layers if name in layer._router_losses]
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
        self._router_loss_cache = (sync, terms)
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
                if loss.requires_grad and not extra.requires_grad and extra.item() != 0:
                    # reentrant gradient checkpointing runs the layers under no_grad first: the losses
                    # they recorded carry no graph, so the routers would silently miss this term
                    warnings.warn(
                        "the router aux loss has no gradient in this forward (reentrant gradient "
                        "checkpointing?); use gradient_checkpointing_kwargs={'use_reentrant': False} so "
                        "the routers are trained by it",
                        stacklevel=2,
                    )
                outputs.loss = loss + extra.to(loss.dtype)
        return outputs

    def _unload_and_optionally_merge(self, merge: bool = True, *args: Any, **kwargs: Any):
        if merge:
            self._check_merge_allowed()  # fail before anything is changed
        for handle in self.__dict__.pop("_router_hooks", []):
            handle.remove()
        return super()._unload_and_optionally_merge(merge, *args, **kwargs)

    def _check_merge_allowed(self) -> None:
        super()._check_merge_allowed()
        for name, config in self.peft_config.items():
            if config.num_experts != 1:
                raise ValueError(
                    f"Adapter {name!r} has num_experts={config.num_experts}: routed experts depend on each "
                    "token, so merge_and_unload() cannot fold them into the base weights. Only num_experts=1 "
                    "adapters merge; keep the PeftModel unmerged, or call unload() to get the base model back."
                )

"""FlyLoRA tuner: injects ``FlyLoraLinear`` and runs the load-balancing bias update after each training forward.

The update (``d_i ← d_i + u · sign(mean(c) − c_i)``, see ``layer.py``) is not a loss: a forward hook on
the wrapped model reads every layer's rank counts ``c`` of that forward, all-reduces them over the
data-parallel ranks (one collective per adapter, for all layers at once; every rank keeps the same
``d``, as one process on the global batch would), and steps each layer's bias. Evaluation forwards
never move it. The authors' fork updates inside each layer's forward with the local counts (so its
ranks' biases drift apart under DDP); here the pooled counts make the DDP run equal a single process.
"""

from __future__ import annotations

from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from torch import nn

from ...routing import data_parallel_world_size
from ..moe_common import RoutedTunerMixin, check_supported_target
from .config import FlyLoraConfig
from .layer import FlyLoraLayer, FlyLoraLinear


class FlyLoraModel(RoutedTunerMixin):
    """FlyLoRA model: ``get_peft_model(model, FlyLoraConfig(...))`` builds one of these.

    Trainable: ``B`` only (``A`` is a frozen buffer, ``d`` an integer-step buffer), so the harness's
    trainable-parameter count is ``Σ_layers d_out · r``.
    """

    prefix: str = "flylora_"
    tuner_layer_cls = FlyLoraLayer
    linear_cls = FlyLoraLinear
    target_module_mapping = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    def _create_and_replace(
        self,
        config: FlyLoraConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **optional_kwargs: Any,
    ) -> None:
        if current_key is None:
            raise ValueError("Current Key shouldn't be `None`")
        if isinstance(target, FlyLoraLayer):
            target.update_layer(adapter_name, config, module_key=current_key)
            return
        check_supported_target(config, target, target_name)
        new_module = FlyLoraLinear(target, adapter_name, config=config, module_key=current_key)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def flylora_layers(self) -> list[FlyLoraLayer]:
        """Every FlyLoRA layer of the wrapped model, in module order (the same on every rank)."""
        return [m for m in self.model.modules() if isinstance(m, FlyLoraLayer)]

    def _post_injection_hook(self, model: nn.Module, config: PeftConfig, adapter_name: str) -> None:
        BaseTuner._post_injection_hook(self, model, config, adapter_name)
        if "_flylora_hooks" not in self.__dict__:
            self._flylora_hooks = [
                model.register_forward_pre_hook(self._begin_forward, with_kwargs=True),
                model.register_forward_hook(self._update_bias),
            ]

    def _begin_forward(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        for layer in self.flylora_layers():
            layer.begin_forward()
            layer.__dict__["_token_mask"] = mask

    def _update_bias(self, module: nn.Module, args: Any, outputs: Any) -> Any:
        if module.training:
            self.update_routing_bias()
        return outputs

    @torch.no_grad()
    def update_routing_bias(self, sync: bool | None = None) -> None:
        """Step every layer's routing bias from the counts of the last training forward (then clear them).

        With ``sync`` (default: a process group of several ranks is initialised) the counts are summed over
        ranks first: a collective, every rank must call it (the training forward hook does).
        """
        if sync is None:
            sync = data_parallel_world_size() > 1
        layers = self.flylora_layers()
        for name in self.active_adapters:  # one collective per adapter, same order on every rank
            recorded = [layer for layer in layers if name in layer.rank_counts]
            if not recorded:
                continue
            counts = torch.stack([layer.rank_counts[name] for layer in recorded])  # [L, r] int64
            if sync:
                import torch.distributed as dist

                dist.all_reduce(counts)
            for layer, c in zip(recorded, counts):
                layer.apply_bias_step(name, c)
                del layer.rank_counts[name]

    @classmethod
    def _remap_adapter_state_dict_for_load(
        cls, model: nn.Module, config: PeftConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The shared validation, then: every stored fingerprint of ``A`` equals the re-derived one."""
        remapped = super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)
        current = {k: v for k, v in model.state_dict().items() if f"flylora_A_check.{adapter_name}" in k}
        for key, value in current.items():
            stored = remapped.get(key, remapped.get(key.removeprefix("base_model.model.")))
            if stored is not None and not torch.equal(stored.to(value.device, value.dtype), value):
                raise ValueError(
                    f"FlyLoRA's frozen A of {key.split('.flylora_A_check')[0]} re-derived from projection_seed="
                    f"{config.projection_seed} differs from the one this adapter was trained with (another torch "
                    "random generator, or another seed or module name); the adapter cannot be used with it"
                )
        return remapped

    def _check_merge_allowed(self) -> None:
        BaseTuner._check_merge_allowed(self)
        raise ValueError(
            "FlyLoRA selects its top-k ranks per token, so merge_and_unload() cannot fold it into the base "
            "weights (merging would drop the top-k mask); keep the PeftModel unmerged, or call unload() to get "
            "the base model back."
        )

    def _unload_and_optionally_merge(self, merge: bool = True, *args: Any, **kwargs: Any):
        if merge:
            self._check_merge_allowed()
        for handle in self.__dict__.pop("_flylora_hooks", []):
            handle.remove()
        return super()._unload_and_optionally_merge(merge, *args, **kwargs)

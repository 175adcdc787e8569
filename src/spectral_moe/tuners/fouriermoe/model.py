"""FourierMoE tuner: injects ``FourierMoELinear`` into the targeted modules (peft's BaseTuner template)."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from transformers.pytorch_utils import Conv1D

from ..moe_common import RoutedTunerMixin
from .config import FourierMoEConfig
from .layer import FourierMoELayer, FourierMoELinear


class FourierMoEModel(RoutedTunerMixin):
    """FourierMoE model: ``get_peft_model(model, FourierMoEConfig(...))`` builds one of these.

    During training the routers' auxiliary losses are added to ``outputs.loss``;
    ``get_router_aux_loss()`` returns the last value for custom loops.
    """

    prefix: str = "fouriermoe_"
    tuner_layer_cls = FourierMoELayer
    target_module_mapping = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    def _create_and_replace(
        self,
        config: FourierMoEConfig,
        adapter_name: str,
        target: torch.nn.Module,
        target_name: str,
        parent: torch.nn.Module,
        current_key: str,
        **optional_kwargs: Any,
    ) -> None:
        if current_key is None:
            raise ValueError("Current Key shouldn't be `None`")
        if isinstance(target, FourierMoELayer):
            target.update_layer(adapter_name, config)
            return
        new_module = self._create_new_module(config, adapter_name, target)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    @staticmethod
    def _create_new_module(
        config: FourierMoEConfig, adapter_name: str, target: torch.nn.Module
    ) -> FourierMoELinear:
        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        if isinstance(base, torch.nn.Linear) and config.fan_in_fan_out:
            warnings.warn("fan_in_fan_out=True but the target is torch.nn.Linear; using False.", stacklevel=2)
            config.fan_in_fan_out = False
        elif isinstance(base, Conv1D) and not config.fan_in_fan_out:
            warnings.warn("fan_in_fan_out=False but the target is Conv1D; using True.", stacklevel=2)
            config.fan_in_fan_out = True
        elif not isinstance(base, (torch.nn.Linear, Conv1D)):
            raise TypeError(
                f"Target module {target} is not supported: FourierMoE adapts torch.nn.Linear and transformers Conv1D."
            )
        return FourierMoELinear(target, adapter_name, config=config)

"""FourierMoE tuner: injects ``FourierMoELinear`` into the targeted modules (peft's BaseTuner template)."""

from __future__ import annotations

from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

from ..moe_common import RoutedTunerMixin
from .layer import FourierMoELayer, FourierMoELinear


class FourierMoEModel(RoutedTunerMixin):
    """FourierMoE model: ``get_peft_model(model, FourierMoEConfig(...))`` builds one of these.

    During training the routers' auxiliary losses are added to ``outputs.loss``;
    ``get_router_aux_loss()`` returns the last value for custom loops.
    """

    prefix: str = "fouriermoe_"
    tuner_layer_cls = FourierMoELayer
    linear_cls = FourierMoELinear
    target_module_mapping = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

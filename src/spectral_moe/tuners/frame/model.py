"""FRAME tuner: injects ``FrameLinear`` into the targeted modules (peft's BaseTuner template)."""

from __future__ import annotations

from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

from ..moe_common import RoutedTunerMixin
from .layer import FrameLayer, FrameLinear


class FrameModel(RoutedTunerMixin):
    """FRAME model: ``get_peft_model(model, FrameConfig(...))`` (or ``MoELoraConfig``) builds one of these.

    During training the routers' auxiliary losses are added to ``outputs.loss``. Train the orders
    with their own optimizer: ``spectral_moe.training.optim.create_optimizer``.
    """

    prefix: str = "frame_"
    tuner_layer_cls = FrameLayer
    linear_cls = FrameLinear
    target_module_mapping = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

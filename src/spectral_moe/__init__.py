"""spectral-moe: spectral mixture-of-experts adapters (FourierMoE, FRAME) for Hugging Face peft."""

from .training.optim import create_optimizer
from .tuners import peft_registry
from .tuners.flylora import FlyLoraConfig, FlyLoraLayer, FlyLoraModel
from .tuners.fouriermoe import FourierMoEConfig, FourierMoELayer, FourierMoEModel
from .tuners.frame import FrameConfig, FrameLayer, FrameModel, MoELoraConfig
from .tuners.hmora import HMoRAConfig, HMoRALayer, HMoRAModel

peft_registry.register_all()

__version__ = "0.1.0"

__all__ = [
    "FourierMoEConfig",
    "FourierMoELayer",
    "FourierMoEModel",
    "FlyLoraConfig",
    "FlyLoraLayer",
    "FlyLoraModel",
    "FrameConfig",
    "FrameLayer",
    "FrameModel",
    "HMoRAConfig",
    "HMoRALayer",
    "HMoRAModel",
    "MoELoraConfig",
    "create_optimizer",
    "__version__",
]

"""spectral-moe: spectral mixture-of-experts adapters (FourierMoE, FRAME) for Hugging Face peft."""

from . import _peft_registry
from .optim import create_optimizer
from .tuners.fouriermoe import FourierMoEConfig, FourierMoELayer, FourierMoEModel
from .tuners.frame import FrameConfig, FrameLayer, FrameModel, MoELoraConfig

_peft_registry.register_all()

__version__ = "0.1.0"

__all__ = [
    "FourierMoEConfig",
    "FourierMoELayer",
    "FourierMoEModel",
    "FrameConfig",
    "FrameLayer",
    "FrameModel",
    "MoELoraConfig",
    "create_optimizer",
    "__version__",
]

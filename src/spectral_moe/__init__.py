"""spectral-moe: spectral mixture-of-experts adapters (FourierMoE, FRAME) for Hugging Face peft."""

from . import _peft_registry
from .tuners.fouriermoe import FourierMoEConfig, FourierMoELayer, FourierMoEModel

_peft_registry.register_all()

__version__ = "0.1.0"

__all__ = ["FourierMoEConfig", "FourierMoELayer", "FourierMoEModel", "__version__"]

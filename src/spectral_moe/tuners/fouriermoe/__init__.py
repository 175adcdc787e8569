from .config import FourierMoEConfig
from .layer import FourierMoELayer, FourierMoELinear
from .model import FourierMoEModel

__all__ = ["FourierMoEConfig", "FourierMoELayer", "FourierMoELinear", "FourierMoEModel"]

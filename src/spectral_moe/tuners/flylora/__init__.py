from .config import FlyLoraConfig
from .layer import FlyLoraLayer, FlyLoraLinear
from .model import FlyLoraModel

__all__ = ["FlyLoraConfig", "FlyLoraLayer", "FlyLoraLinear", "FlyLoraModel"]

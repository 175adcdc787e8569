from .config import FrameConfig, MoELoraConfig
from .layer import FrameLayer, FrameLinear
from .model import FrameModel

__all__ = ["FrameConfig", "FrameLayer", "FrameLinear", "FrameModel", "MoELoraConfig"]

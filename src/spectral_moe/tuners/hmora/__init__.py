from .config import HMoRAConfig
from .layer import HMoRALayer, HMoRALinear, HMoRARouter, TaskEncoder, entropy_balance_loss
from .model import HMoRAModel

__all__ = [
    "HMoRAConfig",
    "HMoRALayer",
    "HMoRALinear",
    "HMoRAModel",
    "HMoRARouter",
    "TaskEncoder",
    "entropy_balance_loss",
]

"""The one place that registers spectral-moe's methods with peft.

peft's ``register_peft_method`` only accepts names that are members of its ``PeftType`` enum, and
that enum is closed. So this module adds members to ``PeftType`` (the enum's own member tables, the
same objects ``PeftType("FOURIERMOE")`` and ``PeftType.FOURIERMOE`` read) and then calls
``register_peft_method``, which fills peft's config/tuner/prefix tables. After ``import
spectral_moe``, ``get_peft_model``, ``PeftModel.from_pretrained`` and ``PeftConfig.from_pretrained``
handle our adapters like peft's own.

Tested with the peft range in ``pyproject.toml`` (``SUPPORTED_PEFT``); registration is idempotent.
"""

from __future__ import annotations

import warnings

import peft
from packaging.version import Version
from peft.utils import PeftType, register_peft_method

SUPPORTED_PEFT = (Version("0.21"), Version("0.22"))  # [low, high)

# name -> (import path of config class, import path of model class)
METHODS = {
    "fouriermoe": ("spectral_moe.tuners.fouriermoe", "FourierMoEConfig", "FourierMoEModel"),
    "frame": ("spectral_moe.tuners.frame", "FrameConfig", "FrameModel"),
    "flylora": ("spectral_moe.tuners.flylora", "FlyLoraConfig", "FlyLoraModel"),
    "hmora": ("spectral_moe.tuners.hmora", "HMoRAConfig", "HMoRAModel"),
}


def _check_peft_version() -> None:
    v = Version(peft.__version__)
    if not SUPPORTED_PEFT[0] <= v < SUPPORTED_PEFT[1]:
        warnings.warn(
            f"spectral-moe was tested with peft>={SUPPORTED_PEFT[0]},<{SUPPORTED_PEFT[1]}; found {v}. "
            "The method registration writes peft's internal tables and may break.",
            stacklevel=3,
        )


def peft_type(name: str) -> PeftType:
    """The ``PeftType`` member for ``name`` (e.g. ``"fouriermoe"`` → ``PeftType.FOURIERMOE``), added if missing."""
    key = name.upper()
    if key in PeftType.__members__:
        return PeftType[key]
    member = str.__new__(PeftType, key)
    member._name_ = key
    member._value_ = key
    member.__objclass__ = PeftType
    PeftType._member_map_[key] = member
    PeftType._value2member_map_[key] = member
    PeftType._member_names_.append(key)
    type.__setattr__(PeftType, key, member)
    return member


def register_all() -> None:
    """Register every spectral-moe method with peft (idempotent)."""
    import importlib

    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    _check_peft_version()
    for name, (module, config_name, model_name) in METHODS.items():
        member = peft_type(name)
        if member in PEFT_TYPE_TO_TUNER_MAPPING:
            continue
        mod = importlib.import_module(module)
        register_peft_method(
            name=name,
            config_cls=getattr(mod, config_name),
            model_cls=getattr(mod, model_name),
            prefix=f"{name}_",
        )

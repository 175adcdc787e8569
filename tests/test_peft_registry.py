import peft
import pytest
from packaging.version import Version
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from peft.utils import PeftType

import spectral_moe
from spectral_moe import FourierMoEConfig, FourierMoEModel
from spectral_moe.tuners import peft_registry as _peft_registry


def test_methods_are_peft_types():
    assert PeftType("FOURIERMOE") is PeftType.FOURIERMOE
    assert "FOURIERMOE" in PeftType.__members__
    assert PEFT_TYPE_TO_CONFIG_MAPPING["FOURIERMOE"] is FourierMoEConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING[PeftType.FOURIERMOE] is FourierMoEModel
    assert PEFT_TYPE_TO_PREFIX_MAPPING[PeftType.FOURIERMOE] == "fouriermoe_"
    assert FourierMoEConfig(target_modules=["q"]).peft_type is PeftType.FOURIERMOE


def test_registration_is_idempotent():
    before = dict(PEFT_TYPE_TO_TUNER_MAPPING)
    n_members = len(PeftType)
    _peft_registry.register_all()
    _peft_registry.register_all()
    assert dict(PEFT_TYPE_TO_TUNER_MAPPING) == before
    assert len(PeftType) == n_members


def test_installed_peft_is_in_the_tested_range():
    low, high = _peft_registry.SUPPORTED_PEFT
    assert low <= Version(peft.__version__) < high
    assert spectral_moe.__version__


def test_untested_peft_version_warns(monkeypatch):
    monkeypatch.setattr(peft, "__version__", "9.0.0")
    with pytest.warns(UserWarning, match="tested with peft"):
        _peft_registry._check_peft_version()

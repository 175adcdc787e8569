"""Bad adapter checkpoints fail before any weight changes, naming the tensor or field."""

import json

import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

import spectral_moe  # noqa: F401
from spectral_moe import FourierMoEConfig, FrameConfig
from tests.helpers import tiny_llama


@pytest.fixture(params=["fouriermoe", "frame"])
def saved(request, tmp_path):
    cfg = (
        FourierMoEConfig(target_modules=["q_proj"], n_frequency=6, num_experts=4)
        if request.param == "fouriermoe"
        else FrameConfig(target_modules=["q_proj"], r=2, num_experts=4)
    )
    model = get_peft_model(tiny_llama(), cfg)
    model.save_pretrained(tmp_path / "ok")
    return tmp_path / "ok", tmp_path, cfg


def _copy_with(src, dst, tensors=None, config_edit=None):
    dst.mkdir()
    sd = load_file(src / "adapter_model.safetensors")
    if tensors is not None:
        sd = tensors(sd)
    save_file(sd, dst / "adapter_model.safetensors")
    cfg = json.loads((src / "adapter_config.json").read_text())
    if config_edit is not None:
        config_edit(cfg)
    (dst / "adapter_config.json").write_text(json.dumps(cfg))
    return dst


def _trained_model(cfg):
    model = get_peft_model(tiny_llama(), cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_()
    return model


def _drop_first(sd):
    key = sorted(sd)[0]
    return {k: v for k, v in sd.items() if k != key}


def _reshape_first(sd):
    key = sorted(sd)[0]
    sd = dict(sd)
    sd[key] = torch.zeros(*[s + 1 for s in sd[key].shape])
    return sd


def _nan_first(sd):
    key = sorted(sd)[0]
    sd = dict(sd)
    sd[key] = torch.full_like(sd[key], float("nan"))
    return sd


@pytest.mark.parametrize(
    "edit,pattern",
    [
        (dict(tensors=_drop_first), "missing tensor"),
        (dict(tensors=_reshape_first), "has shape"),
        (dict(tensors=_nan_first), "NaN or inf"),
        (dict(config_edit=lambda c: c.update(format_version=99)), "format_version"),
    ],
)
def test_bad_checkpoint_fails_before_any_weight_changes(saved, edit, pattern):
    ok, root, cfg = saved
    bad = _copy_with(ok, root / "bad", **edit)
    model = _trained_model(cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match=pattern):
        model.load_adapter(bad, adapter_name="other")
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    with pytest.raises(ValueError, match=pattern):
        PeftModel.from_pretrained(tiny_llama(), bad)


def test_unknown_method_names_the_field(saved):
    ok, root, _ = saved
    bad = _copy_with(ok, root / "bad", config_edit=lambda c: c.update(peft_type="NOT_A_METHOD"))
    with pytest.raises((ValueError, KeyError), match="NOT_A_METHOD"):
        PeftModel.from_pretrained(tiny_llama(), bad)

"""The harness's method configs carry the defaults the study chose (results/study.md)."""

from spectral_moe.training.methods import build_peft_config
from spectral_moe.tuners.fouriermoe import FourierMoEConfig
from spectral_moe.tuners.frame import FrameConfig


def test_frame_default_transform_is_the_studys_choice():
    assert FrameConfig(target_modules=["q_proj"]).transform == "weighted"
    assert build_peft_config("frame", ["q_proj", "v_proj"]).transform == "weighted"
    assert build_peft_config("frame", ["q_proj"], transform="chirp").transform == "chirp"


def test_fouriermoe_defaults_set_or_kept_by_the_study():
    config = FourierMoEConfig(target_modules=["q_proj"])
    assert (config.band_layout, config.router_features, config.complex_coefficients) == (
        "radial",
        "hidden",
        True,
    )
    assert (config.num_experts, config.top_k, config.n_frequency) == (8, 2, 500)
    assert build_peft_config("fouriermoe", ["q_proj"]).n_frequency == 500

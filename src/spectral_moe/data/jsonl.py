"""Tasks from your own JSON-lines files (``jsonl:<path>``).

Schema: one JSON object per line (blank lines are skipped)::

    {"input": "Q: Is the sky blue?\\nA:", "choices": [" yes", " no"], "answer": " yes"}
    {"input": "Q: What is 2 + 3?\\nA:", "answer": "5"}

``input`` (str, required)
    The prompt exactly as the model sees it.
``choices`` (list of str, optional)
    Candidate continuations for multiple-choice scoring; each is appended to ``input`` verbatim, so
    include a leading space if you want one. Must be non-empty, without duplicates, and either
    present on every line (multiple-choice task) or on none (free-form task).
``answer`` (str, required)
    The correct continuation: one of ``choices`` for multiple choice, else the reference answer.
``meta`` (object, optional)
    Anything else; copied into ``Example.meta``. Other unknown keys are copied into ``meta`` too.
    Keys the library reads: ``"passage": [start, end]``, the character span of ``input`` that is the
    example's own text: the only part cut when a prompt exceeds ``max_length`` (without it the whole
    ``input`` may be cut, from the left) and the text by which splits group examples;
    ``"answer_style": "final_number"`` for free-form answers written as a worked solution (scored by
    the number after ``####``, else the last number); ``"stop": [str, ...]`` where a generated answer
    ends.

Every example also gets ``meta["line"]`` (1-based line number); free-form examples get
``meta["completion"] = answer`` (the text a trainer appends to ``input``).

Problems raise ``ValueError("<path>:<line>: ...")`` naming the field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .types import Example

_SCHEMA = '{"input": str, "choices": [str, ...] (optional), "answer": str}'

__all__ = ["read_jsonl_task"]


def read_jsonl_task(path: str | os.PathLike[str], task: str) -> tuple[str, list[Example]]:
    """Parse a JSONL task file into ``(kind, examples)`` with ``Example.task = task``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"jsonl task file not found: {path}")
    examples: list[Example] = []
    kind: str | None = None
    first_line_of_kind = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{where}: invalid JSON ({e.msg} at column {e.colno}); expected {_SCHEMA}"
                ) from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object {_SCHEMA}, got {type(obj).__name__}")
            for key in ("input", "answer"):
                if key not in obj:
                    raise ValueError(f"{where}: field {key!r} is missing; each line is {_SCHEMA}")
                if not isinstance(obj[key], str):
                    raise ValueError(
                        f"{where}: field {key!r} must be a string, got {type(obj[key]).__name__}"
                    )
            choices: tuple[str, ...] = ()
            if "choices" in obj:
                raw = obj["choices"]
                if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
                    raise ValueError(f"{where}: field 'choices' must be a list of strings")
                if not raw:
                    raise ValueError(f"{where}: field 'choices' is empty; omit it for a free-form example")
                if len(set(raw)) != len(raw):
                    raise ValueError(f"{where}: field 'choices' contains duplicates")
                if obj["answer"] not in raw:
                    raise ValueError(
                        f"{where}: field 'answer' {obj['answer']!r} is not one of 'choices' {raw!r}"
                    )
                choices = tuple(raw)
            this_kind = "multiple_choice" if choices else "free_form"
            if kind is None:
                kind, first_line_of_kind = this_kind, lineno
            elif this_kind != kind:
                raise ValueError(
                    f"{where}: field 'choices' is {'present' if choices else 'missing'}, but line "
                    f"{first_line_of_kind} made this a {kind.replace('_', '-')} task; use 'choices' "
                    f"on every line or on none"
                )
            meta_in = obj.get("meta", {})
            if not isinstance(meta_in, dict):
                raise ValueError(f"{where}: field 'meta' must be an object")
            meta = {k: v for k, v in obj.items() if k not in ("input", "choices", "answer", "meta")}
            meta.update(meta_in)
            meta["line"] = lineno
            if not choices:
                meta["completion"] = obj["answer"]
            example = Example(task=task, input=obj["input"], choices=choices, answer=obj["answer"], meta=meta)
            try:
                example.passage_span  # noqa: B018  (validates meta["passage"])
            except (TypeError, ValueError) as e:
                raise ValueError(f"{where}: field 'meta.passage': {e}") from None
            examples.append(example)
    if not examples:
        raise ValueError(f"{path}: no examples (each line is {_SCHEMA})")
    assert kind is not None
    return kind, examples

"""Examples as model inputs: features, collators and the encoders' head layout (training and evaluation).

* :func:`causal_lm_features` — ``input_ids`` of ``BOS + prompt + answer + EOS`` and ``labels`` that are
  ``-100`` except on ``answer + EOS``; fitted to ``max_length`` by the truncation policy of
  :mod:`spectral_moe.data.prompts` (only the passage loses tokens, from its left).
* :func:`seq_cls_features` — encoder input ids and ``labels = offset + choice index`` in the task's head.
* :func:`head_layout` / :func:`num_labels_for` — one block ``[offset, offset + size)`` of classifier
  outputs per task on a shared encoder; :func:`head_mask` — ``[B, num_labels]`` True on each row's head.
* :class:`PadCollator` — right-pads a list of feature rows into ``[B, S]`` tensors; :class:`ListDataset`.
"""

from __future__ import annotations

from typing import Any

import torch

from .prompts import build_prompt, encoder_input_ids
from .types import Example


def causal_lm_features(tokenizer, example: Example, max_length: int) -> dict[str, Any]:
    """``input_ids`` of BOS + prompt + answer + EOS and ``labels`` = -100 except on answer + EOS.

    Fitted to ``max_length`` by the data policy (:mod:`spectral_moe.data.prompts`, the same as
    evaluation's): only the example's passage loses tokens, from its left; BOS, the task instruction,
    the choice list and the answer stay. ``truncated`` says whether any prompt token was dropped.
    """
    target = example.meta.get("completion", example.answer) if not example.choices else example.answer
    fitted = build_prompt(
        tokenizer, example.input, target, max_length, passage=example.passage_span, add_eos=True
    )
    labels = [-100] * len(fitted.context) + fitted.continuation
    return {"input_ids": fitted.ids, "labels": labels, "truncated": fitted.truncated}


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


class PadCollator:
    """Right-pads ``input_ids`` (pad id), ``labels`` (-100) and builds ``attention_mask``."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        batch = {
            "input_ids": torch.full((len(rows), width), self.pad_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
        }
        if "head" in rows[0]:
            batch["heads"] = torch.tensor([r["head"] for r in rows], dtype=torch.long)
        if "labels" in rows[0] and isinstance(rows[0]["labels"], list):
            batch["labels"] = torch.full((len(rows), width), -100, dtype=torch.long)
        elif "labels" in rows[0]:
            batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            batch["input_ids"][i, :n] = torch.tensor(r["input_ids"])
            batch["attention_mask"][i, :n] = 1
            if isinstance(r.get("labels"), list):
                batch["labels"][i, :n] = torch.tensor(r["labels"])
        return batch


def seq_cls_features(tokenizer, example: Example, max_length: int, head: tuple[int, int] = (0, 0)) -> dict:
    """Encoder features: ``labels = offset + choice index`` in the task's head ``(offset, size)``.

    The input is fitted to ``max_length`` (special tokens included) by the data policy: only the
    passage loses tokens, from its left; the instruction, the choice list and the answer prefix stay.
    """
    ids, fitted = encoder_input_ids(tokenizer, example.input, max_length, example.passage_span)
    offset, size = head
    return {
        "input_ids": ids,
        "labels": offset + example.label,
        "head": (offset, size or len(example.choices)),
        "truncated": fitted.truncated,
    }


def head_mask(heads: torch.Tensor, num_labels: int) -> torch.Tensor:
    """``[B, num_labels]`` bool: True on each example's own head ``[offset, offset + size)``."""
    cols = torch.arange(num_labels, device=heads.device)
    return (cols >= heads[:, :1]) & (cols < heads[:, :1] + heads[:, 1:])


def head_layout(task_data) -> dict[str, tuple[int, int]]:
    """Encoder heads: ``{task: (offset, size)}``, one block of classifier outputs per task.

    The shared classifier has ``Σ_t size_t`` outputs; task ``t`` owns outputs
    ``[offset_t, offset_t + size_t)`` (``size_t`` = its most choices), so each task has its own head
    on the shared encoder and a single task is the plain classifier.
    """
    layout, offset = {}, 0
    for task in task_data:
        size = max((len(ex.choices) for ex in (*task.train, *task.validation, *task.test)), default=2)
        layout[task.name] = (offset, size)
        offset += size
    return layout


def num_labels_for(task_data) -> int:
    """Classifier outputs of an encoder run: the sum of the per-task head sizes."""
    return sum(size for _, size in head_layout(task_data).values())

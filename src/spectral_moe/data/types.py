"""Plain data types shared by the task loaders, training and evaluation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    """One task example.

    ``input`` is the prompt text exactly as the model sees it (prompt template already applied).
    ``choices`` are the candidate continuations for multiple-choice scoring (empty for free-form
    tasks such as GSM8K); ``answer`` is the correct continuation (one of ``choices`` when they exist).
    ``label`` is the answer's index in ``choices`` (or -1 for free-form tasks).

    ``meta["passage"] = [start, end]`` (optional) marks ``input[start:end]`` as the example's own text
    (the passage or question), as opposed to the task's instruction and prefixes before it and the choice
    list and answer prefix after it. It is the only part of the prompt that is ever truncated (see
    :mod:`spectral_moe.data.prompts`) and the text by which examples are grouped into splits. Without
    it the whole ``input`` is the passage.
    """

    task: str
    input: str
    choices: tuple[str, ...]
    answer: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> int:
        return self.choices.index(self.answer) if self.choices else -1

    @property
    def passage_span(self) -> tuple[int, int]:
        """``(start, end)`` of the passage in ``input`` (``meta["passage"]``, else the whole input)."""
        span = self.meta.get("passage")
        if span is None:
            return 0, len(self.input)
        start, end = (int(v) for v in span)
        if not 0 <= start <= end <= len(self.input):
            raise ValueError(
                f"meta['passage'] must be [start, end] with 0 <= start <= end <= len(input) = "
                f"{len(self.input)}, got {list(span)!r}"
            )
        return start, end

    @property
    def passage(self) -> str:
        """``input[start:end]`` of :attr:`passage_span`."""
        start, end = self.passage_span
        return self.input[start:end]

    @property
    def uid(self) -> str:
        """Stable content hash (task, input, choices, answer): the key used for deterministic splits."""
        h = hashlib.sha256()
        for part in (self.task, self.input, "\x1f".join(self.choices), self.answer):
            h.update(part.encode("utf-8"))
            h.update(b"\x1e")
        return h.hexdigest()

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
    def uid(self) -> str:
        """Stable content hash (task, input, choices, answer): the key used for deterministic splits."""
        h = hashlib.sha256()
        for part in (self.task, self.input, "\x1f".join(self.choices), self.answer):
            h.update(part.encode("utf-8"))
            h.update(b"\x1e")
        return h.hexdigest()

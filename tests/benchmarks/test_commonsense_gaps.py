"""benchmarks/commonsense_gaps.py: lm-eval's own tasks rebuilt from the package's docs (no data download)."""

from tests.benchmarks._load import load

gaps = load("commonsense_gaps")

HELLASWAG_DOCS = [
    {
        "query": "Baking: A woman puts flour in a bowl. She",
        "choices": ["mixes it.", "flies.", "a b", "c"],
        "gold": 0,
    },
    {"query": "Sports: A man runs. He", "choices": [" stops.", "x", "y", " sleeps on the track."], "gold": 3},
]


def test_hellaswag_runs_as_lm_evals_own_task_on_the_package_docs(tmp_path):
    docs = [gaps.lmeval_doc("hellaswag", d) for d in HELLASWAG_DOCS]
    task = gaps.lmeval_task("hellaswag", docs, tmp_path)
    task.build_all_requests(limit=None, rank=0, world_size=1)
    by_doc: dict[int, list] = {}
    for inst in task.instances:
        by_doc.setdefault(inst.doc_id, []).append(inst.args)
    assert sorted(by_doc) == [0, 1]
    for doc_id, doc in enumerate(HELLASWAG_DOCS):
        # lm-eval's hellaswag: the bare query as context, each ending after a space, the gold index as target
        # (the package keeps a leading space on some endings; lm-eval's preprocess strips it: one space)
        assert by_doc[doc_id] == [(doc["query"], " " + c.strip()) for c in doc["choices"]]
        assert (
            task.doc_to_target(
                task.test_docs()[doc_id] if task.has_test_docs() else task.validation_docs()[doc_id]
            )
            == doc["gold"]
        )

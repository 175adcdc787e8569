"""evaluation.tasks / evaluation.runs: per-example records agree with the metrics and read back."""

import json

import pytest
import torch

from spectral_moe.data import load_tasks
from spectral_moe.evaluation.runs import RECORDS_FILE, load_records, save_records
from spectral_moe.evaluation.tasks import evaluate_classifier, evaluate_tasks
from tests.helpers import tiny_llama, tiny_tokenizer, write_jsonl_task


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok), max_position_embeddings=128)
    return model, tok


def test_records_hold_each_examples_hits_and_leave_the_metrics_alone(tmp_path, model_and_tokenizer):
    model, tok = model_and_tokenizer
    tasks = load_tasks(["jsonl:" + write_jsonl_task(tmp_path / "a.jsonl", n=60, seed=1)], max_eval=12, seed=0)
    plain = evaluate_tasks(model, tok, tasks, "test", "causal_lm", batch_size=4, max_length=64)
    kept = evaluate_tasks(model, tok, tasks, "test", "causal_lm", batch_size=4, max_length=64, records=True)
    records = kept.pop("records")
    assert kept == plain
    (name,) = records
    rec, examples, metrics = records[name], tasks[0].test, plain["tasks"][name]
    assert rec["index"] == list(range(len(examples)))
    assert rec["uid"] == [ex.uid[:16] for ex in examples]
    assert set(rec["acc"]) <= {0, 1} and set(rec["acc_norm"]) <= {0, 1}
    assert sum(rec["acc"]) / len(examples) == pytest.approx(metrics["acc"])
    assert sum(rec["acc_norm"]) / len(examples) == pytest.approx(metrics["acc_norm"])
    assert "records" not in plain


def test_classifier_hits_follow_the_examples(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from spectral_moe.data.features import head_layout

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=3,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForSequenceClassification(cfg).eval()
    tasks = load_tasks(["jsonl:" + write_jsonl_task(tmp_path / "c.jsonl", n=60)], max_eval=10, seed=0)
    hits: list[int] = []
    head = head_layout(tasks)[tasks[0].name]
    metrics = evaluate_classifier(model, tok, tasks[0].test, head, batch_size=3, max_length=64, hits=hits)
    assert len(hits) == len(tasks[0].test) and set(hits) <= {0, 1}
    assert sum(hits) / len(hits) == pytest.approx(metrics["acc"])
    summary = evaluate_tasks(model, tok, tasks, "test", "seq_cls", max_length=64, records=True)
    assert summary["records"][tasks[0].name]["acc"] == hits


def test_records_file_round_trip_and_older_runs_read_as_none(tmp_path):
    rec = {"t": {"index": [0, 1], "uid": ["a", "b"], "acc": [1, 0], "acc_norm": [0, 0]}}
    save_records(tmp_path, "test", {"tuned": rec})
    saved = json.loads((tmp_path / RECORDS_FILE).read_text())
    assert saved["split"] == "test" and saved["format"] == 1
    assert load_records(tmp_path) == rec
    assert load_records(tmp_path, "base") is None
    assert load_records(tmp_path / "older-run") is None
    (tmp_path / RECORDS_FILE).write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="format"):
        load_records(tmp_path)

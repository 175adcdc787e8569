"""MATH final-answer normalisation and exact match; HumanEval/MBPP pass@1 through the sandbox."""

from __future__ import annotations

import pytest

from spectral_moe.data.olmo import humaneval_examples, math_examples, mbpp_examples
from spectral_moe.evaluation import scoring
from spectral_moe.evaluation.code import CodeExecutionNotAllowed
from spectral_moe.evaluation.scoring import (
    code_program,
    completion_answer,
    evaluate_task,
    extract_math_answer,
    math_answers_equal,
    normalize_math_answer,
    score_code_execution,
    score_exact_match,
)
from tests.helpers import tiny_llama, tiny_tokenizer


@pytest.mark.parametrize(
    ("predicted", "reference"),
    [
        ("$\\boxed{5}$", "5"),
        ("\\boxed{1,000}", "1000"),
        ("5.00", "5"),
        (" x = 3 ", "3"),
        ("\\dfrac{1}{2}", "\\frac12"),
        ("1/2", "\\frac{1}{2}"),
        ("0.5", "\\frac{1}{2}"),
        ("\\left( 3, \\sqrt2 \\right)", "(3,\\sqrt{2})"),
        ("90^\\circ", "90"),
        ("50\\%", "50"),
        ("10 \\text{ cm}", "10"),
        (".5", "0.5"),
        ("\\$18", "18"),
        ("\\fbox{7}", "7"),
    ],
)
def test_equivalent_answers(predicted, reference):
    assert math_answers_equal(predicted, reference)


@pytest.mark.parametrize(
    ("predicted", "reference"),
    [
        ("\\frac{2}{4}", "\\frac{1}{2}"),  # fractions as written: not evaluated
        ("(1,2)", "12"),  # a comma inside a tuple is kept
        ("5.01", "5"),
        ("-5", "5"),
        (None, "5"),
    ],
)
def test_different_answers(predicted, reference):
    assert not math_answers_equal(predicted, reference)


def test_extract_math_answer():
    assert extract_math_answer("So $x=\\boxed{\\frac{1}{2}}$. Then \\boxed{3}.") == "3"
    assert extract_math_answer("Final Answer: The final answer is $7$. I hope it is correct.") == "$7$"
    assert extract_math_answer("We get $y$ and then $12$") == "12"
    assert extract_math_answer("42") == "42" and extract_math_answer("  ") is None
    assert normalize_math_answer("\\boxed{\\frac{1}{2}}+\\boxed{1}") != normalize_math_answer("\\frac{1}{2}")


def _math():
    docs = [
        {"problem": "What is 1/2 + 1/2?", "solution": "It is $\\boxed{1}$.", "answer": "1"},
        {"problem": "Write 3/4.", "solution": "$\\boxed{\\frac{3}{4}}$", "answer": "\\frac{3}{4}"},
        {"problem": "What is 999+1?", "solution": "$\\boxed{1000}$", "answer": "1000"},
    ]
    return math_examples(docs)[0]


def test_math_exact_match_uses_the_normaliser(monkeypatch):
    examples = _math()
    canned = [
        " We add: $\\boxed{1.0}$.\n\nProblem: next",  # trailing .0
        " The answer is $\\boxed{3/4}$",  # a/b vs \frac{a}{b}
        " It is $\\boxed{1,001}$",  # wrong
    ]
    seen = {}

    def fake_generate(model, tokenizer, prompts, max_new_tokens, batch_size, stop=()):
        seen.update(n=max_new_tokens, stop=list(stop))
        return canned[: len(prompts)]

    monkeypatch.setattr(scoring, "_generate", fake_generate)
    tok = tiny_tokenizer()
    metrics, _ = score_exact_match(None, tok, examples)
    assert metrics["exact_match"] == pytest.approx(2 / 3)
    assert seen["n"] >= scoring.SOLUTION_MAX_NEW_TOKENS and "Problem:" in seen["stop"]
    assert completion_answer(examples[0], canned[0]) == "1.0"


HE = [
    {
        "task_id": "HumanEval/0",
        "prompt": 'def add(a, b):\n    """Add."""\n',
        "canonical_solution": "    return a + b\n",
        "entry_point": "add",
        "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
    },
    {
        "task_id": "HumanEval/1",
        "prompt": 'def neg(a):\n    """Negate."""\n',
        "canonical_solution": "    return -a\n",
        "entry_point": "neg",
        "test": "def check(candidate):\n    assert candidate(2) == -2\n",
    },
]
MBPP = [
    {
        "task_id": 2,
        "text": "Write a function to triple x.",
        "code": "def tri(x):\n    return 3*x",
        "test_list": ["assert tri(1) == 3", "assert tri(2) == 6"],
        "test_setup_code": "",
    }
]


def test_code_programs_compose_prompt_and_completion():
    he, mb = humaneval_examples(HE)[0], mbpp_examples(MBPP)[0]
    # the completion is cut at the first stop sequence ("\ndef" for HumanEval, "[DONE]" for MBPP)
    assert code_program(he, "    return a + b\n\ndef junk():\n") == he.input + "    return a + b\n"
    assert code_program(mb, "def tri(x):\n    return 3*x\n[DONE] more") == "def tri(x):\n    return 3*x\n"


def test_pass_at_1_runs_the_programs_in_the_sandbox(monkeypatch):
    examples = humaneval_examples(HE)
    prompts_seen = []

    def fake_generate(model, tokenizer, prompts, max_new_tokens, batch_size, stop=()):
        prompts_seen.extend(tokenizer.decode(p) for p in prompts)
        return ["    return a + b\n\nprint('x')\n", "    return a\n"]  # right, wrong

    monkeypatch.setattr(scoring, "_generate", fake_generate)
    tok = tiny_tokenizer()
    metrics, completions = score_code_execution(None, tok, examples, allow_code_execution=True)
    assert metrics["pass@1"] == 0.5 and metrics["n"] == 2
    assert metrics["errors"] == {"AssertionError": 1}
    assert {"process", "workdir"} <= set(metrics["isolation"])
    # the prompt keeps its trailing newline (split_prompt moves it into the continuation)
    assert all(p.endswith('"""\n') for p in prompts_seen), prompts_seen

    mb = mbpp_examples(MBPP)
    monkeypatch.setattr(scoring, "_generate", lambda *a, **k: ["def tri(x):\n    return 3*x\n[DONE]"])
    assert score_code_execution(None, tok, mb, allow_code_execution=True)[0]["pass@1"] == 1.0


def test_code_tasks_need_the_opt_in_before_generating(monkeypatch):
    monkeypatch.delenv("SPECTRAL_MOE_ALLOW_CODE_EVAL", raising=False)

    def must_not_run(*args, **kwargs):
        raise AssertionError("generated before checking the opt-in")

    monkeypatch.setattr(scoring, "_generate", must_not_run)
    model, tok = tiny_llama(vocab_size=len(tiny_tokenizer())), tiny_tokenizer()
    with pytest.raises(
        CodeExecutionNotAllowed, match="--allow-code-execution.*SPECTRAL_MOE_ALLOW_CODE_EVAL=1"
    ):
        evaluate_task(model, tok, humaneval_examples(HE), "free_form")
    monkeypatch.setenv("SPECTRAL_MOE_ALLOW_CODE_EVAL", "1")
    with pytest.raises(CodeExecutionNotAllowed):  # an explicit False wins over the variable
        evaluate_task(model, tok, humaneval_examples(HE), "free_form", allow_code_execution=False)


def test_generation_stops_at_stop_strings_on_a_real_model():
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok))
    ids = [tok.bos_token_id] + tok("def f():", add_special_tokens=False)["input_ids"]
    full = scoring._generate(model, tok, [ids], 12, 1)[0]
    assert len(full) > 4
    stopped = scoring._generate(model, tok, [ids], 12, 1, stop=[full[:3]])[0]
    assert stopped.startswith(full[:3]) and len(stopped) < len(full)  # generation ended at the stop string

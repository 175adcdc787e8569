import math

import torch

from spectral_moe.data.features import causal_lm_features
from spectral_moe.data.types import Example
from spectral_moe.evaluation.scoring import (
    continuation_logprobs,
    encode_pair,
    first_number,
    score_multiple_choice,
)
from tests.helpers import tiny_llama, tiny_tokenizer


def _model_and_tok():
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok))
    return model, tok


def test_encode_pair_moves_trailing_space_to_the_continuation():
    tok = tiny_tokenizer()
    ctx, cont = encode_pair(tok, "Answer: ", "5")
    assert tok.decode(ctx) == "Answer:"
    assert tok.decode(cont) == " 5"


def test_loglikelihood_equals_hand_computation():
    model, tok = _model_and_tok()
    context, continuation = "Question: what is 2 plus 3? Answer:", " 5"
    ((ll, n),) = continuation_logprobs(model, tok, [(context, continuation)])
    ctx, cont = encode_pair(tok, context, continuation)
    ids = [tok.bos_token_id] + ctx + cont
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    manual = 0.0
    for i, t in enumerate(cont):
        pos = len(ids) - len(cont) + i
        manual += torch.log_softmax(logits[pos - 1], -1)[t].item()
    assert n == len(cont)
    assert math.isclose(ll, manual, rel_tol=1e-5)


def test_batched_scoring_equals_one_by_one():
    model, tok = _model_and_tok()
    pairs = [("The answer is", " yes"), ("Question: 2 plus 3?", " 5"), ("abc", " 0123456789")]
    batched = continuation_logprobs(model, tok, pairs, batch_size=3)
    single = [continuation_logprobs(model, tok, [p], batch_size=1)[0] for p in pairs]
    for (a, na), (b, nb) in zip(batched, single):
        assert na == nb and math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5)


def test_accuracy_and_length_normalised_accuracy():
    model, tok = _model_and_tok()
    ex = Example(task="t", input="The answer is", choices=(" yes", " no or yes"), answer=" yes")
    metrics, results = score_multiple_choice(model, tok, [ex])
    ll = results[0].loglik
    assert metrics["acc"] == float(ll[0] > ll[1])
    norm = [ll[0] / len(" yes"), ll[1] / len(" no or yes")]
    assert metrics["acc_norm"] == float(norm[0] > norm[1])


def test_answer_only_loss_masking():
    tok = tiny_tokenizer()
    ex = Example(task="t", input="Question: 2 plus 3? Answer:", choices=(" 5", " 6"), answer=" 5")
    feats = causal_lm_features(tok, ex, max_length=64)
    ids, labels = feats["input_ids"], feats["labels"]
    assert len(ids) == len(labels)
    ctx, cont = encode_pair(tok, ex.input, ex.answer)
    n_prompt = 1 + len(ctx)  # bos + prompt
    assert labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == cont + [tok.eos_token_id] == ids[n_prompt:]


def test_first_number():
    assert first_number("The answer is 1,234.") == "1234"
    assert first_number("-7 apples") == "-7"
    assert first_number("5.0") == "5"
    assert first_number("none") is None


def test_shared_context_choices_of_different_lengths_match_full_forward():
    model, tok = _model_and_tok()
    context = "Question: what is 2 plus 3? Answer:"
    choices = [" 5", " yes or no", " 0123456789 abc"]
    scores = continuation_logprobs(model, tok, [(context, c) for c in choices], batch_size=2)
    for choice, (ll, n) in zip(choices, scores):
        ctx, cont = encode_pair(tok, context, choice)
        ids = [tok.bos_token_id] + ctx + cont
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
        manual = sum(logp[len(ids) - len(cont) + i - 1, t].item() for i, t in enumerate(cont))
        assert n == len(cont)
        assert math.isclose(ll, manual, rel_tol=1e-5, abs_tol=1e-5)


def test_numeric_targets_are_scored_by_generation_too():
    from spectral_moe.evaluation.scoring import evaluate_task, numeric_target

    model, tok = _model_and_tok()
    arith = Example(
        task="a", input="Q: 2 plus 3? A:", choices=(" 5", " banana"), answer=" 5", meta={"target": "5"}
    )
    prose = Example(
        task="s", input="Is it?", choices=(" yes", " no"), answer=" yes", meta={"target": "Because."}
    )
    assert numeric_target(arith) == "5" and numeric_target(prose) is None
    assert "exact_match" in evaluate_task(model, tok, [arith], "multiple_choice")
    assert "exact_match" not in evaluate_task(model, tok, [prose], "multiple_choice")


def test_mmlu_accuracy_is_the_macro_average_over_subjects():
    model, tok = _model_and_tok()
    examples = [
        Example(
            task="mmlu",
            input=f"Q{i}: pick\nAnswer:",
            choices=(" A", " B"),
            answer=ans,
            meta={"subject": subj},
        )
        for i, (subj, ans) in enumerate([("a", " A"), ("a", " B"), ("a", " A"), ("b", " B")])
    ]
    metrics, results = score_multiple_choice(model, tok, examples)
    hit = [r.pred == r.label for r in results]
    per = {"a": sum(hit[:3]) / 3, "b": float(hit[3])}
    assert metrics["subjects"]["a"]["acc"] == per["a"] and metrics["subjects"]["b"]["n"] == 1
    assert metrics["acc"] == (per["a"] + per["b"]) / 2 and metrics["n_subjects"] == 2
    assert metrics["acc_micro"] == sum(hit) / 4

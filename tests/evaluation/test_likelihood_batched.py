"""The batched scorer (packed ``context + choice`` rows, logits at continuation positions only) against
the scorer it replaced (``tests.oracles.score_fitted_kv_cache``: context alone, then the choices on its
KV cache)."""

import pytest
import torch
from peft import get_peft_model

import spectral_moe  # noqa: F401
from spectral_moe import HMoRAConfig
from spectral_moe.data.types import Example
from spectral_moe.evaluation.likelihood import fit_pairs, score_fitted, score_multiple_choice
from spectral_moe.evaluation.scoring import evaluate_task
from tests.helpers import tiny_llama, tiny_tokenizer
from tests.oracles import score_fitted_kv_cache

PASSAGE = "The answer is yes or no. 0123456789 abc. " * 3
EXAMPLES = [
    Example(
        task="t",
        input="Question: what is 2 plus 3? Answer:",
        choices=(" 5", " 6", " 0123456789 abc"),
        answer=" 5",
    ),
    Example(task="t", input="The answer is", choices=(" yes", " no or yes"), answer=" no or yes"),
    Example(task="t", input="abc ", choices=("0", "0123", "yes or no", "The answer is yes."), answer="0123"),
    Example(
        task="t",
        input=PASSAGE + "\nQuestion: yes or no?\nAnswer:",
        choices=(" yes", " no", " 2 plus 3 is 5"),
        answer=" no",
        meta={"passage": [0, len(PASSAGE)]},
    ),
    Example(task="t", input="2 plus 3", choices=(" is 5", " is 6 or 7", ""), answer=" is 5"),
]


def _fitted(tok, max_length):
    pairs = [(ex.input, c) for ex in EXAMPLES for c in ex.choices]
    spans = [ex.passage_span for ex in EXAMPLES for _ in ex.choices]
    return fit_pairs(tok, pairs, max_length, spans)


def _assert_same(new, old, tol=1e-4):
    assert [k for _, k in new] == [k for _, k in old]
    for (a, _), (b, _) in zip(new, old):
        assert abs(a - b) <= tol * max(1.0, abs(b)), (a, b)


@pytest.mark.parametrize("strategy", ["shared", "packed"])
@pytest.mark.parametrize("max_length", [None, 40])
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batched_scores_equal_the_kv_cache_scorer(max_length, batch_size, strategy):
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok))
    fitted = _fitted(tok, max_length)
    if max_length is not None:
        assert any(f.truncated for f in fitted)  # the passage lost tokens
    new = score_fitted(model, tok, fitted, batch_size, strategy=strategy)
    _assert_same(new, score_fitted_kv_cache(model, tok, fitted, batch_size))
    assert new[-1] == (0.0, 0)  # the empty choice


def test_single_token_choices_need_one_forward_per_batch():
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok))
    ex = [
        Example(task="t", input=f"Question {i}: yes or no? Answer:", choices=(" yes", " no"), answer=" no")
        for i in range(5)
    ]
    pairs = [(e.input, c) for e in ex for c in e.choices]
    fitted = fit_pairs(tok, pairs, None)
    assert all(len(f.continuation) == 1 for f in fitted)
    calls: list[int] = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: calls.append(1), with_kwargs=True)
    try:
        new = score_fitted(model, tok, fitted, batch_size=4)
    finally:
        hook.remove()
    assert len(calls) == 3  # 2 questions (4 choices) per batch, 5 questions: one context forward per batch
    _assert_same(new, score_fitted_kv_cache(model, tok, fitted, 4))


def test_accuracies_equal_the_kv_cache_scorer():
    tok = tiny_tokenizer()
    model = tiny_llama(seed=3, vocab_size=len(tok))
    metrics, results = score_multiple_choice(model, tok, EXAMPLES, batch_size=4, max_length=40)
    old = score_fitted_kv_cache(model, tok, _fitted(tok, 40), 4)
    k, hit, hit_norm = 0, 0.0, 0.0
    for ex, r in zip(EXAMPLES, results):
        ll = [s for s, _ in old[k : k + len(ex.choices)]]
        k += len(ex.choices)
        assert r.pred == max(range(len(ll)), key=ll.__getitem__)
        norm = [v / max(len(c.encode()), 1) for v, c in zip(ll, ex.choices)]
        assert r.pred_norm(ex.choices) == max(range(len(norm)), key=norm.__getitem__)
        hit += r.pred == r.label
        hit_norm += r.pred_norm(ex.choices) == r.label
    assert metrics["acc"] == hit / len(EXAMPLES) and metrics["acc_norm"] == hit_norm / len(EXAMPLES)


def test_without_bos_token():
    tok = tiny_tokenizer()
    tok.bos_token = None
    assert tok.bos_token_id is None
    model = tiny_llama(seed=1, vocab_size=len(tok))
    fitted = _fitted(tok, None)
    assert fitted[0].context[0] != tok.convert_tokens_to_ids("<s>")
    _assert_same(score_fitted(model, tok, fitted, 5), score_fitted_kv_cache(model, tok, fitted, 5))


@pytest.mark.parametrize("strategy", ["shared", "packed"])
def test_batches_and_the_vocabulary_only_where_a_continuation_token_is_predicted(strategy):
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok))
    fitted = _fitted(tok, None)
    rows: list[int] = []
    hook = model.lm_head.register_forward_hook(
        lambda m, a, out: rows.append(a[0].reshape(-1, a[0].shape[-1]).shape[0])
    )
    try:
        score_fitted(model, tok, fitted, batch_size=6, strategy=strategy)
    finally:
        hook.remove()
    scored = [f for f in fitted if f.continuation]
    n_batches = -(-len(scored) // 6)  # ceil
    if strategy == "packed":  # one forward per batch of 6 sequences, a row per continuation token
        assert len(rows) == n_batches and sum(rows) == sum(len(f.continuation) for f in scored)
    else:  # contexts: one row each (the first choice token); choices: a row per later token
        n_ctx = len({tuple(f.context) for f in scored})
        assert sum(rows) == n_ctx + sum(len(f.continuation) - 1 for f in scored)
        assert len(rows) <= 2 * len(EXAMPLES)


class _NoLogitsToKeep(torch.nn.Module):
    """A causal LM whose forward takes no ``logits_to_keep``."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache)


def test_models_without_logits_to_keep():
    tok = tiny_tokenizer()
    model = tiny_llama(seed=2, vocab_size=len(tok))
    fitted = _fitted(tok, None)
    _assert_same(
        score_fitted(_NoLogitsToKeep(model), tok, fitted, 4), score_fitted(model, tok, fitted, 4), 1e-5
    )


def test_hmora_task_representation_sees_the_context_only():
    tok = tiny_tokenizer()
    cfg = HMoRAConfig(
        target_modules=["q_proj", "v_proj"],
        task_token_id=5,
        task_encoder_heads=4,
        num_experts=4,
        top_k=2,
        r=2,
        routing="task",
        init_lora_weights=False,
    )
    model = get_peft_model(tiny_llama(num_hidden_layers=3, vocab_size=len(tok)), cfg).eval()
    fitted = _fitted(tok, None)
    old = score_fitted_kv_cache(model, tok, fitted, 4)
    _assert_same(score_fitted(model, tok, fitted, 4), old)
    _assert_same(score_fitted(model, tok, fitted, 4, autocast_dtype=torch.bfloat16), old, tol=5e-2)


def test_bf16_autocast_is_close_and_bad_dtypes_are_named():
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok))
    fitted = _fitted(tok, None)
    fp32 = score_fitted(model, tok, fitted, 8)
    bf16 = score_fitted(model, tok, fitted, 8, autocast_dtype=torch.bfloat16)
    assert fp32 != bf16
    _assert_same(bf16, fp32, tol=5e-2)
    _assert_same(score_fitted(model, tok, fitted, 8, autocast_dtype=torch.float32), fp32, tol=0.0)
    with pytest.raises(ValueError, match="autocast_dtype"):
        score_fitted(model, tok, fitted, 8, autocast_dtype=torch.int8)
    with pytest.raises(TypeError, match="autocast_dtype"):
        score_fitted(model, tok, fitted, 8, autocast_dtype="bf16")
    metrics = evaluate_task(model, tok, EXAMPLES, "multiple_choice", autocast_dtype=torch.bfloat16)
    assert metrics["n"] == len(EXAMPLES)


@pytest.mark.parametrize("method", ["fouriermoe", "frame", "flylora"])
def test_routed_adapters_score_as_before(method):
    from spectral_moe import FlyLoraConfig, FourierMoEConfig, FrameConfig

    tok = tiny_tokenizer()
    target = ["q_proj", "v_proj"]
    cfg = {
        "fouriermoe": lambda: FourierMoEConfig(target_modules=target, num_experts=4, top_k=2, n_frequency=16),
        "frame": lambda: FrameConfig(target_modules=target, num_experts=4, top_k=2, r=2),
        "flylora": lambda: FlyLoraConfig(target_modules=target, r=8),
    }[method]()
    model = get_peft_model(tiny_llama(num_hidden_layers=2, vocab_size=len(tok)), cfg).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.2)
    fitted = _fitted(tok, 40)
    old = score_fitted_kv_cache(model, tok, fitted, 4)
    for strategy in ("shared", "packed"):
        _assert_same(score_fitted(model, tok, fitted, 5, strategy=strategy), old)

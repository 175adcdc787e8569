import math

import pytest
import torch
import torch.nn.functional as F
from peft import PeftConfig, PeftModel, get_peft_model
from transformers import Trainer, TrainingArguments

import spectral_moe  # noqa: F401
from spectral_moe import HMoRAConfig
from spectral_moe.tuners.hmora import HMoRALayer, HMoRALinear, TaskEncoder, entropy_balance_loss
from tests.helpers import ToyLM, tiny_llama

ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL = [*ATTN, "gate_proj", "up_proj", "down_proj"]


def _cfg(**kw):
    base = dict(target_modules=ATTN, task_token_id=5, task_encoder_heads=4, num_experts=4, top_k=2, r=2)
    return HMoRAConfig(**{**base, **kw})


def _layers(model):
    return [m for m in model.modules() if isinstance(m, HMoRALayer)]


def _reference_gates(router, x, s, top_k, topk_routing=True):
    """G = (1 − α)·softmax(W_tok x + b) + α·softmax(W_task s + b), top-k, softmax over the kept values."""
    parts = {}
    if router.token is not None:
        parts["tok"] = torch.softmax(x @ router.token.weight.T + router.token.bias, -1)
    if router.task is not None:
        parts["task"] = torch.softmax(s @ router.task.weight.T + router.task.bias, -1)[:, None, :]
    if router.mode == "hybrid":
        alpha = 1 / (1 + torch.exp(-router.alpha_logit))
        mix = (1 - alpha) * parts["tok"] + alpha * parts["task"]
    else:
        mix = parts.get("tok", parts.get("task")).expand(*x.shape[:-1], -1)
    if not topk_routing:
        return mix
    order = mix.argsort(-1, descending=True)[..., :top_k]
    kept = mix.gather(-1, order)
    return torch.zeros_like(mix).scatter(-1, order, torch.exp(kept) / torch.exp(kept).sum(-1, keepdim=True))


@pytest.mark.parametrize(
    "layer_index, mode, shared_a, topk_routing",
    [
        (0, "token", False, True),
        (2, "hybrid", False, True),
        (4, "task", True, True),
        (2, "hybrid", True, False),
    ],
)
def test_layer_equals_hand_written_reference(layer_index, mode, shared_a, topk_routing):
    cfg = _cfg(num_experts=5, top_k=2, r=3, lora_alpha=4.0, dropout=0.0, shared_lora_a=shared_a)
    cfg.top_k_routing = topk_routing
    base = torch.nn.Linear(10, 7).double()
    layer = HMoRALinear(
        base, "default", cfg, layer_index=layer_index, last_index=4, task_features=6, plain_lora=False
    ).double()
    router = layer.hmora_router["default"]
    assert router.mode == mode
    with torch.no_grad():
        layer.hmora_B["default"].normal_()
    x = torch.randn(3, 4, 10, dtype=torch.float64)
    s = torch.randn(3, 6, dtype=torch.float64)
    layer.set_task_representation({"default": s})
    g = _reference_gates(router, x, s, 2, topk_routing)
    a, b = layer.hmora_A["default"], layer.hmora_B["default"]
    expected = base(x)
    for e in range(5):
        a_e = a if shared_a else a[e * 3 : (e + 1) * 3]
        expected = expected + g[..., e : e + 1] * (x @ a_e.T @ b[:, e * 3 : (e + 1) * 3].T) * (
            4.0 / math.sqrt(3)
        )
    with torch.no_grad():
        assert (layer(x) - expected).abs().max() < 1e-10
        assert (layer.gates("default", x) - g).abs().max() < 1e-12
    if topk_routing:
        assert torch.equal((g > 0).sum(-1), torch.full((3, 4), 2))


def test_plain_lora_module_is_rslora():
    base = torch.nn.Linear(10, 7).double()
    layer = HMoRALinear(base, "default", _cfg(dropout=0.0, r=4, lora_alpha=8.0), plain_lora=True).double()
    with torch.no_grad():
        layer.hmora_B["default"].normal_()
    x = torch.randn(2, 3, 10, dtype=torch.float64)
    a, b = layer.hmora_A["default"], layer.hmora_B["default"]
    assert "default" not in layer.hmora_router
    with torch.no_grad():
        assert (layer(x) - base(x) - x @ a.T @ b.T * (8.0 / 2)).abs().max() < 1e-10


def test_alpha_schedule_and_bounds():
    model = get_peft_model(tiny_llama(num_hidden_layers=5), _cfg(alpha_epsilon=2.0, alpha_shift=0.3))
    modes, logits = [], []
    for block in model.base_model.model.model.layers:
        router = block.self_attn.q_proj.hmora_router["default"]
        modes.append(router.mode)
        logits.append(None if router.alpha_logit is None else router.alpha_logit.item())
    expected = [2.0 * (2 * i / 4 - 1) + 0.3 for i in range(5)]  # θ_l = ε(2l/L − 1) + shift, L = 4
    sig = [1 / (1 + math.exp(-t)) for t in expected]
    assert modes == ["token" if a < 0.2 else "task" if a > 0.8 else "hybrid" for a in sig]
    assert modes[0] == "token" and modes[-1] == "task" and "hybrid" in modes
    for got, want, mode in zip(logits, expected, modes):
        if mode == "hybrid":
            assert got == pytest.approx(want, abs=1e-7)
        else:
            assert got is None
    alphas = model.base_model.mixing_weights()
    assert alphas and all(0.2 <= a <= 0.8 for a in alphas.values())
    one = get_peft_model(tiny_llama(num_hidden_layers=5), _cfg(routing="token"))
    assert {m.hmora_router["default"].mode for m in _layers(one)} == {"token"}


def _reference_encoder(enc, embeds, prompt):
    """Post-norm transformer encoder layer written out: MHA over prompt keys + task token, FFN, LayerNorm."""
    b, t, d = embeds.shape
    pos = torch.arange(5000 - t, 5000, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(10000.0) / d))
    pe = torch.zeros(t, d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    x = torch.cat([embeds + pe, enc.task_token.expand(b, 1, d)], 1)
    keep = torch.cat([prompt.bool(), torch.ones(b, 1, dtype=torch.bool)], 1)
    for layer in enc.layers:
        att = layer.self_attn
        h = att.num_heads
        q, k, v = (x @ att.in_proj_weight.T + att.in_proj_bias).chunk(3, -1)
        q, k, v = (z.reshape(b, t + 1, h, d // h).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(
            b, t + 1, d
        ) @ att.out_proj.weight.T + att.out_proj.bias
        x = F.layer_norm(x + o, (d,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
        ff = (
            torch.relu(x @ layer.linear1.weight.T + layer.linear1.bias) @ layer.linear2.weight.T
            + layer.linear2.bias
        )
        x = F.layer_norm(x + ff, (d,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
    return x[:, -1]


def test_task_encoder_equals_reference_and_sees_only_the_prompt():
    model = get_peft_model(tiny_llama(num_hidden_layers=3), _cfg(task_encoder_layers=2)).double()
    model.eval()
    tuner = model.base_model
    enc = tuner.hmora_task_encoder["default"]
    embed = model.base_model.model.get_input_embeddings()
    assert torch.equal(enc.task_token.detach(), embed.weight[5].detach())  # initialised from token 5
    ids = torch.randint(0, 64, (3, 7))
    labels = ids.clone()
    labels[:, :4] = -100  # prompt = first 4 tokens
    attn = torch.ones_like(ids)
    attn[2, 6] = 0
    with torch.no_grad():
        s = tuner.task_representation("default", ids, attn, labels)
        prompt = (labels == -100) & attn.bool()
        ref = _reference_encoder(enc, embed(ids), prompt)
        assert (s - ref).abs().max() < 1e-10
        changed = ids.clone()
        changed[:, 5] = (changed[:, 5] + 1) % 64  # an answer token: s unchanged
        assert torch.equal(tuner.task_representation("default", changed, attn, labels), s)
        changed[:, 1] = (changed[:, 1] + 1) % 64  # a prompt token: s changes
        assert not torch.allclose(tuner.task_representation("default", changed, attn, labels), s)
        # no labels: the whole non-padded input is the prompt; explicit masks override
        whole = tuner.task_representation("default", ids, attn)
        assert (whole - _reference_encoder(enc, embed(ids), attn)).abs().max() < 1e-10
        with tuner.prompt_mask(prompt.long()):
            model(input_ids=ids, attention_mask=attn)
        layer = _layers(model)[-1]
        assert torch.equal(layer.__dict__["_task_repr"]["default"], s)


def test_aux_loss_formula_on_hand_built_distributions():
    e = 8
    one_hot = torch.eye(e, dtype=torch.float64).repeat(3, 1)  # uniform mean, certain tokens
    assert entropy_balance_loss(one_hot, None, 0.98, 0.5).item() == pytest.approx(0.0, abs=1e-8)
    collapsed = torch.zeros(10, e, dtype=torch.float64)
    collapsed[:, 0] = 1
    # H_m = 0, H̄_p = γ_c log E: L = ((γ_b − γ_c) log E + γ_c log E) / log E = γ_b
    assert entropy_balance_loss(collapsed, None, 0.98, 0.5).item() == pytest.approx(0.98, abs=1e-7)
    uniform = torch.full((10, e), 1 / e, dtype=torch.float64)  # balanced but uncertain: γ_b − γ_c + (1 − γ_b)
    assert entropy_balance_loss(uniform, None, 0.98, 0.5).item() == pytest.approx(0.5, abs=1e-7)
    # the mask drops padding: a collapsed padded tail does not count
    mixed = torch.cat([one_hot, collapsed])
    weights = torch.cat([torch.ones(len(one_hot)), torch.zeros(10)])
    assert entropy_balance_loss(mixed, weights, 0.98, 0.5).item() == pytest.approx(0.0, abs=1e-8)
    assert entropy_balance_loss(mixed, None, 0.98, 0.5).item() > 0.01
    p = torch.softmax(torch.randn(6, e, dtype=torch.float64), -1)
    m = p.mean(0)
    hm = min(-(m * torch.log(m + 1e-9)).sum().item(), 0.9 * math.log(e))
    hp = (-(p * torch.log(p + 1e-9)).sum(-1)).clamp(min=0.3 * math.log(e)).mean().item()
    want = max(0.0, (0.9 - 0.3) * math.log(e) - (hm - hp)) / math.log(e)
    assert entropy_balance_loss(p, None, 0.9, 0.3).item() == pytest.approx(want, abs=1e-12)


def test_training_loss_includes_aux_and_gradients_reach_encoder_and_alpha():
    cfg = _cfg(share_router_qkv=True, lora_modules=["o_proj"], init_lora_weights=False)
    model = get_peft_model(tiny_llama(num_hidden_layers=4), cfg)
    model.train()
    ids = torch.randint(0, 64, (2, 8))
    labels = ids.clone()
    labels[:, :3] = -100
    out = model(input_ids=ids, labels=labels)
    tuner = model.base_model
    aux = tuner.get_router_aux_loss()
    routers = {
        id(m.hmora_router["default"]): m.hmora_router["default"] for m in _layers(model) if m.hmora_router
    }
    n_terms = sum((r.token is not None) + (r.task is not None) for r in routers.values())
    assert len(routers) == 4 and n_terms == 6  # one shared router per block: token, hybrid ×2, task
    lm = F.cross_entropy(out.logits[:, :-1].reshape(-1, 64), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert aux.item() > 0
    assert out.loss.item() == pytest.approx(lm.item() + 0.005 * aux.item(), rel=1e-5)
    out.loss.backward()
    enc = tuner.hmora_task_encoder["default"]
    assert enc.task_token.grad is not None and enc.task_token.grad.abs().max() > 0
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in enc.layers.parameters())
    hybrid = [r for r in routers.values() if r.mode == "hybrid"]
    assert hybrid and all(r.alpha_logit.grad is not None and r.alpha_logit.grad != 0 for r in hybrid)


def test_save_load_round_trip(tmp_path):
    cfg = _cfg(
        share_router_qkv=True,
        share_router_ffn=True,
        lora_modules=["o_proj", "down_proj"],
        init_lora_weights=False,
    )
    cfg.target_modules = set(ALL)
    model = get_peft_model(tiny_llama(num_hidden_layers=3), cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    ids = torch.randint(0, 64, (2, 8))
    with torch.no_grad():
        out = model(input_ids=ids).logits
    model.save_pretrained(tmp_path)
    assert isinstance(PeftConfig.from_pretrained(tmp_path), HMoRAConfig)
    loaded = PeftModel.from_pretrained(tiny_llama(num_hidden_layers=3), tmp_path)
    block = loaded.base_model.model.model.layers[1]
    assert block.self_attn.q_proj.hmora_router["default"] is block.self_attn.v_proj.hmora_router["default"]
    assert block.mlp.gate_proj.hmora_router["default"] is block.mlp.up_proj.hmora_router["default"]
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, out)


def test_trainer_lowers_loss(tmp_path):
    model = get_peft_model(tiny_llama(), _cfg(target_modules=ALL, r=4, dropout=0.0))
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=30,
        per_device_train_batch_size=16,
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        learning_rate=1e-2,
    )
    trainer = Trainer(model=model, args=args, train_dataset=ToyLM(64))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0] - 0.1, losses


def test_bf16_forward_backward():
    model = get_peft_model(tiny_llama(num_hidden_layers=4), _cfg(init_lora_weights=False))
    model.to(torch.bfloat16).train()
    ids = torch.randint(0, 64, (2, 8))
    out = model(input_ids=ids, labels=ids)
    assert out.logits.dtype == torch.bfloat16
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g.float()).all() for g in grads)


def test_generation_reuses_the_prompts_task_representation():
    model = get_peft_model(tiny_llama(num_hidden_layers=4), _cfg(init_lora_weights=False)).eval()
    seen = []
    layer = _layers(model)[-1]
    layer.register_forward_pre_hook(lambda m, a: seen.append(m.__dict__["_task_repr"]["default"]))
    ids = torch.randint(0, 64, (2, 5))
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False)
        prompt_s = model.base_model.task_representation("default", ids, torch.ones_like(ids))
    assert len(seen) == 3
    assert all(torch.equal(s, prompt_s) for s in seen)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"num_experts": 2, "top_k": 3}, "top_k"),
        ({"routing": "sequence"}, "routing"),
        ({"aux_reduce": "max"}, "aux_reduce"),
        ({"r": 0}, "r"),
        ({"alpha_low_bound": 0.9, "alpha_up_bound": 0.1}, "alpha_low_bound"),
        ({"aux_gamma_certain": 0.99}, "aux_gamma_certain"),
        ({"router_features": "spectral"}, "router_features"),
        ({"router_temperature": 2.0}, "router_temperature"),
        ({"router_bias": False}, "router_bias"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_invalid_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        _cfg(**kwargs)


def test_injection_errors_name_the_field():
    with pytest.raises(ValueError, match="task_token_id"):
        get_peft_model(tiny_llama(), _cfg(task_token_id=None))
    with pytest.raises(ValueError, match="task_encoder_heads"):
        get_peft_model(tiny_llama(), _cfg(task_encoder_heads=5))
    get_peft_model(tiny_llama(), _cfg(task_token_id=None, routing="token"))  # no task router: no token needed


def test_merge_is_refused():
    model = get_peft_model(tiny_llama(), _cfg())
    with pytest.raises(ValueError, match="routes every token"):
        model.merge_and_unload()


def test_builds_on_the_meta_device():
    with torch.device("meta"):
        base = tiny_llama()
    model = get_peft_model(base, _cfg())
    enc = model.base_model.hmora_task_encoder["default"]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) > sum(
        p.numel() for p in enc.parameters()
    )
    assert isinstance(enc, TaskEncoder)

import pytest
import torch
from peft import PeftConfig, PeftModel, get_peft_model
from transformers import Trainer, TrainingArguments

import spectral_moe  # noqa: F401
from spectral_moe import FlyLoraConfig
from spectral_moe.tuners.flylora import FlyLoraLayer, FlyLoraLinear
from tests.helpers import ToyLM, tiny_llama

TARGETS = ["q_proj", "v_proj", "up_proj", "down_proj"]


def _layers(model):
    return [m for m in model.modules() if isinstance(m, FlyLoraLayer)]


def _layer(score="signed", d_in=20, d_out=12, **kw):
    base = torch.nn.Linear(d_in, d_out).double()
    cfg = FlyLoraConfig(target_modules=["x"], r=6, top_k=2, lora_alpha=3.0, topk_score=score, **kw)
    layer = FlyLoraLinear(base, "default", cfg, module_key="block.0.x").double()
    with torch.no_grad():
        layer.flylora_B["default"].normal_()
        layer.flylora_bias_steps["default"].copy_(torch.tensor([3, -2, 0, 5, -7, 1]))
    return layer


@pytest.mark.parametrize("score", ["signed", "abs"])
def test_layer_equals_hand_written_reference(score):
    layer = _layer(score, bias_update_rate=0.05)
    x = torch.randn(3, 5, 20, dtype=torch.float64)
    a = layer.flylora_A["default"].double()
    b = layer.flylora_B["default"]
    d = 0.05 * torch.tensor([3.0, -2, 0, 5, -7, 1], dtype=torch.float64)
    y = x @ a.T
    key = (y + d).abs() if score == "abs" else y + d
    order = key.argsort(dim=-1, descending=True)
    mask = torch.zeros_like(y)
    for t in range(2):  # the top 2 of 6 ranks
        mask.scatter_(-1, order[..., t : t + 1], 1.0)
    expected = layer.base_layer(x) + (3.0 / 6) * (y * mask) @ b.T
    with torch.no_grad():
        out = layer(x)
    assert (out - expected).abs().max() < 1e-10
    # the other score picks other ranks somewhere on these inputs
    other = (y + d) if score == "abs" else (y + d).abs()
    assert not torch.equal(other.topk(2, -1).indices.sort(-1).values, key.topk(2, -1).indices.sort(-1).values)


def test_projection_is_frozen_sparse_and_not_stored(tmp_path):
    model = get_peft_model(tiny_llama(), FlyLoraConfig(target_modules=TARGETS, r=8, top_k=2))
    layers = _layers(model)
    assert len(layers) == 8
    seen = set()
    for layer in layers:
        a = layer.flylora_A["default"]
        p = layer.in_features * 2 // 8
        assert torch.equal((a != 0).sum(1), torch.full((8,), p))
        seen.add(a.sum().item())
    assert len(seen) == len(layers)  # every module has its own A
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all("flylora_B" in n for n in names)  # A and d are not trainable
    ids = torch.randint(0, 64, (2, 8))
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    assert all(not layer.flylora_A["default"].requires_grad for layer in layers)
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert not any("flylora_A." in k or k.endswith("flylora_A") for k in saved)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(
        layer.out_features * 8 for layer in layers
    )


def test_projection_values_and_density():
    layer = FlyLoraLinear(
        torch.nn.Linear(4000, 8), "default", FlyLoraConfig(target_modules=["x"], r=16, top_k=4)
    )
    a = layer.flylora_A["default"]
    assert torch.equal((a != 0).sum(1), torch.full((16,), 1000))
    assert a[a != 0].std().item() == pytest.approx(1 / 16, rel=0.05)
    dense = FlyLoraLinear(
        torch.nn.Linear(40, 8), "default", FlyLoraConfig(target_modules=["x"], r=4, top_k=1, density=0.3)
    )
    assert torch.equal((dense.flylora_A["default"] != 0).sum(1), torch.full((4,), 12))


def _counts(layer, x, bias):
    """Rank counts of one forward by hand: top-k of y + d with the bias d before the step."""
    y = x @ layer.flylora_A["default"].T
    top = (y + bias).topk(layer.flylora_config["default"].top_k, -1).indices
    return torch.bincount(top.reshape(-1), minlength=y.shape[-1])


def test_bias_moves_by_u_toward_balance_only_in_training():
    u = 1e-3
    model = get_peft_model(
        tiny_llama(),
        FlyLoraConfig(target_modules=TARGETS, r=8, top_k=2, bias_update_rate=u, init_lora_weights=False),
    )
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    inputs = {}
    layer.register_forward_pre_hook(lambda m, a: inputs.__setitem__("x", a[0].detach()))
    ids = torch.randint(0, 64, (4, 10))
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    assert all(
        torch.equal(m.flylora_bias_steps["default"], torch.zeros(8, dtype=torch.long)) for m in _layers(model)
    )
    model.train()
    for _ in range(3):
        before = layer.routing_bias("default").clone()
        model(input_ids=ids, labels=ids)  # (the update does not depend on a backward)
        counts = _counts(layer, inputs["x"], before).double()
        step = layer.routing_bias("default") - before
        expected = u * torch.sign(counts.mean() - counts).float()
        assert torch.allclose(step, expected, atol=1e-9), (step, expected)
        assert step.abs().max() > 0
        assert set(torch.round(step / u).tolist()) <= {-1.0, 0.0, 1.0}
    moved = layer.routing_bias("default").clone()
    model.eval()
    model(input_ids=ids)
    assert torch.equal(layer.routing_bias("default"), moved)


def test_padding_does_not_count():
    model = get_peft_model(tiny_llama(), FlyLoraConfig(target_modules=["q_proj"], r=8, top_k=2))
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    ids = torch.randint(0, 64, (2, 6))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    model.eval()
    model(input_ids=ids, attention_mask=mask)
    frac = layer.router_stats["default"]["dispatch_fraction"]
    assert frac.sum().item() == pytest.approx(1.0)
    assert (frac * 2 * 10).round().sum().item() == 20  # 10 real tokens × top-2


def test_save_load_round_trip_and_projection_check(tmp_path):
    cfg = FlyLoraConfig(target_modules=TARGETS, r=8, top_k=2, init_lora_weights=False)
    model = get_peft_model(tiny_llama(), cfg)
    ids = torch.randint(0, 64, (2, 8))
    model.train()
    for _ in range(3):
        model(input_ids=ids, labels=ids)
    model.eval()
    with torch.no_grad():
        out = model(input_ids=ids).logits
    model.save_pretrained(tmp_path)
    assert isinstance(PeftConfig.from_pretrained(tmp_path), FlyLoraConfig)
    loaded = PeftModel.from_pretrained(tiny_llama(), tmp_path)
    for a, b in zip(_layers(model), _layers(loaded)):
        assert torch.equal(a.flylora_bias_steps["default"], b.flylora_bias_steps["default"])
        assert torch.equal(a.flylora_A["default"], b.flylora_A["default"])
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, out)
    # a checkpoint whose A was derived differently (here: a corrupted fingerprint) is refused
    from safetensors.torch import load_file, save_file

    path = tmp_path / "adapter_model.safetensors"
    state = load_file(path)
    key = next(k for k in state if "flylora_A_check" in k)
    state[key] = state[key] + 1
    save_file(state, path)
    with pytest.raises(ValueError, match="re-derived from projection_seed"):
        PeftModel.from_pretrained(tiny_llama(), tmp_path)


def test_trainer_lowers_loss(tmp_path):
    model = get_peft_model(tiny_llama(), FlyLoraConfig(target_modules=TARGETS, r=8, top_k=4))
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=30,
        per_device_train_batch_size=16,
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        learning_rate=2e-2,
    )
    trainer = Trainer(model=model, args=args, train_dataset=ToyLM(64))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0] - 0.1, losses
    assert any(m.flylora_bias_steps["default"].abs().sum() > 0 for m in _layers(model))


def test_bf16_forward_backward():
    model = get_peft_model(
        tiny_llama(), FlyLoraConfig(target_modules=TARGETS, r=8, top_k=2, init_lora_weights=False)
    )
    model.to(torch.bfloat16).train()
    ids = torch.randint(0, 64, (2, 8))
    out = model(input_ids=ids, labels=ids)
    assert out.logits.dtype == torch.bfloat16
    out.loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g.float()).all() for g in grads)
    steps = _layers(model)[0].flylora_bias_steps["default"]
    assert steps.dtype == torch.int64 and steps.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"r": 4, "top_k": 5}, "top_k"),
        ({"r": 0}, "r"),
        ({"density": 0.0}, "density"),
        ({"density": 1.5}, "density"),
        ({"topk_score": "magnitude"}, "topk_score"),
        ({"bias_update_rate": -1.0}, "bias_update_rate"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
    ],
)
def test_invalid_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FlyLoraConfig(target_modules=["q_proj"], **kwargs)


def test_merge_is_refused():
    model = get_peft_model(tiny_llama(), FlyLoraConfig(target_modules=["q_proj"], r=4, top_k=2))
    with pytest.raises(ValueError, match="top-k"):
        model.merge_and_unload()
    with pytest.raises(ValueError, match="top-k"):
        model.base_model.model.model.layers[0].self_attn.q_proj.merge()
    assert isinstance(model.unload().model.layers[0].self_attn.q_proj, torch.nn.Linear)


def test_builds_on_the_meta_device():
    with torch.device("meta"):
        base = tiny_llama()
    model = get_peft_model(base, FlyLoraConfig(target_modules=TARGETS, r=8, top_k=2))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(
        m.out_features * 8 for m in _layers(model)
    )


def test_gradient_checkpointing_sees_the_forwards_top_k():
    """The bias steps after the forward; the recomputation in backward must still use the forward's d."""
    cfg = dict(target_modules=TARGETS, r=8, top_k=2, bias_update_rate=1.0, init_lora_weights=False)
    ids = torch.randint(0, 64, (2, 8))
    grads = []
    for checkpointing in (False, True):
        model = get_peft_model(tiny_llama(), FlyLoraConfig(**cfg))
        model.train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model(input_ids=ids, labels=ids).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-6), n

import pytest
import torch
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model
from transformers import Trainer, TrainingArguments

import spectral_moe  # noqa: F401
from spectral_moe import FrameConfig, MoELoraConfig, create_optimizer
from spectral_moe.spectral.frft import frft
from spectral_moe.tuners.frame import FrameLayer, FrameLinear
from tests.helpers import ToyLM, tiny_gpt2, tiny_llama

METHODS = ["hermite", "weighted", "chirp"]


def _layer(shape=(12, 10), dtype=torch.float64, **kw):
    d_out, d_in = shape
    cfg = dict(target_modules=["x"], num_experts=3, top_k=2, r=2, init_lora_weights=False)
    cfg.update(kw)
    return FrameLinear(torch.nn.Linear(d_in, d_out).to(dtype), "default", FrameConfig(**cfg)).to(dtype)


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def _contract_rhs(layer, x):
    gates = layer.router_weights("default", x)
    z = layer.frame_config["default"].num_experts
    return sum(gates[..., i : i + 1] * (x @ layer.get_delta_weight("default", i).T) for i in range(z))


@pytest.mark.parametrize("shape", [(12, 10), (9, 9), (7, 16)])
@pytest.mark.parametrize("method", METHODS)
def test_contract_identity(method, shape):
    layer = _layer(shape, transform=method)
    x = torch.randn(2, 5, shape[1], dtype=torch.float64)
    lhs = layer(x) - layer.get_base_layer()(x)
    tol = 1e-10 if method != "chirp" else 1e-9
    assert _rel(lhs, _contract_rhs(layer, x)) < tol


@pytest.mark.parametrize("method", METHODS)
def test_factor_side_equals_token_side(method):
    """Re(𝓕^{−a} B A 𝓕^{a} x) computed per token equals the factor-side rank-2r form."""
    layer = _layer((8, 6), transform=method, num_experts=2, top_k=2)
    x = torch.randn(4, 6, dtype=torch.float64)
    orders = layer.frame_orders("default").detach()
    a_mat, b_mat = layer.frame_A["default"], layer.frame_B["default"]
    scale = layer.frame_config["default"].lora_alpha / layer.frame_config["default"].r
    gates = layer.router_weights("default", x)
    token_side = 0
    for z in range(2):
        fx = frft(x, orders[z].item(), method=method)  # 𝓕^{a} x, per token
        h = fx @ a_mat[z].to(fx.dtype).T  # A 𝓕^{a} x
        y = frft((h @ b_mat[z].to(h.dtype).T), -orders[z].item(), method=method)  # 𝓕^{−a} B A 𝓕^{a} x
        token_side = token_side + gates[:, z : z + 1] * scale * y.real
    lhs = layer(x) - layer.get_base_layer()(x)
    assert _rel(lhs, token_side) < (1e-10 if method != "chirp" else 1e-9)


def test_order_zero_experts_are_plain_lora():
    layer = _layer(transform="hermite", order_init=0.0, learn_order=False)
    x = torch.randn(6, 10, dtype=torch.float64)
    scale = 16.0 / 2
    for z in range(3):
        lora = scale * layer.frame_B["default"][z] @ layer.frame_A["default"][z]
        assert (
            torch.equal(layer.get_delta_weight("default", z), lora)
            or _rel(layer.get_delta_weight("default", z), lora) < 1e-15
        )
    assert _rel(layer(x) - layer.get_base_layer()(x), _contract_rhs(layer, x)) < 1e-12


def test_moelora_layer_equals_hand_written_top_k_moe_lora():
    layer = FrameLinear(
        torch.nn.Linear(10, 12).double(),
        "default",
        MoELoraConfig(
            target_modules=["x"], num_experts=4, top_k=2, r=3, lora_alpha=6.0, init_lora_weights=False
        ),
    ).double()
    assert "default" not in layer.frame_order
    assert torch.equal(layer.frame_orders("default"), torch.zeros(4))
    x = torch.randn(7, 10, dtype=torch.float64)
    router = layer.frame_router["default"]
    with torch.no_grad():  # a trained router bias (zero at init)
        router.bias.normal_()
    logits = x @ router.weight.T + router.bias
    probs = torch.softmax(logits, -1)
    top_p, top_i = probs.topk(2, -1)
    top_p = top_p / top_p.sum(-1, keepdim=True)
    expected = layer.get_base_layer()(x)
    for t in range(7):
        for slot in range(2):
            z = top_i[t, slot]
            a, b = layer.frame_A["default"][z], layer.frame_B["default"][z]
            expected[t] += top_p[t, slot] * (6.0 / 3) * (b @ (a @ x[t]))
    assert torch.allclose(layer(x), expected, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_order_gradient_is_nonzero_at_default_init(method):
    model = get_peft_model(
        tiny_llama(), FrameConfig(target_modules=["q_proj", "v_proj"], transform=method, learn_order=True)
    )
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "frame_B" in n:
                p.normal_(std=0.1)  # B = 0 at init gives zero gradients to everything but B
    ids = torch.randint(0, 64, (2, 8))
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if ".frame_order." in n]
    assert grads and all(g is not None and g.abs().max() > 0 for g in grads)


def test_with_zero_b_the_adapted_model_equals_base():
    base = tiny_llama()
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        ref = base(ids).logits.clone()
    model = get_peft_model(base, FrameConfig(target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref)


def test_only_orders_move_at_order_lr_without_weight_decay():
    model = get_peft_model(tiny_llama(), FrameConfig(target_modules=["q_proj"], transform="weighted"))
    ids = torch.randint(0, 64, (2, 8))
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    with torch.no_grad():
        layer.frame_B["default"].normal_(std=0.1)
    # freeze everything but the orders: only the orders may move, at order_lr, with no weight decay
    for n, p in model.named_parameters():
        if ".frame_order." not in n:
            p.requires_grad_(False)
    opt = create_optimizer(model, lr=1e-3, order_lr=0.05, order_optimizer="sgd", weight_decay=0.5)
    assert [g["name"] for g in opt.param_groups] == ["orders"]
    assert opt.param_groups[0]["weight_decay"] == 0.0
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    for _ in range(3):
        opt.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        theta = layer.frame_order["default"]
        expected = theta.detach() - 0.05 * theta.grad  # plain SGD at order_lr, no decay term
        opt.step()
        assert torch.allclose(theta.detach(), expected, atol=1e-7)
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert moved and all(".frame_order." in n for n in moved)


def test_save_load_keeps_orders(tmp_path):
    model = get_peft_model(tiny_llama(), FrameConfig(target_modules=["q_proj", "v_proj"], num_experts=4, r=2))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    ids = torch.randint(0, 64, (2, 8))
    with torch.no_grad():
        out = model(ids).logits
    model.save_pretrained(tmp_path)
    assert isinstance(PeftConfig.from_pretrained(tmp_path), FrameConfig)
    loaded = PeftModel.from_pretrained(tiny_llama(), tmp_path)
    layer = loaded.base_model.model.model.layers[0].self_attn.q_proj
    orig = model.base_model.model.model.layers[0].self_attn.q_proj
    assert torch.equal(layer.frame_orders("default"), orig.frame_orders("default"))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, out)


def test_moelora_fixed_orders_save_and_load(tmp_path):
    model = get_peft_model(tiny_gpt2(), MoELoraConfig(target_modules=["c_attn"], num_experts=4, r=2))
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(tiny_gpt2(), tmp_path)
    layer = loaded.base_model.model.transformer.h[0].attn.c_attn
    assert torch.equal(layer.frame_orders("default"), torch.zeros(4))
    assert not any("order" in n for n, p in loaded.named_parameters() if p.requires_grad)


def test_trainer_with_combined_optimizer_lowers_loss(tmp_path):
    model = get_peft_model(
        tiny_llama(),
        FrameConfig(target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"], r=4),
    )
    opt = create_optimizer(model, lr=1e-2, order_lr=1e-2)
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
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    orders_before = layer.frame_orders("default").detach().clone()
    trainer = Trainer(model=model, args=args, train_dataset=ToyLM(64), optimizers=(opt, None))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0] - 0.1, losses
    assert not torch.equal(layer.frame_orders("default"), orders_before)
    # the scheduler Trainer built drives the order group too: linear decay to 0 at the last step
    assert all(g["lr"] == pytest.approx(0.0, abs=1e-9) for g in opt.param_groups)


def test_lora_baseline_matches_moelora_with_one_expert():
    """MoE-LoRA with one expert (top-1) is exactly peft LoRA with the same A, B."""
    base = torch.nn.Sequential()
    base.add_module("lin", torch.nn.Linear(10, 12))
    ref = get_peft_model(base, LoraConfig(target_modules=["lin"], r=3, lora_alpha=6, init_lora_weights=False))
    lin = ref.base_model.model.lin
    layer = FrameLinear(
        torch.nn.Linear(10, 12),
        "default",
        MoELoraConfig(target_modules=["lin"], num_experts=1, top_k=1, r=3, lora_alpha=6),
    )
    layer.get_base_layer().load_state_dict(lin.get_base_layer().state_dict())
    with torch.no_grad():
        layer.frame_A["default"][0].copy_(lin.lora_A["default"].weight)
        layer.frame_B["default"][0].copy_(lin.lora_B["default"].weight)
    x = torch.randn(5, 10)
    assert torch.allclose(layer(x), lin(x), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(transform="fractional"), "transform"),
        (dict(order_max=0.0), "order_max"),
        (dict(order_max=-1.0), "order_max"),
        (dict(num_experts=2, top_k=3), "top_k"),
        (dict(r=0), "r"),
        (dict(order_init=-0.5), "order_init"),
        (dict(order_init=2.5), "order_init"),
        (dict(order_init="zeros"), "order_init"),
        (dict(lora_dropout=1.5), "lora_dropout"),
    ],
)
def test_invalid_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FrameConfig(target_modules=["q_proj"], **kwargs)


def test_moelora_rejects_nonzero_orders():
    with pytest.raises(ValueError, match="order_init"):
        MoELoraConfig(target_modules=["q"], order_init=0.5)


def test_frame_orders_shape_and_range():
    layer = _layer(num_experts=5, top_k=2, order_max=2.0)
    orders = layer.frame_orders("default")
    assert orders.shape == (5,)
    assert torch.allclose(orders.detach(), torch.arange(5, dtype=orders.dtype) / 4)
    assert isinstance(layer, FrameLayer)


def test_disable_adapter_and_second_adapter():
    base = tiny_llama()
    ids = torch.randint(0, 64, (2, 8))
    with torch.no_grad():
        ref = base(ids).logits.clone()
    model = get_peft_model(base, FrameConfig(target_modules=["q_proj"], r=2, num_experts=4))
    model.add_adapter("moe_lora", MoELoraConfig(target_modules=["q_proj"], r=2, num_experts=2, top_k=1))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "frame_B" in n:
                p.normal_(std=0.5)
        first = model(ids).logits
        with model.disable_adapter():
            assert torch.equal(model(ids).logits, ref)
        model.set_adapter("moe_lora")
        second = model(ids).logits
    assert not torch.allclose(first, ref) and not torch.allclose(second, first)
    with pytest.raises(ValueError, match="routed experts depend on each token"):
        model.merge_and_unload()

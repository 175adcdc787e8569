import pytest
import torch

from spectral_moe import routing


def test_gates_are_renormalised_top_k():
    logits = torch.randn(5, 7, 6)
    r = routing.route(logits, top_k=2, temperature=0.7)
    assert torch.allclose(r.probs, torch.softmax(logits / 0.7, -1))
    assert torch.allclose(r.gates.sum(-1), torch.ones(5, 7))
    assert ((r.gates > 0).sum(-1) == 2).all()
    top = r.probs.topk(2, -1)
    expected = torch.zeros_like(r.probs).scatter(
        -1, top.indices, top.values / top.values.sum(-1, keepdim=True)
    )
    assert torch.allclose(r.gates, expected)


def test_top_k_out_of_range():
    with pytest.raises(ValueError, match="top_k"):
        routing.route(torch.randn(3, 4), top_k=5)


def test_load_balancing_loss_is_one_when_balanced_and_grows_with_collapse():
    num_experts, tokens = 4, 64
    # balanced: every expert gets the same share of dispatches and the same mean probability
    idx = torch.arange(tokens) % num_experts
    logits = torch.full((tokens, num_experts), -1e4)
    logits[torch.arange(tokens), idx] = 0.0
    balanced = routing.load_balancing_loss(routing.route(torch.zeros(tokens, num_experts) + 0.0, 1))
    assert balanced.item() == pytest.approx(1.0)  # uniform probabilities: Σ f_z · 1/Z · Z = 1
    one_hot_balanced = routing.load_balancing_loss(routing.route(logits, 1))
    assert one_hot_balanced.item() == pytest.approx(1.0)
    values = []
    for strength in (0.0, 1.0, 3.0, 10.0):
        lg = torch.zeros(tokens, num_experts)
        lg[:, 0] = strength  # everything drifts to expert 0
        values.append(routing.load_balancing_loss(routing.route(lg, 1)).item())
    assert all(b > a for a, b in zip(values[1:], values[2:]))
    assert values[-1] == pytest.approx(num_experts, rel=1e-3)  # full collapse → Z


def test_dispatch_fraction_and_statistics():
    logits = torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    r = routing.route(logits, 1)
    stats = routing.router_statistics(r)
    assert torch.allclose(stats["dispatch_fraction"], torch.tensor([0.5, 0.25, 0.25]))
    assert torch.allclose(stats["mean_prob"], r.probs.mean(0))


def test_z_loss():
    logits = torch.randn(10, 3)
    assert routing.router_z_loss(logits).item() == pytest.approx(
        (torch.logsumexp(logits, -1) ** 2).mean().item(), rel=1e-6
    )


def test_gradcheck_router():
    logits = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda lg: routing.route(lg, 2, 0.8).gates, (logits,))
    assert torch.autograd.gradcheck(lambda lg: routing.load_balancing_loss(routing.route(lg, 2)), (logits,))
    assert torch.autograd.gradcheck(routing.router_z_loss, (logits,))

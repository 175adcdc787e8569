import pytest
import torch

from spectral_moe import routing
from tests.oracles import load_balancing_loss, router_z_loss


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


def test_top1_gate_is_the_switch_probability():
    """k = 1: the gate is p_z itself (a renormalised single gate would be identically 1)."""
    logits = torch.randn(4, 9, 5)
    r = routing.route(logits, top_k=1, temperature=0.5)
    top = r.probs.max(-1)
    assert torch.equal(
        r.gates, torch.zeros_like(r.probs).scatter(-1, top.indices[..., None], top.values[..., None])
    )
    assert (r.gates.sum(-1) < 1).all()


@pytest.mark.parametrize("top_k", [1, 2, 5])
def test_gates_carry_a_gradient_to_the_logits_for_k_1_2_and_z(top_k):
    """The task loss reaches the router through the gates for every k (k = Z = 5 included)."""
    logits = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    values = torch.randn(6, 5, dtype=torch.float64)  # stand-in for each expert's output
    (routing.route(logits, top_k).gates * values).sum().backward()
    assert logits.grad.abs().max() > 1e-3  # renormalised k = 1 gives exactly 0 up to rounding (~1e-17)
    assert torch.autograd.gradcheck(
        lambda lg: routing.route(lg, top_k, 0.8).gates, (logits.detach().requires_grad_(),)
    )


def test_top_k_out_of_range():
    with pytest.raises(ValueError, match="top_k"):
        routing.route(torch.randn(3, 4), top_k=5)


def test_load_balancing_loss_is_one_when_balanced_and_grows_with_collapse():
    num_experts, tokens = 4, 64
    # balanced: every expert gets the same share of dispatches and the same mean probability
    idx = torch.arange(tokens) % num_experts
    logits = torch.full((tokens, num_experts), -1e4)
    logits[torch.arange(tokens), idx] = 0.0
    balanced = load_balancing_loss(routing.route(torch.zeros(tokens, num_experts) + 0.0, 1))
    assert balanced.item() == pytest.approx(1.0)  # uniform probabilities: Σ f_z · 1/Z · Z = 1
    one_hot_balanced = load_balancing_loss(routing.route(logits, 1))
    assert one_hot_balanced.item() == pytest.approx(1.0)
    values = []
    for strength in (0.0, 1.0, 3.0, 10.0):
        lg = torch.zeros(tokens, num_experts)
        lg[:, 0] = strength  # everything drifts to expert 0
        values.append(load_balancing_loss(routing.route(lg, 1)).item())
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
    assert router_z_loss(logits).item() == pytest.approx(
        (torch.logsumexp(logits, -1) ** 2).mean().item(), rel=1e-6
    )


def test_gradcheck_router():
    logits = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda lg: routing.route(lg, 2, 0.8).gates, (logits,))
    assert torch.autograd.gradcheck(lambda lg: load_balancing_loss(routing.route(lg, 2)), (logits,))
    assert torch.autograd.gradcheck(router_z_loss, (logits,))


def test_losses_from_stats_equal_the_direct_formulas():
    logits = torch.randn(3, 7, 5, dtype=torch.float64)
    r = routing.route(logits, 2)
    aux, z = routing.router_losses_from_stats([routing.router_loss_stats(r)] * 2)
    assert aux.shape == (2,) and z.shape == (2,)
    assert torch.allclose(aux, load_balancing_loss(r).expand(2))
    assert torch.allclose(z, router_z_loss(logits).expand(2))


def test_masked_tokens_do_not_count():
    logits = torch.randn(2, 6, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    padded = routing.router_losses_from_stats([routing.router_loss_stats(routing.route(logits, 2), mask)])
    kept = torch.cat([logits[0, :4], logits[1]])  # the real tokens only
    direct = routing.router_losses_from_stats([routing.router_loss_stats(routing.route(kept, 2))])
    assert torch.allclose(padded[0], direct[0]) and torch.allclose(padded[1], direct[1])
    # the padding's own logits can be anything
    logits2 = logits.clone()
    logits2[0, 4:] = 100.0
    again = routing.router_losses_from_stats([routing.router_loss_stats(routing.route(logits2, 2), mask)])
    assert torch.allclose(again[0], padded[0])


def _shares_worker(rank: int, world: int, init_file: str, logits: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        # uneven shards: rank 0 holds 5 tokens, rank 1 holds 11
        part = (logits[:5] if rank == 0 else logits[5:]).clone().requires_grad_(True)
        aux, z = routing.router_losses_from_stats(
            [routing.router_loss_stats(routing.route(part, 2))], sync=True
        )
        (aux.sum() + z.sum()).backward()
        torch.save({"aux": aux.detach(), "z": z.detach(), "grad": part.grad}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_rank_shares_average_to_the_global_batch_loss_and_gradient(tmp_path):
    """Two gloo processes: mean over ranks of the shares = the global loss, and the ranks' gradients
    (as DDP averages them) = the global batch's gradient."""
    import torch.multiprocessing as mp

    logits = torch.randn(16, 6, dtype=torch.float64)
    mp.spawn(
        _shares_worker,
        args=(2, str(tmp_path / "init"), logits, str(tmp_path / "out")),
        nprocs=2,
        join=True,
    )
    res = [torch.load(tmp_path / f"out.{r}") for r in range(2)]
    full = logits.clone().requires_grad_(True)
    aux = load_balancing_loss(routing.route(full, 2))
    z = router_z_loss(full)
    (aux + z).backward()
    assert (res[0]["aux"] + res[1]["aux"]).item() / 2 == pytest.approx(aux.item(), rel=1e-12)
    assert (res[0]["z"] + res[1]["z"]).item() / 2 == pytest.approx(z.item(), rel=1e-12)
    grad = torch.cat([res[0]["grad"], res[1]["grad"]]) / 2  # DDP: mean over ranks
    assert torch.allclose(grad, full.grad, atol=1e-12)
    # without pooling the mean of the ranks' own losses is not the global loss
    local = [load_balancing_loss(routing.route(p, 2)).item() for p in (logits[:5], logits[5:])]
    assert abs(sum(local) / 2 - aux.item()) > 1e-6

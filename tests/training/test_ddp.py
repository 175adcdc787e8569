"""Two CPU processes (torchrun, gloo) train the same adapter as one process on the same global batch.

Every adapter parameter (FourierMoE coefficients, FRAME factors and orders, routers) must receive
the same gradient on both ranks (DDP synchronised it), equal to the single-process gradient, so the
parameters after the run equal the single-process ones. The router aux loss is nonlinear in the
batch; it matches only because the ranks pool their routers' dispatch counts.
"""

from pathlib import Path

import pytest
import torch

from tests.helpers import save_tiny_llama, write_jsonl_task
from tests.training.distributed import run_single, run_torchrun

WORKER = Path(__file__).with_name("ddp_train.py")


@pytest.mark.parametrize("method", ["fouriermoe", "frame"])
def test_two_process_ddp_equals_one_process(tmp_path, method):
    model = save_tiny_llama(tmp_path / "model")
    task = write_jsonl_task(tmp_path / "task.jsonl", n=60)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run_single(WORKER, method, model, task, str(single), "4")
    run_torchrun(WORKER, method, model, task, str(ddp), "2")
    one = torch.load(single / "record.rank0.pt")
    ranks = [torch.load(ddp / f"record.rank{r}.pt") for r in range(2)]
    names = set(one["params"])
    kinds = {
        "fouriermoe": ("spectrum_real", "spectrum_imag", "router"),
        "frame": ("A", "B", "order", "router"),
    }
    for kind in kinds[method]:
        assert any(f"_{kind}" in n for n in names), f"no {kind} parameter trained"
    assert len(one["grads"]) == len(ranks[0]["grads"]) == 3
    for step, (g1, g_a, g_b) in enumerate(zip(one["grads"], ranks[0]["grads"], ranks[1]["grads"])):
        assert set(g1) == set(g_a) == set(g_b) == names  # every trainable parameter got a gradient
        for n in names:
            assert torch.equal(g_a[n], g_b[n]), f"step {step}: {n} not synchronised across ranks"
            scale = g1[n].abs().max().clamp_min(1e-8)
            err = ((g_a[n] - g1[n]).abs().max() / scale).item()
            assert err < 1e-4, f"step {step}: {n} gradient differs from one process by {err:.2e} (relative)"
    last = one["grads"][-1]
    for n in names:
        assert last[n].abs().max() > 0, f"{n} got a zero gradient"
        assert torch.equal(ranks[0]["params"][n], ranks[1]["params"][n]), f"{n} differs across ranks"
        # AdamW moves near-zero-gradient elements by about ±lr whatever their size, which amplifies float
        # noise there; the gradients above are compared element by element, the parameters as a whole
        moved = (one["params"][n] - one["initial"][n]).norm()
        assert moved > 0, f"{n} did not move"
        assert (ranks[0]["params"][n] - one["params"][n]).norm() / moved < 2e-2, n
    # rank 0 wrote the run directory; its adapter is the trained one
    from safetensors.torch import load_file

    saved = load_file(ddp / "adapter" / "adapter_model.safetensors")
    assert len(saved) == len(names)
    assert (ddp / "metrics.json").is_file()

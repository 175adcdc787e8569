"""Two CPU processes (torchrun, gloo) train the same adapter as one process on the same global batch.

Every adapter parameter (FourierMoE coefficients, FRAME factors and orders, routers) must receive
the same gradient on both ranks (DDP synchronised it), equal to the single-process gradient, so the
parameters after the run equal the single-process ones. The router aux loss is nonlinear in the
batch; it matches only because the ranks pool their routers' dispatch counts.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import save_tiny_llama, write_jsonl_task

WORKER = Path(__file__).with_name("ddp_train.py")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(args: list[str], env: dict) -> None:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("method", ["fouriermoe", "frame"])
def test_two_process_ddp_equals_one_process(tmp_path, method):
    model = save_tiny_llama(tmp_path / "model")
    task = write_jsonl_task(tmp_path / "task.jsonl", n=60)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(Path.cwd()), "OMP_NUM_THREADS": "1"}
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _run([sys.executable, str(WORKER), method, model, task, str(single), "4"], env)
    _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(_free_port()),
            str(WORKER),
            method,
            model,
            task,
            str(ddp),
            "2",
        ],
        env,
    )
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

"""FSDP2 (``fully_shard``) over 2 CPU processes trains the adapters to the same parameters as one
process on the global batch: the sharded coefficients, factors, orders and routers are gathered for
the forward and their gradients reduced like any parameter; the router aux loss is pooled over ranks.

``accelerate``'s FSDP plugin needs GPUs (on CPU it runs DDP instead, covered by test_ddp.py); this
is the same sharding done by hand.
"""

from pathlib import Path

import pytest
import torch

from tests.helpers import save_tiny_llama
from tests.training.distributed import run_single, run_torchrun

WORKER = Path(__file__).with_name("fsdp_train.py")


@pytest.mark.parametrize("method", ["fouriermoe", "frame"])
def test_fsdp2_two_processes_equal_one_process(tmp_path, method):
    model = save_tiny_llama(tmp_path / "model")
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    run_single(WORKER, method, model, str(one))
    run_torchrun(WORKER, method, model, str(two))
    a, b = torch.load(one), torch.load(two)
    assert a["params"].keys() == b["params"].keys() and len(a["params"]) > 0
    for n, p in a["params"].items():
        moved = (p - a["initial"][n]).norm()
        assert moved > 0, f"{n} did not move"
        # relative to how far training moved it (AdamW steps near-zero gradients by about ±lr)
        assert (b["params"][n] - p).norm() / moved < 2e-2, n

"""Worker for test_flylora_ddp.py: FlyLoRA trained by a plain loop, as one process or under
``torchrun --nproc_per_node 2`` (gloo, DistributedDataParallel). Every step takes the same global batch
of 4 sequences (each rank its share); records every layer's routing-bias steps after each step, the
local rank counts before pooling, and the gradients of ``B``.

    python tests/training/flylora_ddp_train.py OUT
"""

import os
import sys

import torch
from peft import get_peft_model

from spectral_moe import FlyLoraConfig
from spectral_moe.tuners.flylora import FlyLoraLayer, FlyLoraModel
from tests.helpers import tiny_llama
from tests.training.distributed import watchdog

STEPS = 3
GLOBAL_BATCH = 4


def main() -> None:
    watchdog()
    out = sys.argv[1]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.distributed.init_process_group("gloo")
    torch.use_deterministic_algorithms(True)
    cfg = FlyLoraConfig(
        target_modules=["q_proj", "v_proj", "up_proj", "down_proj"], r=8, top_k=2, init_lora_weights=False
    )
    model = get_peft_model(tiny_llama(), cfg)
    model.train()
    layers = [m for m in model.modules() if isinstance(m, FlyLoraLayer)]
    local_counts: list[list[torch.Tensor]] = []
    update = FlyLoraModel.update_routing_bias

    def spy(self, sync=None):
        local_counts.append([layer.rank_counts["default"].clone() for layer in layers])
        return update(self, sync)

    FlyLoraModel.update_routing_bias = spy
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    g = torch.Generator().manual_seed(1)
    share = GLOBAL_BATCH // world
    record = {"steps": [], "grads": [], "local_counts": local_counts}
    for _ in range(STEPS):
        ids = torch.randint(0, 64, (GLOBAL_BATCH, 10), generator=g)[rank * share : (rank + 1) * share]
        loss = wrapped(input_ids=ids, labels=ids).loss
        loss.backward()
        record["grads"].append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        opt.step()
        opt.zero_grad()
        record["steps"].append([layer.flylora_bias_steps["default"].clone() for layer in layers])
    torch.save(record, f"{out}/record.rank{rank}.pt")
    if world > 1:
        # DDP's reducer holds the process group: release it before the group goes, else a rank can hang
        # in the reducer's destructor when main() returns (seen about once in ten runs)
        del wrapped
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

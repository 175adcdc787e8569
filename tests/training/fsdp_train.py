"""Worker for test_fsdp.py: a few AdamW steps of an adapter on a tiny Llama, either in one process on
the global batch or under ``torchrun`` with every decoder layer and the model wrapped by FSDP2
(``torch.distributed.fsdp.fully_shard``, gloo on CPU), each rank on its half of the batch.

    python tests/training/fsdp_train.py METHOD MODEL OUT
"""

import os
import sys

import torch
from peft import get_peft_model
from transformers import AutoModelForCausalLM

from spectral_moe import FourierMoEConfig, FrameConfig
from tests.helpers import ToyLM
from tests.training.distributed import watchdog

STEPS, GLOBAL_BATCH = 3, 4


def main() -> None:
    watchdog()
    method, model_dir, out = sys.argv[1:4]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.distributed.init_process_group("gloo")
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    common = {"target_modules": ["q_proj", "v_proj"], "num_experts": 4, "router_aux_loss_coef": 0.5}
    if method == "frame":
        cfg = FrameConfig(r=2, **common)
    else:
        cfg = FourierMoEConfig(n_frequency=8, **common)
    model = get_peft_model(base, cfg)
    if world > 1:
        from torch.distributed.fsdp import fully_shard

        for layer in model.base_model.model.model.layers:
            fully_shard(layer)
        fully_shard(model)
    params = [p for p in model.parameters() if p.requires_grad]
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(params, lr=1e-2)
    data = ToyLM(STEPS * GLOBAL_BATCH, 8)
    per_rank = GLOBAL_BATCH // world
    model.train()
    for step in range(STEPS):
        start = step * GLOBAL_BATCH + rank * per_rank
        ids = torch.stack([data[i]["input_ids"] for i in range(start, start + per_rank)])
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    full = {
        n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
        for n, p in model.named_parameters()
        if p.requires_grad
    }
    if rank == 0:
        torch.save({"params": full, "initial": initial}, out)
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

"""Worker for test_ddp.py: one training run through ``spectral_moe.pipeline.train``, launched either
as a plain process or by ``torchrun --nproc_per_node 2`` (gloo). Saves each rank's gradients of every
trainable parameter at every optimizer step (after DDP's all-reduce) and the final parameters.

    python tests/training/ddp_train.py METHOD MODEL TASK OUT BATCH_SIZE
"""

import os
import sys

import torch
from transformers import TrainerCallback

from spectral_moe.pipeline.run import RunConfig, train
from tests.training.distributed import watchdog

STEPS = 3


class GradRecorder(TrainerCallback):
    """Gradients seen by the optimizer (DDP has averaged them over ranks by then)."""

    def __init__(self) -> None:
        self.grads: list[dict[str, torch.Tensor]] = []
        self.params: dict[str, torch.Tensor] = {}
        self.initial: dict[str, torch.Tensor] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append(
            {
                n: p.grad.detach().clone()
                for n, p in model.named_parameters()
                if p.requires_grad and p.grad is not None
            }
        )

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def main() -> None:
    watchdog()
    method, model, task, out, batch_size = sys.argv[1:6]
    torch.use_deterministic_algorithms(True)
    adapter = {"num_experts": 4, "top_k": 2, "router_aux_loss_coef": 0.5, "router_z_loss_coef": 0.01}
    adapter.update({"n_frequency": 8} if method == "fouriermoe" else {"r": 2})
    cfg = RunConfig(
        method=method,
        model=model,
        tasks=f"jsonl:{task}",
        out=out,
        steps=STEPS,
        seed=0,
        batch_size=int(batch_size),
        adapter=adapter,
        lr=5e-2,
        order_lr=5e-2,
        warmup_ratio=0.0,
        eval_base=False,
        max_eval=4,
        logging_steps=1,
        save_steps=100,
    )
    recorder = GradRecorder()
    train(cfg, progress=False, log=lambda *a: None, callbacks=[recorder])
    rank = int(os.environ.get("RANK", "0"))
    record = {"grads": recorder.grads, "params": recorder.params, "initial": recorder.initial}
    torch.save(record, f"{out}/record.rank{rank}.pt")


if __name__ == "__main__":
    main()

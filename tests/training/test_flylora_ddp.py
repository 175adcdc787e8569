"""Two CPU processes (torchrun, gloo) keep FlyLoRA's routing bias identical, equal to one process.

The bias update ``d ← d + u·sign(mean(c) − c)`` is nonlinear in the batch: it matches one process on
the global batch only because the ranks pool their rank counts ``c`` before stepping (the authors'
fork steps each rank on its local counts, so its ranks drift apart).
"""

from pathlib import Path

import torch

from tests.training.distributed import run_single, run_torchrun

WORKER = Path(__file__).with_name("flylora_ddp_train.py")


def test_two_process_bias_equals_one_process(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir()
    ddp.mkdir()
    run_single(WORKER, str(single))
    run_torchrun(WORKER, str(ddp))
    one = torch.load(single / "record.rank0.pt")
    ranks = [torch.load(ddp / f"record.rank{r}.pt") for r in range(2)]
    assert len(one["steps"]) == 3
    for step in range(3):
        for layer, (s1, s_a, s_b) in enumerate(zip(one["steps"][step], *(r["steps"][step] for r in ranks))):
            assert torch.equal(s_a, s_b), f"step {step} layer {layer}: ranks' biases differ"
            assert torch.equal(s_a, s1), f"step {step} layer {layer}: bias differs from one process"
        for n, g1 in one["grads"][step].items():
            g_a, g_b = ranks[0]["grads"][step][n], ranks[1]["grads"][step][n]
            assert torch.equal(g_a, g_b), n
            assert ((g_a - g1).abs().max() / g1.abs().max().clamp_min(1e-8)).item() < 1e-4, n
    assert any(s.abs().sum() > 0 for s in one["steps"][-1])
    # the pooling matters: on their local counts alone the ranks would have stepped differently
    differ = 0
    for counts_a, counts_b in zip(ranks[0]["local_counts"], ranks[1]["local_counts"]):
        for c_a, c_b in zip(counts_a, counts_b):
            step_a = torch.sign(c_a.sum() - c_a.numel() * c_a)
            step_b = torch.sign(c_b.sum() - c_b.numel() * c_b)
            differ += int(not torch.equal(step_a, step_b))
    assert differ > 0

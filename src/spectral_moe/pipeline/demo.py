"""``spectral-moe demo``: the README's main job as a run config (FourierMoE on smollm2-135m, suite:core)."""

from __future__ import annotations

from ..training.config import RunConfig


def demo_config(out: str = "runs/demo", steps: int = 40, max_eval: int = 20) -> RunConfig:
    """FourierMoE on ``q_proj, v_proj`` of smollm2-135m over the 16 tasks of ``suite:core``: 200 training
    examples per task, prompts of up to 160 tokens, batch 8, ``max_eval`` test examples per task, one
    checkpoint at the end."""
    return RunConfig(
        method="fouriermoe",
        model="smollm2-135m",
        tasks="suite:core",
        out=out,
        steps=steps,
        seed=0,
        target_modules=["q_proj", "v_proj"],
        max_train=200,
        max_eval=max_eval,
        batch_size=8,
        max_length=160,
        logging_steps=10,
        save_steps=max(steps, 1),
    )

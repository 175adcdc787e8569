"""``FourierMoEConfig(fused_kernels=True)`` as a user sets it: validated, trains, saves and loads.

The kernels run uncompiled here (their formulas; tests/spectral/test_fourier_fused.py compiles them)."""

import pytest
import torch


def test_fused_kernels_option_trains_saves_and_loads(tmp_path, eager_kernels):
    from peft import PeftModel, get_peft_model

    from spectral_moe import FourierMoEConfig
    from tests.helpers import tiny_llama

    with pytest.raises(ValueError, match="fused_kernels"):
        FourierMoEConfig(target_modules=["q_proj"], fused_kernels="yes")
    cfg = FourierMoEConfig(
        target_modules=["q_proj", "v_proj"],
        n_frequency=8,
        num_experts=4,
        top_k=2,
        scaling=30.0,
        forward_mode="fft",  # the tiny layers would take the dense path under auto
        fused_kernels=True,
    )
    model = get_peft_model(tiny_llama(), cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    ids = torch.randint(0, 64, (4, 12), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(8):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert "backward" in eager_kernels and losses[-1] < losses[0] - 0.05
    model.save_pretrained(tmp_path / "adapter")
    model.eval()
    with torch.no_grad():
        want = model(input_ids=ids).logits
    loaded = PeftModel.from_pretrained(tiny_llama(), tmp_path / "adapter").eval()
    assert loaded.peft_config["default"].fused_kernels is True
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, want, atol=1e-5)

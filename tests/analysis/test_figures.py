import pytest
import torch

from spectral_moe.analysis.figures import hidden_state_spectra, plot_hidden_spectra
from spectral_moe.data.features import causal_lm_features
from spectral_moe.data.types import Example
from tests.helpers import tiny_llama, tiny_tokenizer


class _Task:
    def __init__(self, name, examples):
        self.name, self.test = name, examples


def test_hidden_state_spectra_match_a_direct_computation(tmp_path):
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok), num_hidden_layers=4)
    examples = [
        Example(input=f"Question: {a} plus 3? Answer:", choices=["1", "2"], answer="1", task="t")
        for a in range(3)
    ]
    spectra = hidden_state_spectra(model, tok, [_Task("toy", examples)])
    assert spectra["toy"].shape == (32 // 2 + 1,)
    hs = []
    for ex in examples:
        ids = torch.tensor([causal_lm_features(tok, ex, 256)["input_ids"]])
        hs.append(
            model(input_ids=ids, output_hidden_states=True).hidden_states[2][0, 1:]
        )  # middle of 5; no 1st token
    h = torch.cat(hs).detach().double()
    n = h.shape[-1]
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    basis = torch.exp(-2j * torch.pi * torch.outer(torch.arange(n, dtype=torch.float64), k) / n)
    expected = ((h.to(torch.complex128) @ basis).abs() ** 2 / n).mean(0)  # |DFT|² / n, mean over tokens
    assert torch.allclose(spectra["toy"].double(), expected, rtol=1e-4, atol=1e-8)
    assert plot_hidden_spectra(spectra, tmp_path).is_file()


# --------------------------------------------------------------------------------------------
# FlyLoRA and HMoRA (#16)
# --------------------------------------------------------------------------------------------
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _hmora(tok, layers=5, **options):
    from peft import get_peft_model

    from spectral_moe.tuners.hmora import HMoRAConfig

    config = HMoRAConfig(
        target_modules=["q_proj", "v_proj"], r=2, num_experts=4, task_token_id=tok.convert_tokens_to_ids("?")
    )
    for key, value in options.items():
        setattr(config, key, value)
    return get_peft_model(tiny_llama(vocab_size=len(tok), num_hidden_layers=layers), config).eval()


def _examples():
    return [
        Example(input=f"Question: {a} plus 3? Answer:", choices=["1", "2"], answer="1", task="t")
        for a in range(3)
    ]


def test_hmora_mixing_weights_follow_the_schedule_and_are_drawn(tmp_path):
    """5 layers, ε = 2: σ(2(2l/4 − 1)) = 0.12, 0.27, 0.5, 0.73, 0.88 — token-only below 0.2, task-only above
    0.8, learned α_l = σ(θ_l) in between."""
    import math

    from spectral_moe.analysis.figures import mixing_weights_by_layer, plot_mixing_weights, routed_layers

    model = _hmora(tiny_tokenizer())
    weights = mixing_weights_by_layer(routed_layers(model))
    assert set(weights) == {"q_proj", "v_proj"}
    sigma = [1 / (1 + math.exp(-2 * (2 * i / 4 - 1))) for i in range(5)]
    for points in weights.values():
        assert [(i, mode) for i, _, mode in sorted(points)] == [
            (0, "token"),
            (1, "hybrid"),
            (2, "hybrid"),
            (3, "hybrid"),
            (4, "task"),
        ]
        values = [a for _, a, _ in sorted(points)]
        assert values[0] == 0.0 and values[4] == 1.0
        assert values[1:4] == pytest.approx(sigma[1:4], abs=1e-6)
    path = plot_mixing_weights(routed_layers(model), tmp_path)
    assert path.name == "mixing_weights.png" and path.read_bytes()[:8] == PNG_MAGIC


def test_expert_load_by_task_covers_hmora_and_skips_its_plain_lora_modules(tmp_path):
    from spectral_moe.analysis.figures import expert_load_by_task, plot_expert_load

    tok = tiny_tokenizer()
    model = _hmora(tok, layers=2, lora_modules=["v_proj"])
    load = expert_load_by_task(model, tok, [_Task("a", _examples()), _Task("b", _examples()[:2])])
    assert set(load) == {"a", "b"}
    assert set(load["a"]) == {"model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"}
    for row in load["a"].values():
        assert row.shape == (4,) and row.sum().item() == pytest.approx(1.0)
    paths = plot_expert_load(load, tmp_path)
    assert {p.name for p in paths} == {
        "expert_load_per_task.png",
        "expert_load_per_layer.png",
        "expert_load_per_task_and_layer.png",
    }
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)


def test_flylora_rank_activation_per_task_and_layer(tmp_path):
    from peft import get_peft_model

    from spectral_moe.analysis.figures import expert_load_by_task, plot_expert_load, routed_layers
    from spectral_moe.tuners.flylora import FlyLoraConfig, FlyLoraLayer

    tok = tiny_tokenizer()
    config = FlyLoraConfig(target_modules=["q_proj", "v_proj"], r=4, top_k=2)
    model = get_peft_model(tiny_llama(vocab_size=len(tok)), config).eval()
    layers = routed_layers(model)
    assert len(layers) == 4 and all(isinstance(m, FlyLoraLayer) for _, m in layers)
    load = expert_load_by_task(model, tok, [_Task("a", _examples())])
    for row in load["a"].values():  # rank activation frequency c_i / Σ_j c_j over the r = 4 ranks
        assert row.shape == (4,) and row.sum().item() == pytest.approx(1.0)
    paths = plot_expert_load(load, tmp_path, unit="rank")
    assert {p.name for p in paths} == {
        "rank_activation_per_task.png",
        "rank_activation_per_layer.png",
        "rank_activation_per_task_and_layer.png",
    }
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)
    with pytest.raises(ValueError, match="unit must be"):
        plot_expert_load(load, tmp_path, unit="slot")

import torch

from spectral_moe.analysis.figures import hidden_state_spectra, plot_hidden_spectra
from spectral_moe.data.types import Example
from spectral_moe.training.run import causal_lm_features
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

"""Tiny random models and toy data for tests (no downloads)."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

VOCAB = 64


def tiny_llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    cfg.update(overrides)
    return LlamaForCausalLM(LlamaConfig(**cfg)).eval()


def tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return GPT2LMHeadModel(cfg).eval()


class ToyLM(torch.utils.data.Dataset):
    """Sequences of a fixed cyclic pattern: next token = (token + 3) mod VOCAB."""

    def __init__(self, n: int = 64, length: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, VOCAB, (n, 1), generator=g)
        self.ids = (start + 3 * torch.arange(length)) % VOCAB

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {
            "input_ids": self.ids[i],
            "labels": self.ids[i],
            "attention_mask": torch.ones_like(self.ids[i]),
        }


def tiny_tokenizer():
    """A byte-level BPE tokenizer trained on a few sentences (no download), with bos/eos/pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = ["Question: what is 2 plus 3? Answer: 5", "The answer is yes or no.", "0123456789 abc"] * 10
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def save_tiny_llama(path) -> str:
    """A tiny random Llama + its tokenizer saved as a local model folder; returns the path."""
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok), hidden_size=32, intermediate_size=48)
    model.config.bos_token_id, model.config.eos_token_id = tok.bos_token_id, tok.eos_token_id
    model.config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def write_jsonl_task(path, n: int = 40, seed: int = 0) -> str:
    """A small multiple-choice arithmetic JSONL task."""
    import json
    import random

    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        answer = str(a + b)
        wrong = sorted({str(a + b + 1), str(max(a + b - 1, 0)), str(a * b)} - {answer})[:2]
        lines.append(
            json.dumps(
                {"input": f"Question: {a} plus {b}? Answer:", "choices": [answer, *wrong], "answer": answer}
            )
        )
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return str(path)

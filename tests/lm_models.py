"""Tiny HuggingFace causal LMs (random weights, no downloads) and a word-level tokenizer for
Captum's ``TextTokenInput``, shared by the language-model tests and benchmarks."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import transformers

VOCAB = 50
CONFIGS = {
    "gpt2": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=48, n_embd=32, n_layer=2, n_head=2, pad_token_id=0,
        bos_token_id=1, eos_token_id=2)),
    "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=48, pad_token_id=0, bos_token_id=1, eos_token_id=2)),
    "qwen2": lambda: transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=48, pad_token_id=0)),
    "gemma": lambda: transformers.GemmaForCausalLM(transformers.GemmaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=48, pad_token_id=0)),
}


def causal_lm(name: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random ``*ForCausalLM`` whose logits are not nearly uniform (scaled-up head)."""
    torch.manual_seed(seed)
    net = CONFIGS[name]().eval()
    with torch.no_grad():
        net.get_output_embeddings().weight.mul_(8.0)
    return net


def converted(name: str) -> tuple[torch.nn.Module, Any]:
    """The tiny model ``name`` and its ``from_torch`` text model."""
    import warnings

    from xai_core.adapters import from_torch
    net = causal_lm(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return net, from_torch(net, example())


def example(n: int = 8) -> dict[str, torch.Tensor]:
    ids = torch.arange(3, 3 + n)[None]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


class WordTokenizer:
    """Token ``k`` is the word ``t{k}``; text is words joined by spaces (what Captum's
    ``TextTokenInput`` and its pretty-token helper call)."""

    def encode(self, text: str, return_tensors: str | None = None, add_special_tokens: bool = True) -> Any:
        ids = [int(w[1:]) for w in text.split()]
        return torch.tensor([ids]) if return_tensors == "pt" else ids

    def convert_ids_to_tokens(self, ids: Any) -> list[str]:
        return [f"t{int(i)}" for i in np.asarray(ids).ravel()]

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        return [int(t[1:]) for t in tokens]

    def decode(self, ids: Any, **kwargs: Any) -> str:
        return " ".join(self.convert_ids_to_tokens(ids))

    def __call__(self, text: str, return_offsets_mapping: bool = False, add_special_tokens: bool = True,
                 **kwargs: Any) -> dict[str, Any]:
        words, offsets, at = text.split(" "), [], 0
        for w in words:
            offsets.append((at, at + len(w)))
            at += len(w) + 1
        return {"input_ids": self.encode(text), "offset_mapping": offsets}

    def text(self, ids: list[int]) -> str:
        return " ".join(f"t{i}" for i in ids)

"""A random plain BERT saved as Hugging Face saves one (``save_pretrained``), for offline tests
of fetching and converting a model that was never sentence-trained.

The folder holds ``config.json`` (a ``BertModel`` config), ``model.safetensors`` with
PyTorch's parameter names and layouts (a Linear weight is (out, in)), the pooler that
``BertModel`` carries and Sentence-BERT drops, and the tokenizer files (``tokenizer.json``,
``vocab.txt``, ``tokenizer_config.json``, ``special_tokens_map.json``). There is no
``modules.json`` or ``sentence_bert_config.json``: a plain BERT, pooled by mean.

The tensors are written here from their PyTorch names and shapes, not through minisbert's
converter, so a test of the converter compares it with something it did not produce.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from tests.tiny import tiny_tokenizer

# A small BERT: hidden D=32, 2 layers, 4 heads, feed-forward F=64, the 99-token tiny vocab.
TINY_HF_CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "vocab_size": 99,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
}
MAX_LENGTH = 64  # tokenizer_config.json's model_max_length: what a plain BERT encodes


def bert_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of a PyTorch ``BertModel`` state dict and its shape."""
    D, F = config["hidden_size"], config["intermediate_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (config["vocab_size"], D),
        "embeddings.position_embeddings.weight": (config["max_position_embeddings"], D),
        "embeddings.token_type_embeddings.weight": (config["type_vocab_size"], D),
        "embeddings.LayerNorm.weight": (D,),
        "embeddings.LayerNorm.bias": (D,),
        "pooler.dense.weight": (D, D),
        "pooler.dense.bias": (D,),
    }
    for i in range(config["num_hidden_layers"]):
        layer = f"encoder.layer.{i}"
        for name, (out, inp) in {
            "attention.self.query": (D, D),
            "attention.self.key": (D, D),
            "attention.self.value": (D, D),
            "attention.output.dense": (D, D),
            "intermediate.dense": (F, D),
            "output.dense": (D, F),
        }.items():
            shapes[f"{layer}.{name}.weight"] = (out, inp)  # torch.nn.Linear: (out, in)
            shapes[f"{layer}.{name}.bias"] = (out,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{layer}.{norm}.weight"] = (D,)
            shapes[f"{layer}.{norm}.bias"] = (D,)
    return shapes


def write_plain_bert(
    folder: Path, config: dict | None = None, seed: int = 0, max_length: int = MAX_LENGTH
) -> Path:
    """Write a random plain BERT in Hugging Face's layout into ``folder``; returns it.

    Weights are N(0, 0.02) as BERT initialises them, but LayerNorm scales are near 1 and
    biases small and non-zero, so that a bias or scale left out of a conversion shows.
    ``config`` defaults to ``TINY_HF_CONFIG``; with a bert-base config the vocabulary is
    still the tiny tokenizer's, padded with unused tokens (for timing, not for meaning).
    """
    config = dict(TINY_HF_CONFIG if config is None else config)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in bert_shapes(config).items():
        if "LayerNorm.weight" in name:
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            value = 0.02 * rng.standard_normal(shape)
        else:
            value = config["initializer_range"] * rng.standard_normal(shape)
        tensors[name] = value.astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2))

    tokenizer = tiny_tokenizer()
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    tokens = [token for token, _ in vocab]
    tokens += [f"[unused{i}]" for i in range(len(tokens), config["vocab_size"])]
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in tokens))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BertTokenizer", "do_lower_case": True,
        "model_max_length": max_length, "cls_token": "[CLS]", "sep_token": "[SEP]",
        "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]",
    }))  # fmt: skip
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
        "unk_token": "[UNK]", "mask_token": "[MASK]",
    }))  # fmt: skip
    return folder

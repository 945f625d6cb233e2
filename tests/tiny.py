"""A tiny random BERT folder (hidden 36, 3 heads, vocab 99) for cheap tests of shapes and files."""

from __future__ import annotations

import json
from pathlib import Path

import tokenizers
from flax import nnx
from tokenizers import models, normalizers, pre_tokenizers, processors

from minisbert.config import BertConfig, SentenceConfig
from minisbert.io.weights import save_params
from minisbert.sentence_encoder import SentenceModel

TINY_CONFIG = BertConfig(
    vocab_size=99,
    hidden_size=36,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=50,
    max_position_embeddings=64,
)


def tiny_tokenizer() -> tokenizers.Tokenizer:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = ["##" + c for c in letters]
    words = ["the", "cat", "dog", "sat", "on", "mat", "a", "is", "run", "##s", "##ing"]
    vocab_list = specials + letters + pieces + [w for w in words if w not in letters]
    vocab_list += [str(d) for d in range(10)] + [".", ",", "!", "?"]
    vocab_list += [f"[unused{i}]" for i in range(99 - len(vocab_list))]
    vocab = {token: i for i, token in enumerate(vocab_list)}
    tok = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tok


def make_tiny_model_dir(path: Path, seed: int = 0, pooling: str = "mean",
                        normalize: bool = False, max_seq_length: int = 32) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    sentence_config = SentenceConfig(max_seq_length=max_seq_length, pooling=pooling,
                                     normalize=normalize)
    model = SentenceModel(TINY_CONFIG, sentence_config, rngs=nnx.Rngs(seed))
    save_params(model.bert, path / "model.safetensors")
    (path / "config.json").write_text(json.dumps(TINY_CONFIG.to_dict()))
    (path / "sentence.json").write_text(json.dumps(sentence_config.to_dict()))
    tiny_tokenizer().save(str(path / "tokenizer.json"))
    return path

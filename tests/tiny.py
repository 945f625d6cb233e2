"""The tests' tiny things: a random BERT folder (hidden 36, 3 heads, vocab 99) for cheap tests
of shapes and files, and small data files to train it on.

This is a helper module, not a test file: test files import from here (and from the other
helpers, runs.py, served.py, loss_parity.py), never from each other.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import tokenizers
from flax import nnx
from tokenizers import models, normalizers, pre_tokenizers, processors

from minisbert.config import BertConfig, SentenceConfig
from minisbert.io.convert import expected_params
from minisbert.io.weights import save_params, write_safetensors_atomic
from minisbert.sentence_encoder import SentenceModel

TINY_CONFIG = BertConfig(
    vocab_size=99,
    hidden_size=36,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=50,
    max_position_embeddings=64,
)
ONE_LAYER = dataclasses.replace(TINY_CONFIG, num_hidden_layers=1)  # compiles in half the time


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
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tok


def make_tiny_model_dir(
    path: Path,
    seed: int = 0,
    pooling: str = "mean",
    normalize: bool = False,
    max_seq_length: int = 32,
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    sentence_config = SentenceConfig(
        max_seq_length=max_seq_length, pooling=pooling, normalize=normalize
    )
    model = SentenceModel(TINY_CONFIG, sentence_config, rngs=nnx.Rngs(seed))
    save_params(model.bert, path / "model.safetensors")
    (path / "config.json").write_text(json.dumps(TINY_CONFIG.to_dict()))
    (path / "sentence.json").write_text(json.dumps(sentence_config.to_dict()))
    tiny_tokenizer().save(str(path / "tokenizer.json"))
    return path


def random_model_dir(
    path: Path, config: BertConfig = TINY_CONFIG, max_seq_length: int = 32, normalize: bool = False
) -> Path:
    """A model folder with random weights drawn in numpy, the tiny tokenizer and configs.

    Like ``make_tiny_model_dir`` but without building the model eagerly, which
    compiles every initialiser one by one (seconds); here nothing is compiled.
    """
    path.mkdir(parents=True, exist_ok=True)
    sentence_config = SentenceConfig(max_seq_length=max_seq_length, normalize=normalize)
    rng = np.random.default_rng(0)
    params = {
        name: np.ones(shape.shape, np.float32) if name.endswith(".scale")  # LayerNorm
        else np.zeros(shape.shape, np.float32) if name.endswith(".bias")
        else rng.normal(0.0, 0.02, shape.shape).astype(np.float32)
        for name, shape in expected_params(config).items()
    }  # fmt: skip
    write_safetensors_atomic(params, path / "model.safetensors")
    (path / "config.json").write_text(json.dumps(config.to_dict()))
    (path / "sentence.json").write_text(json.dumps(sentence_config.to_dict()))
    tiny_tokenizer().save(str(path / "tokenizer.json"))
    return path


def with_tokenizer_of(path: Path, model_dir: Path) -> Path:
    """A one-layer random BERT (hidden 36) that reads text as the model in ``model_dir`` does:
    its tokenizer, vocabulary size, max_seq_length and normalisation. It compiles and runs in a
    fraction of the pretrained model's time, for the tests of how text is cut, planned and
    packed, which depend on the tokens and not on the weights."""
    settings = json.loads((model_dir / "sentence.json").read_text())
    vocab_size = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    config = dataclasses.replace(ONE_LAYER, vocab_size=vocab_size, max_position_embeddings=512)
    random_model_dir(path, config, settings["max_seq_length"], settings["normalize"])
    (path / "tokenizer.json").write_bytes((model_dir / "tokenizer.json").read_bytes())
    return path


# ---------------------------------------------------------------- data files

WORDS = "the cat dog sat on mat a is run".split()


def write_pairs(path: Path, n: int = 24, kind: str = "score", seed: int = 0) -> Path:
    """A TSV of short sentence pairs (<= 6 tokens with [CLS], [SEP]: one bucket, T = 8)."""
    rng = np.random.default_rng(seed)
    header = {"score": "sentence1\tsentence2\tscore", "class": "sentence1\tsentence2\tlabel",
              "triplet": "anchor\tpositive\tnegative"}[kind]  # fmt: skip
    lines = [header]
    for _ in range(n):
        a, b, c = (" ".join(rng.choice(WORDS, rng.integers(1, 4))) for _ in range(3))
        if kind == "score":
            lines.append(f"{a}\t{b}\t{rng.random():.3f}")
        elif kind == "class":
            lines.append(f"{a}\t{b}\t{rng.integers(0, 3)}")
        else:
            lines.append(f"{a}\t{b}\t{c}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_training_files(root: Path) -> dict[str, Path]:
    """A one-layer tiny model (it compiles in half the time) and a file of each kind of example
    (24 rows: 3 batches of 8), under root."""
    return {
        "model": random_model_dir(root / "tiny", ONE_LAYER),
        "scores": write_pairs(root / "scores.tsv"),
        "classes": write_pairs(root / "classes.tsv", kind="class"),
        "triplets": write_pairs(root / "triplets.tsv", kind="triplet"),
    }

"""Converting a sentence-transformers / Hugging Face BERT folder to minisbert's format, and back.

This is the only module that knows the other libraries' parameter names. A PyTorch
BERT checkpoint stores, per layer,

    encoder.layer.{i}.attention.self.query.weight          (out, in) = (D, D)
    encoder.layer.{i}.attention.output.dense.weight        (D, D)
    encoder.layer.{i}.attention.output.LayerNorm.weight    (D,)
    encoder.layer.{i}.intermediate.dense.weight            (F, D)
    encoder.layer.{i}.output.dense.weight                  (D, F)
    encoder.layer.{i}.output.LayerNorm.weight              (D,)

Two things change on the way to minisbert:

1. Names. Every tensor gets the path of the ``nnx.Param`` it fills (see ``bert.py``),
   e.g. ``layers.{i}.attention.query.kernel``; LayerNorm's ``weight`` is ``scale``,
   an embedding table's ``weight`` is ``embedding``.
2. Linear weights are transposed. ``torch.nn.Linear`` keeps W as (out, in) and
   computes ``x @ W.T``; ``nnx.Linear`` keeps its kernel as (in, out) and computes
   ``x @ kernel``. So ``kernel = weight.T``. Biases, LayerNorm parameters and
   embedding tables (looked up by row, never multiplied) are copied unchanged.

Two tensors are dropped: BERT's ``pooler.*`` (Sentence-BERT pools the tokens itself
and never uses it) and ``embeddings.position_ids`` (a constant 0..511, not a parameter).
Any other tensor that is missing, left over, or of the wrong shape stops the
conversion with its name. Only safetensors files are read: never a pickle.

A minisbert model folder holds ``model.safetensors``, ``config.json`` (``BertConfig``),
``sentence.json`` (``SentenceConfig``) and the tokenizer files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from minisbert.bert import BertEncoder
from minisbert.config import BertConfig, ConfigError, SentenceConfig
from minisbert.weights import (
    WeightsError,
    check_params,
    param_shapes,
    read_safetensors,
    write_safetensors_atomic,
)

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
)  # fmt: skip
IGNORED_PREFIXES = ("pooler.", "embeddings.position_ids")

# minisbert name (with {i} for the layer) -> (checkpoint name, transpose?)
EMBEDDING_NAMES: dict[str, tuple[str, bool]] = {
    "embeddings.word_embeddings.embedding": ("embeddings.word_embeddings.weight", False),
    "embeddings.position_embeddings.embedding": ("embeddings.position_embeddings.weight", False),
    "embeddings.token_type_embeddings.embedding": (
        "embeddings.token_type_embeddings.weight", False,
    ),  # fmt: skip
    "embeddings.layer_norm.scale": ("embeddings.LayerNorm.weight", False),
    "embeddings.layer_norm.bias": ("embeddings.LayerNorm.bias", False),
}
LAYER_NAMES: dict[str, tuple[str, bool]] = {}
for ours, theirs in [
    ("attention.query", "attention.self.query"),
    ("attention.key", "attention.self.key"),
    ("attention.value", "attention.self.value"),
    ("attention.output", "attention.output.dense"),
    ("intermediate", "intermediate.dense"),
    ("output", "output.dense"),
]:
    LAYER_NAMES[f"layers.{{i}}.{ours}.kernel"] = (f"encoder.layer.{{i}}.{theirs}.weight", True)
    LAYER_NAMES[f"layers.{{i}}.{ours}.bias"] = (f"encoder.layer.{{i}}.{theirs}.bias", False)
for ours, theirs in [
    ("attention.layer_norm", "attention.output.LayerNorm"),
    ("output_layer_norm", "output.LayerNorm"),
]:
    LAYER_NAMES[f"layers.{{i}}.{ours}.scale"] = (f"encoder.layer.{{i}}.{theirs}.weight", False)
    LAYER_NAMES[f"layers.{{i}}.{ours}.bias"] = (f"encoder.layer.{{i}}.{theirs}.bias", False)


def name_map(config: BertConfig) -> dict[str, tuple[str, bool]]:
    """Every minisbert parameter name -> (checkpoint name, whether to transpose)."""
    names = dict(EMBEDDING_NAMES)
    for i in range(config.num_hidden_layers):
        for ours, (theirs, transpose) in LAYER_NAMES.items():
            names[ours.format(i=i)] = (theirs.format(i=i), transpose)
    return names


def expected_params(config: BertConfig) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes and dtypes of every parameter, from an abstract model (no memory, no compute)."""
    return param_shapes(nnx.eval_shape(lambda: BertEncoder(config, rngs=nnx.Rngs(0))))


def checkpoint_to_minisbert(
    tensors: dict[str, np.ndarray], config: BertConfig, source: str | Path
) -> dict[str, np.ndarray]:
    """Rename (and transpose) a PyTorch BERT state dict into minisbert's parameters."""
    # Task heads (BertForSequenceClassification etc.) prefix the encoder with "bert.".
    tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
    tensors = {k: v for k, v in tensors.items() if not k.startswith(IGNORED_PREFIXES)}
    mapping = name_map(config)
    wanted = {theirs for theirs, _ in mapping.values()}
    unexpected = sorted(set(tensors) - wanted)
    if unexpected:
        raise WeightsError(
            f"{source}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} in all); "
            "minisbert converts plain BERT encoders only"
        )
    params = {}
    for ours, (theirs, transpose) in mapping.items():
        if theirs not in tensors:
            raise WeightsError(f"{source}: missing tensor {theirs!r} (needed for {ours})")
        weight = tensors[theirs].astype(np.float32)
        params[ours] = weight.T if transpose else weight  # (out, in) -> (in, out)
    check_params(expected_params(config), params, source)
    return params


def minisbert_to_checkpoint(
    params: dict[str, np.ndarray], config: BertConfig
) -> dict[str, np.ndarray]:
    """The inverse: minisbert parameters back to PyTorch BERT names and layouts."""
    out = {}
    for ours, (theirs, transpose) in name_map(config).items():
        out[theirs] = np.ascontiguousarray(params[ours].T if transpose else params[ours])
    return out


def read_sentence_transformers_pipeline(src: Path) -> tuple[Path, SentenceConfig]:
    """Find the Transformer module's folder and the pooling/normalise settings of ``src``.

    A sentence-transformers folder lists its pipeline in ``modules.json``; a plain HF
    BERT folder (no ``modules.json``) gets mean pooling, no normalisation, 512 tokens.
    """
    modules_file = src / "modules.json"
    if not modules_file.is_file():
        return src, SentenceConfig(max_seq_length=512, pooling="mean", normalize=False)
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    transformer_dir, pooling, normalize, max_seq_length = None, "mean", False, 512
    for module in modules:
        kind = module["type"].rsplit(".", 1)[-1]
        folder = src / module.get("path", "")
        if kind == "Transformer":
            transformer_dir = folder
            st_config = folder / "sentence_bert_config.json"
            if st_config.is_file():
                max_seq_length = json.loads(st_config.read_text())["max_seq_length"]
        elif kind == "Pooling":
            pooling = _pooling_mode(json.loads((folder / "config.json").read_text()), folder)
        elif kind == "Normalize":
            normalize = True
        else:
            raise ConfigError(
                f"{modules_file}: module type {module['type']!r} is not supported "
                "(minisbert reproduces Transformer, Pooling and Normalize)"
            )
    if transformer_dir is None:
        raise ConfigError(f"{modules_file}: no Transformer module listed")
    return transformer_dir, SentenceConfig(max_seq_length, pooling, normalize)


def _pooling_mode(settings: dict, folder: Path) -> str:
    modes = [
        mode
        for mode, key in [
            ("cls", "pooling_mode_cls_token"),
            ("mean", "pooling_mode_mean_tokens"),
            ("max", "pooling_mode_max_tokens"),
            ("mean_sqrt_len", "pooling_mode_mean_sqrt_len_tokens"),
        ]
        if settings.get(key)
    ]
    if len(modes) != 1:
        raise ConfigError(
            f"{folder}/config.json: exactly one pooling mode must be on, found {modes}; "
            "minisbert does not concatenate several poolings"
        )
    return modes[0]


def convert(src: str | Path, dst: str | Path) -> Path:
    """Convert a sentence-transformers or HF BERT folder ``src`` into a minisbert folder ``dst``."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder to convert")
    transformer_dir, sentence_config = read_sentence_transformers_pipeline(src)
    weights_file = transformer_dir / "model.safetensors"
    if not weights_file.is_file():
        raise WeightsError(
            f"{weights_file}: not found. minisbert reads safetensors only and never loads "
            "pickled PyTorch files (pytorch_model.bin); use a folder that has model.safetensors"
        )
    config = BertConfig.from_json(transformer_dir / "config.json")
    params = checkpoint_to_minisbert(read_safetensors(weights_file), config, weights_file)

    dst.mkdir(parents=True, exist_ok=True)
    write_safetensors_atomic(params, dst / "model.safetensors")
    (dst / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    (dst / "sentence.json").write_text(json.dumps(sentence_config.to_dict(), indent=2) + "\n")
    for name in TOKENIZER_FILES:
        if (transformer_dir / name).is_file():
            shutil.copyfile(transformer_dir / name, dst / name)
    if not (dst / "tokenizer.json").is_file():
        raise ConfigError(f"{transformer_dir}: no tokenizer.json (a fast WordPiece tokenizer)")
    return dst


def export_sentence_transformers(src: str | Path, dst: str | Path) -> Path:
    """Write minisbert folder ``src`` as a sentence-transformers folder.

    ``SentenceTransformer(dst)`` loads the result."""
    src, dst = Path(src), Path(dst)
    config = BertConfig.from_json(src / "config.json")
    sentence_config = SentenceConfig.from_json(src / "sentence.json")
    params = read_safetensors(src / "model.safetensors")
    check_params(expected_params(config), params, src / "model.safetensors")

    dst.mkdir(parents=True, exist_ok=True)
    write_safetensors_atomic(minisbert_to_checkpoint(params, config), dst / "model.safetensors")
    hf_config = {"architectures": ["BertModel"], "position_embedding_type": "absolute",
                 "pad_token_id": 0, **config.to_dict()}
    (dst / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
    st_config = {"max_seq_length": sentence_config.max_seq_length, "do_lower_case": False}
    (dst / "sentence_bert_config.json").write_text(json.dumps(st_config, indent=2) + "\n")
    modules = [
        {"idx": 0, "name": "0", "path": "",
         "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]
    pooling = {
        "word_embedding_dimension": config.hidden_size,
        "pooling_mode_cls_token": sentence_config.pooling == "cls",
        "pooling_mode_mean_tokens": sentence_config.pooling == "mean",
        "pooling_mode_max_tokens": sentence_config.pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": sentence_config.pooling == "mean_sqrt_len",
    }
    (dst / "1_Pooling").mkdir(exist_ok=True)
    (dst / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    if sentence_config.normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize",
             "type": "sentence_transformers.models.Normalize"}
        )
        (dst / "2_Normalize").mkdir(exist_ok=True)
    (dst / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    return dst

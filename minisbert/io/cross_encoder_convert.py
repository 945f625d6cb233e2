"""Converting a sentence-transformers or Hugging Face cross-encoder folder to minisbert's, and back.

A cross-encoder is BERT's sequence classifier (``minisbert.cross_encoder``). Its checkpoint
holds BERT under ``bert.*`` (renamed as ``convert.py`` renames any BERT), and two layers more:

    bert.pooler.dense.weight   (D, D) (out, in)  ->  pooler.kernel      (D, D) (in, out), = W.T
    bert.pooler.dense.bias     (D,)              ->  pooler.bias
    classifier.weight          (C, D)            ->  classifier.kernel  (D, C), = W.T
    classifier.bias            (C,)              ->  classifier.bias

The folders it comes in:

    sentence-transformers 6.x   modules.json: one Transformer (sentence_bert_config.json
                                transformer_task "sequence-classification");
                                config_sentence_transformers.json: model_type "CrossEncoder",
                                activation_fn "torch.nn.modules.activation.Sigmoid"
    4.x - 5.x                   a plain HF folder; the activation in config.json's
                                sentence_transformers.activation_fn
    older releases and the hub  a plain HF folder (config.json architectures
                                ["BertForSequenceClassification"], id2label); the activation,
                                if any, in config.json's sbert_ce_default_activation_function

The maximum length is read as for a bi-encoder (sentence_bert_config.json, else the
tokenizer's model_max_length, capped by the position embeddings). Without a saved activation,
sentence-transformers' rule: sigmoid for one label, the raw logits (identity) for several.

A minisbert cross-encoder folder holds ``model.safetensors`` (bert.*, pooler.*, classifier.*),
``config.json`` (BertConfig), ``cross_encoder.json`` (``CrossEncoderConfig``: num_labels,
activation, max_length, labels) and the tokenizer files.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from minisbert.config import BertConfig, ConfigError
from minisbert.cross_encoder import CROSS_ENCODER_JSON, CrossEncoderConfig, CrossEncoderModel
from minisbert.io.convert import (
    TOKENIZER_FILES,
    _bert_config,
    _json_object,
    _max_seq_length,
    _weights_file,
    _write_hf_files,
    _write_json,
    check_header_fits,
    checkpoint_to_minisbert,
    minisbert_to_checkpoint,
    read_weights,
)
from minisbert.io.folders import Log, check_apart, check_replaceable, write_folder
from minisbert.io.modules_json import MODULES_JSON, read_modules
from minisbert.io.weights import (
    WeightsError,
    check_params,
    param_shapes,
    read_safetensors,
    write_safetensors_atomic,
)
from minisbert.tokenizer import Tokenizer

ST_CONFIG = "config_sentence_transformers.json"
# minisbert name -> (checkpoint name, transpose?), for the two layers on top of BERT
HEAD_NAMES: dict[str, tuple[str, bool]] = {
    "pooler.kernel": ("bert.pooler.dense.weight", True),
    "pooler.bias": ("bert.pooler.dense.bias", False),
    "classifier.kernel": ("classifier.weight", True),
    "classifier.bias": ("classifier.bias", False),
}
# torch.nn activation class (the last part of sentence-transformers' dotted path) -> ours
ST_ACTIVATIONS = {"Sigmoid": "sigmoid", "Identity": "identity"}
TORCH_ACTIVATIONS = {
    "sigmoid": "torch.nn.modules.activation.Sigmoid",
    "identity": "torch.nn.modules.linear.Identity",
}


def is_cross_encoder_folder(src: Path) -> bool:
    """A sentence-transformers CrossEncoder (``model_type`` "CrossEncoder") or an HF
    ``...ForSequenceClassification`` folder; a broken file answers False (the bi-encoder
    conversion then names it)."""
    try:
        if (src / ST_CONFIG).is_file():
            if _json_object(src / ST_CONFIG).get("model_type") == "CrossEncoder":
                return True
        if (src / "config.json").is_file() and not (src / MODULES_JSON).is_file():
            architectures = _json_object(src / "config.json").get("architectures") or []
            return isinstance(architectures, list) and any(
                str(a).endswith("ForSequenceClassification") for a in architectures
            )
    except ConfigError:
        return False
    return False


def is_minisbert_cross_encoder(folder: Path) -> bool:
    return (Path(folder) / CROSS_ENCODER_JSON).is_file()


def _transformer_dir(src: Path) -> Path:
    """The folder of config.json and the weights: ``src`` itself, or the one Transformer
    module a sentence-transformers 6.x CrossEncoder lists."""
    if not (src / MODULES_JSON).is_file():
        return src
    modules = read_modules(src)
    if len(modules) != 1 or modules[0][0] != "Transformer":
        kinds = ", ".join(kind for kind, _ in modules)
        raise ConfigError(
            f"{src / MODULES_JSON}: modules {kinds}; minisbert converts a cross-encoder of one "
            "sequence-classification Transformer"
        )
    folder = src / modules[0][1]
    settings_file = folder / "sentence_bert_config.json"
    if settings_file.is_file():
        task = _json_object(settings_file).get("transformer_task", "sequence-classification")
        if task != "sequence-classification":
            raise ConfigError(
                f"{settings_file}: transformer_task {task!r}; a cross-encoder is "
                "'sequence-classification'"
            )
    return folder


def _activation(src: Path, hf_config: dict[str, Any], num_labels: int) -> str:
    """The saved activation, wherever this release saved it; else the library's default."""
    path = None
    if (src / ST_CONFIG).is_file():
        settings = _json_object(src / ST_CONFIG)
        if settings.get("prompts") or settings.get("default_prompt_name"):
            raise ConfigError(
                f"{src / ST_CONFIG}: a cross-encoder with prompts; minisbert's has none"
            )
        path = settings.get("activation_fn")
    st_section = hf_config.get("sentence_transformers")
    if path is None and isinstance(st_section, dict):
        path = st_section.get("activation_fn")
    if path is None:
        path = hf_config.get("sbert_ce_default_activation_function")
    if path is None:
        return "sigmoid" if num_labels == 1 else "identity"
    name = str(path).rsplit(".", 1)[-1]
    if name not in ST_ACTIVATIONS:
        raise ConfigError(
            f"{src}: activation {path!r} is not supported (minisbert has torch.nn.Sigmoid "
            "and torch.nn.Identity)"
        )
    return ST_ACTIVATIONS[name]


def _labels(file: Path, hf_config: dict[str, Any]) -> tuple[str, ...]:
    """The label names, in id order, from id2label (or num_labels; 2 is transformers' default)."""
    id2label = hf_config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        try:
            ids = sorted(int(k) for k in id2label)
        except ValueError:
            raise ConfigError(f"{file}: id2label keys must be label ids 0..C-1") from None
        if ids != list(range(len(ids))):
            raise ConfigError(f"{file}: id2label keys must be label ids 0..C-1, found {ids}")
        return tuple(str(id2label[str(i)]) for i in ids)
    num_labels = hf_config.get("num_labels", 2)
    if type(num_labels) is not int or num_labels < 1:
        raise ConfigError(f"{file}: num_labels {num_labels!r} is not a positive integer")
    return tuple(f"LABEL_{i}" for i in range(num_labels))


def expected_params(config: BertConfig, num_labels: int) -> dict[str, jax.ShapeDtypeStruct]:
    return param_shapes(
        nnx.eval_shape(lambda: CrossEncoderModel(config, num_labels, rngs=nnx.Rngs(0)))
    )


def cross_encoder_to_minisbert(
    tensors: dict[str, np.ndarray], config: BertConfig, num_labels: int, source: Path
) -> dict[str, np.ndarray]:
    """A BertForSequenceClassification state dict -> ``CrossEncoderModel``'s parameters."""
    params = {}
    for ours, (theirs, transpose) in HEAD_NAMES.items():
        if theirs not in tensors:
            raise WeightsError(f"{source}: missing tensor {theirs!r} (needed for {ours})")
        if tensors[theirs].dtype.kind != "f":
            raise WeightsError(f"{source}: tensor {theirs!r} has dtype {tensors[theirs].dtype}")
        weight = tensors[theirs].astype(np.float32)
        params[ours] = weight.T if transpose else weight  # (out, in) -> (in, out)
    encoder = {k: v for k, v in tensors.items() if not k.startswith("classifier.")}
    bert = checkpoint_to_minisbert(encoder, config, source)  # drops bert.pooler.*
    params.update({f"bert.{name}": value for name, value in bert.items()})
    check_params(expected_params(config, num_labels), params, source)
    return params


def convert_cross_encoder(
    src: str | Path, dst: str | Path, *, overwrite: bool = False, log: Log = print
) -> Path:
    """Convert a sentence-transformers or HF cross-encoder folder ``src`` into a minisbert
    cross-encoder folder ``dst``, read and checked whole before ``dst`` is written whole."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder to convert")
    check_apart(dst, [src])
    check_replaceable(dst, overwrite)
    transformer_dir = _transformer_dir(src)
    config = _bert_config(transformer_dir)
    hf_config = _json_object(transformer_dir / "config.json")
    labels = _labels(transformer_dir / "config.json", hf_config)
    head = CrossEncoderConfig(
        num_labels=len(labels),
        activation=_activation(src, hf_config, len(labels)),
        max_length=_max_seq_length(transformer_dir, config),
        labels=labels,
    )
    tokenizer_file = transformer_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ConfigError(
            f"{tokenizer_file}: not found; minisbert needs a fast WordPiece tokenizer.json"
        )
    if Tokenizer.from_file(tokenizer_file, head.max_length).vocab_size > config.vocab_size:
        raise ConfigError(
            f"{tokenizer_file}: more tokens than config.json's vocab_size {config.vocab_size}; "
            "the tokenizer belongs to another model"
        )
    weights_file = _weights_file(transformer_dir)
    check_header_fits(weights_file, config)
    params = cross_encoder_to_minisbert(read_weights(weights_file), config, len(labels), src)

    def fill(folder: Path) -> None:
        write_safetensors_atomic(params, folder / "model.safetensors")
        _write_json(config.to_dict(), folder / "config.json")
        _write_json(head.to_dict(), folder / CROSS_ENCODER_JSON)
        for name in TOKENIZER_FILES:
            if (transformer_dir / name).is_file():
                shutil.copyfile(transformer_dir / name, folder / name)

    return write_folder(dst, fill, sources=[src], overwrite=overwrite, log=log)


def export_cross_encoder(src: str | Path, dst: str | Path, *, overwrite: bool = False) -> Path:
    """Write minisbert cross-encoder folder ``src`` as a folder sentence-transformers'
    ``CrossEncoder(dst)`` loads (and transformers' ``AutoModelForSequenceClassification``):
    a plain BertForSequenceClassification folder, the activation both where 4.x-5.x read it
    (config.json) and where 6.x does (config_sentence_transformers.json), the maximum length
    as the tokenizer's model_max_length."""
    src, dst = Path(src), Path(dst)
    check_apart(dst, [src])
    check_replaceable(dst, overwrite)
    config = BertConfig.from_json(src / "config.json")
    head = CrossEncoderConfig.from_json(src / CROSS_ENCODER_JSON)
    params = read_safetensors(src / "model.safetensors")
    check_params(expected_params(config, head.num_labels), params, src / "model.safetensors")
    bert = {k.removeprefix("bert."): v for k, v in params.items() if k.startswith("bert.")}
    checkpoint = {f"bert.{k}": v for k, v in minisbert_to_checkpoint(bert, config).items()}
    for ours, (theirs, transpose) in HEAD_NAMES.items():
        checkpoint[theirs] = np.ascontiguousarray(params[ours].T if transpose else params[ours])
    tokenizer_config = dict(
        _json_object(src / "tokenizer_config.json")
        if (src / "tokenizer_config.json").is_file()
        else {"tokenizer_class": "BertTokenizer"}
    )
    tokenizer_config["model_max_length"] = head.max_length
    activation = TORCH_ACTIVATIONS[head.activation]

    def fill(folder: Path) -> None:
        hf_config = {
            "architectures": ["BertForSequenceClassification"],
            "position_embedding_type": "absolute",
            "pad_token_id": 0,
            **config.to_dict(),
            "id2label": {str(i): name for i, name in enumerate(head.labels)},
            "label2id": {name: i for i, name in enumerate(head.labels)},
            "sentence_transformers": {"activation_fn": activation},
        }
        _write_hf_files(folder, checkpoint, hf_config, src, tokenizer_config)
        _write_json(
            {"model_type": "CrossEncoder", "activation_fn": activation, "prompts": {},
             "default_prompt_name": None},
            folder / ST_CONFIG,
        )  # fmt: skip

    return write_folder(dst, fill, sources=[src], overwrite=overwrite)

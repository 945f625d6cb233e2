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

BERT's pooler (``pooler.dense``: a dense + tanh over [CLS]) is kept apart, in
``pooler.safetensors`` as ``pooler.kernel``/``pooler.bias``: Sentence-BERT pools the tokens
itself and never runs it, but a cross-encoder started from the folder does, as a BERT sequence
classifier loaded from the same checkpoint would (only its head is new). An all-zero pooler
(what ``export_sentence_transformers`` writes where there is none) counts as none.
Two kinds of tensor are dropped: ``embeddings.position_ids`` (a constant 0..511, not a
parameter), and the pre-training heads ``cls.*`` of a plain HF checkpoint such as
bert-base-uncased (masked-LM and next-sentence heads, which an encoder never runs).
Any other tensor that is missing, left over, or of the wrong shape stops the
conversion with its name. Only safetensors files are read: never a pickle.

A minisbert model folder holds ``model.safetensors``, ``config.json`` (``BertConfig``),
``sentence.json`` (``SentenceConfig``), the tokenizer files and, where the checkpoint has one,
``pooler.safetensors``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from minisbert.bert import BertEncoder
from minisbert.config import BertConfig, ConfigError, DenseConfig, SentenceConfig
from minisbert.io.folders import Log, check_apart, check_replaceable, write_folder
from minisbert.io.manifest import write_atomic
from minisbert.io.modules_json import MODULES_JSON, read_json, read_modules
from minisbert.io.weights import (
    WeightsError,
    check_params,
    param_shapes,
    read_safetensors,
    read_safetensors_header,
    write_safetensors_atomic,
)
from minisbert.tokenizer import Tokenizer

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
)  # fmt: skip
# Not BERT encoder weights; the pooler is read apart (pooler_to_minisbert).
IGNORED_PREFIXES = (
    "pooler.", "embeddings.position_ids", "cls.predictions.", "cls.seq_relationship.",
)  # fmt: skip
POOLER_FILE = "pooler.safetensors"

# minisbert name (with {i} for the layer) -> (checkpoint name, transpose?)
EMBEDDING_NAMES: dict[str, tuple[str, bool]] = {
    "embeddings.word_embeddings.embedding": ("embeddings.word_embeddings.weight", False),
    "embeddings.position_embeddings.embedding": ("embeddings.position_embeddings.weight", False),
    "embeddings.token_type_embeddings.embedding": (
        "embeddings.token_type_embeddings.weight",
        False,
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


def _take(
    tensors: dict[str, np.ndarray], theirs: str, transpose: bool, source: str | Path, ours: str
) -> np.ndarray:
    """One checkpoint tensor as a float32 minisbert parameter: named if missing, refused if
    not a float (a quantized model), transposed from PyTorch's (out, in) to (in, out)."""
    if theirs not in tensors:
        raise WeightsError(f"{source}: missing tensor {theirs!r} (needed for {ours})")
    if str(tensors[theirs].dtype) not in ("float16", "bfloat16", "float32", "float64"):
        raise WeightsError(
            f"{source}: tensor {theirs!r} has dtype {tensors[theirs].dtype}; a weight must "
            "be float16, bfloat16, float32 or float64 (a quantized model is not supported)"
        )
    weight = tensors[theirs].astype(np.float32)
    return weight.T if transpose else weight  # (out, in) -> (in, out)


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
    params = {
        ours: _take(tensors, theirs, transpose, source, ours)
        for ours, (theirs, transpose) in mapping.items()
    }
    check_params(expected_params(config), params, source)
    return params


def pooler_shapes(config: BertConfig) -> dict[str, jax.ShapeDtypeStruct]:
    width = config.hidden_size  # D
    return {"pooler.kernel": jax.ShapeDtypeStruct((width, width), np.float32),  # (D, D) (in, out)
            "pooler.bias": jax.ShapeDtypeStruct((width,), np.float32)}  # fmt: skip


def pooler_to_minisbert(
    tensors: dict[str, np.ndarray], config: BertConfig, source: str | Path
) -> dict[str, np.ndarray]:
    """A checkpoint's BERT pooler as ``pooler.kernel`` (D, D) (in, out) and ``pooler.bias``
    (D,); ``{}`` where it has none, half of one, or an all-zero one (nothing trained): the
    bi-encoder never needs it, so its absence never stops a conversion."""
    tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
    if not {"pooler.dense.weight", "pooler.dense.bias"} <= set(tensors):
        return {}
    params = {
        "pooler.kernel": _take(tensors, "pooler.dense.weight", True, source, "pooler.kernel"),
        "pooler.bias": _take(tensors, "pooler.dense.bias", False, source, "pooler.bias"),
    }
    check_params(pooler_shapes(config), params, source)
    return params if np.any(params["pooler.kernel"]) else {}


def read_pooler(folder: Path, config: BertConfig) -> dict[str, np.ndarray]:
    """A minisbert folder's kept pooler (``pooler.safetensors``), checked; ``{}`` without one."""
    file = folder / POOLER_FILE
    if not file.exists():
        return {}
    params = read_safetensors(file)
    check_params(pooler_shapes(config), params, file)
    return params


def check_header_fits(file: Path, config: BertConfig) -> None:
    """Compare a checkpoint's tensor shapes, read from its header alone, with ``config``: a
    config that does not fit its weights is refused before any array is made. (Missing and
    left-over tensors are named by ``checkpoint_to_minisbert``.)"""
    if file.name.endswith(".index.json"):
        return  # the shards are checked as they are read
    header = read_safetensors_header(file)  # name -> (dtype, shape)
    found = {name.removeprefix("bert."): info for name, info in header.items()}
    expected = expected_params(config)
    for ours, (theirs, transpose) in name_map(config).items():
        if theirs in found:
            want = expected[ours].shape[::-1] if transpose else expected[ours].shape
            if tuple(found[theirs][1]) != tuple(want):
                raise WeightsError(
                    f"{file}: tensor {theirs!r} (minisbert's {ours}) has shape "
                    f"{tuple(found[theirs][1])}, but "
                    f"config.json needs {tuple(want)}; the config belongs to another model"
                )


def minisbert_to_checkpoint(
    params: dict[str, np.ndarray], config: BertConfig
) -> dict[str, np.ndarray]:
    """The inverse: minisbert parameters back to PyTorch BERT names and layouts."""
    out = {}
    for ours, (theirs, transpose) in name_map(config).items():
        out[theirs] = np.ascontiguousarray(params[ours].T if transpose else params[ours])
    return out


# ---------------------------------------------------------------- reading any layout
#
# sentence-transformers has spelled the same settings differently over its releases:
#
#   setting            2.x - 5.x                                  6.2, 6.3, ...
#   module classes     sentence_transformers.models.Pooling       ...sentence_transformer.modules
#                                                                    .pooling.Pooling
#   max length         sentence_bert_config.json max_seq_length    tokenizer_config.json
#                                                                    model_max_length
#   pooling modes      pooling_mode_mean_tokens: true, ...        pooling_mode: "mean" or a list
#   pooling width      word_embedding_dimension                   embedding_dimension
#
# so every setting is read by meaning: a module by the last part of its class name, each
# setting from whichever spelling the folder holds. Unknown extra keys are ignored.

# sentence-transformers' pooling names, in the order its legacy booleans concatenate.
ST_POOLING_NAMES = {
    "cls": "cls", "max": "max", "mean": "mean", "mean_sqrt_len_tokens": "mean_sqrt_len",
    "weightedmean": "weightedmean", "lasttoken": "lasttoken",
}  # fmt: skip
LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# torch.nn activation class -> minisbert.dense.ACTIVATIONS
ST_ACTIVATIONS = {
    "Identity": "identity", "Tanh": "tanh", "ReLU": "relu", "GELU": "gelu", "Sigmoid": "sigmoid",
}  # fmt: skip
PICKLES = ("pytorch_model.bin", "model.pt", "model.ckpt", "pytorch_model.bin.index.json")
NO_LIMIT = 10**6  # tokenizers without a limit store huge sentinels (int(1e30)): no limit
BERT_ONLY = "minisbert implements BERT (the models of all-MiniLM, bge, e5, gte and LaBSE)"


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """What a sentence-transformers or HF folder describes, in minisbert's terms."""

    transformer_dir: Path  # config.json, model.safetensors and the tokenizer
    sentence_config: SentenceConfig
    dense_weights: tuple[Path, ...] = ()  # one safetensors file per Dense layer


def _json_object(path: Path) -> dict[str, Any]:
    values = read_json(path)
    if not isinstance(values, dict):
        raise ConfigError(
            f"{path}: expected a JSON object of settings, found {type(values).__name__}; "
            "the file is damaged: download or save the model again"
        )
    return values


def _pooling_modes(settings: dict[str, Any], file: Path) -> tuple[str, ...]:
    """The pooling modes of a Pooling config, from ``pooling_mode`` or the legacy booleans."""
    modes = settings.get("pooling_mode")
    if modes is None:
        if not any(key in settings for key in LEGACY_POOLING_KEYS):
            raise ConfigError(
                f"{file}: no 'pooling_mode' (nor the pooling_mode_*_tokens switches of older "
                'releases); add e.g. "pooling_mode": "mean"'
            )
        modes = [mode for key, mode in LEGACY_POOLING_KEYS.items() if settings.get(key)]
        modes = modes or ["mean"]  # sentence-transformers' choice when every switch is off
    if isinstance(modes, str):
        modes = [modes]
    if not isinstance(modes, list) or not modes:
        raise ConfigError(f"{file}: pooling_mode {modes!r} is neither a mode nor a list of modes")
    for mode in modes:
        if mode not in ST_POOLING_NAMES:
            raise ConfigError(
                f"{file}: pooling mode {mode!r} is not one minisbert knows "
                f"({', '.join(ST_POOLING_NAMES)})"
            )
    return tuple(ST_POOLING_NAMES[mode] for mode in modes)


def _read_pooling(folder: Path, hidden_size: int) -> tuple[str, ...]:
    file = folder / "config.json"
    settings = _json_object(file)
    modes = _pooling_modes(settings, file)
    width = settings.get("embedding_dimension", settings.get("word_embedding_dimension"))
    if width is not None and width != hidden_size:
        raise ConfigError(
            f"{file}: pools vectors of size {width}, but the Transformer's hidden_size is "
            f"{hidden_size}; the folder mixes two models"
        )
    if settings.get("include_prompt", True) is not True:
        raise ConfigError(
            f"{file}: include_prompt is false (prompt tokens left out of pooling, as INSTRUCTOR "
            "does); minisbert pools every token, so its vectors would differ: not converted"
        )
    return modes


def _read_dense(folder: Path, in_features: int) -> tuple[DenseConfig, Path]:
    file = folder / "config.json"
    settings = _json_object(file)
    for key in ("in_features", "out_features"):
        if key not in settings:
            raise ConfigError(f"{file}: missing {key!r}; a Dense layer needs in_ and out_features")
    activation = str(settings.get("activation_function", "torch.nn.modules.activation.Tanh"))
    if activation.rsplit(".", 1)[-1] not in ST_ACTIVATIONS:
        raise ConfigError(
            f"{file}: activation {activation!r} is not supported "
            f"(minisbert has {', '.join(ST_ACTIVATIONS)})"
        )
    if settings.get("use_residual", False):
        raise ConfigError(f"{file}: a Dense layer with use_residual is not supported")
    try:
        config = DenseConfig(
            settings["in_features"], settings["out_features"], settings.get("bias", True),
            ST_ACTIVATIONS[activation.rsplit(".", 1)[-1]],
        )  # fmt: skip
    except ConfigError as err:
        raise ConfigError(f"{file}: {err}") from None
    if config.in_features != in_features:
        raise ConfigError(
            f"{file}: in_features is {config.in_features} but the vectors before it have "
            f"{in_features} values; the modules do not fit together"
        )
    return config, _weights_file(folder)


def _weights_file(folder: Path) -> Path:
    """``model.safetensors`` of ``folder``; a pickle-only folder is refused, never unpickled."""
    if (folder / "model.safetensors").is_file():
        return folder / "model.safetensors"
    if (folder / "model.safetensors.index.json").is_file():
        return folder / "model.safetensors.index.json"
    pickles = [name for name in PICKLES if (folder / name).is_file()]
    if pickles:
        raise WeightsError(
            f"{folder / pickles[0]}: only a pickled PyTorch file; minisbert reads safetensors only "
            "and never unpickles (a pickle can run code). Get model.safetensors: download it from "
            'the hub if the model has one, or where you trust the file run `python -c "from '
            "transformers import AutoModel as A; A.from_pretrained('DIR').save_pretrained('DIR')\"`"
            " (or SentenceTransformer('DIR').save('DIR')), which writes safetensors"
        )
    raise WeightsError(f"{folder / 'model.safetensors'}: not found; the folder is incomplete")


def _max_seq_length(transformer_dir: Path, config: BertConfig) -> int:
    """sentence_bert_config.json's max_seq_length (releases up to 5.x), else the tokenizer's
    model_max_length (6.x), capped by the position embeddings as sentence-transformers does."""
    st_file = transformer_dir / "sentence_bert_config.json"
    st_settings = _json_object(st_file) if st_file.is_file() else {}
    limit, source = st_settings.get("max_seq_length"), st_file
    if limit is None:
        tok_file = transformer_dir / "tokenizer_config.json"
        limit = (_json_object(tok_file) if tok_file.is_file() else {}).get("model_max_length")
        source = tok_file
    if limit is None or (isinstance(limit, int | float) and limit >= NO_LIMIT):
        return config.max_position_embeddings
    if type(limit) is not int or limit < 2:
        raise ConfigError(f"{source}: the maximum length {limit!r} is not a token count >= 2")
    return min(limit, config.max_position_embeddings)


def _read_prompts(src: Path) -> tuple[dict[str, str], str | None]:
    file = src / "config_sentence_transformers.json"
    if not file.is_file():
        return {}, None
    settings = _json_object(file)
    model_type = settings.get("model_type", "SentenceTransformer")
    if model_type != "SentenceTransformer":
        raise ConfigError(
            f"{file}: a {model_type} model; minisbert converts SentenceTransformer "
            "(sentence embedding) models only"
        )
    prompts = settings.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()
    ):
        raise ConfigError(f"{file}: prompts must map names to texts, found {prompts!r}")
    default = settings.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise ConfigError(f"{file}: default_prompt_name {default!r} is not one of the prompts")
    return prompts, default


def read_sentence_transformers_pipeline(src: Path) -> Pipeline:
    """What ``src`` computes, from its config files, for any sentence-transformers release.

    A sentence-transformers folder lists its pipeline in ``modules.json``: a Transformer,
    a Pooling, any Dense layers, and Normalize. A plain HF BERT folder (no
    ``modules.json``) gets what sentence-transformers gives it: mean pooling, no
    normalisation, the tokenizer's maximum length capped by the position embeddings.
    """
    if not (src / MODULES_JSON).is_file():
        config = _bert_config(src)
        return Pipeline(src, SentenceConfig(_max_seq_length(src, config), "mean", False))
    modules = [(kind, src / folder) for kind, folder in read_modules(src)]
    modules_file = src / MODULES_JSON
    kind, transformer_dir = modules[0]
    if kind not in ("Transformer", "BERT"):
        raise ConfigError(
            f"{modules_file}: the first module is {kind!r}, not a Transformer; {BERT_ONLY}"
        )
    config = _bert_config(transformer_dir)
    pooling: tuple[str, ...] = ()
    dense: list[tuple[DenseConfig, Path]] = []
    normalize = False
    for kind, folder in modules[1:]:
        if normalize:
            raise ConfigError(f"{modules_file}: a {kind} module after Normalize is not supported")
        if kind == "Pooling" and not pooling:
            pooling = _read_pooling(folder, config.hidden_size)
        elif kind == "Dense" and pooling:
            width = dense[-1][0].out_features if dense else config.hidden_size * len(pooling)
            dense.append(_read_dense(folder, width))
        elif kind == "Normalize" and pooling:
            normalize = True
        else:
            raise ConfigError(
                f"{modules_file}: module {kind!r} (in {folder.name or 'the root'}) is not "
                "supported; minisbert reproduces a Transformer, then one Pooling, Dense "
                f"layers and Normalize; {BERT_ONLY}"
            )
    if not pooling:
        raise ConfigError(f"{modules_file}: no Pooling module, so no sentence vector to convert")
    st_file = transformer_dir / "sentence_bert_config.json"
    if st_file.is_file() and _json_object(st_file).get("do_lower_case") is True:
        _check_lowercases(transformer_dir / "tokenizer.json", st_file)
    prompts, default_prompt_name = _read_prompts(src)
    sentence_config = SentenceConfig(
        max_seq_length=_max_seq_length(transformer_dir, config),
        pooling=pooling,
        normalize=normalize,
        dense=tuple(layer for layer, _ in dense),
        prompts=tuple(prompts.items()),
        default_prompt_name=default_prompt_name,
    )
    return Pipeline(transformer_dir, sentence_config, tuple(path for _, path in dense))


def _bert_config(folder: Path) -> BertConfig:
    """config.json as a BertConfig; another architecture gets one line naming it."""
    file = folder / "config.json"
    values = _json_object(file)
    model_type = values.get("model_type", "bert")
    if model_type != "bert":
        raise ConfigError(
            f"{file}: model_type {model_type!r} ({', '.join(values.get('architectures') or [])})"
            f" is not supported; {BERT_ONLY}"
        )
    return BertConfig.from_json(file)


def _check_lowercases(tokenizer_file: Path, st_file: Path) -> None:
    """do_lower_case asks sentence-transformers to lowercase; the tokenizer must do it too."""
    if not tokenizer_file.is_file():
        return  # the missing tokenizer is named later
    normalizer = json.dumps(read_json(tokenizer_file).get("normalizer"))
    if '"lowercase": true' not in normalizer and '"Lowercase"' not in normalizer:
        raise ConfigError(
            f"{st_file}: do_lower_case is true but {tokenizer_file.name} does not lowercase; "
            "minisbert would embed cased text differently: not converted"
        )


def read_weights(file: Path) -> dict[str, np.ndarray]:
    """A safetensors file, or the shards a ``model.safetensors.index.json`` lists."""
    if file.name.endswith(".index.json"):
        index = _json_object(file).get("weight_map")
        if not isinstance(index, dict):
            raise ConfigError(f"{file}: no 'weight_map' of tensor names to shard files")
        tensors: dict[str, np.ndarray] = {}
        for shard in sorted(set(index.values())):
            tensors.update(read_safetensors(file.parent / Path(shard).name))
        return tensors
    return read_safetensors(file)


def dense_to_minisbert(
    tensors: dict[str, np.ndarray], layer: int, config: DenseConfig, source: Path
) -> dict[str, np.ndarray]:
    """A sentence-transformers Dense layer's ``linear.weight`` (out, in) -> ``kernel`` (in, out)."""
    params = {f"{layer}.linear.kernel": ("linear.weight", True)}
    if config.bias:
        params[f"{layer}.linear.bias"] = ("linear.bias", False)
    unexpected = sorted(set(tensors) - {theirs for theirs, _ in params.values()})
    if unexpected:
        raise WeightsError(f"{source}: unexpected tensor {unexpected[0]!r} in a Dense layer")
    out = {
        ours: _take(tensors, theirs, transpose, source, ours)
        for ours, (theirs, transpose) in params.items()
    }
    expected = (config.in_features, config.out_features)
    if out[f"{layer}.linear.kernel"].shape != expected:
        raise WeightsError(
            f"{source}: linear.weight has shape {tensors['linear.weight'].shape}, the config "
            f"needs {expected[::-1]}"
        )
    return out


def convert(src: str | Path, dst: str | Path, *, overwrite: bool = False, log: Log = print) -> Path:
    """Convert a sentence-transformers or HF BERT folder ``src`` into a minisbert folder ``dst``.

    Everything is read and checked before anything is written, and ``dst`` is written whole
    (``minisbert.io.folders``): built beside, swapped in, refused if it is ``src``, lies in it
    or holds it, and an existing folder minisbert did not write is kept unless ``overwrite``."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder to convert")
    from minisbert.io import cross_encoder_convert  # it imports this module: imported here

    if cross_encoder_convert.is_cross_encoder_folder(src):
        return cross_encoder_convert.convert_cross_encoder(src, dst, overwrite=overwrite, log=log)
    check_apart(dst, [src])
    check_replaceable(dst, overwrite)
    pipeline = read_sentence_transformers_pipeline(src)
    transformer_dir, sentence_config = pipeline.transformer_dir, pipeline.sentence_config
    config = BertConfig.from_json(transformer_dir / "config.json")
    tokenizer_file = transformer_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ConfigError(
            f"{tokenizer_file}: not found; minisbert needs a fast WordPiece tokenizer.json. "
            "Write one where transformers is installed: AutoTokenizer.from_pretrained(DIR)"
            ".save_pretrained(DIR)"
        )
    vocab_size = Tokenizer.from_file(tokenizer_file, sentence_config.max_seq_length).vocab_size
    if vocab_size > config.vocab_size:
        raise ConfigError(
            f"{tokenizer_file}: the tokenizer has {vocab_size} tokens but config.json's "
            f"vocab_size (the embedding matrix) is {config.vocab_size}; the tokenizer belongs "
            "to another model"
        )

    weights_file = _weights_file(transformer_dir)
    check_header_fits(weights_file, config)  # before any tensor is read
    tensors = read_weights(weights_file)
    params = checkpoint_to_minisbert(tensors, config, weights_file)
    pooler = pooler_to_minisbert(tensors, config, weights_file)
    dense_params: dict[str, np.ndarray] = {}
    for layer, (dense, file) in enumerate(
        zip(sentence_config.dense, pipeline.dense_weights, strict=True)
    ):
        dense_params.update(dense_to_minisbert(read_weights(file), layer, dense, file))

    def fill(folder: Path) -> None:
        write_safetensors_atomic(params, folder / "model.safetensors")
        if pooler:
            write_safetensors_atomic(pooler, folder / POOLER_FILE)
        if dense_params:
            write_safetensors_atomic(dense_params, folder / "dense.safetensors")
        _write_json(config.to_dict(), folder / "config.json")
        _write_json(sentence_config.to_dict(), folder / "sentence.json")
        for name in TOKENIZER_FILES:
            if (transformer_dir / name).is_file():
                shutil.copyfile(transformer_dir / name, folder / name)

    return write_folder(dst, fill, sources=[src], overwrite=overwrite, log=log)


TORCH_ACTIVATIONS = {
    "identity": "torch.nn.modules.linear.Identity",
    "tanh": "torch.nn.modules.activation.Tanh",
    "relu": "torch.nn.modules.activation.ReLU",
    "gelu": "torch.nn.modules.activation.GELU",
    "sigmoid": "torch.nn.modules.activation.Sigmoid",
}


def export_sentence_transformers(
    src: str | Path, dst: str | Path, *, overwrite: bool = False
) -> Path:
    """Write minisbert folder ``src`` as a sentence-transformers folder ``dst``, whole
    (``minisbert.io.folders``: built beside, swapped in; ``dst`` may not be, be in, or hold
    ``src``; a folder minisbert did not write is kept unless ``overwrite``).

    ``SentenceTransformer(dst)`` loads the result, in 6.2, 6.3 and older releases alike:
    the module classes under their long-standing ``sentence_transformers.models`` names
    (which 6.x still resolves), the maximum length both as sentence_bert_config.json's
    ``max_seq_length`` and as tokenizer_config.json's ``model_max_length``, the pooling as
    6.x writes it (``pooling_mode``, ``embedding_dimension``). BERT's pooler, which
    Sentence-BERT never runs, is the one kept from the checkpoint (``pooler.safetensors``), or
    zeros where none was kept, so that transformers finds every weight it expects (no
    "MISSING" load report) and nobody mistakes a zero one for a trained layer."""
    src, dst = Path(src), Path(dst)
    check_apart(dst, [src])
    check_replaceable(dst, overwrite)
    config = BertConfig.from_json(src / "config.json")
    sentence_config = SentenceConfig.from_json(src / "sentence.json")
    params = read_safetensors(src / "model.safetensors")
    check_params(expected_params(config), params, src / "model.safetensors")
    dense = read_safetensors(src / "dense.safetensors") if sentence_config.dense else {}
    tokenizer_config = dict(
        _json_object(src / "tokenizer_config.json")
        if (src / "tokenizer_config.json").is_file()
        else {"tokenizer_class": "BertTokenizer"}
    )
    tokenizer_config["model_max_length"] = sentence_config.max_seq_length
    checkpoint = minisbert_to_checkpoint(params, config)
    width = config.hidden_size
    pooler = read_pooler(src, config)
    checkpoint["pooler.dense.weight"] = (  # (out, in)
        pooler["pooler.kernel"].T if pooler else np.zeros((width, width), np.float32)
    )
    checkpoint["pooler.dense.bias"] = pooler.get("pooler.bias", np.zeros((width,), np.float32))

    def fill(folder: Path) -> None:
        hf_config = {"architectures": ["BertModel"], "position_embedding_type": "absolute",
                     "pad_token_id": 0, **config.to_dict()}  # fmt: skip
        _write_hf_files(folder, checkpoint, hf_config, src, tokenizer_config)
        _write_json(
            {"max_seq_length": sentence_config.max_seq_length, "do_lower_case": False},
            folder / "sentence_bert_config.json",
        )
        modules = [{"path": "", "type": "Transformer"}, {"path": "1_Pooling", "type": "Pooling"}]
        poolings = [mode.replace("mean_sqrt_len", "mean_sqrt_len_tokens")
                    for mode in sentence_config.poolings]  # fmt: skip
        pooling = {
            "embedding_dimension": config.hidden_size,
            "pooling_mode": poolings[0] if len(poolings) == 1 else poolings,
            "include_prompt": True,
        }
        _write_json(pooling, folder / "1_Pooling" / "config.json")
        for layer, dense_config in enumerate(sentence_config.dense):
            name = f"{len(modules)}_Dense"
            modules.append({"path": name, "type": "Dense"})
            _write_json(
                {"in_features": dense_config.in_features,
                 "out_features": dense_config.out_features, "bias": dense_config.bias,
                 "activation_function": TORCH_ACTIVATIONS[dense_config.activation]},
                folder / name / "config.json",
            )  # fmt: skip
            tensors = {"linear.weight": dense[f"{layer}.linear.kernel"].T}  # (in, out) -> (out, in)
            if dense_config.bias:
                tensors["linear.bias"] = dense[f"{layer}.linear.bias"]
            write_safetensors_atomic(tensors, folder / name / "model.safetensors")
        if sentence_config.normalize:
            modules.append({"path": f"{len(modules)}_Normalize", "type": "Normalize"})
            (folder / modules[-1]["path"]).mkdir(exist_ok=True)
        if sentence_config.prompts:
            _write_json(
                {"prompts": sentence_config.prompt_texts,
                 "default_prompt_name": sentence_config.default_prompt_name,
                 "similarity_fn_name": "cosine"},
                folder / "config_sentence_transformers.json",
            )  # fmt: skip
        _write_json(
            [{"idx": i, "name": str(i), "path": m["path"],
              "type": f"sentence_transformers.models.{m['type']}"} for i, m in enumerate(modules)],
            folder / "modules.json",
        )  # fmt: skip

    return write_folder(dst, fill, sources=[src], overwrite=overwrite)


def _write_json(values: Any, path: Path) -> None:
    write_atomic(path, json.dumps(values, indent=2) + "\n")


def _write_hf_files(
    folder: Path,
    checkpoint: dict[str, np.ndarray],
    hf_config: dict[str, Any],
    tokenizer_dir: Path,
    tokenizer_config: dict[str, Any],
) -> None:
    """The files an HF folder has whatever its head (sentence-transformers' Transformer module,
    a BertForSequenceClassification): weights, config.json and the tokenizer's files."""
    write_safetensors_atomic(checkpoint, folder / "model.safetensors")
    _write_json(hf_config, folder / "config.json")
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copyfile(tokenizer_dir / name, folder / name)
    _write_json(tokenizer_config, folder / "tokenizer_config.json")

"""The shape of a BERT model, read from a Hugging Face ``config.json``.

A ``BertConfig`` is everything needed to build an empty encoder of the right size:
how many layers, heads and hidden units, how large the vocabulary is, and the few
constants (LayerNorm epsilon, dropout rates) that change the numbers it computes.
all-MiniLM-L6-v2 is a small BERT: 6 layers, 12 heads of size 32, hidden size 384.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from minisbert.io.bounded import UnreadableFile, read_json_bounded


class ConfigError(ValueError):
    """A config file is missing, unreadable, or describes a model minisbert cannot build."""


# The largest size of each kind that minisbert builds: far above any released BERT (bert-large
# has 24 layers, D 1024, F 4096; LaBSE's vocabulary 501,153 tokens), far below a config.json
# that would take minutes and gigabytes to build before any weight is compared with it.
MAX_SIZES = {
    "vocab_size": 2**22,  # 4,194,304 tokens
    "hidden_size": 65536,
    "num_hidden_layers": 256,
    "num_attention_heads": 65536,  # and at most hidden_size: each head has H >= 1 units
    "intermediate_size": 262144,
    "max_position_embeddings": 2**20,
    "type_vocab_size": 1024,  # BERT has 2 (sentence A, sentence B)
}
MAX_PARAMETERS = 20 * 10**9  # 80 GB of float32 weights


def read_settings_json(
    path: Path, *, missing: str, damaged: str = "", shown_name: str | None = None
) -> Any:
    """A settings file's JSON content (bounded: a plain file of at most 1 MB), or one
    ConfigError line naming the file: ``missing`` says what to do when it is absent,
    ``damaged`` is added when it is not JSON. ``shown_name``: how the user knows the file
    (a hub repo's file rather than a temporary copy), default its path."""
    name = shown_name or str(path)
    try:
        return read_json_bounded(path)
    except FileNotFoundError:
        raise ConfigError(f"{name}: {missing}") from None
    except UnreadableFile as err:
        raise ConfigError(str(err)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        hint = f"; {damaged}" if damaged else ""
        raise ConfigError(f"{name}: not valid JSON ({err}){hint}") from None


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384  # D
    num_hidden_layers: int = 6
    num_attention_heads: int = 12  # N; head size H = D / N
    intermediate_size: int = 1536  # F, the feed-forward width
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    hidden_act: str = "gelu"  # exact (erf) GELU, as BERT was trained

    def __post_init__(self) -> None:
        # A hand-edited config.json can hold "384" or 384.0; say so here, not deep inside JAX.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int" and (type(value) is not int or value < 1):
                raise ConfigError(f"{field.name} must be a positive integer, found {value!r}")
            if field.type == "float" and (type(value) not in (int, float) or not 0 <= value < 1):
                raise ConfigError(f"{field.name} must be a number in [0, 1), found {value!r}")
        for name, limit in MAX_SIZES.items():
            if getattr(self, name) > limit:
                raise ConfigError(
                    f"{name} is {getattr(self, name)}, above minisbert's limit of {limit}"
                )
        if self.num_attention_heads > self.hidden_size:
            raise ConfigError(
                f"num_attention_heads {self.num_attention_heads} is more than hidden_size "
                f"{self.hidden_size}: a head needs at least one unit"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act != "gelu":
            raise ConfigError(
                f"hidden_act {self.hidden_act!r} is not supported; minisbert's BERT uses the "
                "exact GELU ('gelu') that BERT and MiniLM were trained with"
            )
        if self.parameter_count > MAX_PARAMETERS:
            raise ConfigError(
                f"the config describes {self.parameter_count:.3g} parameters, above minisbert's "
                f"limit of {MAX_PARAMETERS:.3g} ({4 * MAX_PARAMETERS / 1e9:.0f} GB of float32)"
            )

    @property
    def head_size(self) -> int:  # H
        return self.hidden_size // self.num_attention_heads

    @property
    def parameter_count(self) -> int:
        """How many numbers the encoder holds, counted from the config alone (see bert.py)."""
        V, D, F = self.vocab_size, self.hidden_size, self.intermediate_size
        embeddings = (V + self.max_position_embeddings + self.type_vocab_size) * D + 2 * D
        attention = 4 * (D * D + D) + 2 * D  # query, key, value, output; LayerNorm
        feed_forward = (D * F + F) + (F * D + D) + 2 * D  # intermediate, output; LayerNorm
        return embeddings + self.num_hidden_layers * (attention + feed_forward)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BertConfig:
        """Keep the fields minisbert uses; HF configs carry many others we can ignore."""
        if not isinstance(values, dict):
            raise ConfigError(f"expected a JSON object of settings, found {type(values).__name__}")
        model_type = values.get("model_type", "bert")
        if model_type != "bert":
            raise ConfigError(f"model_type is {model_type!r}; minisbert builds BERT models only")
        if values.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError("only absolute position embeddings are supported")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        path = Path(path)
        values = read_settings_json(path, missing="config file not found")
        try:
            return cls.from_dict(values)
        except (TypeError, ConfigError) as err:
            raise ConfigError(f"{path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": "bert", **dataclasses.asdict(self)}


# The names a sentence.json may use. The functions they name live in pooling.POOLINGS and
# dense.ACTIVATIONS, which import JAX and check at import that their keys are these; the names
# are kept here so that reading a config needs no JAX.
# The paper's three poolings and sentence-transformers' mean_sqrt_len, which lesson 4
# compares; then weightedmean and lasttoken, two more of sentence-transformers' modes, so
# that a BERT model saved with either converts.
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")
OTHER_POOLING_MODES = ("weightedmean", "lasttoken")
ALL_POOLING_MODES = POOLING_MODES + OTHER_POOLING_MODES
ACTIVATION_NAMES = ("identity", "tanh", "relu", "gelu", "sigmoid")
MAX_DENSE_FEATURES = 2**20


@dataclasses.dataclass(frozen=True)
class DenseConfig:
    """One Dense layer after pooling: u -> activation(u W + b), W of shape (in, out)."""

    in_features: int
    out_features: int
    bias: bool = True
    activation: str = "tanh"  # sentence-transformers' default

    def __post_init__(self) -> None:
        for name in ("in_features", "out_features"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"dense {name} must be a positive integer, found {value!r}")
            if value > MAX_DENSE_FEATURES:
                raise ConfigError(
                    f"dense {name} is {value}, above minisbert's limit of {MAX_DENSE_FEATURES}"
                )
        if type(self.bias) is not bool:
            raise ConfigError(f"dense bias must be true or false, found {self.bias!r}")
        if self.activation not in ACTIVATION_NAMES:
            raise ConfigError(
                f"dense activation {self.activation!r} is not one of {ACTIVATION_NAMES}"
            )


@dataclasses.dataclass(frozen=True)
class SentenceConfig:
    """What turns BERT's token vectors into a sentence vector (``sentence.json``).

    all-MiniLM-L6-v2: truncate at 256 tokens, mean pooling, then L2 normalisation.
    ``pooling`` is one mode, or a tuple of modes whose vectors are concatenated (in
    that order); ``dense`` are the Dense layers applied after pooling, before
    normalisation; ``prompts`` map a name to a text put before every sentence
    (``encode(prompt_name=...)``), ``default_prompt_name`` the one used when none is
    asked for. Files written before these fields existed read unchanged.
    """

    max_seq_length: int = 256
    pooling: str | tuple[str, ...] = "mean"
    normalize: bool = False
    dense: tuple[DenseConfig, ...] = ()
    # (name, text) pairs, not a dict: the config is part of the model's static (hashed)
    # structure under jax.jit. ``prompt_texts`` gives the dict.
    prompts: tuple[tuple[str, str], ...] = ()
    default_prompt_name: str | None = None

    def __post_init__(self) -> None:
        if type(self.max_seq_length) is not int:
            raise ConfigError(f"max_seq_length must be an integer, found {self.max_seq_length!r}")
        if type(self.normalize) is not bool:
            raise ConfigError(f"normalize must be true or false, found {self.normalize!r}")
        if isinstance(self.pooling, list | tuple):  # JSON gives a list; keep a hashable tuple
            object.__setattr__(self, "pooling", tuple(self.pooling))
            if len(self.pooling) == 1:
                object.__setattr__(self, "pooling", self.pooling[0])
        for mode in self.poolings:
            if mode not in ALL_POOLING_MODES:
                raise ConfigError(f"pooling {mode!r} is not one of {ALL_POOLING_MODES}")
        if not self.poolings:
            raise ConfigError(f"pooling names no mode; choose one of {ALL_POOLING_MODES}")
        if self.max_seq_length < 2:
            raise ConfigError(f"max_seq_length {self.max_seq_length} leaves no room for a token")
        dense = tuple(
            layer if isinstance(layer, DenseConfig) else DenseConfig(**layer)
            for layer in self.dense
        )  # dicts when read from JSON
        object.__setattr__(self, "dense", dense)
        prompts = self.prompts.items() if isinstance(self.prompts, dict) else self.prompts
        object.__setattr__(self, "prompts", tuple(sorted((str(k), str(v)) for k, v in prompts)))
        if self.default_prompt_name is not None and self.default_prompt_name not in dict(
            self.prompts
        ):
            raise ConfigError(
                f"default_prompt_name {self.default_prompt_name!r} is not one of the prompts "
                f"{sorted(dict(self.prompts))}"
            )

    @property
    def poolings(self) -> tuple[str, ...]:
        """The pooling modes, in the order their vectors are concatenated."""
        return (self.pooling,) if isinstance(self.pooling, str) else self.pooling

    @property
    def prompt_texts(self) -> dict[str, str]:
        return dict(self.prompts)

    def embedding_dim(self, hidden_size: int) -> int:
        """The size of a sentence vector: the last Dense layer's, else D per pooling mode."""
        return self.dense[-1].out_features if self.dense else hidden_size * len(self.poolings)

    @classmethod
    def from_json(cls, path: str | Path) -> SentenceConfig:
        path = Path(path)
        try:
            values = read_json_bounded(path)  # a plain file of at most 1 MB
            if not isinstance(values, dict):
                raise ConfigError(f"expected a JSON object, found {type(values).__name__}")
            return cls(**values)
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except UnreadableFile as err:
            raise ConfigError(str(err)) from None
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ConfigError) as err:
            raise ConfigError(f"{path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the fields added since the first release are written only when set,
        so a plain model's sentence.json is what older minisbert versions wrote and read."""
        values: dict[str, Any] = {
            "max_seq_length": self.max_seq_length,
            "pooling": self.pooling if isinstance(self.pooling, str) else list(self.pooling),
            "normalize": self.normalize,
        }
        if self.dense:
            values["dense"] = [dataclasses.asdict(layer) for layer in self.dense]
        if self.prompts:
            values["prompts"] = dict(self.prompts)
        if self.default_prompt_name is not None:
            values["default_prompt_name"] = self.default_prompt_name
        return values

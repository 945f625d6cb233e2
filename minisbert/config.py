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

DTYPES = ("float32", "bfloat16")


class ConfigError(ValueError):
    """A config file is missing, unreadable, or describes a model minisbert cannot build."""


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
    # How the dense products compute: "float32", or "bfloat16" (halves their memory traffic
    # and runs on GPU/TPU matrix units; parameters, residual sums, LayerNorm and softmax stay
    # float32). A choice made when loading, not part of the saved model.
    dtype: str = "float32"

    def __post_init__(self) -> None:
        # A hand-edited config.json can hold "384" or 384.0; say so here, not deep inside JAX.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int" and (type(value) is not int or value < 1):
                raise ConfigError(f"{field.name} must be a positive integer, found {value!r}")
            if field.type == "float" and (type(value) not in (int, float) or not 0 <= value < 1):
                raise ConfigError(f"{field.name} must be a number in [0, 1), found {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype {self.dtype!r} is not one of {DTYPES}")
        if self.hidden_act != "gelu":
            raise ConfigError(
                f"hidden_act {self.hidden_act!r} is not supported; minisbert's BERT uses the "
                "exact GELU ('gelu') that BERT and MiniLM were trained with"
            )

    @property
    def head_size(self) -> int:  # H
        return self.hidden_size // self.num_attention_heads

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
        # "dtype" in a Hugging Face config is the storage dtype of the weights, not ours.
        names = {f.name for f in dataclasses.fields(cls)} - {"dtype"}
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None
        try:
            return cls.from_dict(values)
        except (TypeError, ConfigError) as err:
            raise ConfigError(f"{path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        del values["dtype"]  # how to compute is the loader's choice, not the model's
        return {"model_type": "bert", **values}


POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")


@dataclasses.dataclass(frozen=True)
class SentenceConfig:
    """What turns BERT's token vectors into a sentence vector (``sentence.json``).

    all-MiniLM-L6-v2: truncate at 256 tokens, mean pooling, then L2 normalisation.
    """

    max_seq_length: int = 256
    pooling: str = "mean"
    normalize: bool = False

    def __post_init__(self) -> None:
        if type(self.max_seq_length) is not int:
            raise ConfigError(f"max_seq_length must be an integer, found {self.max_seq_length!r}")
        if type(self.normalize) is not bool:
            raise ConfigError(f"normalize must be true or false, found {self.normalize!r}")
        if self.pooling not in POOLING_MODES:
            raise ConfigError(f"pooling {self.pooling!r} is not one of {POOLING_MODES}")
        if self.max_seq_length < 2:
            raise ConfigError(f"max_seq_length {self.max_seq_length} leaves no room for a token")

    @classmethod
    def from_json(cls, path: str | Path) -> SentenceConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(values, dict):
                raise ConfigError(f"expected a JSON object, found {type(values).__name__}")
            return cls(**values)
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ConfigError) as err:
            raise ConfigError(f"{path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

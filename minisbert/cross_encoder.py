"""The cross-encoder: both sentences through BERT together, one score per pair.

A bi-encoder (``sentence_encoder.py``) embeds each sentence alone and compares the vectors:
fast, since each vector is computed once, but the sentences never see each other. A
cross-encoder reads the pair as one sequence, so that every token of ``a`` attends to every
token of ``b``; it is slower (one BERT pass per pair), and usually more accurate. It is BERT's
own sentence-pair classifier (Devlin et al. 2019, Figure 4a):

    input            [CLS] a_1 .. a_n [SEP] b_1 .. b_m [SEP]
    token_type_ids     0    0  ..  0    0    1  ..  1    1      (segment A, segment B)
    h = BERT(input)                                             (T, D)
    pooled = tanh(h[0] W_p + b_p)                               (D,)   BERT's pooler, on [CLS]
    logits = Dropout(pooled) W_c + b_c                          (C,)   the classifier head
    score  = sigmoid(logits) for one label; the logits themselves for several

The usual pattern (the library's retrieve & re-rank): a bi-encoder picks the top 100 of a
large corpus, a cross-encoder re-orders those 100 (``CrossEncoder.rank``).

``CrossEncoderModel`` is the network (an ``nnx.Module``); ``CrossEncoder`` adds the tokenizer,
``predict`` and ``rank``, which give the scores sentence-transformers' ``CrossEncoder`` gives
for the same folder (``minisbert convert`` makes one from theirs).

Shapes: B batch (pairs), T tokens, D hidden size, C labels (num_labels), N pairs in a call.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from minisbert.bert import BertEncoder
from minisbert.config import BertConfig, ConfigError, read_settings_json
from minisbert.io.weights import check_file_params, load_params, param_shapes
from minisbert.tokenizer import Tokenizer, pad_batch

CROSS_ENCODER_JSON = "cross_encoder.json"
PAD_MULTIPLE = 8  # batches are padded to a multiple of 8 tokens: fewer shapes to compile


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# What ``predict`` applies to the logits (B, C). A model saves one of the first two in
# cross_encoder.json (sentence-transformers' torch.nn.Sigmoid and torch.nn.Identity).
ACTIVATIONS = {"sigmoid": _sigmoid, "identity": lambda x: x, "softmax": _softmax}
SAVED_ACTIVATIONS = ("sigmoid", "identity")


@dataclasses.dataclass(frozen=True)
class CrossEncoderConfig:
    """``cross_encoder.json``: what sits on top of BERT, and how its logits become scores."""

    num_labels: int = 1  # C; 1: a relevance or similarity score, more: classes (NLI)
    activation: str = "sigmoid"  # sentence-transformers' default: sigmoid for C = 1, else identity
    max_length: int = 512  # tokens of the pair, [CLS] and both [SEP] included
    labels: tuple[str, ...] = ("LABEL_0",)  # a name per label (id2label)

    def __post_init__(self) -> None:
        if type(self.num_labels) is not int or self.num_labels < 1:
            raise ConfigError(f"num_labels must be a positive integer, found {self.num_labels!r}")
        if self.activation not in SAVED_ACTIVATIONS:
            raise ConfigError(
                f"activation {self.activation!r} is not one of {', '.join(SAVED_ACTIVATIONS)}"
            )
        if type(self.max_length) is not int or self.max_length < 3:
            raise ConfigError(f"max_length must be an integer >= 3, found {self.max_length!r}")
        if len(self.labels) != self.num_labels or not all(isinstance(x, str) for x in self.labels):
            raise ConfigError(f"labels must be {self.num_labels} names, found {self.labels!r}")

    @classmethod
    def from_json(cls, path: str | Path) -> CrossEncoderConfig:
        path = Path(path)
        values = read_settings_json(path, missing="not found; convert the cross-encoder again")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object, found {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            values = {k: v for k, v in values.items() if k in names}
            if isinstance(values.get("labels"), list):
                values["labels"] = tuple(values["labels"])
            return cls(**values)
        except (TypeError, ConfigError) as err:
            raise ConfigError(f"{path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "labels": list(self.labels)}


class CrossEncoderModel(nnx.Module):
    """BERT, its pooler and a linear head: a pair's ids in, C logits out (a BERT sequence
    classifier). Parameters: ``bert.*``, ``pooler.kernel/bias`` (D, D), ``classifier.kernel/bias``
    (D, C)."""

    def __init__(self, config: BertConfig, num_labels: int, *, rngs: nnx.Rngs):
        self.config = config
        self.bert = BertEncoder(config, rngs=rngs)
        D = config.hidden_size
        self.pooler = nnx.Linear(D, D, rngs=rngs)
        self.dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)
        self.classifier = nnx.Linear(D, num_labels, rngs=rngs)

    def __call__(
        self,
        input_ids: jax.Array,  # (B, T)
        attention_mask: jax.Array,  # (B, T)
        token_type_ids: jax.Array,  # (B, T): 0 for [CLS] a [SEP], 1 for b [SEP]
    ) -> jax.Array:  # (B, C) logits
        h = self.bert(input_ids, attention_mask, token_type_ids)  # (B, T, D)
        return self.classify(h[:, 0])  # (B, C): from each pair's [CLS] vector

    def classify(self, cls: jax.Array) -> jax.Array:  # (B, D) -> (B, C) logits
        """The two layers on top of BERT, on the pairs' [CLS] vectors: the pooler, then the head."""
        pooled = jnp.tanh(self.pooler(cls))  # (B, D)
        return self.classifier(self.dropout(pooled))  # (B, C)


@functools.partial(jax.jit, static_argnums=0)
def _logits(graphdef: Any, state: Any, ids: jax.Array, mask: jax.Array, types: jax.Array):
    return nnx.merge(graphdef, state)(ids, mask, types)  # (B, C)


def _as_pairs(pairs: Any) -> list[tuple[str, str]]:
    """A list of (a, b) string pairs; anything else is named by its index."""
    items = list(pairs)
    for index, pair in enumerate(items):
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(isinstance(s, str) for s in pair)
        ):
            raise TypeError(f"pairs[{index}] is {pair!r}; every item must be two strings (a, b)")
    return [(a, b) for a, b in items]


class CrossEncoder:
    """Tokenizer + ``CrossEncoderModel``: sentence pairs in, scores out."""

    def __init__(self, model: CrossEncoderModel, tokenizer: Tokenizer, config: CrossEncoderConfig):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    @property
    def max_length(self) -> int:
        return self.tokenizer.max_seq_length

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, seed: int = 0) -> CrossEncoder:
        """Load a minisbert cross-encoder folder (``minisbert convert`` of a
        sentence-transformers or HF cross-encoder); every file checked before any compute."""
        from minisbert.sentence_encoder import _materialize, open_model_folder, resolve_model_dir

        folder = resolve_model_dir(name_or_path)
        head, config, tokenizer = open_model_folder(
            folder, CROSS_ENCODER_JSON, CrossEncoderConfig.from_json, "max_length"
        )
        model = nnx.eval_shape(
            lambda: CrossEncoderModel(config, head.num_labels, rngs=nnx.Rngs(seed))
        )
        check_file_params(param_shapes(model), folder / "model.safetensors")
        _materialize(model)
        load_params(model, folder / "model.safetensors")
        model.eval()
        return cls(model, tokenizer, head)

    def tokenize_pairs(
        self, pairs: Sequence[tuple[str, str]]
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids and segment ids of ``[CLS] a [SEP] b [SEP]``, at most max_length tokens.

        A longer pair is cut as transformers' default ``truncation="longest_first"`` cuts it:
        one token at a time from whichever side is longer (the tokenizer's own pair template
        and truncation, the same Rust code transformers calls)."""
        encodings = self.tokenizer.backend.encode_batch(list(pairs), add_special_tokens=True)
        return [e.ids for e in encodings], [e.type_ids for e in encodings]

    def predict(
        self,
        pairs: Sequence[tuple[str, str]] | tuple[str, str],
        batch_size: int = 32,
        activation: str | None = None,
    ) -> np.ndarray:
        """Scores of each pair: (N,) for one label, (N, C) for several; a single pair gives
        a number (or (C,)).

        ``activation=None`` applies the model's own (cross_encoder.json; sentence-transformers'
        rule: sigmoid for one label, the raw logits for several); ``"sigmoid"``, ``"identity"``
        (the logits) or ``"softmax"`` (over the labels) choose another. Pairs are sorted by
        length and padded per batch, as the library does; the order of the result is theirs."""
        name = self.config.activation if activation is None else activation
        if name not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {name!r}")
        if type(batch_size) is not int or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        single = isinstance(pairs, tuple | list) and len(pairs) == 2 and isinstance(pairs[0], str)
        items = _as_pairs([pairs] if single else pairs)
        C = self.num_labels
        logits = np.zeros((len(items), C), np.float32)  # (N, C)
        self.model.eval()
        graphdef, state = nnx.split(self.model)
        ids, types = self.tokenize_pairs(items)
        order = np.argsort([-len(x) for x in ids], kind="stable")  # longest first
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(items), batch_size):
            rows = order[start : start + batch_size]
            T = -(-max(len(ids[i]) for i in rows) // PAD_MULTIPLE) * PAD_MULTIPLE
            input_ids, mask = pad_batch([ids[i] for i in rows], T, pad)  # (B, T), (B, T)
            type_ids, _ = pad_batch([types[i] for i in rows], T, 0)  # (B, T)
            logits[rows] = np.asarray(_logits(graphdef, state, input_ids, mask, type_ids))
        scores = ACTIVATIONS[name](logits)  # (N, C)
        if C == 1:
            scores = scores[:, 0]  # (N,)
        return scores[0] if single else scores

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        batch_size: int = 32,
        activation: str | None = None,
    ) -> list[dict[str, Any]]:
        """The documents ordered by their score with ``query``, best first:
        ``[{"corpus_id": i, "score": s}, ...]``, the first ``top_k`` (all if None)."""
        if self.num_labels != 1:
            raise ValueError(
                f"rank needs a model with one label (a score per pair); this one has "
                f"{self.num_labels}: use predict"
            )
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, not {type(query).__name__}")
        scores = self.predict(
            [(query, doc) for doc in documents], batch_size=batch_size, activation=activation
        )  # (N,)
        results = [{"corpus_id": i, "score": float(s)} for i, s in enumerate(scores)]
        results.sort(key=lambda r: r["score"], reverse=True)
        return results[:top_k]

"""Training a cross-encoder: a pair's logits through the one train step.

Shapes: B batch (pairs), T tokens, C labels.

``minisbert train --cross-encoder`` runs ``minisbert.train``'s loop, and its ``train_step``,
with three parts swapped for the cross-encoder's:

- **the model**: a ``CrossEncoderModel``. From a bi-encoder folder (``--model
  all-MiniLM-L6-v2``) it takes BERT and the checkpoint's pooler, which ``minisbert convert``
  keeps beside the model (a new one, seeded, where the folder has none); the head is new
  (seeded by ``--seed``). From a cross-encoder folder it takes all of it, to train on.
- **the embed** (``pair_logits``): a batch is ONE side of pairs, ``[CLS] a [SEP] b [SEP]``
  with segment ids, and what the loss receives is the logits, (1, B, C): the bi-encoder's
  ``loss(*sides, labels)`` with a single "side".
- **the loss**, chosen by the data (the one the library uses by default for each):

      scored pairs, y in [0, 1]:  BCE(z, y) = -[y log s(z) + (1 - y) log(1 - s(z))]
                                            = softplus(z) - y z,       s = sigmoid, C = 1
      class pairs (NLI):          CE(z, c)  = -log softmax(z)_c,       C classes

  averaged over the batch. The model learns sigmoid(z) = y, so ``predict`` (which applies
  the sigmoid saved in cross_encoder.json) gives scores on the data's scale, 0..1.

**The recipe.** AdamW at ``CROSS_ENCODER_LR`` (5e-5; ``--lr``) for every parameter, the
pooler and the new head included (``--head-lr`` and ``--probe-steps`` are the softmax
classifier's, not used here), 10% warm-up, the pairs in the data's order (``--pair-order
both`` adds each pair reversed), and for scores no dropout (``CROSS_ENCODER_DROPOUT``;
``--dropout``). Measured from all-MiniLM-L6-v2 on STS-b, dev / test, seed 0: this recipe
86.63 / 84.39; at the checkpoint's dropout 0.1 86.50 / 84.16; under a new random pooler
86.77 / 83.69, at 8e-5 87.00 / 83.65 (level, within a seed's noise: the lower rate kept),
both orders at 2e-5 85.72 / 82.44. Over seeds 0, 1, 2 on test: 84.04 +- 0.35 without
dropout, 83.81 +- 0.33 with it; the paper's BERT-base cross-encoder has 84.30 +- 0.76.
bench/results/cross-encoder-*.md (``python -m bench.cross_encoder``).

Everything else is the bi-encoder's: the data checks, the shuffle, checkpoints, ``--resume``,
the run guard, progress and evaluation on STS-b dev (the cross-encoder's scores against the
gold ones). The trained folder is a minisbert cross-encoder folder (``cross_encoder.json``):
``CrossEncoder.from_pretrained``, ``minisbert eval sts``, ``minisbert rerank``, and
``minisbert export`` (sentence-transformers' ``CrossEncoder`` loads the export).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from minisbert.batching import bucket_length
from minisbert.cross_encoder import (
    CROSS_ENCODER_JSON,
    CrossEncoder,
    CrossEncoderConfig,
    CrossEncoderModel,
)
from minisbert.data import NLI_LABELS, DataError, PairExample, load_dataset
from minisbert.data.loading import DATASETS
from minisbert.io import checkpoint
from minisbert.tokenizer import pad_batch
from minisbert.train_config import TrainConfig
from minisbert.training_data import TrainingData, data_kinds

__all__ = ["PairData", "PairSteps", "binary_cross_entropy", "cross_entropy", "evaluate_pairs",
           "pair_data", "pair_logits", "pair_loss", "read_pairs", "start_model"]  # fmt: skip


# ---------------------------------------------------------------- the losses


def binary_cross_entropy(
    logits: jax.Array,  # (B, 1)
    scores: jax.Array,  # (B,) in [0, 1]
) -> jax.Array:  # ()
    """mean_b  softplus(z_b) - y_b z_b  =  mean_b -[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))]

    The sigmoid's cross-entropy against a soft target y in [0, 1] (torch's
    BCEWithLogitsLoss, sentence-transformers' default for one label). Written with softplus,
    log(1 + e^z), so that a large |z| neither overflows nor loses the gradient."""
    z = logits[:, 0]  # (B,)
    return jnp.mean(jax.nn.softplus(z) - scores * z)


def cross_entropy(
    logits: jax.Array,  # (B, C)
    labels: jax.Array,  # (B,) class ids 0..C-1
) -> jax.Array:  # ()
    """mean_b -log softmax(z_b)_{c_b}: the softmax's cross-entropy (for class pairs, NLI)."""
    log_p = jax.nn.log_softmax(logits, axis=-1)  # (B, C)
    return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=-1))


# ---------------------------------------------------------------- the embed


def pair_logits(
    model: CrossEncoderModel,
    inputs: tuple[jax.Array, jax.Array],  # input_ids, token_type_ids: (1, B, T) each
    attention_mask: jax.Array,  # (1, B, T)
) -> jax.Array:  # (1, B, C)
    """``train_step``'s ``embed`` for a cross-encoder: the pairs' logits, as one "side"."""
    input_ids, token_type_ids = inputs
    return model(input_ids[0], attention_mask[0], token_type_ids[0])[None]  # (1, B, C)


# ---------------------------------------------------------------- the data


@dataclasses.dataclass
class PairData(TrainingData):
    """``TrainingData`` with one side, the pairs' ``[CLS] a [SEP] b [SEP]`` token ids, and
    their segment ids beside them."""

    segments: list[list[int]] = dataclasses.field(default_factory=list)  # N lists of 0/1


def read_pairs(config: TrainConfig) -> tuple[list[PairExample], np.ndarray, int]:
    """``config.data`` as pairs for a cross-encoder, their labels (N,) and the number of
    labels C: scored pairs (scores rescaled to [0, 1] as the bi-encoder's are; C = 1) or
    class pairs (C classes); triplets and unlabelled pairs are refused. With
    ``config.pair_order`` "both" (or "auto", for scored pairs) every pair comes twice, (a, b)
    then (b, a): 2N examples, shuffled together."""
    from minisbert.training_data import _labels  # the class-id checks, shared

    examples = load_dataset(config.data, config.split, normalize=True)
    if not examples:
        raise DataError(f"--data {config.data} ({config.split}) has no examples")
    kinds = data_kinds(examples)
    if not kinds & {"scored pairs", "class pairs"}:
        raise ValueError(
            f"--cross-encoder trains on scored pairs (binary cross-entropy) or class pairs "
            f"(cross-entropy); --data {config.data} gives {' / '.join(sorted(kinds))}"
        )
    scored = "scored pairs" in kinds
    labels = _labels(examples, config, head=not scored)  # (N,)
    assert labels is not None  # labelled pairs, checked above
    if scored and (labels.min() < 0 or labels.max() > 1):
        raise ValueError(
            f"--data {config.data}: scores from {labels.min():g} to {labels.max():g}; "
            "--cross-encoder learns sigmoid(logit) = score, so scores must lie in [0, 1]: "
            "rescale them in the file"
        )
    if config.pair_order == "both" or (config.pair_order == "auto" and scored):
        examples = examples + [
            dataclasses.replace(e, sentence1=e.sentence2, sentence2=e.sentence1) for e in examples
        ]
        labels = np.concatenate([labels, labels])  # (2N,)
    return examples, labels, 1 if scored else int(labels.max()) + 1


def pair_data(
    config: TrainConfig, examples: list[PairExample], labels: np.ndarray, model: CrossEncoder
) -> PairData:
    """The pairs tokenized together, ``[CLS] a [SEP] b [SEP]``, with their segment ids."""
    ids, segments = model.tokenize_pairs([(e.sentence1, e.sentence2) for e in examples])
    return PairData(
        sides=[ids],
        labels=labels,
        max_length=model.max_length,
        pad_token_id=model.tokenizer.pad_token_id,
        num_classes=model.num_labels,
        fingerprint=checkpoint.data_fingerprint(examples),
        segments=segments,
    )


def pair_loss(num_labels: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The loss for C labels: binary cross-entropy for one, cross-entropy for several."""
    return binary_cross_entropy if num_labels == 1 else cross_entropy


def _label_names(data: str, num_labels: int) -> tuple[str, ...]:
    if num_labels == 1:
        return ("LABEL_0",)  # the name transformers gives a one-label head
    if num_labels == len(NLI_LABELS) and data in ("snli", "mnli", "allnli", "sick-nli"):
        return NLI_LABELS
    return tuple(f"LABEL_{i}" for i in range(num_labels))


class PairSteps:
    """Padded batches of pairs, (1, B, T), through ``train_step`` with ``pair_logits``, on the
    default device. (``minisbert.fast.pairs.PackedPairSteps``: the same, packed.)"""

    for_pairs = True  # lays out pairs: a cross-encoder's run checks it is given such Steps

    def prepare(self, data, config, total, trainable, optimizer) -> None:  # noqa: ANN001
        pass  # each batch is padded to its own bucket length

    def batch(self, data: PairData, order: np.ndarray, index: int, batch_size: int) -> Any:
        rows = order[index * batch_size : (index + 1) * batch_size]  # (B,)
        pairs = [data.sides[0][i] for i in rows]
        T = bucket_length(max(len(ids) for ids in pairs), data.max_length)
        input_ids, mask = pad_batch(pairs, T, data.pad_token_id)  # (B, T) each
        segments, _ = pad_batch([data.segments[i] for i in rows], T, 0)  # (B, T)
        labels = data.labels_of(order, index, batch_size)  # (B,)
        return (input_ids[None], segments[None]), mask[None], labels

    def step(self, trainable, optimizer, batch, loss_fn) -> jax.Array:  # noqa: ANN001
        from minisbert.train import train_step

        inputs, mask, labels = batch
        return train_step(trainable, optimizer, inputs, mask, labels, loss_fn, embed=pair_logits)


# ---------------------------------------------------------------- the model


def start_model(base_dir: Path, num_labels: int, seed: int, data: str = "") -> CrossEncoder:
    """The cross-encoder a run starts from: a cross-encoder folder as it is (its number of
    labels must be the data's), or a bi-encoder folder's BERT and a new head (seeded), under
    the checkpoint's own pooler where the folder kept one (``pooler.safetensors``: a BERT
    sequence classifier loaded from that checkpoint starts so), else a new one."""
    from minisbert.io.convert import read_pooler
    from minisbert.sentence_encoder import SentenceEncoder

    if (base_dir / CROSS_ENCODER_JSON).is_file():
        model = CrossEncoder.from_pretrained(base_dir, seed=seed)
        if model.num_labels != num_labels:
            raise ValueError(
                f"--model {base_dir} scores {model.num_labels} labels, the data has "
                f"{num_labels}; start from a bi-encoder folder for a new head"
            )
        return model
    encoder = SentenceEncoder.from_pretrained(base_dir)
    model = CrossEncoderModel(encoder.model.config, num_labels, rngs=nnx.Rngs(seed))
    nnx.update(model.bert, nnx.state(encoder.model.bert))
    pooler = read_pooler(base_dir, encoder.model.config)  # {} where none was kept
    if pooler:
        model.pooler.kernel.set_value(jnp.asarray(pooler["pooler.kernel"]))  # (D, D) (in, out)
        model.pooler.bias.set_value(jnp.asarray(pooler["pooler.bias"]))  # (D,)
    activation = "sigmoid" if num_labels == 1 else "identity"
    labels = _label_names(data, num_labels)
    config = CrossEncoderConfig(num_labels, activation, encoder.tokenizer.max_seq_length, labels)
    return CrossEncoder(model, encoder.tokenizer, config)


def eval_examples(
    eval_data: str, train_data: str, num_labels: int
) -> tuple[str, list[PairExample], Callable[..., dict[str, float]]] | None:
    """What a cross-encoder run evaluates on (``--eval-data``): ``(name, dev examples,
    evaluate_pairs)``, or None. "auto": for one label, STS benchmark dev (SICK dev when
    training on SICK), as the bi-encoder; for classes, the training data's own dev split.
    Quietly None where the data folder lacks it."""
    if eval_data == "none":
        return None
    name = eval_data
    if name == "auto":
        name = ("sick" if train_data == "sick" else "stsb") if num_labels == 1 else train_data
        if name not in DATASETS:  # a file of the user's: it has no dev split to find
            return None
    try:
        examples = load_dataset(name, "dev", normalize=True)
    except DataError:
        if eval_data == "auto":
            return None
        raise
    kinds = data_kinds(examples)
    wanted = "scored pairs" if num_labels == 1 else "class pairs"
    if wanted not in kinds:
        raise DataError(
            f"--eval-data {name} gives {' / '.join(sorted(kinds))}; a cross-encoder of "
            f"{num_labels} label(s) is evaluated on {wanted}"
        )
    return name, examples, evaluate_pairs


def evaluate_pairs(model: CrossEncoder, examples: Sequence[PairExample]) -> dict[str, float]:
    """Scored pairs: Pearson and Spearman x100 of the scores against the gold ones; class
    pairs: the accuracy of the arg-max label."""
    from minisbert.evaluate import _number, pearson, spearman

    pairs = [(e.sentence1, e.sentence2) for e in examples]
    if isinstance(examples[0].label, int):
        logits = model.predict(pairs, activation="identity")  # (N, C)
        gold = np.array([e.label for e in examples])
        return {"accuracy": float(np.mean(logits.argmax(-1) == gold))}
    scores = model.predict(pairs).astype(np.float64)  # (N,)
    gold = np.array([_number(e.label) for e in examples], dtype=np.float64)
    return {"pearson": 100 * pearson(scores, gold), "spearman": 100 * spearman(scores, gold)}

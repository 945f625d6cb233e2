"""minisbert: Sentence-BERT, written out to be read.

    from minisbert import SentenceEncoder, cos_sim
    encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
    embeddings = encoder.encode(["A sentence.", "Another one."])   # (2, 384)
    print(cos_sim(embeddings, embeddings))

A map of the package, one concept per module. The teaching core:
    config.py            BertConfig (config.json) and SentenceConfig (sentence.json)
    tokenizer.py         WordPiece through `tokenizers`, truncation, padding
    bert.py              the BERT encoder: embeddings, attention, feed-forward
    pooling.py           mean / cls / max / mean_sqrt_len / weighted mean / last token pooling
    dense.py             a Dense layer after pooling (projection + activation)
    distances.py         cosine, euclidean, manhattan; normalize; safe at zero vectors
    batching.py          smart batching: sort by length, pad to a few bucket lengths
    sentence_encoder.py  SentenceModel (network) and SentenceEncoder (encode)
    cross_encoder.py     CrossEncoderModel and CrossEncoder: a pair through BERT, one score
    similarity.py        cos_sim, dot_score, semantic_search, paraphrase_mining
    losses/              the training objectives, and their registry (losses/registry.py)
    loss_check.py        a loss's gradient against finite differences
    train_config.py      TrainConfig: every setting of a run, checked
    training_data.py     which data each loss needs; tokenized, shuffled, padded batches
    optimizer.py         AdamW, warm-up-linear schedule, a learning rate per parameter group
    train.py             the siamese train step and the training loop
    evaluate.py          STS Spearman, triplet accuracy, pair classification, NLI accuracy
    data/                dataset readers and downloads
Around it:
    dropout.py           nnx.Dropout from 16-bit random draws (--dropout-bits 16)
    fast/                the speed path, plugged in: packed rows, shape buckets,
                         bfloat16, several devices (see fast/__init__.py)
    io/                  weights, the atomic write and manifests, checkpoints, convert,
                         fetch, hub, archives (see io/__init__.py)
    run_guard.py         a run's output folder: marker, lock, Ctrl-C and SIGTERM
    lesson.py            the lessons' set-up and exercise checks
    cli.py               the `minisbert` command

The teaching core never imports ``minisbert.fast``, and nothing plugs it in behind your back:
``SentenceEncoder`` encodes with the paper's smart batching; ``FastEncoder`` (from
``minisbert.fast``) packs several sentences to a row for the same vectors, faster, and is what
the ``minisbert`` command uses; the command trains with ``fast.PackedSteps``.

The names below are imported on first use (PEP 562's module ``__getattr__``), so that
``import minisbert`` and ``minisbert --help`` do not import JAX: that alone takes seconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and editors see; at run time, __getattr__ below
    from minisbert.config import BertConfig, SentenceConfig
    from minisbert.cross_encoder import CrossEncoder
    from minisbert.fast.encode import FastEncoder
    from minisbert.sentence_encoder import SentenceEncoder, SentenceModel
    from minisbert.similarity import cos_sim, dot_score, paraphrase_mining, semantic_search

# Each name of the package, and the module it comes from.
_MODULES = {
    "BertConfig": "minisbert.config",
    "CrossEncoder": "minisbert.cross_encoder",
    "FastEncoder": "minisbert.fast.encode",
    "SentenceConfig": "minisbert.config",
    "SentenceEncoder": "minisbert.sentence_encoder",
    "SentenceModel": "minisbert.sentence_encoder",
    "cos_sim": "minisbert.similarity",
    "dot_score": "minisbert.similarity",
    "paraphrase_mining": "minisbert.similarity",
    "semantic_search": "minisbert.similarity",
}

__all__ = [
    "BertConfig",
    "CrossEncoder",
    "FastEncoder",
    "SentenceConfig",
    "SentenceEncoder",
    "SentenceModel",
    "cos_sim",
    "dot_score",
    "paraphrase_mining",
    "semantic_search",
]


def __getattr__(name: str) -> Any:
    """``minisbert.NAME``: import it on first use."""
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES[name]), name)
    globals()[name] = value  # the next use is an ordinary attribute
    return value

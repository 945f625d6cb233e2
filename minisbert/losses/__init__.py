"""Training objectives for sentence embeddings: each a pure function from embeddings to a scalar.

Shapes: B batch, D hidden, C classes.

    CLI name            function                          needs                         module
    softmax             softmax_loss                      pairs + class, a classifier   softmax
    cosine              cosine_similarity_loss            pairs + score in [0, 1]       scored_pairs
    cosent              cosent_loss                       pairs + score                 scored_pairs
    contrastive         contrastive_loss                  pairs + 0/1 label             contrastive
    online_contrastive  online_contrastive_loss           pairs + 0/1 label             contrastive
    triplet             triplet_loss                      anchor, positive, negative    triplet
    batch_hard_triplet  batch_hard_triplet_loss           embeddings + class labels     triplet
    mnrl                multiple_negatives_ranking_loss   anchor, positive [, negative] ranking

Every loss is jittable, returns a mean over the batch (except where its docstring says it sums, as
the library does), and is finite in value and gradient for zero vectors and duplicate rows.
`minisbert.loss_check.check_loss` compares any loss's gradient with finite differences.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from minisbert.losses.contrastive import contrastive_loss, online_contrastive_loss
from minisbert.losses.ranking import multiple_negatives_ranking_loss
from minisbert.losses.scored_pairs import cosent_loss, cosine_similarity_loss
from minisbert.losses.softmax import SoftmaxClassifier, softmax_loss
from minisbert.losses.triplet import batch_hard_triplet_loss, triplet_loss

LOSSES: dict[str, Callable[..., jax.Array]] = {
    "softmax": softmax_loss,  # (classifier, u, v, labels)
    "cosine": cosine_similarity_loss,  # (u, v, scores)
    "cosent": cosent_loss,  # (u, v, scores)
    "contrastive": contrastive_loss,  # (u, v, labels)
    "online_contrastive": online_contrastive_loss,  # (u, v, labels)
    "triplet": triplet_loss,  # (anchor, positive, negative)
    "batch_hard_triplet": batch_hard_triplet_loss,  # (embeddings, labels)
    "mnrl": multiple_negatives_ranking_loss,  # (anchors, positives[, negatives])
}

# What a training loop must feed each loss, so it can pick the right batches and columns.
LOSS_INPUTS: dict[str, str] = {
    "softmax": "pairs+label",  # integer class per pair, plus a SoftmaxClassifier to train
    "cosine": "pairs+score",  # gold similarity in [0, 1]
    "cosent": "pairs+score",  # gold similarity, only its order is used
    "contrastive": "pairs+label",  # 1 similar, 0 dissimilar
    "online_contrastive": "pairs+label",  # 1 similar, 0 dissimilar
    "triplet": "triplets",  # anchor, positive, negative
    "batch_hard_triplet": "embeddings+class labels",  # one sentence per row, its class
    "mnrl": "anchors+positives",  # hard negatives optional
}

__all__ = [
    "LOSSES",
    "LOSS_INPUTS",
    "SoftmaxClassifier",
    "batch_hard_triplet_loss",
    "contrastive_loss",
    "cosent_loss",
    "cosine_similarity_loss",
    "multiple_negatives_ranking_loss",
    "online_contrastive_loss",
    "softmax_loss",
    "triplet_loss",
]

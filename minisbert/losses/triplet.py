"""Triplet losses: an anchor should be closer to its positive than to its negative, by a margin.

Shapes: B batch, D hidden.

    triplet_loss             given (anchor, positive, negative) triplets      (SBERT paper, 3.)
    batch_hard_triplet_loss  given sentences with class labels; each anchor picks its own
                             hardest positive and hardest negative from the batch
                             (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss")
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from minisbert.distances import MATRIX_DISTANCES, ROW_DISTANCES


def triplet_loss(
    anchor: jax.Array,  # (B, D)
    positive: jax.Array,  # (B, D)
    negative: jax.Array,  # (B, D)
    *,
    margin: float = 1.0,
    distance: str = "euclidean",
) -> jax.Array:  # ()
    """mean_i max(d(a_i, p_i) - d(a_i, n_i) + margin, 0).

    The SBERT paper uses euclidean distance and margin 1; sentence-transformers' TripletLoss also
    defaults to euclidean but to margin 5 (`triplet_margin=5`). Distances: euclidean ||a - p||
    (gradient 0 for identical rows), cosine 1 - cos(a, p) with norms clamped at 1e-12, manhattan
    sum |a - p|.
    """
    if distance not in ROW_DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; use one of {sorted(ROW_DISTANCES)}")
    row_distance = ROW_DISTANCES[distance]
    d_positive = row_distance(anchor, positive)  # (B,)
    d_negative = row_distance(anchor, negative)  # (B,)
    return jnp.mean(jax.nn.relu(d_positive - d_negative + margin))


def batch_hard_triplet_loss(
    embeddings: jax.Array,  # (B, D)
    labels: jax.Array,  # (B,) integer class of each sentence
    *,
    margin: float = 5.0,
    distance: str = "euclidean",
) -> jax.Array:  # ()
    """mean_a max(max_p d(a, p) - min_n d(a, n) + margin, 0), p same class as a (p != a), n not.

    Defaults are sentence-transformers' BatchHardTripletLoss: margin 5 and plain (not squared)
    euclidean distance, computed by expanding the square (see distances.euclidean_matrix).
    Hermans et al. also use unsquared distances but prefer a soft margin, log(1 + exp(x)) in
    place of max(x + margin, 0) (the library's BatchHardSoftMarginTripletLoss).
    Other distances: "squared_euclidean", "cosine" (1 - cos) and "manhattan".

    The selection uses the library's masking trick rather than -inf fills, and we keep it so the
    edge cases agree:
    - hardest positive: invalid entries are multiplied by 0, then the row max is taken. An anchor
      whose class appears only once in the batch thus gets d(a, p) = 0.
    - hardest negative: the row's largest distance is added to every invalid entry, then the row
      min is taken, so an invalid entry can only win when there is no valid negative; an anchor
      whose whole batch shares its class gets the largest distance in its row.
    """
    if distance not in MATRIX_DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; use one of {sorted(MATRIX_DISTANCES)}")
    d = MATRIX_DISTANCES[distance](embeddings)  # (B, B)
    same_class = labels[:, None] == labels[None, :]  # (B, B)
    not_self = ~jnp.eye(labels.shape[0], dtype=bool)  # (B, B)
    positive_mask = (same_class & not_self).astype(d.dtype)  # (B, B)
    negative_mask = (~same_class).astype(d.dtype)  # (B, B)

    hardest_positive = _pick(positive_mask * d, jnp.argmax)  # (B,)
    row_max = _pick(d, jnp.argmax)[:, None]  # (B, 1)
    hardest_negative = _pick(d + row_max * (1.0 - negative_mask), jnp.argmin)  # (B,)
    return jnp.mean(jax.nn.relu(hardest_positive - hardest_negative + margin))


def _pick(d: jax.Array, arg_best: Callable[..., jax.Array]) -> jax.Array:  # (B, B) -> (B,)
    """d[i, arg_best(d[i])]: one entry per row, so a tie sends all the gradient to one sentence.

    jnp.max would share it equally among tied entries (identical sentences in a batch tie);
    torch's max/min, and hence the library, give it all to the first, and so do we.
    """
    return jnp.take_along_axis(d, arg_best(d, axis=1)[:, None], axis=1)[:, 0]


def batch_hard_on_triplets(
    anchor: jax.Array,  # (B, D)
    positive: jax.Array,  # (B, D)
    negative: jax.Array,  # (B, D)
    loss_fn: Callable[..., jax.Array] = batch_hard_triplet_loss,
    **options: float | str,
) -> jax.Array:  # ()
    """Batch-hard triplet loss (or ``loss_fn``, of embeddings and labels) on triplets.

    {anchor_i, positive_i} is class i and negative_i a class of its own, so each sentence's
    hardest negative is searched among all 3B sentences of the batch."""
    B = anchor.shape[0]
    embeddings = jnp.concatenate([anchor, positive, negative])  # (3B, D)
    labels = jnp.concatenate([jnp.arange(B), jnp.arange(B), B + jnp.arange(B)])  # (3B,)
    return loss_fn(embeddings, labels, **options)

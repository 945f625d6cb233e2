"""Contrastive losses for sentence pairs with a binary label (1 similar, 0 dissimilar).

Shapes: B batch, D hidden.

Contrastive loss (Hadsell, Chopra & LeCun 2006) pulls similar pairs together and pushes
dissimilar pairs apart until they are at least `margin` away; beyond that they cost nothing:

    loss_i = 1/2 [ y_i d_i^2 + (1 - y_i) relu(margin - d_i)^2 ],   d_i = d(u_i, v_i)

(Hadsell et al. write Y = 0 for similar pairs; sentence-transformers, and we, use y = 1.)
The distances are those of the library's SiameseDistanceMetric: cosine 1 - cos(u, v) with norms
clamped at 1e-8, euclidean ||u - v + 1e-6|| and manhattan sum |u - v + 1e-6|. The 1e-6 is
torch.nn.functional.pairwise_distance's `eps`: it is added to the difference, so two identical
rows are sqrt(D) * 1e-6 apart rather than 0 apart, which keeps the gradient finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from minisbert.distances import (
    EPS_COSINE,
    EPS_PAIRWISE,
    row_cosine_distance,
    row_euclidean,
    row_manhattan,
)


def siamese_distance(
    u: jax.Array,  # (B, D)
    v: jax.Array,  # (B, D)
    distance: str,  # "cosine", "euclidean" or "manhattan"
) -> jax.Array:  # (B,)
    """d(u_i, v_i) exactly as sentence-transformers' contrastive losses measure it."""
    if distance == "cosine":
        return row_cosine_distance(u, v, EPS_COSINE)
    if distance == "euclidean":
        return row_euclidean(u, v, shift=EPS_PAIRWISE)
    if distance == "manhattan":
        return row_manhattan(u, v, shift=EPS_PAIRWISE)
    raise ValueError(f"unknown distance {distance!r}; use 'cosine', 'euclidean' or 'manhattan'")


def contrastive_loss(
    u: jax.Array,  # (B, D)
    v: jax.Array,  # (B, D)
    labels: jax.Array,  # (B,) 1 for a similar pair, 0 for a dissimilar one
    *,
    margin: float = 0.5,
    distance: str = "cosine",
) -> jax.Array:  # ()
    """mean_i 1/2 [y_i d_i^2 + (1 - y_i) relu(margin - d_i)^2].

    Defaults are the library's ContrastiveLoss: cosine distance, margin 0.5, mean over the batch
    (its `size_average=True`; False would sum). Labels between 0 and 1 are not rejected: they
    weight the two terms, as in the library.
    """
    d = siamese_distance(u, v, distance)  # (B,)
    y = labels.astype(d.dtype)
    losses = 0.5 * (y * d**2 + (1.0 - y) * jax.nn.relu(margin - d) ** 2)  # (B,)
    return jnp.mean(losses)


def online_contrastive_loss(
    u: jax.Array,  # (B, D)
    v: jax.Array,  # (B, D)
    labels: jax.Array,  # (B,) 1 similar, 0 dissimilar; any other value is left out
    *,
    margin: float = 0.5,
    distance: str = "cosine",
) -> jax.Array:  # ()
    """sum_{hard positives} d_i^2 + sum_{hard negatives} relu(margin - d_i)^2.

    Only the pairs that are in the wrong place count:

        hard positive   y_i = 1 and d_i > min {d_j : y_j = 0}   (farther than the closest negative)
        hard negative   y_i = 0 and d_i < max {d_j : y_j = 1}   (closer than the farthest positive)

    As in sentence-transformers' OnlineContrastiveLoss, the result is a *sum* (not a mean) and has
    no factor 1/2, unlike contrastive_loss. Edge cases follow the library: with no positive in the
    batch a negative is hard when closer than the mean negative distance; with no negative a
    positive is hard when farther than the mean positive distance; labels other than 0 and 1 are
    ignored; with nothing selected the loss is 0. The thresholds only decide membership, so no
    gradient flows through them.

    The library selects pairs by boolean indexing, which gives arrays of data-dependent size;
    here every pair stays in place and a 0/1 mask decides whether it counts, so `jax.jit` works.
    """
    d = siamese_distance(u, v, distance)  # (B,)
    is_positive = labels == 1  # (B,)
    is_negative = labels == 0  # (B,)
    has_positive = jnp.any(is_positive)
    has_negative = jnp.any(is_negative)

    d_fixed = jax.lax.stop_gradient(d)

    def masked_mean(mask: jax.Array) -> jax.Array:
        return jnp.sum(jnp.where(mask, d_fixed, 0.0)) / jnp.maximum(jnp.sum(mask), 1)

    farthest_positive = jnp.max(jnp.where(is_positive, d_fixed, -jnp.inf))
    closest_negative = jnp.min(jnp.where(is_negative, d_fixed, jnp.inf))
    negative_threshold = jnp.where(has_positive, farthest_positive, masked_mean(is_negative))
    positive_threshold = jnp.where(has_negative, closest_negative, masked_mean(is_positive))

    hard_positive = is_positive & (d > positive_threshold)  # (B,)
    hard_negative = is_negative & (d < negative_threshold)  # (B,)
    positive_loss = jnp.sum(jnp.where(hard_positive, d**2, 0.0))
    negative_loss = jnp.sum(jnp.where(hard_negative, jax.nn.relu(margin - d) ** 2, 0.0))
    return positive_loss + negative_loss

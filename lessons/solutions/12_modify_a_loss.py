"""Reference solutions for lesson 12 (peek only after trying)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from minisbert.distances import cos_sim_matrix, normalize


def cosine_triplet_loss(
    anchor: jax.Array,  # (B, D)
    positive: jax.Array,  # (B, D)
    negative: jax.Array,  # (B, D)
    *,
    margin: float = 0.5,
) -> jax.Array:  # ()
    """mean_i max(cos(a_i, n_i) - cos(a_i, p_i) + margin, 0)."""
    a, p, n = normalize(anchor), normalize(positive), normalize(negative)  # (B, D) each
    cos_ap = jnp.einsum("BD,BD->B", a, p)  # (B,)
    cos_an = jnp.einsum("BD,BD->B", a, n)  # (B,)
    return jnp.mean(jax.nn.relu(cos_an - cos_ap + margin))


def symmetric_mnrl_loss(
    anchors: jax.Array,  # (B, D)
    positives: jax.Array,  # (B, D)
    negatives: jax.Array | None = None,  # (B, D) hard negatives, or None
    *,
    scale: float = 20.0,
) -> jax.Array:  # ()
    """1/2 (mean_i CE(row i, i) + mean_j CE(column j, j)) of the scaled cosine matrix."""
    B = anchors.shape[0]
    candidates = positives  # (B, D)
    if negatives is not None:
        candidates = jnp.concatenate([positives, negatives])  # (2B, D)
    scores = scale * cos_sim_matrix(anchors, candidates)  # (B, M)
    targets = jnp.arange(B)  # (B,) the true pairs sit on the diagonal
    # Rows: which candidate belongs to anchor i? Every positive and hard negative competes.
    rows = optax.softmax_cross_entropy_with_integer_labels(scores, targets)  # (B,)
    # Columns: which anchor belongs to positive j? Only the B anchors compete.
    columns = optax.softmax_cross_entropy_with_integer_labels(scores[:, :B].T, targets)  # (B,)
    return 0.5 * (jnp.mean(rows) + jnp.mean(columns))

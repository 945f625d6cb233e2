"""Distances and cosine similarity between sentence embeddings, the measuring sticks of the losses.

Shapes: B batch (rows of the first argument), M rows of the second argument, D hidden.

Two flavours, because losses need both:

    row-wise   a (B, D), b (B, D) -> (B,)    d(a_i, b_i)   pair and triplet losses
    matrix     a (B, D), b (M, D) -> (B, M)  d(a_i, b_j)   in-batch losses (MNRL, batch-hard)

Every function is safe at the awkward points a student will hit sooner or later: a zero vector
(cosine divides by its norm) and two identical rows (the euclidean distance is sqrt(0), whose
gradient is infinite). The values match sentence-transformers (which calls torch) there too:

    normalize(x)            x / max(||x||, 1e-12)       like torch.nn.functional.normalize
    row_euclidean(a, b, s)  ||a - b + s||               s = 1e-6 mimics F.pairwise_distance
    |x|                     gradient sign(x), 0 at 0    like torch; jnp.abs gives 1 at 0
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPS_NORMALIZE = 1e-12  # torch.nn.functional.normalize, behind sentence-transformers' cos_sim
EPS_COSINE = 1e-8  # torch.cosine_similarity, used by CosineSimilarityLoss and ContrastiveLoss
EPS_PAIRWISE = 1e-6  # torch.nn.functional.pairwise_distance adds this to a - b


def abs_zero_grad(x: jax.Array) -> jax.Array:
    """|x| = x * sign(x), whose gradient sign(x) is 0 at x = 0 (torch's choice; jnp.abs says 1)."""
    return x * jax.lax.stop_gradient(jnp.sign(x))


def safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
    """||x||_2 = sqrt(sum_d x_d^2) along `axis`, with gradient 0 (not NaN) where x = 0.

    sqrt'(0) is infinite and 0 * inf = NaN, so we take sqrt of 1 where the sum is 0 and throw
    that value away: the double-`where` trick, which keeps both value and gradient clean.
    """
    squared = jnp.sum(x * x, axis=axis)
    is_zero = squared == 0
    return jnp.where(is_zero, 0.0, jnp.sqrt(jnp.where(is_zero, 1.0, squared)))


def normalize(x: jax.Array, eps: float = EPS_NORMALIZE) -> jax.Array:  # (..., D) -> (..., D)
    """x / max(||x||, eps): unit length, and a zero vector stays zero instead of becoming NaN."""
    return x / jnp.maximum(safe_norm(x), eps)[..., None]


def cos_sim_matrix(
    a: jax.Array,  # (B, D)
    b: jax.Array,  # (M, D)
    eps: float = EPS_NORMALIZE,
) -> jax.Array:  # (B, M)
    """cos(a_i, b_j) = <a_i, b_j> / (||a_i|| ||b_j||), every row of a against every row of b."""
    return jnp.einsum("BD,MD->BM", normalize(a, eps), normalize(b, eps))


def row_cos_sim(
    a: jax.Array,  # (B, D)
    b: jax.Array,  # (B, D)
    eps: float = EPS_NORMALIZE,
) -> jax.Array:  # (B,)
    """cos(a_i, b_i) for each row i, with norms clamped below at eps.

    Use eps = EPS_COSINE to mirror torch.cosine_similarity. (For a norm below eps torch's gradient
    still flows through the clamped norm, which is not the derivative of the value it returns; we
    keep the true derivative. The two agree exactly at a zero vector and above eps.)
    """
    return jnp.sum(normalize(a, eps) * normalize(b, eps), axis=-1)


def row_cosine_distance(a: jax.Array, b: jax.Array, eps: float = EPS_NORMALIZE) -> jax.Array:
    """d(a_i, b_i) = 1 - cos(a_i, b_i), in [0, 2]; a, b (B, D) -> (B,)."""
    return 1.0 - row_cos_sim(a, b, eps)


def row_euclidean(a: jax.Array, b: jax.Array, shift: float = 0.0) -> jax.Array:
    """d(a_i, b_i) = ||a_i - b_i + shift||_2; a, b (B, D) -> (B,). Gradient 0 where a_i = b_i."""
    return safe_norm(a - b + shift)


def row_manhattan(a: jax.Array, b: jax.Array, shift: float = 0.0) -> jax.Array:
    """d(a_i, b_i) = sum_d |a_id - b_id + shift|; a, b (B, D) -> (B,)."""
    return jnp.sum(abs_zero_grad(a - b + shift), axis=-1)


ROW_DISTANCES = {
    "euclidean": row_euclidean,
    "cosine": row_cosine_distance,
    "manhattan": row_manhattan,
}


def euclidean_matrix(x: jax.Array, squared: bool = False) -> jax.Array:  # (B, D) -> (B, B)
    """d(x_i, x_j) = sqrt(||x_i||^2 - 2 <x_i, x_j> + ||x_j||^2), all pairs within one batch.

    Expanding the square costs one matmul instead of a (B, B, D) difference tensor. Taking the
    norms from the diagonal of the same Gram matrix makes d(x_i, x_i) exactly 0; rounding can
    push other entries a little below 0, so they are clipped. Where the squared distance is 0
    the result is 0 with gradient 0 (sentence-transformers adds 1e-16 under the sqrt and then
    multiplies by a 0/1 mask; the double `where` below gives the same value and gradient).
    """
    gram = jnp.einsum("BD,MD->BM", x, x)  # (B, B)
    square_norm = jnp.diag(gram)  # (B,)
    squared_distance = square_norm[None, :] - 2.0 * gram + square_norm[:, None]  # (B, B)
    squared_distance = jnp.where(squared_distance < 0, 0.0, squared_distance)
    if squared:
        return squared_distance
    is_zero = squared_distance == 0
    return jnp.where(is_zero, 0.0, jnp.sqrt(jnp.where(is_zero, 1.0, squared_distance)))


def manhattan_matrix(x: jax.Array) -> jax.Array:  # (B, D) -> (B, B)
    """d(x_i, x_j) = sum_d |x_id - x_jd|, all pairs within one batch."""
    return jnp.sum(abs_zero_grad(x[:, None, :] - x[None, :, :]), axis=-1)  # (B, B, D) -> (B, B)


def cosine_distance_matrix(x: jax.Array, eps: float = EPS_NORMALIZE) -> jax.Array:
    """d(x_i, x_j) = 1 - cos(x_i, x_j), all pairs within one batch; x (B, D) -> (B, B)."""
    return 1.0 - cos_sim_matrix(x, x, eps)


MATRIX_DISTANCES = {
    "euclidean": euclidean_matrix,
    "squared_euclidean": lambda x: euclidean_matrix(x, squared=True),
    "cosine": cosine_distance_matrix,
    "manhattan": manhattan_matrix,
}

"""The regression objective, and its ranking cousin: sentence pairs with a gold similarity score.

Shapes: B batch, D hidden.

Both losses look only at cos(u_i, v_i), one number per pair:

    cosine_similarity_loss   regress cos(u_i, v_i) onto the gold score (SBERT paper, STS)
    cosent_loss              only the *order* of the scores matters (CoSENT, Su 2022)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from minisbert.distances import EPS_COSINE, row_cos_sim


def cosine_similarity_loss(
    u: jax.Array,  # (B, D)
    v: jax.Array,  # (B, D)
    scores: jax.Array,  # (B,) gold similarity in [0, 1]
) -> jax.Array:  # ()
    """mean_i (cos(u_i, v_i) - score_i)^2, the SBERT regression objective.

    The paper and sentence-transformers' CosineSimilarityLoss agree: mean squared error, with
    STS scores rescaled from [0, 5] to [0, 1]. Norms are clamped at 1e-8 as torch.cosine_similarity
    does, so a zero vector gives cos = 0 rather than NaN.
    """
    cosine = row_cos_sim(u, v, EPS_COSINE)  # (B,)
    return jnp.mean((cosine - scores) ** 2)


def cosent_loss(
    u: jax.Array,  # (B, D)
    v: jax.Array,  # (B, D)
    scores: jax.Array,  # (B,) gold similarity, any scale; only its order is used
    *,
    scale: float = 20.0,
) -> jax.Array:  # ()
    """log(1 + sum_{(i, j): score_i > score_j} exp(scale * (cos_j - cos_i))), cos_i = cos(u_i, v_i).

    Every pair of pairs (i, j) whose gold scores say "i is more similar than j" adds a penalty
    that grows when the model says otherwise. Ties add nothing. The scale 20 is both the CoSENT
    default and sentence-transformers' CoSENTLoss default.

    Not a mean: this is one log-sum-exp over all ordered pairs in the batch, exactly as the
    library computes it (it sorts the scores and uses a cumulative log-sum-exp to avoid the
    (B, B) matrix; we build the matrix, which is clearer and fine for training batch sizes).
    """
    scaled = scale * row_cos_sim(u, v)  # (B,)
    difference = scaled[None, :] - scaled[:, None]  # (B, B): [i, j] = scaled_j - scaled_i
    should_rank_higher = scores[:, None] > scores[None, :]  # (B, B): [i, j] = score_i > score_j
    terms = jnp.where(should_rank_higher, difference, -jnp.inf).reshape(-1)  # (B B,)
    # The leading 0 is the "1 +" inside the log: exp(0) = 1.
    return jax.nn.logsumexp(jnp.concatenate([jnp.zeros((1,), terms.dtype), terms]))

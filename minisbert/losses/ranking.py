"""Multiple negatives ranking loss: in-batch negatives for (anchor, positive) pairs.

Shapes: B batch, D hidden, K hard negatives per anchor, M = B (1 + K) candidates.

Every anchor is scored against every positive in the batch (and every hard negative, if given);
its own positive should win a softmax over all of them. The other anchors' positives are free
negatives, so larger batches make a harder task (Henderson et al. 2017, "Efficient Natural
Language Response Suggestion for Smart Reply"; the SBERT paper itself does not use this loss).

    logits_ij = scale * cos(a_i, c_j),  c = [p_1 .. p_B, n_1 .. n_B]     (B, M)
    loss = mean_i -log softmax(logits_i)[i]                              true pair on the diagonal

The symmetric variant (all-MiniLM-L6-v2's training objective) also reads the columns of the
anchor-positive block: each positive should pick out its own anchor among the B anchors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from minisbert.distances import cos_sim_matrix


def multiple_negatives_ranking_loss(
    anchors: jax.Array,  # (B, D)
    positives: jax.Array,  # (B, D), positives[i] belongs to anchors[i]
    negatives: jax.Array | None = None,  # (B, D) or (K, B, D): hard negatives, extra candidates
    *,
    scale: float = 20.0,
) -> jax.Array:  # ()
    """mean_i -log( exp(s cos(a_i, p_i)) / sum_j exp(s cos(a_i, c_j)) ), s = scale.

    scale = 20 (a temperature of 0.05) and cosine similarity are sentence-transformers'
    MultipleNegativesRankingLoss defaults; Henderson et al. score with a plain dot product.
    Hard negatives are appended after the positives, as the library does; every anchor sees every
    hard negative, not just its own. Norms are clamped at 1e-12, so a zero vector has cos = 0.
    """
    candidates = positives  # (B, D)
    if negatives is not None:
        hard = negatives.reshape(-1, negatives.shape[-1])  # (K B, D), column after column
        candidates = jnp.concatenate([positives, hard], axis=0)  # (M, D)
    logits = scale * cos_sim_matrix(anchors, candidates)  # (B, M)
    targets = jnp.arange(anchors.shape[0])  # (B,) the diagonal
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets))


def symmetric_multiple_negatives_ranking_loss(
    anchors: jax.Array,  # (B, D)
    positives: jax.Array,  # (B, D), positives[i] belongs to anchors[i]
    negatives: jax.Array | None = None,  # (B, D) or (K, B, D): hard negatives, rows only
    *,
    scale: float = 20.0,
) -> jax.Array:  # ()
    """L = 1/2 (MNRL(a, [p, n]) + MNRL(p, a)), s = scale: the loss above in both directions.

        forward_i  = -log softmax_j(s cos(a_i, c_j))[i]     anchor i finds its positive, (B, M)
        backward_i = -log softmax_j(s cos(p_i, a_j))[i]     positive i finds its anchor, (B, B)
        loss       = mean_i (forward_i + backward_i) / 2

    As sentence-transformers' MultipleNegativesSymmetricRankingLoss defines it (its
    MultipleNegativesRankingLoss with directions query_to_doc and doc_to_query, one softmax per
    direction, the two log-partitions averaged): scale = 20, cosine similarity. Hard negatives
    are extra candidates in the forward direction only; they have no anchor to find.
    """
    forward = multiple_negatives_ranking_loss(anchors, positives, negatives, scale=scale)
    backward = multiple_negatives_ranking_loss(positives, anchors, scale=scale)
    return (forward + backward) / 2

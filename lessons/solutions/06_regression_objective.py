"""Reference solutions for lesson 06 (peek only after trying)."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from minisbert.losses import cosine_similarity_loss
from minisbert.train import Trainable, compute_loss


def cosent(u: np.ndarray, v: np.ndarray, scores: np.ndarray, scale: float = 20.0) -> float:
    """log(1 + sum_{s_i > s_j} exp(scale (cos_j - cos_i))), cos_i = cos(u_i, v_i)."""
    u = np.asarray(u, dtype=np.float64)  # (B, D)
    v = np.asarray(v, dtype=np.float64)  # (B, D)
    s = np.asarray(scores)  # (B,)
    cos = (u * v).sum(axis=1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))  # (B,)
    difference = scale * (cos[None, :] - cos[:, None])  # (B, B): [i, j] = scale (cos_j - cos_i)
    ranked = s[:, None] > s[None, :]  # (B, B): [i, j] = s_i > s_j
    terms = np.concatenate([[0.0], difference[ranked]])  # the 0 is the "1 +": exp(0) = 1
    top = terms.max()
    return float(top + np.log(np.exp(terms - top).sum()))


@nnx.jit
def my_train_step(
    trainable: Trainable,
    optimizer: nnx.Optimizer,
    input_ids: jax.Array,  # (S, B, T)
    attention_mask: jax.Array,  # (S, B, T)
    labels: jax.Array,  # (B,)
) -> jax.Array:  # () the loss before the update
    """One optimiser step on cosine_similarity_loss; updates trainable and optimizer in place."""

    def loss_of(t: Trainable) -> jax.Array:  # the batch is fixed: a function of the weights
        return compute_loss(t, input_ids, attention_mask, labels, cosine_similarity_loss)

    loss, grads = nnx.value_and_grad(loss_of)(trainable)  # grads: one array per nnx.Param
    optimizer.update(trainable, grads)  # clip, AdamW: the new weights go into trainable
    return loss

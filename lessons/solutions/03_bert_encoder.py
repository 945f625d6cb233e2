"""Reference solutions for lesson 03 (peek only after trying)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def masked_attention(
    q: jax.Array,  # (B, T, N, H)
    k: jax.Array,  # (B, T, N, H)
    v: jax.Array,  # (B, T, N, H)
    mask: jax.Array,  # (B, T) bool, True for real tokens
) -> jax.Array:  # (B, T, N, H)
    """Context of multi-head attention in which padding keys get zero weight."""
    H = q.shape[-1]
    scores = jnp.einsum("BTNH,BSNH->BNTS", q, k) / math.sqrt(H)  # (B, N, T, S)
    key_mask = mask[:, None, None, :]  # (B, 1, 1, S)
    scores = jnp.where(key_mask, scores, jnp.finfo(scores.dtype).min)
    probs = jax.nn.softmax(scores, axis=-1)  # (B, N, T, S)
    return jnp.einsum("BNTS,BSNH->BTNH", probs, v)

"""Pooling: from one vector per token to one vector per sentence.

BERT gives a (T, D) matrix for a sentence; Sentence-BERT needs a single D-vector.
Every pooling here is *masked*: padding tokens never count, so a sentence's vector
does not depend on how long its batch neighbours are.

    mean           u = sum_t m_t x_t / sum_t m_t             (SBERT's default)
    cls            u = x_0                                   the [CLS] token
    max            u_d = max_{t: m_t = 1} x_{t,d}
    mean_sqrt_len  u = sum_t m_t x_t / sqrt(sum_t m_t)
    weightedmean   u = sum_t t m_t x_t / sum_t t m_t   (t = 1, 2, ...: later tokens weigh more)
    lasttoken      u = x_{t*}, t* the last real token        ([SEP] for BERT)

Several modes at once give their vectors side by side, (B, K D) for K modes, in the
order the modes are listed (sentence-transformers' multi-mode Pooling).

After pooling, a model may L2-normalise (``normalize``, from ``minisbert.distances``):
u / max(||u||, 1e-12), so that a dot product of two sentence vectors is their cosine.

Shapes: B batch, T tokens, D hidden size.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from minisbert.config import ALL_POOLING_MODES
from minisbert.distances import normalize  # noqa: F401 - pooling's last step, re-exported

PoolingFn = Callable[[jax.Array, jax.Array], jax.Array]


def _float_mask(attention_mask: jax.Array, like: jax.Array) -> jax.Array:
    return attention_mask.astype(like.dtype)[:, :, None]  # (B, T, 1)


def mean_pooling(
    token_embeddings: jax.Array,  # (B, T, D)
    attention_mask: jax.Array,  # (B, T) 1 = real token, 0 = padding
) -> jax.Array:  # (B, D)
    """u = sum_t m_t x_t / max(sum_t m_t, 1e-9); the clamp keeps an all-padding row at 0."""
    mask = _float_mask(attention_mask, token_embeddings)  # (B, T, 1)
    summed = jnp.sum(token_embeddings * mask, axis=1)  # (B, D)
    counts = jnp.maximum(jnp.sum(mask, axis=1), 1e-9)  # (B, 1)
    return summed / counts


def cls_pooling(
    token_embeddings: jax.Array,  # (B, T, D)
    attention_mask: jax.Array,  # (B, T), unused: [CLS] is always token 0 and always real
) -> jax.Array:  # (B, D)
    """u = x_0, the vector of the [CLS] token that the tokenizer puts first."""
    del attention_mask
    return token_embeddings[:, 0, :]


def max_pooling(
    token_embeddings: jax.Array,  # (B, T, D)
    attention_mask: jax.Array,  # (B, T)
) -> jax.Array:  # (B, D)
    """u_d = max over real tokens of x_{t,d}; padding is set to -1e9 so it never wins."""
    mask = _float_mask(attention_mask, token_embeddings)  # (B, T, 1)
    masked = jnp.where(mask > 0, token_embeddings, -1e9)  # (B, T, D)
    return jnp.max(masked, axis=1)


def mean_sqrt_len_pooling(
    token_embeddings: jax.Array,  # (B, T, D)
    attention_mask: jax.Array,  # (B, T)
) -> jax.Array:  # (B, D)
    """u = sum_t m_t x_t / sqrt(sum_t m_t): a mean that shrinks less for long sentences."""
    mask = _float_mask(attention_mask, token_embeddings)  # (B, T, 1)
    summed = jnp.sum(token_embeddings * mask, axis=1)  # (B, D)
    counts = jnp.maximum(jnp.sum(mask, axis=1), 1e-9)  # (B, 1)
    return summed / jnp.sqrt(counts)


def weightedmean_pooling(
    token_embeddings: jax.Array,  # (B, T, D)
    attention_mask: jax.Array,  # (B, T)
) -> jax.Array:  # (B, D)
    """u = sum_t w_t x_t / sum_t w_t with w_t = t m_t (positions from 1): a mean in which
    each token counts as much as its position, as in SGPT's position-weighted mean."""
    mask = _float_mask(attention_mask, token_embeddings)  # (B, T, 1)
    positions = jnp.arange(1, token_embeddings.shape[1] + 1, dtype=mask.dtype)  # (T,)
    weights = mask * positions[None, :, None]  # (B, T, 1)
    summed = jnp.sum(token_embeddings * weights, axis=1)  # (B, D)
    return summed / jnp.maximum(jnp.sum(weights, axis=1), 1e-9)


def lasttoken_pooling(
    token_embeddings: jax.Array,  # (B, T, D)
    attention_mask: jax.Array,  # (B, T)
) -> jax.Array:  # (B, D)
    """u = x_{t*}, t* = max{t : m_t = 1}, the last real token (padding sits after it)."""
    T = token_embeddings.shape[1]
    last = jnp.argmax(attention_mask * jnp.arange(1, T + 1), axis=1)  # (B,)
    return jnp.take_along_axis(token_embeddings, last[:, None, None], axis=1)[:, 0, :]


POOLINGS: dict[str, PoolingFn] = {
    "mean": mean_pooling,
    "cls": cls_pooling,
    "max": max_pooling,
    "mean_sqrt_len": mean_sqrt_len_pooling,
    "weightedmean": weightedmean_pooling,
    "lasttoken": lasttoken_pooling,
}
assert tuple(POOLINGS) == ALL_POOLING_MODES, "config.ALL_POOLING_MODES names these poolings"


def pool(
    mode: str | tuple[str, ...],
    token_embeddings: jax.Array,  # (B, T, D)
    attention_mask: jax.Array,  # (B, T)
) -> jax.Array:  # (B, D), or (B, K D) for K modes
    """Apply the pooling named ``mode`` (one of ``POOLINGS``), or several, concatenated."""
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    for name in modes:
        if name not in POOLINGS:
            raise ValueError(f"unknown pooling mode {name!r}; choose one of {sorted(POOLINGS)}")
    if not modes:
        raise ValueError(f"no pooling mode given; choose from {sorted(POOLINGS)}")
    pooled = [POOLINGS[name](token_embeddings, attention_mask) for name in modes]  # K x (B, D)
    return pooled[0] if len(pooled) == 1 else jnp.concatenate(pooled, axis=-1)  # (B, K D)

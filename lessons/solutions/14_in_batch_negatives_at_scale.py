"""Reference solutions for lesson 14 (peek only after trying)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx


def cached_loss_and_grads(
    embed: Callable[..., jax.Array],  # (params, (m, T), (m, T)) -> (m, D)
    params: nnx.State,
    input_ids: jax.Array,  # (S, B, T)
    attention_mask: jax.Array,  # (S, B, T)
    loss_fn: Callable[..., jax.Array],  # (e_1, ..., e_S), each (B, D) -> ()
    mini_batch_size: int,  # M
) -> tuple[jax.Array, nnx.State]:  # (), gradients: the tree of params
    """The loss of the batch and its gradient for ``params``, M sentences embedded at a time."""
    S, B = input_ids.shape[:2]
    chunks = [
        (s, slice(start, min(start + mini_batch_size, B)))
        for s in range(S)
        for start in range(0, B, mini_batch_size)
    ]

    # 1. embed: a plain call keeps no activations; only the (m, D) vectors are kept.
    per_side: list[list[jax.Array]] = [[] for _ in range(S)]
    for s, rows in chunks:
        per_side[s].append(embed(params, input_ids[s, rows], attention_mask[s, rows]))  # (m, D)
    embeddings = jnp.stack([jnp.concatenate(side) for side in per_side])  # (S, B, D)

    # 2. the loss and its gradient with respect to the vectors: the cache.
    loss, cache = jax.value_and_grad(lambda e: loss_fn(*e))(embeddings)  # (), (S, B, D)

    # 3. backward: each chunk's forward pass again under jax.vjp, pulled back by its cache rows.
    grads = jax.tree.map(jnp.zeros_like, params)
    for s, rows in chunks:
        ids, mask = input_ids[s, rows], attention_mask[s, rows]  # (m, T) each
        _, pull_back = jax.vjp(lambda p, ids=ids, mask=mask: embed(p, ids, mask), params)
        (chunk_grads,) = pull_back(cache[s, rows])  # the tree of params
        grads = jax.tree.map(jnp.add, grads, chunk_grads)
    return loss, grads

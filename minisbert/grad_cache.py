"""Gradient cache: an in-batch-negatives loss on a batch larger than the activations that fit.

Shapes: S sides, B batch, T tokens, D hidden, M mini-batch (sentences embedded at once).

In-batch negatives want large batches (every other positive is a negative), but back-propagating
through the encoder keeps the activations of all S B sentences. Gao et al. 2021, "Scaling Deep
Contrastive Learning Batch Size under Memory Limited Setup" (GradCache; sentence-transformers'
CachedMultipleNegativesRankingLoss) notice that the loss needs only the embeddings, (S, B, D),
which are small. So a step runs in three passes:

    1. embed:    e = model(chunk) for every chunk of M sentences, keeping e and not the graph
    2. loss:     L, dL/de = value_and_grad(loss)(e)                 (S, B, D): the gradient cache
    3. backward: for every chunk again, its forward pass with jax.vjp, pulled back by dL/de_chunk;
                 the parameter gradients of the chunks add up to dL/dtheta

Pass 3 must see the same network as pass 1, so each chunk is re-run with the dropout keys it
had in pass 1 (the RNG state saved before its first run). The result is the full batch's loss
and gradient: exactly with dropout off, and with dropout on for the masks the chunks drew
(tests/test_grad_cache.py). The price is a second forward pass.

This module is the readable version: a Python loop over the chunks, each its own forward and
vjp. Under ``jit`` XLA sees the whole step and decides what stays live.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Batch = tuple[jax.Array, jax.Array, jax.Array | None]  # input_ids, attention_mask (S, B, T); labels


def cached_loss_and_grad(
    trainable: Any,  # minisbert.train.Trainable: .model, and .classifier or None
    batch: Batch,
    loss_fn: Callable[..., jax.Array],
    mini_batch_size: int,
) -> tuple[jax.Array, nnx.State]:  # (), gradients: the same tree as trainable's nnx.Params
    """The loss of ``batch`` and its gradient for every parameter, embedding M sentences at a
    time; ``trainable``'s dropout streams move on as the full batch's would (one draw a chunk).

    The loss is called as the train step calls it: ``loss_fn([classifier,] e_1, ..., e_S,
    [labels])``."""
    input_ids, attention_mask, labels = batch  # (S, B, T), (S, B, T), (B,) or None
    sides, batch_size = input_ids.shape[:2]
    if mini_batch_size < 1:
        raise ValueError(f"mini_batch_size must be >= 1, not {mini_batch_size}")
    chunks = [
        (s, start, min(start + mini_batch_size, batch_size))
        for s in range(sides)
        for start in range(0, batch_size, mini_batch_size)
    ]
    graphdef, params, rest = nnx.split(trainable, nnx.Param, ...)  # rest: dropout RNG state

    def embed_chunk(params: nnx.State, rest: nnx.State, s: int, start: int, end: int) -> Any:
        """One chunk through the sentence model: its (M, D) vectors and the RNG state after."""
        # Fresh variables (tree.map rebuilds them), so that a replay inside jax.vjp may move them.
        t = nnx.merge(graphdef, params, jax.tree.map(lambda x: x, rest))
        vectors = t.model(input_ids[s, start:end], attention_mask[s, start:end])  # (M, D)
        return vectors, nnx.split(t, nnx.Param, ...)[2]

    # 1. embed, no graph kept: the RNG state before each chunk is what pass 3 replays.
    before, per_side = [], [[] for _ in range(sides)]
    for s, start, end in chunks:
        before.append(rest)
        chunk_vectors, rest = embed_chunk(params, rest, s, start, end)  # (M, D)
        per_side[s].append(jax.lax.stop_gradient(chunk_vectors))
    embeddings = jnp.stack([jnp.concatenate(side) for side in per_side])  # (S, B, D)

    # 2. the loss and its gradient with respect to the embeddings (and to a classifier's weights).
    def loss_of(params: nnx.State, embeddings: jax.Array) -> jax.Array:
        t = nnx.merge(graphdef, params, rest)
        head = [t.classifier] if t.classifier is not None else []
        tail = [labels] if labels is not None else []
        return loss_fn(*head, *embeddings, *tail)

    loss, (grads, cache) = jax.value_and_grad(loss_of, argnums=(0, 1))(params, embeddings)

    # 3. backward, chunk by chunk, with the dropout keys of pass 1.
    for (s, start, end), rng_state in zip(chunks, before, strict=True):

        def chunk_vectors(p: nnx.State, r=rng_state, s=s, start=start, end=end) -> jax.Array:
            return embed_chunk(p, r, s, start, end)[0]  # (M, D)

        _, pull_back = jax.vjp(chunk_vectors, params)
        (chunk_grads,) = pull_back(cache[s, start:end])  # (M, D) -> the parameters' tree
        grads = jax.tree.map(jnp.add, grads, chunk_grads)
    nnx.update(trainable, rest)  # the dropout streams, moved on by pass 1
    return loss, grads

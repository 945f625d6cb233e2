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
(tests/test_grad_cache.py). The price is a second forward pass. Any loss of the train step
works, since every one is called on the sides' embeddings (``minisbert.losses.registry``); a
loss with parameters of its own (the softmax head) gets its gradient in pass 2.

``cached_loss_and_grad`` is the readable version: a Python loop over each side's chunks.

**Training with it** (``minisbert train --mini-batch-size M``): ``CachedSteps`` is a ``Steps``
of ``minisbert.train`` whose step is the three passes, then ``apply_gradients``: the optimiser
update of ``train_step``. The loop around it is every run's (schedule, resume, checkpoints,
progress). Two choices make its memory grow with M and not with B:

- *Where jit cuts.* ``cached_loss_and_grad`` jitted whole is one program holding every chunk:
  it compiles 2 S B / M forward passes and leaves XLA free to keep their buffers alive at
  once. ``CachedSteps`` jits each pass's function on its own (``embed_chunk``,
  ``loss_and_cache``, ``chunk_grads`` added into the gradient sum, which it donates) and loops
  over the chunks in Python between them: a program's buffers die when it returns, and each
  takes the one before's output (the RNG state in pass 1, the gradient sum in pass 3), so
  although JAX dispatches them ahead they run one after another: one chunk's activations are
  alive at a time. A ``lax.scan`` over the chunks is the other place to cut
  (bench/grad_cache.py's ``ScanSteps``: one program a step, every chunk padded to the
  batch's longest). Measured (bench/README.md, "The gradient cache"), neither grew with B;
  the scan held a little less memory, but its steps took two to three times as long as this
  loop's, so the loop it is.
- *Padded chunks, not packed ones.* The batch's S B sentences are sorted by length and cut
  into chunks of M, each padded to its own bucket (``minisbert.batching``), as ``encode`` does:
  sorted neighbours need no more padding than their bucket's rounding (a quarter of the token
  slots on SNLI dev triplets, bench/README.md). Packed chunks would save that quarter at the
  price of a row plan per chunk and a program per row count; the cache is for memory, and
  padded rows are the core's own layout. A short last chunk is filled up with copies of its
  first sentence, whose vectors are dropped and whose cache rows are 0: one shape per bucket
  length, so at most two programs per bucket. One device (``minisbert.fast.PackedSteps`` is
  the several-device step).

**Which M.** M counts sentences per forward pass. M >= B, the batch size, trains with the
plain step (``uses_cache``): a batch fits, so nothing is cached (the plain step embeds the S
sides together, S B sentences). With dropout off the cached step gives the plain step's
losses and weights to float rounding; with dropout on, each chunk draws its own masks in
chunk order, so M decides the masks: a run is reproducible, but not equal to one with another
M, and ``--resume`` keeps M (``TrainConfig.MATH_FIELDS``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from minisbert.batching import bucket_length
from minisbert.tokenizer import pad_batch

Batch = tuple[jax.Array, jax.Array, jax.Array | None]  # input_ids, attention_mask (S, B, T); labels
GraphDef = Any  # nnx.GraphDef of a Trainable: its structure, static under jit


# ---------------------------------------------------------------- the three passes


def embed_chunk(
    graphdef: GraphDef,
    params: nnx.State,
    rest: nnx.State,  # the dropout RNG state before this chunk
    input_ids: jax.Array,  # (M, T)
    attention_mask: jax.Array,  # (M, T)
) -> tuple[jax.Array, nnx.State]:  # (M, D), the RNG state after it
    """Pass 1 for one chunk: its sentence vectors through the sentence model."""
    # Fresh variables (tree.map rebuilds them), so that a replay inside jax.vjp may move them.
    trainable = nnx.merge(graphdef, params, jax.tree.map(lambda x: x, rest))
    vectors = trainable.model(input_ids, attention_mask)  # (M, D)
    return vectors, nnx.split(trainable, nnx.Param, ...)[2]


def loss_and_cache(
    graphdef: GraphDef,
    params: nnx.State,
    rest: nnx.State,
    embeddings: jax.Array,  # (S, B, D)
    labels: jax.Array | None,  # (B,) or None
    loss_fn: Callable[..., jax.Array],
) -> tuple[jax.Array, nnx.State, jax.Array]:  # (), gradients (Params' tree), cache (S, B, D)
    """Pass 2: the loss, called as the train step calls it (``loss_fn([classifier,] e_1, ...,
    e_S, [labels])``), and its gradient with respect to the embeddings (the cache) and to the
    parameters (zero but for a loss's own: the softmax head's)."""

    def loss_of(params: nnx.State, embeddings: jax.Array) -> jax.Array:
        trainable = nnx.merge(graphdef, params, rest)
        head = [trainable.classifier] if trainable.classifier is not None else []
        tail = [labels] if labels is not None else []
        return loss_fn(*head, *embeddings, *tail)

    loss, (grads, cache) = jax.value_and_grad(loss_of, argnums=(0, 1))(params, embeddings)
    return loss, grads, cache


def chunk_grads(
    graphdef: GraphDef,
    params: nnx.State,
    rest: nnx.State,  # the RNG state this chunk had in pass 1: the same dropout masks
    input_ids: jax.Array,  # (M, T)
    attention_mask: jax.Array,  # (M, T)
    cache: jax.Array,  # (M, D) dL/de of this chunk's sentences
) -> nnx.State:  # the Params' tree
    """Pass 3 for one chunk: its forward pass again, under jax.vjp, pulled back by its cache."""

    def vectors_of(params: nnx.State) -> jax.Array:
        return embed_chunk(graphdef, params, rest, input_ids, attention_mask)[0]  # (M, D)

    _, pull_back = jax.vjp(vectors_of, params)
    (grads,) = pull_back(cache)
    return grads


def cached_loss_and_grad(
    trainable: Any,  # minisbert.train.Trainable: .model, and .classifier or None
    batch: Batch,
    loss_fn: Callable[..., jax.Array],
    mini_batch_size: int,
) -> tuple[jax.Array, nnx.State]:  # (), gradients: the same tree as trainable's nnx.Params
    """The loss of ``batch`` and its gradient for every parameter, embedding M sentences of a
    side at a time; ``trainable``'s dropout streams move on as the full batch's would (one draw
    a chunk). The readable loop; ``CachedSteps`` runs the same passes, each jitted alone."""
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

    # 1. embed, no graph kept: the RNG state before each chunk is what pass 3 replays.
    before, per_side = [], [[] for _ in range(sides)]
    for s, start, end in chunks:
        before.append(rest)
        vectors, rest = embed_chunk(
            graphdef, params, rest, input_ids[s, start:end], attention_mask[s, start:end]
        )  # (M, D)
        per_side[s].append(jax.lax.stop_gradient(vectors))
    embeddings = jnp.stack([jnp.concatenate(side) for side in per_side])  # (S, B, D)

    # 2. the loss and its gradient with respect to the embeddings (and to a classifier's weights).
    loss, grads, cache = loss_and_cache(graphdef, params, rest, embeddings, labels, loss_fn)

    # 3. backward, chunk by chunk, with the dropout keys of pass 1.
    for (s, start, end), rng_state in zip(chunks, before, strict=True):
        chunk = chunk_grads(graphdef, params, rng_state, input_ids[s, start:end],
                            attention_mask[s, start:end], cache[s, start:end])  # fmt: skip
        grads = jax.tree.map(jnp.add, grads, chunk)
    nnx.update(trainable, rest)  # the dropout streams, moved on by pass 1
    return loss, grads


# ---------------------------------------------------------------- training: CachedSteps


def uses_cache(mini_batch_size: int | None, batch_size: int) -> bool:
    """Whether a run trains with the gradient cache: M set and smaller than the batch."""
    return mini_batch_size is not None and mini_batch_size < batch_size


class Chunk(NamedTuple):
    input_ids: np.ndarray  # (M, T), T the bucket of its longest sentence
    attention_mask: np.ndarray  # (M, T)
    rows: np.ndarray  # (m,) m <= M: which of the batch's S B sentences its first m rows are


class CachedBatch(NamedTuple):
    chunks: list[Chunk]
    labels: np.ndarray | None  # (B,)
    sides: int  # S


def sorted_chunks(
    sentences: Sequence[Sequence[int]],  # S B token-id lists, side after side
    mini_batch_size: int,
    max_length: int,
    pad_token_id: int,
) -> list[Chunk]:
    """The sentences, longest first, cut into chunks of M, each padded to its bucket length;
    a short last chunk filled up to M rows with copies of its first sentence."""
    by_length = np.argsort([-len(ids) for ids in sentences], kind="stable")  # (S B,)
    chunks = []
    for start in range(0, len(sentences), mini_batch_size):
        rows = by_length[start : start + mini_batch_size]  # (m,)
        filled = np.pad(rows, (0, mini_batch_size - len(rows)), mode="edge")  # (M,)
        T = bucket_length(len(sentences[rows[0]]), max_length)  # rows[0] is the longest
        input_ids, attention_mask = pad_batch([sentences[i] for i in filled], T, pad_token_id)
        chunks.append(Chunk(input_ids, attention_mask, rows))
    return chunks


# Each pass its own program (see "Where jit cuts" above). The gradient sum is donated to the
# program that adds a chunk's gradients into it, which writes the new sum over the old.
_embed_chunk = jax.jit(embed_chunk, static_argnums=0)
_loss_and_cache = jax.jit(loss_and_cache, static_argnums=(0, 5))


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def _add_chunk_grads(
    graphdef: GraphDef, grads: nnx.State, params: nnx.State, rest: nnx.State,
    input_ids: jax.Array, attention_mask: jax.Array, cache: jax.Array,
) -> nnx.State:  # fmt: skip
    chunk = chunk_grads(graphdef, params, rest, input_ids, attention_mask, cache)
    return jax.tree.map(jnp.add, grads, chunk)


@nnx.jit(donate_argnames=("trainable", "optimizer", "grads"))
def apply_gradients(trainable: Any, optimizer: nnx.Optimizer, grads: nnx.State) -> None:
    """``train_step``'s update: the gradients clipped, then AdamW (``minisbert.optimizer``)."""
    optimizer.update(trainable, grads)


def cached_grads(
    trainable: Any, batch: CachedBatch, loss_fn: Callable[..., jax.Array]
) -> tuple[jax.Array, nnx.State]:  # (), the Params' tree
    """``cached_loss_and_grad`` on a ``CachedBatch``, each pass a program of its own."""
    graphdef, params, rest = nnx.split(trainable, nnx.Param, ...)
    before, vectors = [], []
    for chunk in batch.chunks:  # 1. embed
        before.append(rest)
        chunk_vectors, rest = _embed_chunk(
            graphdef, params, rest, chunk.input_ids, chunk.attention_mask
        )  # (M, D)
        vectors.append(chunk_vectors[: len(chunk.rows)])  # (m, D): the copies dropped
    rows = np.concatenate([chunk.rows for chunk in batch.chunks])  # (S B,)
    flat = jnp.concatenate(vectors)[np.argsort(rows)]  # (S B, D), back in side order
    embeddings = flat.reshape(batch.sides, -1, flat.shape[-1])  # (S, B, D)
    loss, grads, cache = _loss_and_cache(  # 2. the loss and the cache
        graphdef, params, rest, embeddings, batch.labels, loss_fn
    )
    cache = cache.reshape(-1, cache.shape[-1])  # (S B, D)
    for chunk, rng_state in zip(batch.chunks, before, strict=True):  # 3. backward
        M = chunk.input_ids.shape[0]
        chunk_cache = jnp.pad(cache[chunk.rows], ((0, M - len(chunk.rows)), (0, 0)))  # (M, D)
        grads = _add_chunk_grads(graphdef, grads, params, rng_state, chunk.input_ids,
                                 chunk.attention_mask, chunk_cache)  # fmt: skip
    nnx.update(trainable, rest)  # the dropout streams, moved on by pass 1
    return loss, grads


class CachedSteps:
    """Steps of ``minisbert.train`` (its ``Steps``) through the gradient cache: batches cut
    into sorted, padded chunks of ``config.mini_batch_size`` sentences; a step is the three
    passes and then ``apply_gradients``. On the default device, in one process."""

    mini_batch_size = 0  # M, set by prepare

    def prepare(self, data, config, total, trainable, optimizer) -> None:  # noqa: ANN001
        if not uses_cache(config.mini_batch_size, config.batch_size):
            raise ValueError(
                f"CachedSteps needs a mini_batch_size below the batch size {config.batch_size}, "
                f"not {config.mini_batch_size}"
            )
        if jax.process_count() > 1:
            raise ValueError(
                "--mini-batch-size trains in one process; leave it out to train in several"
            )
        self.mini_batch_size = config.mini_batch_size

    def batch(self, data, order: np.ndarray, index: int, batch_size: int) -> CachedBatch:  # noqa: ANN001
        sentences = data.sentences(order, index, batch_size)  # S * B lists
        chunks = sorted_chunks(sentences, self.mini_batch_size, data.max_length,
                               data.pad_token_id)  # fmt: skip
        return CachedBatch(chunks, data.labels_of(order, index, batch_size), len(data.sides))

    def step(self, trainable, optimizer, batch: CachedBatch, loss_fn) -> jax.Array:  # noqa: ANN001
        loss, grads = cached_grads(trainable, batch, loss_fn)
        apply_gradients(trainable, optimizer, grads)
        return loss

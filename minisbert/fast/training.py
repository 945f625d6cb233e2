"""The fast train step: a batch's sentences packed into rows, split across devices.

``train(config, steps=PackedSteps())`` runs the same loss as ``minisbert.train.train_step``
on the same batches, computed differently:

- **packed rows** (``minisbert.fast.packing``): the shuffled pairs are not sorted by
  length, so a padded batch is mostly padding (an epoch of STS-b train, each side padded
  to its own longest sentence, computes about twice as many token slots as real tokens); a
  packed one computes little padding. The row length L is fixed for the run (the bucket of
  its longest sentence); the number of rows R is rounded up to buckets chosen once per run
  from the rows every batch needs (``minisbert.fast.buckets.choose_buckets``): at most 8,
  each costing as much as ``COMPILE_STEPS`` steps of its rows would, so a long run gets fine
  buckets and a short one few. jit compiles one program per bucket.
- **several devices** (``minisbert.fast.sharding``): rows split along a mesh's "data" axis,
  parameters and optimiser state copied to every device.

Shapes: S sides, B batch, R rows of L tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from minisbert.batching import bucket_length
from minisbert.fast import sharding
from minisbert.fast.buckets import ENCODE_BUCKETS, choose_buckets
from minisbert.fast.model import embed_packed
from minisbert.fast.packing import PackedBatch, pack, rows_needed
from minisbert.sentence_encoder import SentenceModel
from minisbert.train import Trainable, train_step
from minisbert.train_config import TrainConfig
from minisbert.training_data import LossFn, TrainingData

# Compiling a train step (10-30 s on a CPU) costs about as much as running this many steps.
COMPILE_STEPS = 30


def embed_packed_sides(
    model: SentenceModel,
    batch: PackedBatch,  # rows (R, L); token_index and token_mask (S, B, L)
    attention_mask: None,  # the rows' masks come from batch.segment_ids
) -> jax.Array:  # (S, B, D)
    """``minisbert.train.embed_sides`` on a packed batch: the same sentence vectors, from
    fewer token slots. ``train_step(..., embed=embed_packed_sides)`` is the packed step."""
    S, B, L = batch.token_index.shape
    flat = batch._replace(
        token_index=batch.token_index.reshape(S * B, L),
        token_mask=batch.token_mask.reshape(S * B, L),
    )
    return embed_packed(model, flat).reshape(S, B, -1)  # (S, B, D)


def packed_train_step(
    trainable: Trainable,
    optimizer: nnx.Optimizer,
    batch: PackedBatch,  # rows (R, L); token_index and token_mask (S, B, L)
    labels: jax.Array | None,  # (B,)
    loss_fn: LossFn,
) -> jax.Array:  # () the loss before the update
    """The core's ``train_step``, with the packed batch and ``embed_packed_sides``."""
    return train_step(trainable, optimizer, batch, None, labels, loss_fn, embed_packed_sides)


def row_length(data: TrainingData) -> int:
    """L: the bucket of the longest sentence of any side, so that every sentence fits a row."""
    longest = max(len(ids) for side in data.sides for ids in side)
    return bucket_length(longest, data.max_length, ENCODE_BUCKETS)


def plan_rows(row_counts: Sequence[int], devices: int = 1) -> tuple[int, ...]:
    """The row counts R that a run's batches are packed into, for batches needing
    ``row_counts`` rows (one per step): at most 8, each a multiple of ``devices`` so that
    every device gets whole rows, and a new one only where the rows it saves outweigh
    compiling for it."""
    row_counts = [int(n) for n in row_counts]
    most = -(-max(row_counts, default=1) // devices) * devices  # rounded up to whole devices
    candidates = list(range(devices, most + 1, devices))
    compile_cost = COMPILE_STEPS * float(np.median(row_counts)) if row_counts else 0.0
    return choose_buckets(row_counts, most, candidates, compile_cost=compile_cost)


def packed_batch(
    data: TrainingData, order: np.ndarray, index: int, batch_size: int, L: int,
    buckets: Sequence[int],
) -> tuple[PackedBatch, np.ndarray | None]:  # fmt: skip
    """Batch ``index`` of an epoch, packed: rows (R, L), sentences (S, B, L); labels (B,)."""
    sentences = data.sentences(order, index, batch_size)  # S * B lists
    needed = rows_needed([len(ids) for ids in sentences], L)
    R = bucket_length(needed, buckets[-1], buckets)
    packed = pack(sentences, L, R, data.pad_token_id)
    S = len(data.sides)
    packed = packed._replace(
        token_index=packed.token_index.reshape(S, batch_size, L),  # (S, B, L)
        token_mask=packed.token_mask.reshape(S, batch_size, L),
    )
    return packed, data.labels_of(order, index, batch_size)


class PackedSteps:
    """Packed batches and ``packed_train_step``, data-parallel over ``devices`` (default: all
    local devices). Dropout as the config says (``dropout_bits``), as on the padded path."""

    def __init__(self, devices: list[jax.Device] | None = None):
        self.devices = devices
        self.row_length = 0  # L, set by prepare
        self.row_buckets: tuple[int, ...] = ()  # the numbers of rows R batches are packed into

    def prepare(
        self, data: TrainingData, config: TrainConfig, total: int,
        trainable: Trainable, optimizer: nnx.Optimizer,
    ) -> None:  # fmt: skip
        self.mesh = sharding.make_mesh(self.devices)
        sharding.check_batch_size(config.batch_size, self.mesh)
        self.row_length = row_length(data)
        steps_per_epoch = len(data) // config.batch_size
        epochs = range(-(-total // steps_per_epoch))
        needed = [
            rows_needed(
                [len(ids) for ids in data.sentences(order, i, config.batch_size)], self.row_length
            )  # fmt: skip
            for order in (data.order(config.seed, e, config.batch_size) for e in epochs)
            for i in range(steps_per_epoch)
        ][:total]  # one per step
        self.row_buckets = plan_rows(needed, self.mesh.size)
        nnx.update(trainable, sharding.replicate(nnx.state(trainable), self.mesh))
        nnx.update(optimizer, sharding.replicate(nnx.state(optimizer), self.mesh))

    def batch(self, data: TrainingData, order: np.ndarray, index: int, batch_size: int) -> Any:
        packed, labels = packed_batch(
            data, order, index, batch_size, self.row_length, self.row_buckets
        )
        return sharding.shard_packed(packed, labels, self.mesh)

    def step(self, trainable: Trainable, optimizer: nnx.Optimizer, batch: Any,
             loss_fn: LossFn) -> jax.Array:  # fmt: skip
        packed, labels = batch
        return packed_train_step(trainable, optimizer, packed, labels, loss_fn)

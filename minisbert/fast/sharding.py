"""Data parallelism with ``jax.sharding``: the batch split across devices, the weights copied.

Shapes: S sides of an example (2 for pairs, 3 for triplets), B batch, T tokens.

A ``Mesh`` lays the devices out along one named axis, ``"data"``: every device of every
process (``minisbert.fast.distributed`` for runs of several processes). Then

    input_ids, attention_mask   (S, B, T)   PartitionSpec(None, "data")   rows B split n ways
    labels                      (B,)        PartitionSpec("data")
    packed rows (training)      (R, L)      PartitionSpec("data")          rows R split n ways
    packed token_index, mask    (S, B, L)   PartitionSpec(None, "data")
    parameters, optimiser state             PartitionSpec()               a full copy on each

and every device holds B / n rows of the batch and a whole copy of the model.

**Why the loss still sees the whole batch.** ``jax.jit`` compiles one program for the
*global* arrays; the sharding only says where their pieces live. The compiler (XLA's SPMD
partitioner) splits the work and inserts the communication the maths needs: each device
runs BERT on its own rows, and where the loss needs rows from other devices, as the
in-batch-negative loss does for ``cos_sim_matrix(anchors, positives)`` of shape (B, B), it
gathers them. So the loss is the loss of the global batch, with the negatives of every device, and
the gradient is its gradient (summed across devices for us); the result is the one-device
result up to the order of floating-point sums. Compare ``pmap``/``shard_map`` written by
hand, where each device computes a loss on its own B / n rows and the gradients are
averaged: there an anchor would only meet the negatives on its own device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from minisbert.fast.distributed import global_array, replicated
from minisbert.fast.packing import PackedBatch

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh ``("data",)`` over ``devices`` (default: every device of every
    process). The axis type is set, not left to the release's default (which changed): "Auto"
    lets XLA's partitioner place what the arrays' shardings do not say."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Each device must get the same number of rows."""
    n = mesh.size
    if batch_size % n:
        raise ValueError(
            f"batch size {batch_size} does not split evenly over {n} devices; use a multiple of {n}"
        )


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put a full copy of every array of ``tree`` (parameters, optimiser state) on each device."""
    everywhere = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: replicated(x, everywhere), tree)


def shard_batch(
    input_ids: np.ndarray,  # (S, B, T)
    attention_mask: np.ndarray,  # (S, B, T)
    labels: np.ndarray | None,  # (B,)
    mesh: Mesh,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Split the batch rows B across the mesh's ``"data"`` axis."""
    rows = NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))  # (S, B/n per device, T)
    input_ids = global_array(input_ids, rows)
    attention_mask = global_array(attention_mask, rows)
    if labels is not None:
        labels = global_array(labels, NamedSharding(mesh, PartitionSpec(DATA_AXIS)))
    return input_ids, attention_mask, labels


def shard_packed(
    batch: PackedBatch,  # rows (R, L); token_index and token_mask (S, B, L)
    labels: np.ndarray | None,  # (B,)
    mesh: Mesh,
) -> tuple[PackedBatch, jax.Array | None]:
    """Split a packed batch's rows R, and its sentences' B, across the ``"data"`` axis.

    A sentence's tokens may sit in a row on another device; the gather that brings them
    back to the sentence is in the program, so XLA inserts the communication it needs.
    """
    rows = NamedSharding(mesh, PartitionSpec(DATA_AXIS))  # (R/n per device, L)
    sentences = NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))  # (S, B/n per device, L)
    batch = PackedBatch(
        input_ids=global_array(batch.input_ids, rows),
        segment_ids=global_array(batch.segment_ids, rows),
        position_ids=global_array(batch.position_ids, rows),
        token_index=global_array(batch.token_index, sentences),
        token_mask=global_array(batch.token_mask, sentences),
    )
    if labels is not None:
        labels = global_array(labels, NamedSharding(mesh, PartitionSpec(DATA_AXIS)))
    return batch, labels

"""The cross-encoder's train step on packed rows: several pairs to a row.

A cross-encoder reads ``[CLS] a [SEP] b [SEP]`` as one sequence (``minisbert.cross_encoder``).
STS-b's pairs are 28 tokens long on average, 125 at most, so a padded batch of 16 pairs
(``cross_encoder_training.PairSteps``: each batch padded to the bucket of its longest pair)
computes about 3.3 token slots per real token on STS-b train. Packed several to a row
(``minisbert.fast.packing``, as the bi-encoder's sentences are) it computes little padding.

A pair packs as a sentence does, one segment of its row: its tokens attend to each other
only, its positions restart at 0. One array more travels with the rows: each token's segment
id in the pair (0 for ``[CLS] a [SEP]``, 1 for ``b [SEP]``), laid where the token lies. BERT
runs on the rows, each pair's [CLS] vector is gathered back (its first token), and the
pooler and head score it (``CrossEncoderModel.classify``): the same logits as the padded
pair, from fewer token slots (tests/test_cross_encoder_training.py).

Shapes: R rows of L tokens, B pairs, D hidden size, C labels.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from minisbert.cross_encoder import CrossEncoderModel
from minisbert.fast.distributed import global_array
from minisbert.fast.packing import PackedBatch, segment_attention_mask
from minisbert.fast.sharding import DATA_AXIS, shard_packed
from minisbert.fast.training import PackedSteps, packed_batch
from minisbert.train import Trainable, train_step
from minisbert.training_data import LossFn


def packed_pair_logits(
    model: CrossEncoderModel,
    inputs: tuple[PackedBatch, jax.Array],  # rows (R, L), token_index (1, B, L); types (R, L)
    attention_mask: None,  # the rows' masks come from the batch's segment_ids
) -> jax.Array:  # (1, B, C)
    """``cross_encoder_training.pair_logits`` on packed rows: ``train_step``'s ``embed``."""
    batch, token_type_ids = inputs
    R, L = batch.input_ids.shape
    mask = segment_attention_mask(batch.segment_ids)  # (R, L, L): a token sees its own pair
    h = model.bert(batch.input_ids, mask, token_type_ids, batch.position_ids)  # (R, L, D)
    cls = h.reshape(R * L, -1)[batch.token_index[0, :, 0]]  # (B, D): each pair's first token
    return model.classify(cls)[None]  # (1, B, C)


class PackedPairSteps(PackedSteps):
    """``PackedSteps`` for a cross-encoder: pairs packed into rows, with their segment ids."""

    for_pairs = True

    def batch(self, data: Any, order: np.ndarray, index: int, batch_size: int) -> Any:
        packed, labels = packed_batch(
            data, order, index, batch_size, self.row_length, self.row_buckets
        )
        R, L = packed.input_ids.shape
        types = np.zeros(R * L, np.int32)  # (R L,)
        rows = order[index * batch_size : (index + 1) * batch_size]  # (B,)
        for i, example in enumerate(rows):
            segments = data.segments[example]
            types[packed.token_index[0, i, : len(segments)]] = segments
        packed, labels = shard_packed(packed, labels, self.mesh)
        by_row = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))  # as the rows are split
        return (packed, global_array(types.reshape(R, L), by_row)), labels

    def step(self, trainable: Trainable, optimizer: nnx.Optimizer, batch: Any,
             loss_fn: LossFn) -> jax.Array:  # fmt: skip
        inputs, labels = batch
        return train_step(trainable, optimizer, inputs, None, labels, loss_fn, packed_pair_logits)

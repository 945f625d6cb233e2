"""Sequence packing: several sentences share one row, so a training step pads (almost) nothing.

Shapes: n sentences in a batch (S sides x B examples), R rows, L row length, D hidden.

A padded batch is as wide as its longest sentence. Training pairs come in the order the
shuffle draws them, not sorted by length, so on STS-b train fewer than half of the token
slots of a padded batch hold a real token; the encoder still computes every slot. Packing
puts whole sentences one after another in rows of L slots, longest sentence first, each
into the first row with room for it ("first-fit decreasing"):

    row 0:     [CLS] a  man plays [SEP] [CLS] a  dog runs [SEP] [PAD] ...
    segment      1   1   1    1     1     2   2   2    2    2     0
    position     0   1   2    3     4     0   1   2    3    4     0

Two things make a packed row compute exactly what separate padded rows would:

- each sentence's positions restart at 0, so it gets the same position embeddings;
- each token attends only to tokens of its own sentence:

      attention_mask[r, t, s] = (segment[r, t] == segment[r, s]) and segment[r, s] != 0

  A key of another sentence then gets the lowest float as its score, as a padding key
  does, and softmax gives it weight exactly 0. Every other operation of BERT (the dense
  products, GELU, LayerNorm) works on one token at a time.

After the encoder, ``token_index`` gathers each sentence's token vectors back into a row of
its own, ``(n, L, D)`` with ``token_mask``, and pooling runs as on a padded batch. The
sentence vectors equal the padded batch's up to the order of float sums in the matrix
products (about 1e-7; ``tests/test_packing.py`` checks values and gradients).

The price: the attention scores of a packed row are (L, L) where a padded batch has one
(T, T) per sentence, and jit compiles one program per number of rows R, so R is rounded
up to a few buckets, as padded lengths are (``minisbert.batching``). ``encode`` does not
pack: it sorts sentences by length first, which leaves little padding to win back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np


class PackedBatch(NamedTuple):
    """n sentences packed into R rows of L tokens (a NamedTuple, so jit takes it as a pytree)."""

    input_ids: np.ndarray  # (R, L) int32
    segment_ids: np.ndarray  # (R, L) int32: 0 padding, k >= 1 the k-th sentence of its row
    position_ids: np.ndarray  # (R, L) int32: the token's position in its own sentence
    token_index: np.ndarray  # (n, L) int32: where token j of sentence i lies, r * L + column
    token_mask: np.ndarray  # (n, L) int32: 1 for sentence i's tokens, 0 past its end


def first_fit_rows(lengths: Sequence[int], row_length: int) -> list[list[int]]:
    """Sentence indices per row: longest first, each into the first row with room for it."""
    if lengths and max(lengths) > row_length:
        raise ValueError(f"a sentence of {max(lengths)} tokens does not fit rows of {row_length}")
    rows: list[list[int]] = []
    free: list[int] = []  # slots left in each row
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):  # stable: ties keep order
        for r, room in enumerate(free):
            if lengths[i] <= room:
                rows[r].append(i)
                free[r] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(row_length - lengths[i])
    return rows


def rows_needed(lengths: Sequence[int], row_length: int) -> int:
    """How many rows of ``row_length`` first-fit decreasing packs these sentences into."""
    return len(first_fit_rows(lengths, row_length))


def pack(
    sentences: Sequence[Sequence[int]],
    row_length: int,
    rows: int | None = None,
    pad_token_id: int = 0,
) -> PackedBatch:
    """Pack token-id lists into ``rows`` rows of ``row_length`` (default: as few as fit).

    Rows past the ones the sentences need are all padding (segment 0): they keep the
    number of rows on a bucket, so jit sees few shapes.
    """
    n, L = len(sentences), row_length
    placement = first_fit_rows([len(ids) for ids in sentences], L)
    R = len(placement) if rows is None else rows
    if R < len(placement):
        raise ValueError(f"{n} sentences need {len(placement)} rows of {L}, not {R}")
    input_ids = np.full((R, L), pad_token_id, np.int32)
    segment_ids = np.zeros((R, L), np.int32)
    position_ids = np.zeros((R, L), np.int32)
    token_index = np.zeros((n, L), np.int32)
    token_mask = np.zeros((n, L), np.int32)
    for r, members in enumerate(placement):
        column = 0
        for k, i in enumerate(members, start=1):
            ids = sentences[i]
            span = slice(column, column + len(ids))
            input_ids[r, span] = ids
            segment_ids[r, span] = k
            position_ids[r, span] = np.arange(len(ids))
            token_index[i, : len(ids)] = r * L + np.arange(column, column + len(ids))
            token_mask[i, : len(ids)] = 1
            column += len(ids)
    return PackedBatch(input_ids, segment_ids, position_ids, token_index, token_mask)


def segment_attention_mask(segment_ids: jax.Array) -> jax.Array:  # (R, L) -> (R, L, L) bool
    """May token t attend to token s? Only within its own sentence, never to padding."""
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (R, L, L)
    return same & (segment_ids[:, None, :] != 0)

"""Sequence packing: several sentences share one row, so a training step pads (almost) nothing.

Shapes: n sentences in a batch (S sides x B examples), R rows, L row length, D hidden.

A padded batch is as wide as its longest sentence. Training pairs come in the order the
shuffle draws them, not sorted by length, so much of a padded batch is padding, and the
encoder still computes every slot (bench/README.md counts them on STS-b train). Packing
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
up to a few buckets, as padded lengths are (``minisbert.batching``).

``encode`` packs too (``packed_calls``). Sorted by length, its batches waste little within a
batch, but each is padded up to one of at most 8 bucket lengths, one compiled shape each.
Packing a whole call's sentences into rows of one length L leaves fewer slots empty, with
one compiled shape (bench/README.md, "How encode lays out a call", has the figures). Every
packed row attends over all its L x L pairs, so L holds ``PACKED_SHARE`` (99%) of the
call's sentences, not necessarily the longest: the few longer ones are padded in batches of
their own (``encode_row_length``), each with about as many token slots as a packed call,
since a forward pass's memory grows with its slots. A call whose rows would need more than
``MAX_PACKED_ROW_LENGTH`` (96) slots is padded altogether: at such lengths the attention
over L x L costs what packing saves. Encode packs up to 16,384 sentences at a time
(``sentence_encoder.CHUNK_SIZE``), so it places them by *best fit* (each, longest first,
into the row it leaves the least room in), which finds a row by its free slots in at most
L steps instead of scanning every row as first fit does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import jax
import numpy as np

from minisbert.batching import bucket_length

MIN_ROW_LENGTH = 32  # encode's rows: long enough that two or more short sentences share one
# encode packs only when its rows need at most this many slots: a packed row attends over
# all its L x L pairs, a cost that grows with L, and past about 96 slots packing no longer
# pays (bench/README.md has the measurements). Calls that need longer rows pad.
MAX_PACKED_ROW_LENGTH = 96
# encode's rows hold this share of a call's sentences, the shortest; the rest are padded,
# so that one long sentence among thousands of short ones does not lengthen every row.
PACKED_SHARE = 0.99
# The row lengths encode chooses from: few, so that calls with other sentences reuse the
# programs compiled for earlier ones.
ROW_LENGTHS = (8, 16, 32, 48, 64, MAX_PACKED_ROW_LENGTH)


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


def best_fit_rows(lengths: Sequence[int], row_length: int) -> list[list[int]]:
    """Sentence indices per row: longest first, each into the row it fills most tightly.

    ``rows_with[f]`` lists the rows with exactly f slots free, so finding the tightest row
    for a sentence of n tokens looks at f = n, n+1, ..., L: O(L) per sentence.
    """
    if lengths and max(lengths) > row_length:
        raise ValueError(f"a sentence of {max(lengths)} tokens does not fit rows of {row_length}")
    rows: list[list[int]] = []
    rows_with: list[list[int]] = [[] for _ in range(row_length + 1)]
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):  # stable: ties keep order
        n = lengths[i]
        free = next((f for f in range(n, row_length + 1) if rows_with[f]), None)
        if free is None:  # no row has room: open one
            free = row_length
            rows_with[free].append(len(rows))
            rows.append([])
        r = rows_with[free].pop()
        rows[r].append(i)
        rows_with[free - n].append(r)
    return rows


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
    placement = first_fit_rows([len(ids) for ids in sentences], row_length)
    R = len(placement) if rows is None else rows
    if R < len(placement):
        raise ValueError(
            f"{len(sentences)} sentences need {len(placement)} rows of {row_length}, not {R}"
        )
    return lay_out(sentences, placement, row_length, R, len(sentences), pad_token_id)


def lay_out(
    sentences: Sequence[Sequence[int]],
    placement: Sequence[Sequence[int]],
    row_length: int,
    rows: int,
    n: int,
    pad_token_id: int = 0,
) -> PackedBatch:
    """The arrays of a packed batch: ``placement[r]`` lists the sentences of row r, in order.

    ``n`` >= len(sentences) sets the size of ``token_index``: its rows past the sentences
    are empty (mask 0), so calls with different sentence counts share one shape.
    """
    L = row_length
    input_ids = np.full((rows, L), pad_token_id, np.int32)
    segment_ids = np.zeros((rows, L), np.int32)
    position_ids = np.zeros((rows, L), np.int32)
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


def encode_row_length(token_counts: Sequence[int], max_length: int) -> int:
    """encode's row length L: the first of ``ROW_LENGTHS`` that holds ``PACKED_SHARE`` (99%)
    of the sentences, and at least ``MIN_ROW_LENGTH`` slots (unless all the sentences fit
    in fewer), so short sentences share rows; never past ``max_length``.

    The longest 1% (in a call of 100 sentences or more) may be longer than L: encode pads
    those in batches of their own, so that a handful of long sentences does not make every
    row, and every row's (L, L) attention, longer. A result above
    ``MAX_PACKED_ROW_LENGTH`` means: pad every sentence.
    """
    ordered = np.sort(np.asarray(token_counts))  # (N,)
    typical = int(ordered[math.ceil(PACKED_SHARE * len(ordered)) - 1])  # the 99th percentile
    want = max(typical, min(int(ordered.sum()), MIN_ROW_LENGTH))
    return bucket_length(want, max_length, ROW_LENGTHS)


def packed_calls(
    token_ids: Sequence[Sequence[int]],
    batch_size: int,
    row_length: int,
    mean_length: float,
    pad_token_id: int = 0,
) -> Iterator[tuple[np.ndarray, PackedBatch]]:
    """Yield ``(indices, batch)``: the sentences of one forward pass of ``encode``, packed.

    Every call has the same shape: R = ceil(batch_size * mean_length / L) rows, so that a
    call holds about ``batch_size`` sentences (as many token slots as a padded batch of
    them), and room for n = max(3 * batch_size, L) sentence vectors (a row holds at most L
    sentences); a call ends when its rows or that room run out. A call never holds more
    than all the sentences, so both shrink to what they need, rounded up to a power of
    two (so that calls of other sizes reuse the program): R to the rows that hold every
    sentence (all of them if ``batch_size`` covers every sentence), n to their number.
    Encoding one sentence then does not cost a whole batch, and memory follows the input,
    not ``batch_size``: the gathered token vectors are (n, L, D), and an n sized from
    ``batch_size=16384`` alone would make them 3 x 16,384 x 32 x 384 float32 (L = 32,
    D = 384), 2.4 GB, for a call of a few sentences.
    ``indices[j]`` is the position in ``token_ids`` of the call's j-th sentence, whose
    vector is row j of the output.
    """
    L = row_length
    placement = best_fit_rows([len(ids) for ids in token_ids], L)
    R = max(1, math.ceil(batch_size * mean_length / L))  # rows for about batch_size sentences
    if batch_size >= len(token_ids):  # a batch holds them all: one call of all their rows
        R = _power_of_two(len(placement))
    R = min(R, _power_of_two(len(placement)))
    n = min(max(3 * batch_size, L), _power_of_two(len(token_ids)))
    call: list[list[int]] = []
    for row in [*placement, None]:  # None: flush the last call
        full = row is None or len(call) == R or sum(map(len, call)) + len(row) > n
        if call and full:
            indices = np.array([i for members in call for i in members])  # (n_call,)
            local = {int(i): j for j, i in enumerate(indices)}
            sentences = [token_ids[i] for i in indices]
            rows = [[local[i] for i in members] for members in call]
            yield indices, lay_out(sentences, rows, L, R, n, pad_token_id)
            call = []
        if row is not None:
            call.append(row)


def _power_of_two(count: int) -> int:
    """The smallest power of two >= ``count`` (1 for 0)."""
    return 2 ** math.ceil(math.log2(max(1, count)))


def segment_attention_mask(segment_ids: jax.Array) -> jax.Array:  # (R, L) -> (R, L, L) bool
    """May token t attend to token s? Only within its own sentence, never to padding."""
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (R, L, L)
    return same & (segment_ids[:, None, :] != 0)

"""``encode``'s fast batcher: a call's sentences packed several to a row.

``FastEncoder.from_pretrained(path)``, or ``SentenceEncoder(model, tokenizer,
batcher=PackedBatcher())``: the core's ``SentenceEncoder`` keeps the paper's smart batching
(``minisbert.sentence_encoder.SmartBatcher``: batches of sorted sentences padded to a bucket
length); this batcher instead

1. counts every sentence's tokens first (a call of several chunks counts the later ones in
   a cheap first pass), and chooses the call's shapes once (``plan``): one packed row
   length L that holds 99% of the sentences (``minisbert.fast.packing.encode_row_length``),
   and for the longest 1%, padded apart, at most 7 bucket lengths chosen to waste the
   fewest slots (``minisbert.fast.buckets``);
2. packs the sentences that fit into rows of L (``packed_calls``), about ``batch_size``
   sentences per forward pass, and runs ``minisbert.fast.model.embed_packed`` on them;
3. pads the rest in batches of their own, each about as many token slots as a packed pass.

The vectors equal ``SmartBatcher``'s up to float rounding (about 1e-7;
tests/test_packing.py). Token embeddings, and calls whose rows would need more than
``MAX_PACKED_ROW_LENGTH`` tokens, are padded altogether.

Shapes: R rows of L tokens, n sentences of a packed call, B batch, T tokens, D hidden.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx

from minisbert import sentence_encoder
from minisbert.batching import batch_rows, bucket_length, smart_batches
from minisbert.fast.buckets import ENCODE_BUCKETS, MAX_SHAPES, encode_buckets
from minisbert.fast.model import embed_packed
from minisbert.fast.packing import (
    MAX_PACKED_ROW_LENGTH,
    PackedBatch,
    encode_row_length,
    packed_calls,
)
from minisbert.sentence_encoder import (
    Progress,
    SentenceEncoder,
    _sentence_embeddings,
    _token_embeddings,
)


@functools.partial(jax.jit, static_argnums=0)
def _packed_embeddings(graphdef: Any, state: Any, batch: PackedBatch) -> jax.Array:  # (n, D)
    return embed_packed(nnx.merge(graphdef, state), batch)


class EncodePlan(NamedTuple):
    """The shapes of one ``encode`` call (``PackedBatcher.plan``)."""

    row_length: int  # L of the packed rows; sentences longer than L are padded (0: all are)
    mean_length: float  # mean token count of the packed sentences: sets R, rows per call
    rows: int  # B of every padded batch, in every chunk
    buckets: tuple[int, ...]  # the padded batches' lengths T, at most 7 (8 if none pack)
    batch_size: int  # sentences per forward pass: the caller's, at most the call's sentences


class PackedBatcher:
    """Packed rows for sentence vectors, finely bucketed padded batches for the rest."""

    def __init__(self, pack_sentences: bool = True, sort_by_length: bool = True):
        self.pack_sentences = pack_sentences  # off: padded batches only
        self.sort_by_length = sort_by_length  # smart batching; off only to measure it

    def __call__(self, encoder: SentenceEncoder, sentences: list[str], batch_size: int,
                 tokens: bool, progress: Progress) -> list[np.ndarray]:  # fmt: skip
        graphdef, state = nnx.split(encoder.model)
        results: list[Any] = [None] * len(sentences)
        CHUNK_SIZE = sentence_encoder.CHUNK_SIZE  # sentences tokenized and laid out together
        token_ids = encoder.token_ids(sentences[:CHUNK_SIZE])
        counts = [len(ids) for ids in token_ids] + [
            n
            for start in range(CHUNK_SIZE, len(sentences), CHUNK_SIZE)
            for n in encoder.token_counts(sentences[start : start + CHUNK_SIZE])
        ]
        plan = self.plan(encoder, counts, batch_size, packing=not tokens)
        pad = encoder.tokenizer.pad_token_id
        for start in range(0, len(sentences), CHUNK_SIZE):
            if start > 0:
                token_ids = encoder.token_ids(sentences[start : start + CHUNK_SIZE])
            fits = np.array([len(ids) <= plan.row_length for ids in token_ids], bool)
            packed_part, padded_part = np.flatnonzero(fits), np.flatnonzero(~fits)  # (n_p,), (n_q,)
            pending = []  # device arrays: JAX runs batch k while Python lays out batch k+1
            if len(packed_part):
                for indices, packed in packed_calls(
                    [token_ids[i] for i in packed_part],
                    plan.batch_size,
                    plan.row_length,
                    plan.mean_length,
                    pad,
                ):
                    R, L = packed.input_ids.shape
                    encoder.compiled_shapes.add(("packed", (R, L, len(packed.token_index))))
                    out = _packed_embeddings(graphdef, state, packed)  # (n, D)
                    pending.append((packed_part[indices], out))
            if len(padded_part):
                for batch in smart_batches(
                    [token_ids[i] for i in padded_part],
                    plan.rows,
                    encoder.max_seq_length,
                    pad,
                    sort=self.sort_by_length,
                    buckets=plan.buckets,
                    rows=plan.rows,
                ):
                    fn = _token_embeddings if tokens else _sentence_embeddings
                    what = "token_embeddings" if tokens else "sentence_embedding"
                    encoder.compiled_shapes.add((what, batch.input_ids.shape))
                    out = fn(graphdef, state, batch.input_ids, batch.attention_mask)
                    pending.append((padded_part[batch.indices], out))
            for indices, out in pending:
                out = np.asarray(out, dtype=np.float32)
                for row, index in enumerate(indices):
                    if tokens:
                        results[start + index] = out[row, : len(token_ids[index])]
                    else:
                        results[start + index] = out[row]
                progress.update(len(indices))
        return results

    def plan(
        self, encoder: SentenceEncoder, counts: list[int], batch_size: int, packing: bool = True
    ) -> EncodePlan:
        """How a call lays out sentences of these token counts, chosen once per call.

        Packing places sentences by length itself, so turning sorting off (to measure what
        smart batching buys) pads every sentence; so do rows that would be too long to pay.
        A ``batch_size`` above ``len(counts)`` is clamped to it: no batch holds more
        sentences than the call has, so shapes (and memory) follow the input.
        """
        batch_size = min(int(batch_size), max(1, len(counts)))
        max_length = encoder.max_seq_length
        row_length = encode_row_length(counts, max_length) if counts else 0
        if not (packing and self.pack_sentences and self.sort_by_length):
            row_length = 0
        if row_length > MAX_PACKED_ROW_LENGTH:
            row_length = 0
        packed_counts = [n for n in counts if n <= row_length]  # 99% or more, or none
        padded_counts = [n for n in counts if n > row_length]  # the rest
        mean_length = float(np.mean(packed_counts)) if packed_counts else 0.0
        rows, buckets = batch_size, ()
        if padded_counts:
            rows = batch_rows(len(padded_counts), batch_size)
            if packed_counts:  # a pass of the long ones: as many slots as a packed call's
                longest = bucket_length(max(padded_counts), max_length, ENCODE_BUCKETS)
                rows = min(rows, max(1, int(batch_size * mean_length) // longest))
            max_shapes = MAX_SHAPES - 1 if packed_counts else MAX_SHAPES  # one is the rows'
            buckets = encode_buckets(
                padded_counts, rows, max_length, self.sort_by_length, max_shapes
            )
        return EncodePlan(row_length, mean_length, rows, buckets, batch_size)


class FastEncoder(SentenceEncoder):
    """``SentenceEncoder`` whose ``encode`` packs sentences several to a row (``PackedBatcher``):
    the same vectors to about 1e-7, from fewer token slots. What the ``minisbert`` command
    encodes and evaluates with; ``minisbert.FastEncoder`` imports it on first use."""

    default_batcher = PackedBatcher

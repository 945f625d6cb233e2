"""Sequence packing: packed rows give the padded batch's sentence vectors, loss and gradients.

Tolerances: packing changes only the order of float32 sums in the matrix products, so
vectors agree to ~1e-7 and we allow 1e-5 (the project's parity bound with the reference).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx
from tiny import TINY_CONFIG

from minisbert.config import SentenceConfig
from minisbert.losses import cosine_similarity_loss, multiple_negatives_ranking_loss
from minisbert.packing import first_fit_rows, pack, rows_needed, segment_attention_mask
from minisbert.pooling import POOLINGS
from minisbert.sentence_encoder import SentenceModel
from minisbert.tokenizer import pad_batch
from minisbert.train import Trainable, TrainingData, compute_loss, compute_packed_loss


def sentences(n: int, seed: int = 0, longest: int = 12) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[2, *rng.integers(5, 99, rng.integers(1, longest - 1)), 3] for _ in range(n)]


def test_first_fit_places_every_sentence_once_within_the_rows():
    lengths = [7, 3, 5, 8, 2, 2, 6, 4]
    rows = first_fit_rows(lengths, 10)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 10 for row in rows)
    assert rows[0][0] == 3  # the longest goes first
    assert len(rows) == rows_needed(lengths, 10) == 4  # 37 tokens: at least 4 rows of 10


def test_a_sentence_longer_than_a_row_is_refused():
    with pytest.raises(ValueError, match="12 tokens does not fit rows of 10"):
        first_fit_rows([3, 12], 10)
    with pytest.raises(ValueError, match="need 2 rows of 8, not 1"):
        pack([[1] * 6, [1] * 6], 8, rows=1)


def test_pack_lays_out_segments_positions_and_the_way_back():
    batch = sentences(9)
    packed = pack(batch, 16, rows=8, pad_token_id=0)
    assert packed.input_ids.shape == (8, 16) and packed.token_index.shape == (9, 16)
    flat_ids, flat_pos = packed.input_ids.ravel(), packed.position_ids.ravel()
    for i, ids in enumerate(batch):
        n = len(ids)
        assert packed.token_mask[i].sum() == n
        np.testing.assert_array_equal(flat_ids[packed.token_index[i, :n]], ids)
        np.testing.assert_array_equal(flat_pos[packed.token_index[i, :n]], np.arange(n))
        assert len(set(packed.segment_ids.ravel()[packed.token_index[i, :n]])) == 1
    assert packed.segment_ids.astype(bool).sum() == sum(map(len, batch))  # the rest: padding
    assert not packed.segment_ids[rows_needed(list(map(len, batch)), 16) :].any()  # empty rows


def test_segment_mask_keeps_each_token_inside_its_sentence():
    segments = np.array([[1, 1, 2, 2, 2, 0]])
    mask = np.asarray(segment_attention_mask(segments))[0]  # (L, L)
    assert mask[0].tolist() == [True, True, False, False, False, False]
    assert mask[3].tolist() == [False, False, True, True, True, False]
    assert not mask[:, 5].any()  # nobody attends to padding


@pytest.fixture(scope="module")
def tiny_models() -> dict[str, SentenceModel]:
    models = {}
    for mode in POOLINGS:
        config = dataclasses.replace(SentenceConfig(36), pooling=mode)
        models[mode] = SentenceModel(TINY_CONFIG, config, rngs=nnx.Rngs(0))
        models[mode].eval()
    return models


@pytest.mark.parametrize("mode", sorted(POOLINGS))
def test_packed_rows_give_the_padded_sentence_vectors(tiny_models, mode):
    model = tiny_models[mode]
    batch = sentences(10, longest=14)
    padded = np.asarray(model(*pad_batch(batch, 16, 0)))  # (n, D), one sentence per row
    packed = np.asarray(model.embed_packed(pack(batch, 32)))  # (n, D), several per row
    np.testing.assert_allclose(packed, padded, atol=1e-5, rtol=0)


def test_the_pretrained_model_packed_matches_encode(encoder):
    texts = ["A man is playing a guitar.", "A woman slices a tomato on a board.", "Dogs run.",
             "The stock market fell sharply on Monday after the announcement."] * 3  # fmt: skip
    packed = pack(encoder.tokenizer.tokenize(texts), 64)
    assert packed.input_ids.shape[0] < len(texts)  # several sentences share a row
    encoder.model.eval()
    ours = np.asarray(encoder.model.embed_packed(packed))
    np.testing.assert_allclose(ours, encoder.encode(texts), atol=1e-5, rtol=0)


@pytest.mark.parametrize("loss_name", ["cosine", "mnrl"])
def test_the_packed_loss_and_gradients_are_the_padded_ones(loss_name):
    S, B = 2, 6
    data = TrainingData(
        sides=[sentences(B, seed=s) for s in range(S)], pad_token_id=0, max_length=16,
        labels=np.linspace(0, 1, B, dtype=np.float32) if loss_name == "cosine" else None,
        row_length=16, row_buckets=(S * B,),
    )  # fmt: skip
    order = np.arange(B)
    packed, labels = data.batch(order, 0, B)
    padded = [pad_batch(side, 16, 0) for side in data.sides]
    input_ids = np.stack([ids for ids, _ in padded])  # (S, B, T)
    mask = np.stack([m for _, m in padded])
    loss_fn = cosine_similarity_loss if loss_name == "cosine" else multiple_negatives_ranking_loss
    trainable = Trainable(SentenceModel(TINY_CONFIG, SentenceConfig(36), rngs=nnx.Rngs(0)))
    trainable.eval()

    def grads_of(loss):
        value, grads = nnx.value_and_grad(loss)(trainable)
        return float(value), jax.tree.leaves(nnx.state(grads, nnx.Param))

    one, g_padded = grads_of(lambda t: compute_loss(t, input_ids, mask, labels, loss_fn))
    two, g_packed = grads_of(lambda t: compute_packed_loss(t, packed, labels, loss_fn))
    assert abs(one - two) <= 1e-5 * max(1.0, abs(one))
    largest = max(float(np.abs(g).max()) for g in g_padded)
    for a, b in zip(g_padded, g_packed, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5 * max(1.0, largest))

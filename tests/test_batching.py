"""Smart batching: bucket choice for encode (hand-made cases and a brute-force check)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minisbert.batching import BUCKETS, bucket_length, smart_batches
from minisbert.fast.buckets import ENCODE_BUCKETS, MAX_SHAPES, choose_buckets, encode_buckets


def slots(longest: list[int], buckets: tuple[int, ...], max_length: int) -> int:
    """Token columns spent padding batches of these longest lengths to ``buckets``."""
    return sum(bucket_length(n, max_length, buckets) for n in longest)


def test_few_needs_are_kept_as_they_are():
    # 9 needs 12, 20 needs 20, 30 needs 32: three shapes, under the limit, all kept.
    assert choose_buckets([30, 20, 9, 9], 256) == (12, 20, 32)


def test_longest_need_is_always_a_bucket_and_capped_by_max_length():
    assert choose_buckets([5], 256) == (8,)
    assert choose_buckets([300], 256) == (256,)
    assert choose_buckets([130, 10], 200) == (12, 192)
    assert choose_buckets([190, 10], 150) == (12, 150)
    assert choose_buckets([], 256) == ()


def test_merging_picks_the_cheapest_neighbours():
    # Nine needs (8, 12, ..., 32, 40, 48), one too many: two neighbours must share. One
    # batch needs 8 and nine need 12, so serving 8 with 12 wastes 4 columns; every other
    # merge wastes at least 8 (two batches of 16 served as 20, say).
    longest = [8] + [12] * 9 + [16, 20, 24, 28, 32] * 2 + [40] * 3 + [48] * 3
    chosen = choose_buckets(longest, 256)
    assert len(chosen) == MAX_SHAPES
    assert 8 not in chosen and chosen[0] == 12


def test_every_length_of_a_long_spread_fits_in_eight():
    chosen = choose_buckets(list(range(1, 257)), 256)
    assert len(chosen) == MAX_SHAPES and chosen[-1] == 256
    assert set(chosen) <= set(ENCODE_BUCKETS)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(1, 300), min_size=1, max_size=40),
    st.integers(1, 4),
    st.sampled_from([0.0, 10.0, 100.0]),
)
def test_dynamic_programme_matches_brute_force(longest, max_shapes, compile_cost):
    max_length = 256
    chosen = choose_buckets(longest, max_length, max_shapes=max_shapes, compile_cost=compile_cost)
    needs = sorted({bucket_length(n, max_length, ENCODE_BUCKETS) for n in longest})
    assert len(chosen) <= max_shapes and chosen[-1] == needs[-1]

    def total(buckets: tuple[int, ...]) -> float:
        return slots(longest, buckets, max_length) + compile_cost * len(buckets)

    best = min(
        total(subset + (needs[-1],))
        for k in range(0, max_shapes)
        for subset in itertools.combinations(needs[:-1], k)
    )
    assert total(chosen) == best


def test_compile_cost_keeps_short_runs_to_few_buckets():
    longest = [10] * 5 + [20] * 5 + [40] * 5  # needs 12, 20, 40
    assert choose_buckets(longest, 256) == (12, 20, 40)
    # Slots: (12, 20, 40) 360, (20, 40) 400, (40,) 600; plus compile_cost per bucket.
    assert choose_buckets(longest, 256, compile_cost=30) == (12, 20, 40)  # 450 < 460 < 630
    assert choose_buckets(longest, 256, compile_cost=100) == (20, 40)  # 600 < 660, 700
    assert choose_buckets(longest, 256, compile_cost=250) == (40,)  # 850 < 900


def test_training_row_buckets_grow_with_the_run():
    from minisbert.fast.training import COMPILE_STEPS, plan_rows

    rng = np.random.default_rng(0)
    long_run = rng.integers(3, 12, 2000)  # 2,000 steps: fine buckets pay for themselves
    short_run = long_run[:COMPILE_STEPS]  # a few steps: one compile is cheaper
    buckets = plan_rows(long_run)
    assert len(buckets) > 2 and buckets[-1] == long_run.max()
    assert plan_rows(short_run) == (short_run.max(),)
    buckets = plan_rows(long_run, devices=4)  # each bucket a multiple of the device count
    assert all(r % 4 == 0 for r in buckets) and buckets[-1] >= long_run.max()


def test_encode_buckets_fit_every_batch_smart_batches_forms():
    rng = np.random.default_rng(0)
    token_ids = [[1] * int(n) for n in rng.integers(3, 120, 500)]
    for sort in (True, False):
        buckets = encode_buckets([len(t) for t in token_ids], 32, 128, sort=sort)
        assert len(buckets) <= MAX_SHAPES
        for batch in smart_batches(token_ids, 32, 128, sort=sort, buckets=buckets):
            longest = max(len(token_ids[i]) for i in batch.indices)
            assert batch.input_ids.shape[1] in buckets
            assert batch.input_ids.shape[1] >= longest


def test_encode_buckets_keep_to_the_shapes_they_are_given():
    rng = np.random.default_rng(1)
    counts = [int(n) for n in rng.integers(3, 500, 2000)]  # needs all 17 lengths
    assert len(encode_buckets(counts, 8, 512)) == MAX_SHAPES
    assert len(encode_buckets(counts, 8, 512, max_shapes=MAX_SHAPES - 1)) == MAX_SHAPES - 1


def test_smart_batches_pad_to_the_rows_they_are_given():
    token_ids = [[1] * n for n in (5, 9, 3)]  # 3 sentences: 4 rows by default
    assert [b.input_ids.shape for b in smart_batches(token_ids, 32, 64)] == [(4, 16)]
    (batch,) = smart_batches(token_ids, 32, 64, rows=16)  # as a larger call's batches
    assert batch.input_ids.shape == (16, 16) and batch.attention_mask[3:].sum() == 0


def test_finer_buckets_waste_less_on_short_sentences():
    # Sentences of 9-11 tokens: the training buckets pad them to 16, encode's to 12.
    longest = [9, 10, 11] * 10
    assert slots(longest, BUCKETS, 256) == 16 * 30
    assert slots(longest, encode_buckets(longest, 1, 256), 256) == 12 * 30

"""Batches without repeated texts, for losses with in-batch negatives (training_data.py).

On data whose texts repeat, no batch of an epoch holds a text twice, in any side; the order
is still a permutation with N // B batches, a function of (seed, epoch) alone, so a resumed
run sees the same batches; without it (--allow-duplicates, or a loss without in-batch
negatives) the order is ``epoch_order``'s, as before.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_tokenizer

from minisbert.losses import get_loss
from minisbert.tokenizer import Tokenizer
from minisbert.train import TrainConfig, TrainingError, _check_same_run
from minisbert.training_data import (
    TrainingData,
    distinct_batches,
    epoch_order,
    load_training_data,
    repeated_batches,
)

B = 8


def texts_with_repeats(n: int = 64, pool: int = 120, seed: int = 0) -> np.ndarray:  # (n, 3)
    """Triplets' text ids drawn from a small pool (three different ones an example): many
    texts appear in other examples too."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(pool, 3, replace=False) for _ in range(n)])


def batches_of(order: np.ndarray, texts: np.ndarray) -> list[list[int]]:
    """Each batch's texts, all sides."""
    return [texts[order[i * B : (i + 1) * B]].ravel().tolist() for i in range(len(order) // B)]


def test_no_batch_repeats_a_text():
    texts = texts_with_repeats()
    order = epoch_order(0, 0, len(texts))
    assert repeated_batches(order, texts, B) >= 4  # the shuffle alone repeats: else no test
    rearranged = distinct_batches(order, texts, B)
    assert sorted(rearranged.tolist()) == list(range(len(texts)))  # every example, once
    for batch in batches_of(rearranged, texts):
        assert len(set(batch)) == len(batch)
    assert repeated_batches(rearranged, texts, B) == 0


def test_greedy_in_shuffled_order_skipped_examples_first():
    """Examples 0 and 1 share a text: 1 is skipped, and opens the next batch."""
    texts = np.arange(3 * 16).reshape(16, 3)  # every text its own
    texts[1, 2] = texts[0, 0]
    rearranged = distinct_batches(np.arange(16), texts, B)
    assert rearranged.tolist() == [0, *range(2, 9), 1, *range(9, 16)]


def test_a_stuck_last_batch_is_completed_by_a_swap():
    """N = 2 B and no slack: the greedy pass leaves 9 (sharing a text with 8) for the last
    batch, which cannot take it; a swap with the first batch makes both batches distinct."""
    texts = np.arange(3 * 16).reshape(16, 3)
    texts[9, 0] = texts[8, 0]
    order = np.array([*range(8), 8, 9, *range(10, 16)])
    rearranged = distinct_batches(order, texts, B)
    assert repeated_batches(order, texts, B) == 1
    assert repeated_batches(rearranged, texts, B) == 0
    assert sorted(rearranged.tolist()) == list(range(16))


def test_what_cannot_be_distinct_keeps_its_repeats():
    """One text in every example: a batch must repeat it (and the function still returns
    every example, N // B batches first)."""
    texts = np.arange(3 * 16).reshape(16, 3)
    texts[:, 0] = 999
    rearranged = distinct_batches(np.arange(16), texts, B)
    assert sorted(rearranged.tolist()) == list(range(16))
    assert repeated_batches(rearranged, texts, B) == 2


def data_with_repeats(distinct: bool) -> TrainingData:
    texts = texts_with_repeats()
    sides = [[[int(t) + 1] for t in texts[:, s]] for s in range(3)]  # text t: token ids [t + 1]
    return TrainingData(sides, None, max_length=8, pad_token_id=0, distinct_texts=distinct)


def test_order_is_the_shuffle_without_it_and_distinct_with_it():
    plain, distinct = data_with_repeats(False), data_with_repeats(True)
    texts = distinct.text_ids()  # (N, 3)
    assert (plain.order(0, 1, B) == epoch_order(0, 1, len(plain))).all()  # the old order
    assert repeated_batches(plain.order(0, 1, B), texts, B) > 0
    for epoch in (0, 1, 2):
        assert repeated_batches(distinct.order(0, epoch, B), texts, B) == 0
    # A function of (seed, epoch): the same from a fresh copy (as a resumed run builds it).
    again = data_with_repeats(True)
    assert (again.order(0, 2, B) == distinct.order(0, 2, B)).all()
    assert (distinct.order(0, 1, B) != distinct.order(0, 2, B)).any()
    assert (distinct.order(1, 1, B) != distinct.order(0, 1, B)).any()


def test_text_ids_compare_token_ids():
    data = TrainingData([[[5, 6], [7]], [[7], [5, 6]]], None, max_length=8, pad_token_id=0)
    ids = data.text_ids()  # (2, 2)
    assert ids[0, 0] == ids[1, 1] and ids[0, 1] == ids[1, 0] and ids[0, 0] != ids[0, 1]


@pytest.mark.parametrize(
    "loss, allow, distinct",
    [("mnrl", False, True), ("mnrl", True, False), ("mnrl_symmetric", False, True),
     ("batch_hard_triplet", False, True), ("triplet", False, False)],
)  # fmt: skip
def test_on_by_default_for_losses_with_in_batch_negatives(
    tiny_files: dict[str, Path], loss: str, allow: bool, distinct: bool
):
    config = TrainConfig(data=str(tiny_files["triplets"]), loss=loss, allow_duplicates=allow,
                         output="unused")  # fmt: skip
    tokenizer = Tokenizer(tiny_tokenizer(), max_seq_length=32)
    data = load_training_data(config, tokenizer, get_loss(loss))
    assert data.distinct_texts is distinct


def test_resume_refuses_the_other_batches(tmp_path: Path):
    config = TrainConfig(loss="mnrl", output=str(tmp_path))
    data = data_with_repeats(True)
    state = {"config": config.to_dict(), "shuffle": {"seed": 0, "distinct_texts": True}}
    _check_same_run(config, state, tmp_path, data)  # the same batches: goes on
    old = {"config": config.to_dict(), "shuffle": {"seed": 0}}  # saved before the rule
    with pytest.raises(TrainingError, match="batches with repeated texts.*resume with --allow-d"):
        _check_same_run(config, old, tmp_path, data)
    allowed = dataclasses.replace(config, allow_duplicates=True)
    with pytest.raises(TrainingError, match="without repeated texts.*without --allow-duplicates"):
        _check_same_run(allowed, state, tmp_path, data_with_repeats(False))

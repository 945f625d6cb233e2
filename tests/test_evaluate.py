"""Tests for minisbert.evaluate: metrics on hand-made cases, against scipy (a test-only
dependency) and against brute force, and the evaluators with a tiny fake encoder."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from minisbert.data import PairExample, TripletExample
from minisbert.evaluate import (
    accuracy,
    binary_metrics,
    encode_unique,
    evaluate_binary,
    evaluate_sts,
    evaluate_triplets,
    pair_scores,
    paired_bootstrap,
    pearson,
    rank,
    spearman,
    sts_metrics,
    triplet_accuracy,
)

# ---------------------------------------------------------------- correlation


def test_rank_averages_ties() -> None:
    np.testing.assert_array_equal(rank(np.array([10, 30, 20, 20])), [1, 4, 2.5, 2.5])
    np.testing.assert_array_equal(rank(np.array([7.0, 7.0, 7.0])), [2, 2, 2])
    np.testing.assert_array_equal(rank(np.array([3, 1, 2])), [3, 1, 2])


def test_perfect_and_anti_correlation() -> None:
    x = np.array([0.1, 0.5, 2.0, 3.0, 4.5])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -3 * x) == pytest.approx(-1.0)
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)  # monotone, not linear
    assert pearson(x, np.exp(x)) < 0.99
    assert spearman(x, -(x**3)) == pytest.approx(-1.0)


def test_spearman_with_ties_by_hand() -> None:
    # ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4]; deviations [-1.5, 0, 0, 1.5] and
    # [-1.5, -0.5, 0.5, 1.5]: r = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10).
    assert spearman(np.array([1, 2, 2, 3]), np.array([1, 2, 3, 4])) == pytest.approx(
        3 / math.sqrt(10)
    )


def test_constant_input_is_nan() -> None:
    assert math.isnan(pearson(np.ones(4), np.arange(4)))
    assert math.isnan(spearman(np.arange(4), np.full(4, 2.0)))


def test_correlation_shape_errors() -> None:
    with pytest.raises(ValueError, match="equal length"):
        pearson(np.arange(3), np.arange(4))
    with pytest.raises(ValueError, match="equal length"):
        spearman(np.arange(1), np.arange(1))


tied_pairs = st.integers(min_value=2, max_value=60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(-4, 4), min_size=n, max_size=n),  # few values: many ties
        st.lists(
            st.floats(-1e3, 1e3, allow_nan=False).map(lambda f: round(f, 1)), min_size=n, max_size=n
        ),
    )
)


@settings(max_examples=300, deadline=None)
@given(tied_pairs)
def test_spearman_and_pearson_match_scipy(pair: tuple[list[int], list[float]]) -> None:
    x, y = np.array(pair[0], dtype=np.float64), np.array(pair[1], dtype=np.float64)
    np.testing.assert_allclose(rank(x), scipy.stats.rankdata(x))
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        assert math.isnan(spearman(x, y)) and math.isnan(pearson(x, y))
        return
    assert spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-9)
    assert pearson(x, y) == pytest.approx(scipy.stats.pearsonr(x, y).statistic, abs=1e-9)


def test_module_does_not_import_scipy() -> None:
    import minisbert.evaluate

    tree = ast.parse(Path(minisbert.evaluate.__file__).read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m.split(".")[0] == "scipy"]


# ---------------------------------------------------------------- pair scores and STS


def test_pair_scores_by_hand() -> None:
    u = np.array([[1.0, 0.0], [3.0, 4.0]])
    v = np.array([[0.0, 2.0], [6.0, 8.0]])
    scores = pair_scores(u, v)
    np.testing.assert_allclose(scores["cosine"], [0.0, 1.0])
    np.testing.assert_allclose(scores["euclidean"], [-math.sqrt(5), -5.0])
    np.testing.assert_allclose(scores["manhattan"], [-3.0, -7.0])
    np.testing.assert_allclose(scores["dot"], [0.0, 50.0])
    assert all(s.dtype == np.float64 for s in scores.values())


def test_sts_metrics_perfect_and_reversed() -> None:
    # Pair i: u = (1, 0), v at angle theta_i; cosine falls as theta grows, as do the others.
    theta = np.array([0.1, 0.4, 0.9, 1.3])
    u = np.tile([1.0, 0.0], (4, 1))
    v = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    gold = np.array([5.0, 3.0, 2.0, 0.5])
    metrics = sts_metrics(u.astype(np.float32), v.astype(np.float32), gold)
    for name in ("cosine", "euclidean", "manhattan", "dot"):
        assert metrics[f"spearman_{name}"] == pytest.approx(100.0)
    assert metrics["pearson_cosine"] == pytest.approx(100 * pearson(np.cos(theta), gold))
    assert sts_metrics(u, v, -gold)["spearman_cosine"] == pytest.approx(-100.0)
    assert len(metrics) == 8


def test_paired_bootstrap_scores_both_on_the_same_draw() -> None:
    """Two scorings that differ by a little noise on the same pairs: the spread of their
    difference is far below the spread of either score, which an unpaired comparison
    (each resampled on its own draw) would mix in."""
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, size=300)  # (N,)
    a = gold + rng.normal(0, 1.5, size=300)  # (N,) a noisy model
    b = a + rng.normal(0, 0.1, size=300)  # (N,) nearly the same model

    differences = paired_bootstrap(spearman, a, b, gold, samples=200, seed=1)
    assert differences.shape == (200,)
    np.testing.assert_array_equal(paired_bootstrap(spearman, a, a, gold, samples=50), 0.0)
    assert abs(differences.mean() - (spearman(a, gold) - spearman(b, gold))) < 0.01
    draws = np.random.default_rng(1)
    alone = [spearman(a[i], gold[i]) for i in (draws.integers(0, 300, 300) for _ in range(200))]
    assert differences.std() < np.std(alone) / 4, "paired: the pairs' difficulty cancels"
    np.testing.assert_array_equal(
        differences, paired_bootstrap(spearman, a, b, gold, samples=200, seed=1)
    )
    with pytest.raises(ValueError, match="scores_a, scores_b and gold"):
        paired_bootstrap(spearman, a, b[:-1], gold)


# ---------------------------------------------------------------- triplets


def test_triplet_accuracy_points_on_a_line() -> None:
    anchor = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    positive = np.array([[2.0, 0.1], [1.0, 1.0], [1.0, 0.0]])
    negative = np.array([[0.0, 1.0], [5.0, 0.0], [1.0, 0.0]])
    # 1: closer both ways. 2: by cosine the negative (same direction) is closer, by
    # euclidean the positive (distance 1 vs 4). 3: a tie, which counts as wrong.
    result = triplet_accuracy(anchor, positive, negative)
    assert result == {"accuracy_cosine": pytest.approx(1 / 3), "accuracy_euclidean": 2 / 3}


# ---------------------------------------------------------------- binary classification


def test_binary_metrics_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 0, 1, 0, 0])
    m = binary_metrics(scores, labels)
    # Top 2 predicted 1: 5 of 6 right (the first of two cuts reaching 5/6).
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["accuracy_threshold"] == pytest.approx(0.75)
    # Top 4: precision 3/4, recall 1, F1 = 6/7.
    assert m["f1"] == pytest.approx(6 / 7)
    assert m["f1_threshold"] == pytest.approx(0.55)
    assert (m["precision"], m["recall"]) == (pytest.approx(0.75), 1.0)
    # Precision at each positive: 1, 1, 3/4.
    assert m["average_precision"] == pytest.approx((1 + 1 + 0.75) / 3)


def test_binary_metrics_ties_share_a_prediction() -> None:
    m = binary_metrics(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0]))
    assert m["accuracy"] == pytest.approx(2 / 3)  # cannot split the two 0.5s
    assert m["accuracy_threshold"] > 0.5  # "predict all 0" is the first best cut
    assert m["average_precision"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(2 / 3)


def test_binary_metrics_errors() -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        binary_metrics(np.array([0.1, 0.2]), np.array([0, 2]))
    with pytest.raises(ValueError, match="N > 0"):
        binary_metrics(np.array([]), np.array([]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 1)), min_size=1, max_size=40))
def test_binary_metrics_match_brute_force(rows: list[tuple[int, int]]) -> None:
    scores = np.array([s / 6 for s, _ in rows])
    labels = np.array([y for _, y in rows])
    m = binary_metrics(scores, labels)
    thresholds = [*np.unique(scores), np.inf]
    predictions = [(scores >= t).astype(int) for t in thresholds]
    best = max(float(np.mean(p == labels)) for p in predictions)
    assert m["accuracy"] == pytest.approx(best)
    assert float(np.mean((scores >= m["accuracy_threshold"]) == labels)) == pytest.approx(best)

    def f1(p: np.ndarray) -> float:
        tp = int(np.sum(p & labels))
        return 2 * tp / (p.sum() + labels.sum()) if tp else 0.0

    assert m["f1"] == pytest.approx(max(f1(p) for p in predictions))
    assert f1((scores >= m["f1_threshold"]).astype(int)) == pytest.approx(m["f1"])
    # AP with ties grouped: sum over thresholds t (high to low) of P(t) * (R(t) - R(previous t)).
    ap, previous_recall = 0.0, 0.0
    for t in sorted(np.unique(scores), reverse=True):
        p = scores >= t
        tp = np.sum(labels[p])
        recall = tp / labels.sum() if labels.sum() else 0.0
        ap += (tp / p.sum()) * (recall - previous_recall)
        previous_recall = recall
    assert m["average_precision"] == pytest.approx(ap)


def test_accuracy_of_logits() -> None:
    logits = np.array([[2.0, 0.1, 0.0], [0.0, 0.0, 3.0], [0.5, 0.4, 0.1], [0.0, 1.0, 0.0]])
    assert accuracy(logits, np.array([0, 2, 1, 1])) == 0.75
    with pytest.raises(ValueError, match=r"logits \(N, C\)"):
        accuracy(logits, np.array([0, 1]))


# ---------------------------------------------------------------- evaluators with a fake encoder


class BagOfCharacters:
    """Encodes a sentence as counts of the letters a..z: a tiny, exact stand-in model."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, object]]] = []

    def encode(
        self,
        sentences: list[str],
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        self.calls.append(
            (
                list(sentences),
                {"batch_size": batch_size, "normalize_embeddings": normalize_embeddings},
            )
        )
        return np.array([letter_counts(s) for s in sentences], dtype=np.float32)  # (N, 26)


def letter_counts(sentence: str) -> list[float]:
    return [float(sentence.lower().count(chr(ord("a") + i))) for i in range(26)]


STS_PAIRS = [
    PairExample("A cat sits.", "A cat is sitting.", 4.6),
    PairExample("A cat sits.", "Stocks fell sharply today.", 0.2),
    PairExample("A man plays guitar.", "A man is playing a guitar.", 4.8),
    PairExample("A dog runs.", "A man plays guitar.", 0.8),
    PairExample("Two dogs run in a field.", "A dog runs.", 3.2),
    PairExample("Stocks fell sharply today.", "Markets dropped.", 3.9),
]


def test_evaluate_sts_with_fake_encoder() -> None:
    encoder = BagOfCharacters()
    metrics = evaluate_sts(encoder, STS_PAIRS, batch_size=4)

    # Independently: cosine etc. computed pair by pair in plain Python, then scipy.
    def cosine(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    gold = [e.label for e in STS_PAIRS]
    vectors = [(letter_counts(e.sentence1), letter_counts(e.sentence2)) for e in STS_PAIRS]
    expected = {
        "cosine": [cosine(a, b) for a, b in vectors],
        "euclidean": [-math.dist(a, b) for a, b in vectors],
        "manhattan": [-sum(abs(x - y) for x, y in zip(a, b, strict=True)) for a, b in vectors],
        "dot": [sum(x * y for x, y in zip(a, b, strict=True)) for a, b in vectors],
    }
    for name, scores in expected.items():
        spearman_ref = 100 * scipy.stats.spearmanr(scores, gold).statistic
        pearson_ref = 100 * scipy.stats.pearsonr(scores, gold).statistic
        assert metrics[f"spearman_{name}"] == pytest.approx(spearman_ref, abs=1e-9)
        assert metrics[f"pearson_{name}"] == pytest.approx(pearson_ref, abs=1e-9)

    # One call, each distinct sentence once, raw (unnormalised) embeddings requested.
    [(sentences, kwargs)] = encoder.calls
    assert sorted(sentences) == sorted({s for e in STS_PAIRS for s in (e.sentence1, e.sentence2)})
    assert len(sentences) == 8
    assert kwargs == {"batch_size": 4, "normalize_embeddings": False}


def test_encode_unique_keeps_order_and_checks_shape() -> None:
    a, b = encode_unique(BagOfCharacters(), ["ab", "b", "ab"], ["b", "zz"])
    np.testing.assert_array_equal(a, [letter_counts(s) for s in ["ab", "b", "ab"]])
    np.testing.assert_array_equal(b, [letter_counts(s) for s in ["b", "zz"]])
    assert a.dtype == np.float64

    class Broken(BagOfCharacters):
        def encode(self, sentences: list[str], **kwargs: object) -> np.ndarray:  # type: ignore[override]
            return np.zeros((1, 3), dtype=np.float32)

    with pytest.raises(ValueError, match="for 3 sentences"):
        encode_unique(Broken(), ["a", "b", "c"])


def test_evaluate_triplets_and_binary_with_fake_encoder() -> None:
    triplets = [
        TripletExample("aaa b", "aa b", "zzz"),  # right both ways
        TripletExample("abc", "abd", "abcabc"),  # cosine: negative is the same direction
    ]
    assert evaluate_triplets(BagOfCharacters(), triplets) == {
        "accuracy_cosine": 0.5,
        "accuracy_euclidean": 1.0,
    }
    pairs = [
        PairExample("abc", "abcc", 1),
        PairExample("abc", "xyz", 0),
        PairExample("hello", "hello there", 1),
        PairExample("hello", "quiz", 0),
    ]
    m = evaluate_binary(BagOfCharacters(), pairs)
    assert m["accuracy"] == 1.0 and m["f1"] == 1.0 and m["average_precision"] == 1.0
    assert 0.0 < m["accuracy_threshold"] < 1.0


def test_evaluate_needs_labels() -> None:
    with pytest.raises(ValueError, match="label None"):
        evaluate_sts(BagOfCharacters(), [PairExample("a", "b")])


@pytest.mark.slow
def test_pretrained_stsb_test_score(encoder: object, data_dir: Path) -> None:
    """all-MiniLM-L6-v2 on STS Benchmark test: the published Spearman (cosine) is 82.03."""
    from minisbert.data import load_dataset

    metrics = evaluate_sts(encoder, load_dataset("stsb", split="test", root=data_dir))  # type: ignore[arg-type]
    assert metrics["spearman_cosine"] == pytest.approx(82.03, abs=0.01)

"""Evaluation: correlation with gold scores, triplet accuracy, pair classification, NLI accuracy.

Metrics come first, as functions of plain numpy arrays; evaluators then encode sentences
with any object that has an ``encode`` method (the ``Encoder`` protocol, which
``SentenceEncoder`` satisfies) and hand the embeddings to the metrics. All metric
arithmetic is float64, whatever dtype the embeddings came in.

Shapes: N examples, D embedding size, C classes.

**STS evaluation**, the SBERT paper's headline number: encode both sentences of every
pair, score each pair by cosine similarity ``cos(u, v) = u.v / (|u| |v|)``, and report the
Spearman rank correlation between those scores and the gold scores, x100 (so 82.03, not
0.8203). Spearman is used because it asks only that more similar pairs get higher
scores, not that the scores be a linear function of the gold. The same is reported for
negative euclidean distance ``-|u - v|``, negative manhattan distance ``-sum|u - v|`` and
the dot product ``u.v`` (negated distances, so that higher means more similar for all).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from minisbert.data import DataError, PairExample, TripletExample, load_dataset


class Encoder(Protocol):
    """Anything that turns sentences into an (N, D) float array: a ``SentenceEncoder``."""

    def encode(
        self,
        sentences: list[str],
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        show_progress_bar: bool = False,
    ) -> npt.ArrayLike: ...  # (N, D); SentenceEncoder returns a float32 np.ndarray


# ---------------------------------------------------------------- correlation


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation ``sum(dx dy) / sqrt(sum(dx^2) sum(dy^2))``, ``dx = x - mean(x)``.

    ``nan`` when either input is constant (the correlation is undefined).
    """
    x = np.asarray(x, dtype=np.float64)  # (N,)
    y = np.asarray(y, dtype=np.float64)  # (N,)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need two 1-d arrays of equal length >= 2, got {x.shape}, {y.shape}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:  # tested before: a rounded mean leaves dy ~ 1e-16
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
    return float(np.clip(np.sum(dx * dy) / denominator, -1.0, 1.0))


def rank(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, tied values sharing the average of the ranks they span.

    ``rank([10, 30, 20, 20]) = [1, 4, 2.5, 2.5]``: the two 20s would be ranks 2 and 3.
    """
    x = np.asarray(x, dtype=np.float64)  # (N,)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Runs of equal values in sorted order: run i spans sorted positions starts[i]..ends[i]-1.
    new_run = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], len(x))
    average = (starts + 1 + ends) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation: the Pearson correlation of ``rank(x)`` and ``rank(y)``."""
    return pearson(rank(x), rank(y))


# ---------------------------------------------------------------- pair scores


def pair_scores(u: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """Four similarity scores per pair, higher = more similar.

    u: (N, D) first sentences, v: (N, D) second sentences. Returns (N,) arrays under
    ``cosine`` (``u.v / (|u| |v|)``), ``euclidean`` (``-|u - v|``), ``manhattan``
    (``-sum|u - v|``) and ``dot`` (``u.v``).
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    dot = np.einsum("nd,nd->n", u, v)  # (N,)
    norms = np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)  # (N,)
    return {
        "cosine": dot / np.maximum(norms, 1e-12),
        "euclidean": -np.linalg.norm(u - v, axis=1),
        "manhattan": -np.abs(u - v).sum(axis=1),
        "dot": dot,
    }


def sts_metrics(u: np.ndarray, v: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman x100 between each pair score and the gold scores.

    u, v: (N, D) embeddings; gold: (N,). Keys ``pearson_cosine``, ``spearman_cosine``, ...
    for cosine, euclidean, manhattan and dot.
    """
    results = {}
    for name, scores in pair_scores(u, v).items():
        results[f"pearson_{name}"] = 100 * pearson(scores, gold)
        results[f"spearman_{name}"] = 100 * spearman(scores, gold)
    return results


def paired_bootstrap(
    metric: Callable[[np.ndarray, np.ndarray], float],
    scores_a: np.ndarray,  # (N,) one model's (or one scoring's) score of each pair
    scores_b: np.ndarray,  # (N,) the other's, on the same pairs
    gold: np.ndarray,  # (N,)
    *,
    samples: int = 1000,
    seed: int = 0,
) -> np.ndarray:  # (samples,)
    """``metric(a, gold) - metric(b, gold)`` on ``samples`` resamples of the N pairs.

    Each resample draws N pair indices with replacement and scores *both* on the same
    draw: a paired comparison. Two models evaluated on the same pairs share the pairs'
    difficulty, so their difference varies far less from draw to draw than either score
    does; judging the difference by each score's own spread overstates the noise. The
    standard deviation of the result is the standard error of the difference, and its
    2.5% and 97.5% quantiles a 95% interval for it.
    """
    a, b = np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)
    gold = np.asarray(gold, np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.shape != gold.shape or len(a) < 2:
        raise ValueError(
            f"need (N,) scores_a, scores_b and gold, N >= 2: {a.shape}, {b.shape}, {gold.shape}"
        )
    rng = np.random.default_rng(seed)
    draws = (rng.integers(0, len(a), len(a)) for _ in range(samples))  # (N,) each
    return np.array([metric(a[i], gold[i]) - metric(b[i], gold[i]) for i in draws])


# ---------------------------------------------------------------- triplets


def triplet_accuracy(
    anchor: np.ndarray, positive: np.ndarray, negative: np.ndarray
) -> dict[str, float]:
    """Fraction of triplets with ``d(anchor, positive) < d(anchor, negative)``, strictly.

    anchor, positive, negative: (N, D). ``d`` is the cosine distance ``1 - cos`` under
    ``accuracy_cosine`` and the euclidean distance under ``accuracy_euclidean``. A tie
    counts as wrong: a model that maps everything to one point scores 0, not 0.5.
    """
    to_positive = pair_scores(anchor, positive)
    to_negative = pair_scores(anchor, negative)
    # Higher score = closer, so d(a, p) < d(a, n) is score(a, p) > score(a, n).
    return {
        f"accuracy_{name}": float(np.mean(to_positive[name] > to_negative[name]))
        for name in ("cosine", "euclidean")
    }


# ---------------------------------------------------------------- binary classification


def binary_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, F1 and average precision of "label 1 when score >= threshold".

    scores: (N,) similarity, labels: (N,) 0 or 1. The best threshold is found by trying
    every cut of the scores sorted from high to low: predicting 1 for the top k pairs,
    for k = 0..N, but never splitting a run of equal scores (they get the same
    prediction). The reported threshold is the midpoint between the lowest score
    predicted 1 and the highest predicted 0. Accuracy and F1 each get their own best
    cut; precision and recall are those at the best-F1 cut.

    Average precision needs no threshold: ``AP = sum_k (R_k - R_{k-1}) P_k`` over the
    same cuts, with precision ``P_k`` and recall ``R_k`` of the top k.
    """
    scores = np.asarray(scores, dtype=np.float64)  # (N,)
    labels = np.asarray(labels)  # (N,)
    if scores.shape != labels.shape or scores.ndim != 1 or len(scores) == 0:
        raise ValueError(f"need (N,) scores and labels, N > 0: {scores.shape}, {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order].astype(np.float64)
    # Candidate cuts: after position k - 1 where the next score differs, plus "all".
    cut = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True)) + 1  # k
    tp = np.cumsum(sorted_labels)[cut - 1]  # true positives among the top k
    fp = cut - tp
    positives, n = sorted_labels.sum(), len(scores)
    tn = (n - positives) - fp
    k = np.concatenate([[0], cut])  # also the cut "predict nothing as 1"
    accuracy = np.concatenate([[(n - positives) / n], (tp + tn) / n])
    precision = tp / cut
    recall = tp / max(positives, 1)
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)

    def threshold(k_top: int) -> float:
        """The midpoint between the scores either side of a cut after the top ``k_top``."""
        if k_top == 0:
            return float(sorted_scores[0] + 1)  # above everything: nothing predicted 1
        if k_top == n:
            return float(sorted_scores[-1])
        return float((sorted_scores[k_top - 1] + sorted_scores[k_top]) / 2)

    best_accuracy, best_f1 = int(np.argmax(accuracy)), int(np.argmax(f1))
    recall_steps = np.diff(np.concatenate([[0.0], recall]))
    return {
        "accuracy": float(accuracy[best_accuracy]),
        "accuracy_threshold": threshold(int(k[best_accuracy])),
        "f1": float(f1[best_f1]),
        "f1_threshold": threshold(int(cut[best_f1])),
        "precision": float(precision[best_f1]),
        "recall": float(recall[best_f1]),
        "average_precision": float(np.sum(recall_steps * precision)),
    }


# ---------------------------------------------------------------- classification


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose highest logit is the gold class. logits: (N, C), labels: (N,)."""
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"need logits (N, C) and labels (N,), got {logits.shape}, {labels.shape}")
    return float(np.mean(np.argmax(logits, axis=1) == labels))


# ---------------------------------------------------------------- evaluators


def encode_unique(
    encoder: Encoder,
    *columns: Sequence[str],
    batch_size: int = 32,
    show_progress_bar: bool = False,
) -> list[np.ndarray]:
    """Embed each column of sentences, encoding every distinct sentence only once.

    STS and NLI data repeat sentences (an SNLI premise appears with up to three
    hypotheses), so this saves work; the result is one (N, D) float64 array per column.
    """
    unique = list(dict.fromkeys(s for column in columns for s in column))
    index = {sentence: i for i, sentence in enumerate(unique)}
    embeddings = np.asarray(
        encoder.encode(
            unique,
            batch_size=batch_size,
            normalize_embeddings=False,
            show_progress_bar=show_progress_bar,
        ),
        dtype=np.float64,
    )  # (U, D), U distinct sentences
    if embeddings.ndim != 2 or len(embeddings) != len(unique):
        raise ValueError(f"encode returned shape {embeddings.shape} for {len(unique)} sentences")
    return [embeddings[[index[s] for s in column]] for column in columns]


def encode_pairs(
    encoder: Encoder,
    examples: Sequence[PairExample],
    what: str,
    batch_size: int,
    show_progress_bar: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings u and v of each pair's two sentences, (N, D) each; anything but
    pairs (triplets) is refused in one line naming ``what`` needed them."""
    require_pairs(examples, what)
    u, v = encode_unique(
        encoder,
        [e.sentence1 for e in examples],
        [e.sentence2 for e in examples],
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
    )
    return u, v


def evaluate_sts(
    encoder: Encoder,
    examples: Sequence[PairExample],
    *,
    batch_size: int = 32,
    show_progress_bar: bool = False,
    truncate_dim: int | None = None,
) -> dict[str, float]:
    """``sts_metrics`` on pairs with float gold scores, e.g. ``load_dataset("stsb", "test")``.

    ``truncate_dim``: score the first D dimensions only, not re-normalised (as
    sentence-transformers' evaluators truncate); cosine does not care, the others do."""
    u, v = encode_pairs(encoder, examples, "STS evaluation", batch_size, show_progress_bar)
    gold = np.array([_number(e.label) for e in examples], dtype=np.float64)
    if truncate_dim is not None:
        u, v = u[:, :truncate_dim], v[:, :truncate_dim]  # (N, truncate_dim)
    return sts_metrics(u, v, gold)


def evaluate_triplets(
    encoder: Encoder,
    examples: Sequence[TripletExample],
    *,
    batch_size: int = 32,
    show_progress_bar: bool = False,
) -> dict[str, float]:
    """``triplet_accuracy`` on (anchor, positive, negative) examples."""
    if any(not isinstance(e, TripletExample) for e in examples):
        raise TypeError(
            "triplet evaluation needs (anchor, positive, negative) triplets, found "
            f"{_kinds(examples)}; evaluate pairs with `minisbert eval sts` (or nli)"
        )
    anchor, positive, negative = encode_unique(
        encoder,
        [e.anchor for e in examples],
        [e.positive for e in examples],
        [e.negative for e in examples],
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
    )
    return triplet_accuracy(anchor, positive, negative)


def evaluate_binary(
    encoder: Encoder,
    examples: Sequence[PairExample],
    *,
    batch_size: int = 32,
    show_progress_bar: bool = False,
) -> dict[str, float]:
    """``binary_metrics`` of cosine similarity on pairs labelled 1 (similar) or 0."""
    u, v = encode_pairs(encoder, examples, "binary evaluation", batch_size, show_progress_bar)
    labels = np.array([_number(e.label) for e in examples])
    return binary_metrics(pair_scores(u, v)["cosine"], labels)


def require_pairs(examples: Sequence[object], what: str) -> None:
    """Refuse triplets (or anything else) where pairs are needed, in one line."""
    if any(not isinstance(e, PairExample) for e in examples):
        raise TypeError(
            f"{what} needs (sentence1, sentence2, label) pairs, found {_kinds(examples)}; "
            "evaluate triplets with `minisbert eval triplets`"
        )


def _kinds(examples: Sequence[object]) -> str:
    names = sorted({type(e).__name__ for e in examples})
    return " and ".join(names)


def _number(label: float | int | None) -> float | int:
    if label is None:
        raise ValueError("evaluation needs labelled pairs; found a pair with label None")
    return label


# ---------------------------------------------------------------- during training


def eval_examples(
    eval_data: str, train_data: str
) -> tuple[str, Sequence[PairExample | TripletExample], Callable[..., dict[str, float]]] | None:
    """What a training run evaluates on (``--eval-data``): ``(name, dev examples,
    evaluator)``, or None for "none".

    "auto" is the SBERT paper's choice, STS benchmark dev (SICK dev when ``train_data`` is
    SICK), skipped quietly when the data folder lacks it. The evaluator follows the data:
    triplet accuracy for triplets, STS correlations for scored pairs, binary metrics for
    0/1 pairs.
    """
    # The kinds of data the losses name; imported here, so the metrics load without JAX.
    from minisbert.training_data import data_kinds

    name = eval_data
    if name == "none":
        return None
    if name == "auto":
        name = "sick" if train_data == "sick" else "stsb"
        try:
            examples = load_dataset(name, "dev")
        except DataError:
            return None
    else:
        examples = load_dataset(name, "dev")
    kinds = data_kinds(examples)
    if "triplets" in kinds:
        return name, examples, evaluate_triplets
    if "scored pairs" in kinds:
        return name, examples, evaluate_sts
    if "0/1 pairs" in kinds:
        return name, examples, evaluate_binary
    raise DataError(f"--eval-data {name}: no evaluator for {' / '.join(sorted(kinds))}")

"""Reference solutions for lesson 08 (peek only after trying)."""

from __future__ import annotations

import numpy as np


def best_threshold_accuracy(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(best accuracy of "1 if score >= t", a threshold t that reaches it)."""
    scores = np.asarray(scores, dtype=np.float64)  # (N,)
    gold = np.asarray(labels) == 1  # (N,)
    # Predictions only change when t passes a score, so each distinct score is a candidate
    # ("everything from here up is 1"), plus one above the top ("nothing is 1").
    candidates = np.append(np.unique(scores), scores.max() + 1.0)
    accuracies = [np.mean((scores >= t) == gold) for t in candidates]
    best = int(np.argmax(accuracies))
    return float(accuracies[best]), float(candidates[best])

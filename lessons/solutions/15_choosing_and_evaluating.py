"""Reference solution for lesson 15's exercise. Try the exercise before reading this."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def paired_interval(
    metric: Callable[[np.ndarray, np.ndarray], float],
    scores_a: np.ndarray,  # (N,) model a's score of each pair
    scores_b: np.ndarray,  # (N,) model b's score of the same pairs
    gold: np.ndarray,  # (N,)
    samples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """A 95% interval for metric(a) - metric(b): both scored on the same resampled pairs."""
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(samples):
        i = rng.integers(0, len(gold), len(gold))  # (N,) one draw of pairs, for both models
        differences.append(metric(scores_a[i], gold[i]) - metric(scores_b[i], gold[i]))
    low, high = np.quantile(differences, [0.025, 0.975])
    return float(low), float(high)

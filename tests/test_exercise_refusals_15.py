"""Lesson 15's exercise check, taken out of its lesson: it passes the reference solution and
refuses the answers that miss the point of a paired interval (each case well under 2 s)."""

from __future__ import annotations

import numpy as np
import pytest
from lesson_checks import check_from, solution

from minisbert.evaluate import paired_bootstrap, spearman

STEM = "15_choosing_and_evaluating"


def sts(scores: np.ndarray, gold: np.ndarray) -> float:
    return 100 * spearman(scores, gold)


def check():
    return check_from(STEM, "check_paired_interval", sts=sts, paired_bootstrap=paired_bootstrap)


def test_15_check_passes_the_solution():
    check()(solution(STEM, "paired_interval"))


def by_library(metric, scores_a, scores_b, gold, samples=1000, seed=0):
    differences = paired_bootstrap(metric, scores_a, scores_b, gold, samples=samples, seed=seed)
    return tuple(np.quantile(differences, [0.025, 0.975]))


def unpaired(metric, scores_a, scores_b, gold, samples=1000, seed=0):
    """Each model on a draw of its own: an interval several times too wide."""
    rng = np.random.default_rng(seed)
    n = len(gold)
    differences = []
    for _ in range(samples):
        i, j = rng.integers(0, n, n), rng.integers(0, n, n)
        differences.append(metric(scores_a[i], gold[i]) - metric(scores_b[j], gold[j]))
    return tuple(np.quantile(differences, [0.025, 0.975]))


def no_resampling(metric, scores_a, scores_b, gold, samples=1000, seed=0):
    """The observed difference, as if it had no noise."""
    difference = metric(scores_a, gold) - metric(scores_b, gold)
    return difference - 1e-9, difference + 1e-9


@pytest.mark.parametrize("wrong", [by_library, unpaired, no_resampling])
def test_15_check_refuses_a_wrong_interval(wrong):
    with pytest.raises(AssertionError):
        check()(wrong)

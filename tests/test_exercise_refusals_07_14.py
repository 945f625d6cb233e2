"""Lessons 07-14: each exercise check refuses the library call that would solve it, and the
wrong answers a student might give, while the reference solution passes.

Each check is taken out of its lesson (``lesson_checks.check_from``: its cell alone, on small
made-up inputs); no lesson runs and no model is loaded. The reference solutions of 09 and 12
pass their checks in tests/test_lessons.py (test_09_..., test_12_...), not again here: each
costs a second or more of compiling.
"""

from __future__ import annotations

import ast
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from lesson_checks import check_from, code_cells, padding_efficiency_check, solution, unit_rows

import minisbert.evaluate
import minisbert.losses
from minisbert import lesson
from minisbert.batching import smart_batches
from minisbert.distances import cos_sim_matrix
from minisbert.evaluate import binary_metrics
from minisbert.loss_check import check_loss, random_inputs
from minisbert.losses import (
    LOSSES,
    REGISTRY,
    batch_hard_triplet_loss,
    multiple_negatives_ranking_loss,
    symmetric_multiple_negatives_ranking_loss,
    triplet_loss,
)
from minisbert.similarity import semantic_search


def refused(check, answer, match: str | None = None) -> None:
    with pytest.raises(AssertionError, match=match):
        check(answer)


def batch_hard_check():
    rng = np.random.default_rng(0)
    raw = tuple(3 * rng.normal(size=(8, 16)) for _ in range(3))  # (8, D) a, p, n unnormalised
    return check_from(
        "07_triplet_loss",
        "check_batch_hard",
        raw=raw,
        batch_hard_triplet_loss=batch_hard_triplet_loss,
    )


@pytest.mark.slow  # the library's loss, eagerly, on three shapes: about 1 s of compiling alone
def test_07_batch_hard_check_passes_the_solution():
    batch_hard_check()(solution("07_triplet_loss", "batch_hard_by_hand"))


def test_07_batch_hard_check_refuses_the_library():
    check = batch_hard_check()
    wrong = [
        lambda e, labels, margin: batch_hard_triplet_loss(
            jnp.asarray(e), jnp.asarray(labels), margin=margin
        ),
        lambda e, labels, margin: minisbert.losses.batch_hard_triplet_loss(
            jnp.asarray(e), jnp.asarray(labels), margin=margin
        ),
        lambda e, labels, margin: LOSSES["batch_hard_triplet"](
            jnp.asarray(e), jnp.asarray(labels), margin=margin
        ),
    ]
    for answer in wrong:
        refused(check, answer, "calls minisbert.losses.triplet.batch_hard_triplet_loss")


def test_08_best_threshold_check_refuses_binary_metrics():
    stem = "08_contrastive_loss"
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=60)
    check = check_from(
        stem,
        "check_best_threshold",
        cos_before=rng.uniform(0.5, 1.0, size=60) + 0.1 * labels,
        cos_after=rng.uniform(-0.2, 1.0, size=60) + 0.3 * labels,
        labels=labels,
        binary_metrics=binary_metrics,
    )
    check(solution(stem, "best_threshold_accuracy"))

    def by_library(scores, labels):
        metrics = binary_metrics(scores, labels)
        return metrics["accuracy"], metrics["accuracy_threshold"]

    def through_the_module(scores, labels):
        metrics = minisbert.evaluate.binary_metrics(scores, labels)
        return metrics["accuracy"], metrics["accuracy_threshold"]

    for answer in (by_library, through_the_module):
        refused(check, answer, "calls minisbert.evaluate.binary_metrics")


def test_09_logit_gradient_check_refuses_every_autodiff():
    stem = "09_in_batch_negatives"
    check = check_from(
        stem,
        "check_logit_gradient",
        S_hard=20 * np.random.default_rng(0).uniform(-1, 1, size=(8, 16)),
        multiple_negatives_ranking_loss=multiple_negatives_ranking_loss,
    )

    def loss(z):  # (B, M) -> ()
        targets = jnp.arange(z.shape[0])
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(z, targets))

    def forward_mode(logits):  # no jax.grad: a Jacobian by forward differentiation
        return np.asarray(jax.jacfwd(loss)(jnp.asarray(logits, jnp.float32)))

    def reverse_mode(logits):
        return np.asarray(jax.jacrev(loss)(jnp.asarray(logits, jnp.float32)))

    for answer in (forward_mode, reverse_mode):
        refused(check, answer, "calls jax")


def test_10_top_k_check_refuses_an_unnormalised_query():
    stem = "10_evaluation_and_applications"
    rng = np.random.default_rng(0)
    check = check_from(
        stem,
        "check_top_k_search",
        queries=["a", "b", "c"],
        query_embeddings=unit_rows(rng, 3, 16),  # unit length, as the encoder gives them
        corpus_embeddings=unit_rows(rng, 50, 16),
        semantic_search=semantic_search,
    )
    check(solution(stem, "top_k_search"))

    def corpus_only(query_vec, corpus, k):  # divides the corpus rows, never the query
        rows = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)  # (M, D)
        scores = rows @ query_vec  # (M,) cos * |query|
        best = np.argsort(-scores, kind="stable")[:k]
        return [(int(i), float(scores[i])) for i in best]

    refused(check, corpus_only)


def python_only(cell: str) -> str:
    """A code cell without its notebook magics (``%matplotlib inline``)."""
    return "\n".join(line for line in cell.splitlines() if not line.startswith(("%", "!")))


def test_11_lesson_imports_batch_rows_and_the_check_refuses_smart_batches():
    stem = "11_speed"
    imported = {
        alias.asname or alias.name
        for cell in code_cells(stem)
        for node in ast.walk(ast.parse(python_only(cell)))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert "batch_rows" in imported, "the exercise's prose names batch_rows: the lesson imports it"
    check = padding_efficiency_check()
    check(solution(stem, "padding_efficiency"))

    def by_building_them(lengths, batch_size, sort, max_length=256):
        batches = smart_batches([[1] * n for n in lengths], batch_size, max_length, sort=sort)
        return sum(min(n, max_length) for n in lengths) / sum(
            b.attention_mask.size for b in batches
        )

    refused(check, by_building_them, "calls minisbert.batching.smart_batches")


def lesson_12_check(name: str):
    common: dict[str, Any] = {
        "check_loss": check_loss,
        "random_inputs": random_inputs,
        "cos_sim_matrix": cos_sim_matrix,
        "LossFn": Any,
        "triplet_loss": triplet_loss,
        "multiple_negatives_ranking_loss": multiple_negatives_ranking_loss,
        "symmetric_multiple_negatives_ranking_loss": symmetric_multiple_negatives_ranking_loss,
    }
    return check_from("12_modify_a_loss", name, **common)


def test_12_cosine_triplet_check_refuses_the_registry():
    check = lesson_12_check("check_cosine_triplet")
    wrong = [
        lambda a, p, n, margin=0.5: LOSSES["triplet"](a, p, n, margin=margin, distance="cosine"),
        lambda a, p, n, margin=0.5: REGISTRY["triplet"].function(
            a, p, n, margin=margin, distance="cosine"
        ),
    ]
    for answer in wrong:
        refused(check, answer, "calls minisbert.losses.triplet.triplet_loss")


def test_12_symmetric_check_refuses_the_registry_and_the_library_s_symmetric_loss():
    check = lesson_12_check("check_symmetric_mnrl")

    def by_registry(anchors, positives, negatives=None, *, scale=20.0):
        mnrl = LOSSES["mnrl"]
        rows = mnrl(anchors, positives, negatives, scale=scale)
        return 0.5 * (rows + mnrl(positives, anchors, scale=scale))

    def library_symmetric(anchors, positives, negatives=None, *, scale=20.0):
        return LOSSES["mnrl_symmetric"](anchors, positives, negatives, scale=scale)

    refused(check, by_registry, "calls minisbert.losses.ranking.multiple_negatives_ranking_loss")
    refused(check, library_symmetric, "symmetric_multiple_negatives_ranking_loss")


def test_beyond_noise_is_a_one_sided_t_test_over_the_seeds():
    """Mean gain above t(0.95, n - 1) standard errors, every seed improved: with 3 seeds
    t = 2.920, so a mean of 1.70 SD passes and 1.65 SD does not (2 SD was the old rule)."""
    spread = np.array([-1.0, 0.0, 1.0])  # SD 1 (ddof=1)
    assert lesson.beyond_noise(0.0, 1.70 + spread), "2.920 / sqrt(3) = 1.686 SD"
    assert not lesson.beyond_noise(0.0, 1.65 + spread)
    assert not lesson.beyond_noise(0.0, [0.5, 9.0, 9.5]), "mean 6.3 < 2.920 x SE 2.92"
    assert not lesson.beyond_noise(0.0, [-0.01, 5.0, 5.0]), "a seed that got worse"
    assert lesson.beyond_noise(0.0, [5.0, 6.0]), "two seeds: mean 5.5 > 6.314 x SE 0.5"
    assert not lesson.beyond_noise(0.0, [1.0, 3.0]), "mean 2 < 6.314 x SE 1"
    assert lesson.beyond_noise(0.0, [0.1]) and not lesson.beyond_noise(0.0, [-0.1]), "one seed"
    assert lesson.beyond_noise(5.0, [3.0, 3.1, 2.9], lower_is_better=True)

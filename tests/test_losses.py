"""Tests for minisbert.losses: parity with sentence-transformers, goldens, properties, loss_check.

Parity tolerances: 1e-5 relative, 1e-6 absolute, value and every gradient (loss_parity.py).
The fixture tests/reference/losses.npz is written by scripts/reference_losses.py (see there).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from loss_parity import assert_matches_reference, reference_losses

from minisbert.distances import ROW_DISTANCES
from minisbert.loss_check import check_loss, random_inputs
from minisbert.losses import (
    LOSSES,
    REGISTRY,
    SoftmaxClassifier,
    batch_hard_triplet_loss,
    contrastive_loss,
    cosent_loss,
    cosine_similarity_loss,
    multiple_negatives_ranking_loss,
    online_contrastive_loss,
    softmax_loss,
    triplet_loss,
)

FIXTURE = Path(__file__).resolve().parent / "reference" / "losses.npz"


# --- parity with sentence-transformers ------------------------------------------------------


def _fixture() -> Any:
    assert FIXTURE.is_file(), f"{FIXTURE} missing: run scripts/reference_losses.py"
    return np.load(FIXTURE)


_CASES = json.loads(str(_fixture()["cases"]))


# Every case at batch 4 and at its edge in make test; at batch 16 too in the long tier.
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=c["name"], marks=[pytest.mark.slow] if c["batch"] == 16 else [])
        for c in _CASES
    ],
)
def test_matches_sentence_transformers(case: dict[str, Any]) -> None:
    data = _fixture()
    prefix = case["name"]
    arrays = {
        key.split("/in/")[1]: data[key] for key in data.files if key.startswith(f"{prefix}/in/")
    }
    grads = {
        key.split("/grad/")[1]: data[key] for key in data.files if key.startswith(f"{prefix}/grad/")
    }
    assert set(grads) == set(reference_losses.INPUTS[case["loss"]])
    assert_matches_reference(case, arrays, float(data[f"{prefix}/value"]), grads)


def test_fixture_covers_every_loss_and_distance() -> None:
    covered = {(c["loss"], c["kwargs"].get("distance")) for c in _CASES}
    for distance in ROW_DISTANCES:
        for loss in ("triplet", "contrastive", "online_contrastive"):
            assert (loss, distance) in covered
    with_negatives = {"mnrl_negatives", "mnrl_symmetric_negatives"}
    assert {c["loss"] for c in _CASES} >= set(LOSSES) | with_negatives
    assert {c["batch"] for c in _CASES} >= {4, 16}


# --- goldens worked out by hand ------------------------------------------------------------


def _rows(*rows: tuple[float, ...]) -> jax.Array:
    return jnp.asarray(rows, dtype=jnp.float32)


def test_triplet_three_points_on_a_line() -> None:
    # a = 0, p = 1, n = 3 on the x-axis: d(a, p) = 1, d(a, n) = 3 (euclidean and manhattan).
    a, p, n = _rows((0.0, 0.0)), _rows((1.0, 0.0)), _rows((3.0, 0.0))
    for distance in ("euclidean", "manhattan"):
        assert triplet_loss(a, p, n, margin=1.0, distance=distance) == 0.0  # 1 - 3 + 1 < 0
        assert np.isclose(triplet_loss(a, p, n, margin=3.0, distance=distance), 1.0)  # 1 - 3 + 3
        assert np.isclose(triplet_loss(a, n, p, margin=1.0, distance=distance), 3.0)  # 3 - 1 + 1
    # cosine: a = (1, 0), p = (2, 0) same direction (d = 0), n = (-1, 0) opposite (d = 2).
    a, p, n = _rows((1.0, 0.0)), _rows((2.0, 0.0)), _rows((-1.0, 0.0))
    assert triplet_loss(a, p, n, margin=1.0, distance="cosine") == 0.0  # 0 - 2 + 1 < 0
    assert np.isclose(triplet_loss(a, n, p, margin=1.0, distance="cosine"), 3.0)  # 2 - 0 + 1


def test_orthogonal_unit_vectors() -> None:
    # u = (1, 0), v = (0, 1): cos = 0, cosine distance 1, euclidean distance sqrt(2).
    u, v = _rows((1.0, 0.0), (1.0, 0.0)), _rows((0.0, 1.0), (0.0, 1.0))
    # scores (1, 0): ((0 - 1)^2 + (0 - 0)^2) / 2 = 0.5
    assert np.isclose(cosine_similarity_loss(u, v, jnp.array([1.0, 0.0])), 0.5)
    similar, dissimilar = jnp.array([1.0, 1.0]), jnp.array([0.0, 0.0])
    # similar: 1/2 * 1^2 = 0.5; dissimilar, margin 0.5: relu(0.5 - 1) = 0; margin 1.5: 1/2 0.5^2
    assert np.isclose(contrastive_loss(u, v, similar), 0.5)
    assert contrastive_loss(u, v, dissimilar) == 0.0
    assert np.isclose(contrastive_loss(u, v, dissimilar, margin=1.5), 0.125)
    # euclidean: 1/2 * sqrt(2)^2 = 1 (the library's 1e-6 shift changes this by ~1e-12)
    assert np.isclose(contrastive_loss(u, v, similar, distance="euclidean"), 1.0, rtol=1e-6)


def test_mnrl_two_by_two_on_paper() -> None:
    # a1 = (1, 0), a2 = (0, 1); p1 = (1, 0), p2 = (1, 1)/sqrt(2); scale 1, c = 1/sqrt(2) = 0.70711
    # cos matrix [[1, c], [0, c]]; the true pair sits on the diagonal.
    # row 1: -log(e^1 / (e^1 + e^c)) = log(1 + e^(c - 1)) = log(1 + e^-0.29289) = log(1.74610)
    #        = 0.55739
    # row 2: -log(e^c / (e^0 + e^c)) = log(1 + e^-c) = log(1 + 0.49307) = 0.40083
    # mean = (0.55739 + 0.40083) / 2 = 0.47911
    anchors = _rows((1.0, 0.0), (0.0, 1.0))
    positives = _rows((1.0, 0.0), (1.0, 1.0))  # p2 need not be unit length: cosine normalises
    loss = multiple_negatives_ranking_loss(anchors, positives, scale=1.0)
    assert np.isclose(loss, 0.47911, atol=1e-5)
    # Two hard negatives, both (1, 0): every anchor sees every hard negative, so each denominator
    # gains two terms. Candidates [p1, p2, n1, n2]; cosines row 1 [1, c, 1, 1], row 2 [0, c, 0, 0].
    # row 1: -log(e^1 / (3 e^1 + e^c)) = log(3 + e^(c - 1)) = log(3.74610) = 1.32072
    # row 2: -log(e^c / (3 + e^c)) = log(1 + 3 e^-c) = log(1 + 1.47921) = 0.90794
    # mean = (1.32072 + 0.90794) / 2 = 1.11433
    negatives = _rows((1.0, 0.0), (1.0, 0.0))
    loss = multiple_negatives_ranking_loss(anchors, positives, negatives, scale=1.0)
    assert np.isclose(loss, 1.11433, atol=1e-5)


def test_cosent_two_pairs() -> None:
    # pair 1 parallel (cos 1), pair 2 orthogonal (cos 0).
    u, v = _rows((1.0, 0.0), (1.0, 0.0)), _rows((1.0, 0.0), (0.0, 1.0))
    # scale 1 keeps the numbers readable (at scale 20, log(1 + e^-20) rounds to 0 in float32).
    # scores agree with the cosines: log(1 + e^(0 - 1)) = log(1.36788) = 0.31326
    assert np.isclose(cosent_loss(u, v, jnp.array([1.0, 0.0]), scale=1.0), 0.31326, atol=1e-5)
    # scores disagree: log(1 + e^(1 - 0)) = log(3.71828) = 1.31326
    assert np.isclose(cosent_loss(u, v, jnp.array([0.0, 1.0]), scale=1.0), 1.31326, atol=1e-5)
    # at the default scale 20: log(1 + e^20) = 20.000000002
    assert np.isclose(cosent_loss(u, v, jnp.array([0.0, 1.0])), 20.0)
    # a tie adds nothing: log(1) = 0
    assert cosent_loss(u, v, jnp.array([0.5, 0.5])) == 0.0


def test_batch_hard_points_on_a_line() -> None:
    # x = 0, 1 (class 0) and 3, 6 (class 1); margin 2.
    # anchor 0: hardest p 1, hardest n 3 -> relu(1 - 3 + 2) = 0
    # anchor 1: hardest p 1, hardest n 2 -> relu(1 - 2 + 2) = 1
    # anchor 3: hardest p 3, hardest n 2 -> relu(3 - 2 + 2) = 3
    # anchor 6: hardest p 3, hardest n 5 -> relu(3 - 5 + 2) = 0      mean = 4 / 4 = 1
    x = _rows((0.0,), (1.0,), (3.0,), (6.0,))
    labels = jnp.array([0, 0, 1, 1])
    assert np.isclose(batch_hard_triplet_loss(x, labels, margin=2.0), 1.0)
    assert np.isclose(batch_hard_triplet_loss(x, labels, margin=2.0, distance="manhattan"), 1.0)


def test_online_contrastive_selects_hard_pairs() -> None:
    # euclidean distances (1e-6 shift aside): positives 1 and 4, negatives 2 and 5, margin 3.
    # hard positives: d > min negative 2 -> only 4; hard negatives: d < max positive 4 -> only 2.
    # loss = 4^2 + relu(3 - 2)^2 = 17 (a sum, and no factor 1/2)
    u = _rows((0.0,), (0.0,), (0.0,), (0.0,))
    v = _rows((1.0,), (4.0,), (2.0,), (5.0,))
    labels = jnp.array([1, 1, 0, 0])
    loss = online_contrastive_loss(u, v, labels, margin=3.0, distance="euclidean")
    assert np.isclose(loss, 17.0, rtol=1e-5)


# --- properties ----------------------------------------------------------------------------

# A few fixed shapes (including a batch of 1 and a 1-d embedding): each new shape costs a compile.
_shapes = st.sampled_from([(1, 3), (4, 3), (5, 1)])


def _embeddings(shape: tuple[int, int]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float32, shape, elements=st.floats(-3, 3, width=32))


@settings(max_examples=30, deadline=None)
@given(data=st.data(), shape=_shapes, distance=st.sampled_from(sorted(ROW_DISTANCES)))
def test_triplet_zero_iff_margin_met(
    data: st.DataObject, shape: tuple[int, int], distance: str
) -> None:
    a, p, n = (jnp.asarray(data.draw(_embeddings(shape))) for _ in range(3))
    row_distance = ROW_DISTANCES[distance]
    gap = float(jnp.min(row_distance(a, n) - row_distance(a, p)))  # smallest d(a,n) - d(a,p)
    # The margin is met by every triplet: every hinge is <= -0.01, so exactly 0.
    assert triplet_loss(a, p, n, margin=gap - 0.01, distance=distance) == 0.0
    # The worst triplet misses it by 0.01: the mean is at least 0.01 / B.
    assert triplet_loss(a, p, n, margin=gap + 0.01, distance=distance) >= 0.01 / shape[0] * 0.99


@settings(max_examples=30, deadline=None)
@given(
    data=st.data(),
    shape=_shapes,
    distance=st.sampled_from(sorted(ROW_DISTANCES)),
    margin=st.floats(0.1, 5.0),
)
def test_contrastive_symmetric(
    data: st.DataObject, shape: tuple[int, int], distance: str, margin: float
) -> None:
    u, v = (jnp.asarray(data.draw(_embeddings(shape))) for _ in range(2))
    labels = jnp.asarray(data.draw(hnp.arrays(np.int32, shape[0], elements=st.integers(0, 1))))
    # Euclidean and manhattan measure u - v + 1e-6 like torch's pairwise_distance, which
    # breaks the symmetry by O(1e-6) per coordinate. Plain contrastive is continuous, so that
    # stays O(1e-6); online mining is not: a pair whose distance sits within 1e-6 of the
    # threshold can be "hard" one way round and not the other (near-zero vectors do it), so
    # its exact symmetry is checked for cosine distance only.
    losses = (
        (contrastive_loss, online_contrastive_loss) if distance == "cosine" else (contrastive_loss,)
    )
    for loss in losses:
        forward = loss(u, v, labels, margin=margin, distance=distance)
        backward = loss(v, u, labels, margin=margin, distance=distance)
        atol = 1e-6 if distance == "cosine" else 1e-4
        np.testing.assert_allclose(forward, backward, rtol=1e-5, atol=atol)


@pytest.mark.slow  # the long tier (make test-slow): keeps make test short
@settings(max_examples=30, deadline=None)
@given(data=st.data(), shape=_shapes, with_negatives=st.booleans())
def test_mnrl_equivariant_to_shuffling_pairs(
    data: st.DataObject, shape: tuple[int, int], with_negatives: bool
) -> None:
    a, p, n = (jnp.asarray(data.draw(_embeddings(shape))) for _ in range(3))
    perm = jnp.asarray(data.draw(st.permutations(range(shape[0]))))
    negatives, shuffled_negatives = (n, n[perm]) if with_negatives else (None, None)
    original = multiple_negatives_ranking_loss(a, p, negatives)
    shuffled = multiple_negatives_ranking_loss(a[perm], p[perm], shuffled_negatives)
    np.testing.assert_allclose(shuffled, original, rtol=1e-5, atol=1e-5)


def _every_loss(
    u: jax.Array, v: jax.Array, w: jax.Array, seed: int = 0
) -> dict[str, tuple[Callable[..., jax.Array], tuple[jax.Array, ...]]]:
    """Every loss with every distance option, as (function of embeddings, embeddings)."""
    B, D = u.shape
    rng = np.random.default_rng(seed)
    binary = jnp.asarray(np.arange(B) % 2)  # both kinds of pair
    scores = jnp.asarray(rng.uniform(size=B), dtype=jnp.float32)
    classes = jnp.asarray(np.arange(B) % 3)
    classifier = SoftmaxClassifier(D, 3, concat=("u", "v", "abs_diff", "mul"), rngs=nnx.Rngs(0))
    calls: dict[str, tuple[Callable[..., jax.Array], tuple[jax.Array, ...]]] = {
        "softmax": (lambda u, v: softmax_loss(classifier, u, v, classes), (u, v)),
        "cosine": (lambda u, v: cosine_similarity_loss(u, v, scores), (u, v)),
        "cosent": (lambda u, v: cosent_loss(u, v, scores), (u, v)),
        "mnrl": (multiple_negatives_ranking_loss, (u, v)),
        "mnrl_negatives": (multiple_negatives_ranking_loss, (u, v, w)),
    }
    for d in ROW_DISTANCES:
        calls[f"triplet_{d}"] = (lambda a, p, n, d=d: triplet_loss(a, p, n, distance=d), (u, v, w))
        calls[f"contrastive_{d}"] = (
            lambda u, v, d=d: contrastive_loss(u, v, binary, distance=d),
            (u, v),
        )
        calls[f"online_contrastive_{d}"] = (
            lambda u, v, d=d: online_contrastive_loss(u, v, binary, distance=d),
            (u, v),
        )
    for d in ("euclidean", "squared_euclidean", "cosine", "manhattan"):
        calls[f"batch_hard_{d}"] = (
            lambda x, d=d: batch_hard_triplet_loss(x, classes, distance=d),
            (u,),
        )
    return calls


DEFAULT_DISTANCE = {
    "triplet": "euclidean",
    "batch_hard": "euclidean",
    "contrastive": "cosine",
    "online_contrastive": "cosine",
}


def _every_loss_names() -> list[Any]:
    """_every_loss's names; each loss at its default distance in make test, at its other
    distances in the long tier (every distance's value and gradient is checked in make test by
    test_matches_sentence_transformers)."""
    params = []
    for name in sorted(_every_loss(*random_inputs(3))):
        loss = next((loss for loss in DEFAULT_DISTANCE if name.startswith(loss + "_")), None)
        other = loss is not None and name != f"{loss}_{DEFAULT_DISTANCE[loss]}"
        params.append(pytest.param(name, marks=[pytest.mark.slow] if other else []))
    return params


def test_every_loss_is_in_the_registry() -> None:
    names = {"softmax", "cosine", "triplet", "contrastive", "online_contrastive", "mnrl"}
    names |= {"batch_hard_triplet", "cosent", "mnrl_symmetric"}
    assert set(LOSSES) == names and set(REGISTRY) == names


@pytest.mark.slow  # the long tier (make test-slow): keeps make test short
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_finite_for_zero_vectors_and_duplicate_rows(data: st.DataObject) -> None:
    u, v, w = (data.draw(_embeddings((4, 3))) for _ in range(3))
    u[0] = 0.0  # a zero vector
    v[0] = 0.0  # ... on both sides of a pair
    v[1] = u[1]  # a pair of identical rows
    w[2] = u[2]  # a negative identical to its anchor
    u[2] = u[1]  # two identical rows within a batch
    for name, (fn, inputs) in _every_loss(*(jnp.asarray(x) for x in (u, v, w))).items():
        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(inputs))))(*inputs)
        assert jnp.isfinite(value), name
        for g in grads:
            assert jnp.all(jnp.isfinite(g)), name


def test_finite_when_everything_is_zero_or_identical() -> None:
    zeros = jnp.zeros((4, 8))
    same = jnp.ones((4, 8))
    for inputs in [(zeros, zeros, zeros), (same, same, same)]:
        for name, (fn, args) in _every_loss(*inputs).items():
            value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
            assert jnp.isfinite(value), name
            assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads), name


@pytest.mark.parametrize("name", _every_loss_names())
def test_jit_equals_eager(name: str) -> None:
    fn, inputs = _every_loss(*random_inputs(3, batch=4, dim=8, seed=3))[name]
    eager = jax.value_and_grad(fn, argnums=tuple(range(len(inputs))))(*inputs)
    jitted = jax.jit(jax.value_and_grad(fn, argnums=tuple(range(len(inputs)))))(*inputs)
    # Equal up to float32 rounding: under jit XLA fuses and reorders sums differently.
    np.testing.assert_allclose(jitted[0], eager[0], rtol=1e-5, atol=1e-6)
    for g_jit, g_eager in zip(jitted[1], eager[1], strict=True):
        np.testing.assert_allclose(g_jit, g_eager, rtol=1e-5, atol=1e-6)


# --- the gradient checker ------------------------------------------------------------------


@pytest.mark.parametrize("name", _every_loss_names())
def test_check_loss_passes_on_every_loss(name: str) -> None:
    fn, inputs = _every_loss(*random_inputs(3, batch=4, dim=5, seed=1))[name]
    report = check_loss(fn, *inputs)
    assert report.ok and len(report.inputs) == len(inputs)


@jax.custom_vjp
def _sum_of_squares_wrong_grad(x: jax.Array) -> jax.Array:  # (B, D) -> ()
    return jnp.sum(x**2)


def _forward(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.sum(x**2), x


def _backward(x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    return (g * x,)  # wrong: d/dx sum x^2 = 2x


_sum_of_squares_wrong_grad.defvjp(_forward, _backward)


def test_check_loss_catches_a_wrong_gradient() -> None:
    (x,) = random_inputs(1)
    with pytest.raises(AssertionError, match="disagrees with finite differences"):
        check_loss(_sum_of_squares_wrong_grad, x)
    # ... and the same loss with jax's own gradient passes.
    assert check_loss(lambda x: jnp.sum(x**2), x).ok


def test_check_loss_names_the_wrong_input() -> None:
    u, v = random_inputs(2)

    def loss(u: jax.Array, v: jax.Array) -> jax.Array:
        return jnp.mean((u - v) ** 2) + _sum_of_squares_wrong_grad(v)

    with pytest.raises(AssertionError, match=r"gradient of input 1 \(4, 8\)"):
        check_loss(loss, u, v)


# --- the softmax classifier ----------------------------------------------------------------


def test_softmax_classifier_concat_options() -> None:
    u, v = random_inputs(2, dim=3)
    for concat in [("u", "v"), ("abs_diff",), ("mul",), ("abs_diff", "mul"), ("u", "v", "mul")]:
        classifier = SoftmaxClassifier(3, 2, concat=concat, rngs=nnx.Rngs(0))
        assert classifier(u, v).shape == (4, 2)
    classifier = SoftmaxClassifier(3, 2, concat=("v", "abs_diff"), rngs=nnx.Rngs(0))
    np.testing.assert_allclose(classifier.features(u, v), jnp.concatenate([v, jnp.abs(u - v)], 1))
    for bad in [(), ("u", "u"), ("u", "diff")]:
        with pytest.raises(ValueError, match="concat"):
            SoftmaxClassifier(3, 2, concat=bad, rngs=nnx.Rngs(0))


def test_softmax_loss_accepts_probabilities() -> None:
    u, v = random_inputs(2)
    classifier = SoftmaxClassifier(8, 3, rngs=nnx.Rngs(0))
    labels = jnp.array([0, 2, 1, 2])
    np.testing.assert_allclose(
        softmax_loss(classifier, u, v, jax.nn.one_hot(labels, 3)),
        softmax_loss(classifier, u, v, labels),
        rtol=1e-6,
    )

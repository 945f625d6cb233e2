"""Live parity: the symmetric MNRL and the Matryoshka wrapper against sentence-transformers.

Runs only where torch and sentence-transformers are installed (`-m live`); elsewhere it skips.
The same random float32 embeddings go through the library's loss class (a stand-in model hands
back the embedding put in the features, so the class's own ``forward`` runs unchanged) and
through minisbert; value and every gradient agree to |ours - ref| <= 1e-6 + 1e-5 |ref|, the
tolerances of tests/test_losses.py.

Shapes: B batch, D hidden.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("sentence_transformers.sentence_transformer.losses")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from minisbert.losses import (  # noqa: E402
    contrastive_loss,
    cosine_similarity_loss,
    multiple_negatives_ranking_loss,
    symmetric_multiple_negatives_ranking_loss,
    triplet_loss,
)
from minisbert.losses.matryoshka import matryoshka  # noqa: E402

pytestmark = pytest.mark.live

RTOL, ATOL = 1e-5, 1e-6
SEED = 20261207


class StandIn(torch.nn.Module):
    """Plays the SentenceTransformer: the features already hold the sentence embedding."""

    device = torch.device("cpu")

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        return {"sentence_embedding": features["sentence_embedding"]}

    def get_embedding_dimension(self) -> int:
        return self.dim


def symmetric(model: Any, scale: float) -> Any:
    with warnings.catch_warnings():  # deprecated for MultipleNegativesRankingLoss(directions=...)
        warnings.simplefilter("ignore", DeprecationWarning)
        return st.MultipleNegativesSymmetricRankingLoss(model, scale=scale)


# name: (library loss of a model, minisbert loss, embedding sides, labels: None, "score", "0/1")
LOSSES: dict[str, tuple[Callable[[Any], Any], Callable[..., jax.Array], int, str | None]] = {
    "mnrl": (
        lambda m: st.MultipleNegativesRankingLoss(m, scale=20.0),
        lambda a, p: multiple_negatives_ranking_loss(a, p, scale=20.0),
        2,
        None,
    ),
    "mnrl_symmetric": (
        lambda m: symmetric(m, 20.0),
        lambda a, p: symmetric_multiple_negatives_ranking_loss(a, p, scale=20.0),
        2,
        None,
    ),
    "mnrl_symmetric_negatives": (
        lambda m: symmetric(m, 7.0),
        lambda a, p, n: symmetric_multiple_negatives_ranking_loss(a, p, n, scale=7.0),
        3,
        None,
    ),
    "triplet_euclidean": (  # not scale invariant: sees whether each cut is re-normalised
        lambda m: st.TripletLoss(m, triplet_margin=0.5),
        lambda a, p, n: triplet_loss(a, p, n, margin=0.5, distance="euclidean"),
        3,
        None,
    ),
    "cosine": (lambda m: st.CosineSimilarityLoss(m), cosine_similarity_loss, 2, "score"),
    "contrastive": (
        lambda m: st.ContrastiveLoss(m, margin=0.5),
        lambda u, v, y: contrastive_loss(u, v, y, margin=0.5, distance="cosine"),
        2,
        "0/1",
    ),
}


def make_inputs(
    rng: np.random.Generator,
    sides: int,
    labels: str | None,
    batch: int,
    dim: int,
    zero_row: bool = True,
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Embeddings (each (B, D)) with partners near their anchor, a zero row, and labels."""
    first = rng.standard_normal((batch, dim))
    embeddings = [first, 0.6 * first + 0.8 * rng.standard_normal((batch, dim))]
    if sides == 3:
        embeddings.append(0.3 * first + rng.standard_normal((batch, dim)))
    if zero_row:
        embeddings[0][0] = 0.0  # a zero vector: NaN likes to hide there
    label_array = None
    if labels == "score":
        label_array = rng.uniform(0.0, 1.0, size=batch)
    elif labels == "0/1":
        label_array = np.array([1, 0] * (batch // 2))
    f32 = [e.astype(np.float32) for e in embeddings]
    return f32, None if label_array is None else label_array.astype(np.float32)


def library(
    make: Callable[[Any], Any], embeddings: list[np.ndarray], labels: np.ndarray | None, **wrap: Any
) -> tuple[float, list[np.ndarray]]:
    """(value, gradients) of the library's loss; ``wrap``: MatryoshkaLoss's arguments."""
    model = StandIn(embeddings[0].shape[-1])
    loss = make(model)
    if wrap:
        loss = st.MatryoshkaLoss(model, loss, **wrap)
    tensors = [torch.tensor(e, requires_grad=True) for e in embeddings]
    features = [{"sentence_embedding": t} for t in tensors]
    value = loss(features, None if labels is None else torch.from_numpy(labels))
    value.backward()
    return float(value.detach()), [t.grad.numpy() for t in tensors]


def ours(
    fn: Callable[..., jax.Array], embeddings: list[np.ndarray], labels: np.ndarray | None
) -> tuple[float, list[np.ndarray]]:
    extra = () if labels is None else (jnp.asarray(labels),)
    sides = len(embeddings)
    value, grads = jax.value_and_grad(lambda *e: fn(*e, *extra), argnums=tuple(range(sides)))(
        *(jnp.asarray(e) for e in embeddings)
    )
    return float(value), [np.asarray(g) for g in grads]


def assert_close(got: tuple[float, list[np.ndarray]], ref: tuple[float, list[np.ndarray]]) -> None:
    assert abs(got[0] - ref[0]) <= ATOL + RTOL * abs(ref[0]), (got[0], ref[0])
    for side, (g, r) in enumerate(zip(got[1], ref[1], strict=True)):
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL, err_msg=f"gradient {side}")


@pytest.mark.parametrize("batch, dim", [(4, 8), (16, 12)])
@pytest.mark.parametrize("name", ["mnrl_symmetric", "mnrl_symmetric_negatives"])
def test_symmetric_mnrl_matches_the_library(name: str, batch: int, dim: int) -> None:
    make, fn, sides, labels = LOSSES[name]
    rng = np.random.default_rng([SEED, batch])
    embeddings, label_array = make_inputs(rng, sides, labels, batch, dim)
    assert_close(ours(fn, embeddings, label_array), library(make, embeddings, label_array))


@pytest.mark.parametrize(
    "dims, weights", [((12, 6, 3), None), ((12, 8, 2), (1.0, 0.5, 2.0)), ((4, 10), (0.3, 1.0))]
)
@pytest.mark.parametrize("name", list(LOSSES))
def test_matryoshka_matches_the_library(
    name: str, dims: tuple[int, ...], weights: tuple[float, ...] | None
) -> None:
    make, fn, sides, labels = LOSSES[name]
    rng = np.random.default_rng([SEED, len(name), dims[-1]])
    # No zero row: cutting a zero vector gives a gradient of order 1/1e-12 on both sides (the
    # library's cached forward normalises a cut again, so its order differs): nothing to compare.
    embeddings, label_array = make_inputs(rng, sides, labels, 8, 12, zero_row=False)
    wrap: dict[str, Any] = {"matryoshka_dims": list(dims)}
    if weights is not None:
        wrap["matryoshka_weights"] = list(weights)
    reference = library(make, embeddings, label_array, **wrap)
    assert_close(ours(matryoshka(fn, dims, weights), embeddings, label_array), reference)

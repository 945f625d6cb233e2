"""Matryoshka loss: train the first d dimensions of every embedding to work on their own.

Shapes: B batch, D hidden, d a truncated width (d <= D), K hard negatives per anchor.

Kusupati et al. 2022, "Matryoshka Representation Learning": the same loss is applied to the
embeddings cut to several widths d_1 > d_2 > ..., so that after training a prefix of the vector
is a usable, smaller embedding (``encode(..., truncate_dim=d)``). Each cut is L2-normalised
before the loss sees it, as sentence-transformers' MatryoshkaLoss does:

    e^(d) = e[:, :d] / max(||e[:, :d]||, 1e-12)                       (B, d)
    loss  = sum_k w_k loss(e_1^(d_k), ..., e_S^(d_k), labels)         w_k = 1 by default

The cut at d = D is normalised too, so a loss that is not scale invariant (triplet with the
euclidean distance) sees unit vectors at every width. Every width's gradient flows into the
first d_k columns of the embedding: the first d_min columns get a gradient from every term.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax

from minisbert.distances import normalize


def check_matryoshka(dims: Sequence[int], weights: Sequence[float] | None = None) -> None:
    """Refuse, in one line, widths that are not positive or weights that do not pair with them."""
    if not dims:
        raise ValueError("matryoshka needs at least one width in dims")
    if any(not isinstance(d, int) or d <= 0 for d in dims):
        raise ValueError(f"matryoshka widths must be positive integers, got {tuple(dims)}")
    if weights is not None and len(weights) != len(dims):
        raise ValueError(
            f"matryoshka weights {tuple(weights)} must pair with the widths {tuple(dims)}: "
            f"{len(weights)} weights for {len(dims)} widths"
        )


def truncate(embeddings: jax.Array, dim: int) -> jax.Array:  # (..., D) -> (..., d)
    """The first ``dim`` columns, L2-normalised; a width beyond the embedding is refused."""
    width = embeddings.shape[-1]
    if dim > width:
        raise ValueError(f"matryoshka width {dim} is larger than the embeddings' {width}")
    return normalize(embeddings[..., :dim])


def matryoshka(
    loss: Callable[..., jax.Array],
    dims: Sequence[int] = (384, 128, 64),
    weights: Sequence[float] | None = None,
) -> Callable[..., jax.Array]:
    """``loss`` summed over the widths ``dims``, each weighted: sum_k w_k loss(cut to d_k).

    The wrapped function takes the same arguments as ``loss``. Every positional array of two or
    more axes is an embedding, (B, D) or hard negatives (K, B, D), and is cut; labels (B,) and
    keyword options pass through unchanged. A loss with a trainable head of its own (softmax)
    sizes that head for D and cannot be wrapped. sentence-transformers' defaults: weights 1,
    every width on every step (its n_dims_per_step = -1).
    """
    check_matryoshka(dims, weights)
    pairs = list(zip(dims, weights if weights is not None else [1.0] * len(dims), strict=True))

    @functools.wraps(loss)  # keeps the signature, which says which data the loss takes
    def matryoshka_loss(*args: object, **kwargs: object) -> jax.Array:  # ()
        total: jax.Array | float = 0.0
        for dim, weight in pairs:
            cut = [
                truncate(a, dim) if isinstance(a, jax.Array) and a.ndim >= 2 else a for a in args
            ]
            total = total + weight * loss(*cut, **kwargs)
        assert isinstance(total, jax.Array)
        return total

    return matryoshka_loss

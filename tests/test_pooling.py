"""Pooling on hand-computed cases, and the mask that keeps padding out."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from minisbert.pooling import normalize, pool

# One sentence of 3 positions, the last is padding (its values must never matter).
X = jnp.array([[[1.0, 2.0], [3.0, -4.0], [100.0, 100.0]]])  # (B=1, T=3, D=2)
MASK = jnp.array([[1, 1, 0]])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("mean", [2.0, -1.0]),  # (1+3)/2, (2-4)/2
        ("cls", [1.0, 2.0]),
        ("max", [3.0, 2.0]),
        ("mean_sqrt_len", [4.0 / np.sqrt(2), -2.0 / np.sqrt(2)]),
        ("weightedmean", [(1 * 1 + 2 * 3) / 3, (1 * 2 + 2 * -4) / 3]),  # weights 1, 2
        ("lasttoken", [3.0, -4.0]),  # the last real token, not the padding after it
        (("cls", "max"), [1.0, 2.0, 3.0, 2.0]),  # side by side, in the order asked
    ],
)
def test_pooling_golden(mode, expected):
    np.testing.assert_allclose(pool(mode, X, MASK)[0], expected, rtol=1e-6)


@pytest.mark.parametrize(
    "mode", ["mean", "cls", "max", "mean_sqrt_len", "weightedmean", "lasttoken"]
)
def test_padding_values_never_matter(mode):
    changed = X.at[:, 2, :].set(-7.0)
    np.testing.assert_array_equal(pool(mode, X, MASK), pool(mode, changed, MASK))


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown pooling"):
        pool("median", X, MASK)


def test_normalize_and_zero_vector():
    out = normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])

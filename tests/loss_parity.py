"""Parity of minisbert's losses with sentence-transformers': a reference case (from
scripts/reference_losses.py) run through minisbert, value and every gradient compared.

Tolerances (float32 on both sides, torch on CPU vs JAX on CPU):
    value:     |ours - ref| <= 1e-6 + 1e-5 |ref|      (1e-5 relative, 1e-6 absolute floor near 0)
    gradient:  |ours - ref| <= 1e-6 + 1e-5 |ref|      elementwise, same floor

Used by test_losses.py (against the stored tests/reference/losses.npz) and test_losses_live.py
(against the library itself, on other inputs). A helper module, not a test file (see tiny.py).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from minisbert.losses import (
    LOSSES,
    SoftmaxClassifier,
    multiple_negatives_ranking_loss,
    softmax_loss,
    triplet_loss,
)

ROOT = Path(__file__).resolve().parent.parent
RTOL, ATOL = 1e-5, 1e-6


def _load_reference_script() -> Any:
    spec = importlib.util.spec_from_file_location(
        "reference_losses", ROOT / "scripts" / "reference_losses.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference_losses = _load_reference_script()


def minisbert_loss_fn(case: dict[str, Any], arrays: dict[str, np.ndarray]) -> Callable[..., Any]:
    """The minisbert loss for a reference case, as a function of its embedding inputs only."""
    loss, kwargs = case["loss"], dict(case["kwargs"])
    labels = jnp.asarray(arrays["labels"]) if "labels" in arrays else None
    if loss == "softmax":
        concat = kwargs.get("concat", ("u", "v", "abs_diff"))
        classifier = SoftmaxClassifier(
            case["dim"], reference_losses.NUM_LABELS, concat=concat, rngs=nnx.Rngs(0)
        )
        # torch.nn.Linear stores (C, K D) and computes x W^T; nnx.Linear stores (K D, C).
        classifier.linear.kernel[...] = jnp.asarray(arrays["classifier_weight"].T)
        classifier.linear.bias[...] = jnp.asarray(arrays["classifier_bias"])
        return lambda u, v: softmax_loss(classifier, u, v, labels)
    if loss in ("mnrl", "mnrl_negatives"):
        return lambda *x: multiple_negatives_ranking_loss(*x, **kwargs)
    if loss in ("mnrl_symmetric", "mnrl_symmetric_negatives"):
        return lambda *x: LOSSES["mnrl_symmetric"](*x, **kwargs)
    if loss == "triplet":
        return lambda *x: triplet_loss(*x, **kwargs)
    return lambda *x: LOSSES[loss](*x, labels, **kwargs)


def minisbert_value_and_grads(
    case: dict[str, Any], arrays: dict[str, np.ndarray]
) -> tuple[float, dict[str, np.ndarray]]:
    names = reference_losses.INPUTS[case["loss"]]
    fn = minisbert_loss_fn(case, arrays)
    inputs = [jnp.asarray(arrays[name]) for name in names]
    value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(names))))(*inputs)
    return float(value), {name: np.asarray(g) for name, g in zip(names, grads, strict=True)}


def assert_matches_reference(
    case: dict[str, Any],
    arrays: dict[str, np.ndarray],
    ref_value: float,
    ref_grads: dict[str, np.ndarray],
) -> None:
    value, grads = minisbert_value_and_grads(case, arrays)
    assert math.isfinite(value)
    np.testing.assert_allclose(value, ref_value, rtol=RTOL, atol=ATOL, err_msg=case["name"])
    for name, ref_grad in ref_grads.items():
        assert np.all(np.isfinite(grads[name])), f"{case['name']}: non-finite grad of {name}"
        np.testing.assert_allclose(
            grads[name], ref_grad, rtol=RTOL, atol=ATOL, err_msg=f"{case['name']}: d/d{name}"
        )

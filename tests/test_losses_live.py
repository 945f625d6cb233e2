"""Live parity: the real sentence-transformers, in this process, on inputs the fixture never saw.

Runs only where torch and sentence-transformers are installed (`make test-live`); elsewhere it
skips. Every case of scripts/reference_losses.py is redrawn from a different seed, fed through
the library's loss class and through minisbert, and compared with the tolerances of
tests/loss_parity.py (1e-5 relative, 1e-6 absolute floor, value and every gradient).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("sentence_transformers")

import numpy as np  # noqa: E402
from loss_parity import assert_matches_reference, reference_losses  # noqa: E402

pytestmark = pytest.mark.live

SEED = 20240917  # the fixture uses seed 0


@pytest.mark.parametrize(
    "index, case",
    list(enumerate(reference_losses.CASES)),
    ids=[case["name"] for case in reference_losses.CASES],
)
def test_live_matches_sentence_transformers(index: int, case: dict[str, Any]) -> None:
    arrays = reference_losses.make_arrays(case, np.random.default_rng([SEED, index]))
    value, grads = reference_losses.compute_reference(case, arrays)
    assert_matches_reference(case, arrays, value, grads)

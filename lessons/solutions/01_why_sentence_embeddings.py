"""Reference solutions for lesson 01 (peek only after trying)."""

from __future__ import annotations

import numpy as np


def most_similar_pair(embeddings: np.ndarray) -> tuple[int, int]:
    """(i, j), i < j, of the two rows of ``embeddings`` (n, D) with the highest cosine."""
    E = np.asarray(embeddings, dtype=np.float64)  # (n, D)
    E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    S = E @ E.T  # (n, n) all cosines
    # Keep only the upper triangle above the diagonal: i < j, each pair once, no (i, i).
    S[np.tril_indices(len(E))] = -np.inf
    i, j = np.unravel_index(np.argmax(S), S.shape)
    return int(i), int(j)

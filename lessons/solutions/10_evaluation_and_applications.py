"""Reference solution for lesson 10's exercise. Try the exercise before reading this."""

from __future__ import annotations

import numpy as np


def top_k_search(
    query_vec: np.ndarray,  # (D,)
    corpus: np.ndarray,  # (M, D)
    k: int,
) -> list[tuple[int, float]]:
    """The k corpus rows most cosine-similar to ``query_vec``, best first, as (index, score)."""
    query = query_vec / max(np.linalg.norm(query_vec), 1e-12)  # (D,)
    rows = corpus / np.maximum(np.linalg.norm(corpus, axis=1, keepdims=True), 1e-12)  # (M, D)
    scores = rows @ query  # (M,)
    best = np.argsort(-scores, kind="stable")[:k]  # (k,) highest score first
    return [(int(i), float(scores[i])) for i in best]

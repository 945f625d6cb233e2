"""Reference solutions for lesson 04 (peek only after trying)."""

from __future__ import annotations

import numpy as np


def masked_max_pooling(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """u_d = max over real tokens t of x_{t,d}: (B, T, D), (B, T) -> (B, D)."""
    x = np.asarray(token_embeddings)  # (B, T, D)
    real = np.asarray(attention_mask)[:, :, None] > 0  # (B, T, 1)
    # -inf can never win a max, so padding rows drop out whatever their values.
    return np.where(real, x, -np.inf).max(axis=1)

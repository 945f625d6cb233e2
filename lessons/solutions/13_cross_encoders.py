"""Reference solutions for lesson 13 (peek only after trying)."""

from __future__ import annotations

import numpy as np


def pair_input(
    a_ids: list[int], b_ids: list[int], vocab: dict[str, int]
) -> tuple[list[int], list[int]]:
    """[CLS] a [SEP] b [SEP] as token ids, and its segment ids (0 for [CLS] a [SEP], 1 after)."""
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    input_ids = [cls, *a_ids, sep, *b_ids, sep]  # (T,) with T = len(a) + len(b) + 3
    token_type_ids = [0] * (len(a_ids) + 2) + [1] * (len(b_ids) + 1)  # (T,)
    return input_ids, token_type_ids


def pair_head(
    cls: np.ndarray,  # (B, D) BERT's output at [CLS]
    pooler_kernel: np.ndarray,  # (D, D)
    pooler_bias: np.ndarray,  # (D,)
    classifier_kernel: np.ndarray,  # (D, C)
    classifier_bias: np.ndarray,  # (C,)
) -> np.ndarray:  # (B, C) logits
    """tanh(cls W_p + b_p) W_c + b_c."""
    pooled = np.tanh(np.asarray(cls) @ pooler_kernel + pooler_bias)  # (B, D)
    return pooled @ classifier_kernel + classifier_bias  # (B, C)

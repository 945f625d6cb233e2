"""Reference solution for lesson 11's exercise. Try the exercise before reading this."""

from __future__ import annotations

import numpy as np

from minisbert.batching import batch_rows, bucket_length


def padding_efficiency(
    lengths: list[int], batch_size: int, sort: bool, max_length: int = 256
) -> float:
    """Real tokens / token slots computed, for minisbert's smart batching of these lengths."""
    lengths = [min(n, max_length) for n in lengths]
    if sort:
        lengths = sorted(lengths, reverse=True)
    rows = batch_rows(len(lengths), batch_size)  # every batch has this many rows
    real, slots = 0, 0
    for start in range(0, len(lengths), batch_size):
        batch = lengths[start : start + batch_size]
        real += sum(batch)
        slots += rows * bucket_length(max(batch), max_length)
    return real / slots if slots else float(np.nan)

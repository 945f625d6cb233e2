"""Shape buckets chosen per call: the fewest padded token slots for at most 8 programs.

``minisbert.batching`` pads every batch to one of 8 fixed lengths. A call of ``encode``
(or a training run) knows all its lengths in advance, so it can do better:

- ``ENCODE_BUCKETS`` (17 finer lengths): short sentences waste less (a 9-token batch is
  computed as 12 tokens, not 16). ``choose_buckets`` keeps one call to ``MAX_SHAPES`` (8)
  of them, picked to waste the least padding for its lengths; across calls the programs
  compiled stay bounded by the 17 lengths.
- Training packs its batches (``minisbert.fast.packing``) and uses ``choose_buckets`` for
  the number of packed rows instead of a length, charging each bucket the time compiling
  a train step takes, so a short run keeps to one or two.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minisbert.batching import bucket_length

ENCODE_BUCKETS = (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96, 128, 192, 256, 384, 512)
MAX_SHAPES = 8  # padded lengths one encode call may compile


def choose_buckets(
    longest: Sequence[int],
    max_length: int,
    candidates: Sequence[int] = ENCODE_BUCKETS,
    max_shapes: int = MAX_SHAPES,
    compile_cost: float = 0.0,
) -> tuple[int, ...]:
    """At most ``max_shapes`` of ``candidates`` that pad batches with these ``longest``
    lengths using the fewest token slots (columns, summed over batches), where each bucket
    also costs ``compile_cost`` slots: the time compiling its program takes, in slots.

    Each batch first rounds up to its candidate: the lengths it *needs*, d_1 < ... < d_m,
    with w_i batches needing d_i. If m <= max_shapes and compiling is free, we keep them
    all. Otherwise some neighbours share a bucket: a run d_i..d_j served by d_j costs
    d_j * (w_i+...+w_j) slots, and dynamic programming finds the cheapest split into at
    most max_shapes runs (the largest need d_m is always a bucket):

        cost[j][k] = min over i <= j of  cost[i-1][k-1] + d_j * (w_i + ... + w_j) + compile_cost
    """
    if not longest:
        return ()
    needs, counts = np.unique(
        [bucket_length(n, max_length, candidates) for n in longest], return_counts=True
    )
    m = len(needs)
    if m <= max_shapes and compile_cost == 0:
        return tuple(int(d) for d in needs)
    served = np.concatenate([[0], np.cumsum(counts)])  # served[j] = w_1 + ... + w_j
    cost = np.full((m + 1, max_shapes + 1), np.inf)
    cost[0, 0] = 0.0
    start = np.zeros((m + 1, max_shapes + 1), dtype=int)  # where the last run begins
    for j in range(1, m + 1):
        for k in range(1, max_shapes + 1):
            for i in range(1, j + 1):
                c = cost[i - 1, k - 1] + needs[j - 1] * (served[j] - served[i - 1])
                if c + compile_cost < cost[j, k]:
                    cost[j, k], start[j, k] = c + compile_cost, i
    k = int(np.argmin(cost[m]))  # the cheapest number of buckets (the fewest, on a tie)
    chosen, j = [], m  # walk the runs back from the largest need
    while j > 0:
        chosen.append(int(needs[j - 1]))
        j, k = start[j, k] - 1, k - 1
    return tuple(sorted(chosen))


def encode_buckets(
    token_counts: Sequence[int],
    batch_size: int,
    max_length: int,
    sort: bool = True,
    max_shapes: int = MAX_SHAPES,
) -> tuple[int, ...]:
    """The buckets for encoding sentences of these token counts in batches of ``batch_size``,
    longest first (or in the given order), as ``smart_batches`` will form them."""
    counts = np.asarray(token_counts, dtype=np.int64)
    ordered = np.sort(counts)[::-1] if sort else counts
    longest = [int(ordered[i : i + batch_size].max()) for i in range(0, len(ordered), batch_size)]
    return choose_buckets(longest, max_length, max_shapes=max_shapes)

"""Similarity between sentence embeddings, and the two applications it makes fast.

    cos_sim(a, b)[i, j]   = a_i · b_j / (||a_i|| ||b_j||)
    dot_score(a, b)[i, j] = a_i · b_j

Semantic search: for each query, the ``top_k`` corpus sentences with the highest score.
Paraphrase mining: the pairs (i, j), i < j, of one collection with the highest score.
Both are one matrix product per chunk plus a top-k: this is why encoding 10,000
sentences once and comparing vectors takes seconds, where running BERT on all
~50 million pairs would take hours.

Shapes: N queries (or sentences), M corpus sentences, D embedding size, K top_k.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from minisbert import distances

ScoreFn = Callable[[Any, Any], jax.Array]


def _as_2d(x: Any) -> jax.Array:
    x = jnp.asarray(x, dtype=jnp.float32)
    return x[None, :] if x.ndim == 1 else x  # a single vector becomes (1, D)


def cos_sim(a: Any, b: Any) -> jax.Array:  # (N, M)
    """Cosine similarity of every row of ``a`` (N, D) with every row of ``b`` (M, D).

    ``distances.cos_sim_matrix`` for anything array-like, a single vector taken as one row."""
    return distances.cos_sim_matrix(_as_2d(a), _as_2d(b))


def dot_score(a: Any, b: Any) -> jax.Array:  # (N, M)
    """Dot product of every row of ``a`` (N, D) with every row of ``b`` (M, D)."""
    return _as_2d(a) @ _as_2d(b).T


def semantic_search(
    query_embeddings: Any,  # (N, D) or (D,)
    corpus_embeddings: Any,  # (M, D)
    top_k: int = 10,
    score_function: ScoreFn = cos_sim,
    query_chunk_size: int = 100,
    corpus_chunk_size: int = 500_000,
) -> list[list[dict[str, float | int]]]:
    """For each query, the ``top_k`` best corpus entries, ``{"corpus_id", "score"}``, best first."""
    queries, corpus = _as_2d(query_embeddings), _as_2d(corpus_embeddings)
    top_k = min(top_k, corpus.shape[0])
    results: list[list[dict[str, float | int]]] = [[] for _ in range(queries.shape[0])]
    for q0 in range(0, queries.shape[0], query_chunk_size):
        candidates_score, candidates_id = [], []
        for c0 in range(0, corpus.shape[0], corpus_chunk_size):
            scores = score_function(
                queries[q0 : q0 + query_chunk_size], corpus[c0 : c0 + corpus_chunk_size]
            )  # (n, m)
            k = min(top_k, scores.shape[1])
            best, ids = jax.lax.top_k(scores, k)  # (n, k)
            candidates_score.append(np.asarray(best))
            candidates_id.append(np.asarray(ids) + c0)
        scores_np = np.concatenate(candidates_score, axis=1)  # (n, k * chunks)
        ids_np = np.concatenate(candidates_id, axis=1)
        for row in range(scores_np.shape[0]):
            order = np.argsort(-scores_np[row], kind="stable")[:top_k]
            results[q0 + row] = [
                {"corpus_id": int(ids_np[row, i]), "score": float(scores_np[row, i])} for i in order
            ]
    return results


def paraphrase_mining_embeddings(
    embeddings: Any,  # (N, D)
    top_k: int = 100,
    max_pairs: int = 500_000,
    score_function: ScoreFn = cos_sim,
    chunk_size: int = 5000,
) -> list[tuple[float, int, int]]:
    """The most similar pairs ``(score, i, j)`` with i < j, best first.

    Each sentence keeps its ``top_k`` nearest neighbours (itself excluded); the union of
    those pairs is sorted by score. A pair is found if either sentence ranks the other
    in its top_k, so with top_k >= N - 1 the result is exact.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1 (neighbours kept per sentence), not {top_k}")
    E = _as_2d(embeddings)
    N = E.shape[0]
    k = min(top_k, N - 1)  # neighbours per sentence: all the others, at most
    if k < 1:
        return []
    found_scores, found_i, found_j = [], [], []  # every (score, i, j) a top_k found, row by row
    for start in range(0, N, chunk_size):
        scores = score_function(E[start : start + chunk_size], E)  # (n, N)
        rows = jnp.arange(scores.shape[0])
        scores = scores.at[rows, rows + start].set(-jnp.inf)  # never pair i with itself
        best, ids = jax.lax.top_k(scores, k)  # (n, k)
        found_scores.append(np.asarray(best).ravel())  # (n * k,)
        found_i.append(np.repeat(np.arange(start, start + best.shape[0]), k))
        found_j.append(np.asarray(ids, np.int64).ravel())
    score = np.concatenate(found_scores)
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    real = np.isfinite(score)  # -inf scores no pair (a score function may give them)
    score, i, j = score[real], i[real], j[real]
    first, second = np.minimum(i, j), np.maximum(i, j)  # each pair as (i, j) with i < j
    # A pair found from both of its sentences counts once, where it was found first.
    _, once = np.unique(first * N + second, return_index=True)
    once.sort()  # back in the order found, so that equal scores keep it
    ranked = once[np.argsort(-score[once], kind="stable")][:max_pairs]  # best first
    return [(float(score[t]), int(first[t]), int(second[t])) for t in ranked]


def paraphrase_mining(
    encoder: Any,  # anything with .encode(sentences, batch_size=..., show_progress_bar=...)
    sentences: Sequence[str],
    batch_size: int = 32,
    top_k: int = 100,
    max_pairs: int = 500_000,
    show_progress_bar: bool | None = None,
    score_function: ScoreFn = cos_sim,
) -> list[tuple[float, int, int]]:
    """Encode ``sentences`` once, then return their most similar pairs ``(score, i, j)``."""
    embeddings = encoder.encode(
        list(sentences), batch_size=batch_size, show_progress_bar=show_progress_bar
    )
    return paraphrase_mining_embeddings(embeddings, top_k, max_pairs, score_function)

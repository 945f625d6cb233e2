"""cos_sim, semantic_search and paraphrase_mining against brute force in numpy."""

from __future__ import annotations

import numpy as np
import pytest

from minisbert.similarity import (
    cos_sim,
    dot_score,
    paraphrase_mining_embeddings,
    semantic_search,
)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_cos_sim_and_dot_score():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(7, 8))
    np.testing.assert_allclose(cos_sim(a, b), _unit(a) @ _unit(b).T, atol=1e-5)
    np.testing.assert_allclose(dot_score(a, b), a @ b.T, rtol=1e-5, atol=1e-5)
    assert cos_sim(a[0], b).shape == (1, 7)
    np.testing.assert_allclose(cos_sim([[3.0, 4.0]], [[6.0, 8.0]]), [[1.0]], atol=1e-6)


def test_semantic_search_matches_brute_force():
    rng = np.random.default_rng(1)
    queries, corpus = rng.normal(size=(4, 16)), rng.normal(size=(50, 16))
    hits = semantic_search(queries, corpus, top_k=5, corpus_chunk_size=7)
    scores = _unit(queries) @ _unit(corpus).T
    for q in range(4):
        expected = np.argsort(-scores[q])[:5]
        assert [h["corpus_id"] for h in hits[q]] == expected.tolist()
        np.testing.assert_allclose([h["score"] for h in hits[q]], scores[q, expected], atol=1e-5)


def test_paraphrase_mining_is_exact_with_large_top_k():
    rng = np.random.default_rng(2)
    E = rng.normal(size=(30, 8))
    pairs = paraphrase_mining_embeddings(E, top_k=29, chunk_size=8)
    scores = _unit(E) @ _unit(E).T
    expected = sorted(
        ((scores[i, j], i, j) for i in range(30) for j in range(i + 1, 30)), key=lambda t: -t[0]
    )
    assert len(pairs) == len(expected) == 435
    assert [(i, j) for _, i, j in pairs[:20]] == [(i, j) for _, i, j in expected[:20]]
    np.testing.assert_allclose([s for s, _, _ in pairs], [s for s, _, _ in expected], atol=1e-5)


def test_paraphrase_mining_with_small_top_k_is_the_union_of_neighbours():
    """With top_k=2, the pairs are those where either sentence ranks the other among its 2
    nearest, each once, best first; max_pairs keeps the best."""
    rng = np.random.default_rng(3)
    E = rng.normal(size=(25, 6))
    scores = _unit(E) @ _unit(E).T
    np.fill_diagonal(scores, -np.inf)
    expected = {
        (min(i, int(j)), max(i, int(j))) for i in range(25) for j in np.argsort(-scores[i])[:2]
    }
    pairs = paraphrase_mining_embeddings(E, top_k=2, chunk_size=4)
    assert {(i, j) for _, i, j in pairs} == expected
    assert len(pairs) == len(expected)
    found = [s for s, _, _ in pairs]
    assert found == sorted(found, reverse=True)
    np.testing.assert_allclose(found, [scores[i, j] for _, i, j in pairs], atol=1e-5)
    assert paraphrase_mining_embeddings(E, top_k=2, chunk_size=4, max_pairs=5) == pairs[:5]


def test_paraphrase_mining_edge_cases():
    assert paraphrase_mining_embeddings(np.ones((1, 4)), top_k=5) == []  # no pair to find
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        paraphrase_mining_embeddings(np.ones((3, 4)), top_k=0)

"""minisbert against fixtures written by the real sentence-transformers (scripts/make_reference.py).

Tolerance: max absolute difference <= 1e-5 for sentence and token embeddings (float32
on CPU; observed differences are around 1e-6).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REFERENCE

ATOL = 1e-5


@pytest.fixture(scope="module")
def reference():
    sentences = json.loads((REFERENCE / "sentences.json").read_text(encoding="utf-8"))
    data = np.load(REFERENCE / "embeddings.npz")
    offsets = np.concatenate([[0], np.cumsum(data["lengths"])])
    tokens = [data["token_embeddings"][a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    ids = [data["token_ids"][a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return sentences, data["sentence_embeddings"], tokens, ids


def test_fixture_covers_the_hard_cases(reference):
    sentences, _, tokens, _ = reference
    assert len(sentences) >= 64
    assert "" in sentences
    assert sum(len(t) == 256 for t in tokens) >= 2  # texts past max_seq_length, truncated
    assert any(ord(c) > 0x1F000 for s in sentences for c in s)  # emoji


def test_token_ids_match_reference_tokenizer(encoder, reference):
    sentences, _, _, ids = reference
    ours = encoder.tokenizer.tokenize(sentences)
    for i, (a, b) in enumerate(zip(ours, ids, strict=True)):
        assert list(a) == list(b), f"sentence {i}: {sentences[i]!r}"


def test_sentence_embeddings_match_reference(encoder, reference):
    sentences, expected, _, _ = reference
    ours = encoder.encode(sentences, batch_size=16)
    assert ours.shape == expected.shape and ours.dtype == np.float32
    assert np.abs(ours - expected).max() <= ATOL


def test_token_embeddings_match_reference(encoder, reference):
    sentences, _, expected, _ = reference
    ours = encoder.encode(sentences, batch_size=16, output_value="token_embeddings")
    assert len(ours) == len(expected)
    for i, (a, b) in enumerate(zip(ours, expected, strict=True)):
        assert a.shape == b.shape, f"sentence {i}: {a.shape} vs {b.shape}"
        assert np.abs(a - b).max() <= ATOL, f"sentence {i}: {sentences[i][:40]!r}"


@pytest.mark.slow  # the long tier: make test-slow
def test_batch_size_does_not_change_reference_embeddings(encoder, reference):
    sentences, expected, _, _ = reference
    for batch_size in (1, 7, 64):
        ours = encoder.encode(sentences, batch_size=batch_size)
        assert np.abs(ours - expected).max() <= ATOL, batch_size


def test_the_core_encoder_matches_reference_too(plain_encoder, reference):
    """``SentenceEncoder`` (smart batching, no packing): the paper's path, the same vectors."""
    assert type(plain_encoder.batcher).__name__ == "SmartBatcher"
    sentences, expected, _, _ = reference
    ours = plain_encoder.encode(sentences, batch_size=16)
    assert ours.shape == expected.shape and ours.dtype == np.float32
    assert np.abs(ours - expected).max() <= ATOL

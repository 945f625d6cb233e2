"""Side by side with the real sentence-transformers, in the same process (make test-live).

Sentences the fixtures never saw (STS-b dev, and random strings), the round trip
minisbert -> sentence-transformers folder, and a model trained by minisbert, all compared
at max absolute difference <= 1e-5.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

pytestmark = pytest.mark.live
st = pytest.importorskip("sentence_transformers")

ATOL = 1e-5


@pytest.fixture(scope="module")
def reference_model(pretrained_dir, tmp_path_factory):
    """The real library on the same weights, loaded from minisbert's own export of them."""
    from minisbert.io.convert import export_sentence_transformers

    folder = export_sentence_transformers(pretrained_dir, tmp_path_factory.mktemp("st") / "m")
    return st.SentenceTransformer(str(folder), device="cpu")


def _unseen_sentences(data_dir, n=300) -> list[str]:
    from minisbert.data import load_dataset

    pairs = load_dataset("stsb", "dev", root=data_dir)
    rng = random.Random(1234)
    sentences = [p.sentence1 for p in rng.sample(pairs, n // 2)]
    alphabet = "abcdefghijklmnopqrstuvwxyz  ,.!?éüñ日本語😀0123456789"
    sentences += [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400))) for _ in range(n // 2)
    ]
    return sentences


def test_unseen_sentences_match(encoder, reference_model, data_dir):
    sentences = _unseen_sentences(data_dir)
    ours = encoder.encode(sentences, batch_size=32)
    theirs = reference_model.encode(sentences, batch_size=32, convert_to_numpy=True)
    assert np.abs(ours - theirs).max() <= ATOL


def test_unseen_token_embeddings_match(encoder, reference_model, data_dir):
    sentences = _unseen_sentences(data_dir, n=40)
    ours = encoder.encode(sentences, output_value="token_embeddings")
    theirs = reference_model.encode(sentences, output_value="token_embeddings")
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == tuple(b.shape)
        assert np.abs(a - b.numpy()).max() <= ATOL


def test_tokenizer_ids_match_hf(encoder, reference_model, data_dir):
    sentences = _unseen_sentences(data_dir, n=100)
    preprocess = getattr(reference_model, "preprocess", reference_model.tokenize)
    for sentence, ids in zip(sentences, encoder.tokenizer.tokenize(sentences), strict=True):
        assert preprocess([sentence])["input_ids"][0].tolist() == ids


def test_round_trip_of_a_changed_model(encoder, tmp_path):
    """Perturb the weights, save in minisbert's format, export, load in the real library."""
    import jax
    from flax import nnx

    from minisbert import SentenceEncoder
    from minisbert.io.convert import export_sentence_transformers
    from minisbert.io.weights import save_params

    model = nnx.clone(encoder.model)
    state = nnx.state(model, nnx.Param)
    noisy = jax.tree.map(lambda x: x + 0.01 * jax.random.normal(jax.random.key(0), x.shape), state)
    nnx.update(model, noisy)
    folder = tmp_path / "changed"
    folder.mkdir()
    save_params(model.bert, folder / "model.safetensors")
    from minisbert.sentence_encoder import resolve_model_dir

    source = resolve_model_dir("all-MiniLM-L6-v2")
    for name in (
        "config.json",
        "sentence.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ):
        (folder / name).write_bytes((source / name).read_bytes())
    sentences = ["A changed model still loads.", "Both libraries must agree on it."]
    ours = SentenceEncoder.from_pretrained(folder).encode(sentences)
    exported = export_sentence_transformers(folder, tmp_path / "st")
    theirs = st.SentenceTransformer(str(exported), device="cpu").encode(sentences)
    assert np.abs(ours - encoder.encode(sentences)).max() > 1e-3  # really changed
    assert np.abs(ours - theirs).max() <= ATOL

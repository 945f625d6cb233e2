"""SentenceEncoder behaviour on the pretrained model: API, invariants, bad input."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest
from flax import nnx

from minisbert.fast.buckets import ENCODE_BUCKETS, MAX_SHAPES

SENTENCES = [
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
]


def test_encode_shapes_and_types(encoder):
    E = encoder.encode(SENTENCES)
    assert E.shape == (4, 384) and E.dtype == np.float32
    single = encoder.encode(SENTENCES[0])
    assert single.shape == (384,)
    np.testing.assert_allclose(single, E[0], atol=1e-6)
    assert encoder.encode([]).shape == (0, 384)
    tokens = encoder.encode(SENTENCES[0], output_value="token_embeddings")
    assert tokens.ndim == 2 and tokens.shape[1] == 384


def test_pipeline_normalizes(encoder):
    E = encoder.encode(SENTENCES, normalize_embeddings=False)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)


def test_embedding_ignores_batch_neighbours_and_padding(encoder):
    alone = encoder.encode([SENTENCES[0]])[0]
    long_neighbour = "word " * 200
    with_neighbours = encoder.encode([long_neighbour, SENTENCES[0], "hi"])[1]
    np.testing.assert_allclose(alone, with_neighbours, atol=1e-6)


def test_order_is_restored_after_length_sorting(encoder):
    shuffled = [SENTENCES[i] for i in (2, 0, 3, 1)]
    E = encoder.encode(SENTENCES)
    F = encoder.encode(shuffled)
    np.testing.assert_allclose(F, E[[2, 0, 3, 1]], atol=1e-6)


@pytest.mark.slow  # eager BERT (13.0 s at load 7)
def test_jit_equals_eager(encoder):
    ids, mask = _pad(encoder, SENTENCES)
    with jax.disable_jit():
        eager = np.asarray(encoder.model(ids, mask))
    jitted = np.asarray(nnx.jit(lambda m, i, a: m(i, a))(encoder.model, ids, mask))
    np.testing.assert_allclose(eager, jitted, atol=1e-5)


@pytest.mark.slow  # the long tier: make test-slow
def test_compiled_shapes_are_bounded(encoder):
    encoder.compiled_shapes.clear()
    rng = np.random.default_rng(0)
    words = "the a man dog runs over quickly under bright blue sky".split()
    sentences = [" ".join(rng.choice(words, size=rng.integers(1, 120))) for _ in range(300)]
    encoder.encode(sentences, batch_size=32)
    lengths = {shape[1] for _, shape in encoder.compiled_shapes}
    assert lengths <= set(ENCODE_BUCKETS) | {encoder.max_seq_length}
    assert len(encoder.compiled_shapes) <= MAX_SHAPES


def test_non_string_item_names_its_index(encoder):
    with pytest.raises(TypeError, match=r"sentences\[2\] is int"):
        encoder.encode(["a", "b", 3])
    with pytest.raises(TypeError, match=r"sentences\[0\] is NoneType"):
        encoder.encode([None])
    with pytest.raises(TypeError, match="sentences is None"):
        encoder.encode(None)
    with pytest.raises(TypeError, match="decode"):
        encoder.encode([b"bytes"])


def test_accepts_generators_and_numpy_arrays(encoder):
    expected = encoder.encode(SENTENCES)
    np.testing.assert_allclose(encoder.encode(s for s in SENTENCES), expected, atol=1e-6)
    np.testing.assert_allclose(encoder.encode(np.array(SENTENCES)), expected, atol=1e-6)


def test_long_text_is_truncated_with_a_warning(encoder):
    encoder.tokenizer.warned_truncation = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = encoder.encode("word " * 1000)
        b = encoder.encode("word " * 2000)
    truncated = [w for w in caught if "truncated" in str(w.message)]
    assert len(truncated) == 1  # warned once
    assert truncated[0].filename == __file__  # at the line that called encode
    np.testing.assert_allclose(a, b, atol=1e-6)  # both are cut at 256 tokens


def test_training_tokenization_warns_as_encode_does(encoder):
    encoder.tokenizer.warned_truncation = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = encoder.tokenizer.tokenize(["word " * 1000, "a short one"])
    truncated = [w for w in caught if "truncated" in str(w.message)]
    assert len(truncated) == 1 and truncated[0].filename == __file__
    assert len(ids[0]) == encoder.max_seq_length


def test_bad_arguments(encoder):
    with pytest.raises(ValueError, match="output_value"):
        encoder.encode(["a"], output_value="pooler")
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(["a"], batch_size=0)


def _pad(encoder, sentences):
    from minisbert.tokenizer import pad_batch

    ids = encoder.tokenizer.tokenize(sentences)
    return pad_batch(ids, max(map(len, ids)))


def test_bfloat16_mode_stays_close_to_float32(encoder, pretrained_dir):
    from minisbert import SentenceEncoder
    from minisbert.fast import compute_in_bfloat16

    half = SentenceEncoder.from_pretrained(pretrained_dir)
    compute_in_bfloat16(half.model)
    full_e, half_e = encoder.encode(SENTENCES), half.encode(SENTENCES)  # (4, D) each
    assert half_e.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: unit vectors move by ~1e-3 per coordinate, so
    # they differ from float32's but point the same way (cosine above 0.999).
    assert np.abs(half_e - full_e).max() > 1e-5
    np.testing.assert_allclose(half_e, full_e, atol=2e-2)
    assert (np.sum(half_e * full_e, axis=1) > 0.999).all()


def test_a_hugging_face_dtype_is_ignored():
    from minisbert.config import BertConfig

    # A Hugging Face config's "dtype" is how its weights are stored: ignored, not refused.
    assert "dtype" not in BertConfig.from_dict({"dtype": "float16"}).to_dict()

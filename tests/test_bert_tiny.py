"""Shape and masking checks on a tiny odd-sized BERT (hidden 36, 3 heads, vocab 99)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tiny import TINY_CONFIG, make_tiny_model_dir

from minisbert.bert import BertEncoder
from minisbert.config import BertConfig, ConfigError
from minisbert.sentence_encoder import SentenceEncoder


@pytest.fixture(scope="module")
def tiny_bert() -> BertEncoder:
    """The tiny BERT in eval mode, built once: building runs every initialiser eagerly."""
    model = BertEncoder(TINY_CONFIG, rngs=nnx.Rngs(0))
    model.eval()
    return model


def test_output_shape(tiny_bert):
    model = tiny_bert
    ids = jnp.ones((2, 5), jnp.int32)
    out = model(ids, jnp.ones((2, 5), jnp.int32))
    assert out.shape == (2, 5, 36)


def test_padding_does_not_change_real_tokens(tiny_bert):
    model = tiny_bert
    ids = jnp.array([[2, 40, 41, 3]], jnp.int32)
    short = model(ids, jnp.ones((1, 4), jnp.int32))
    padded_ids = jnp.array([[2, 40, 41, 3, 0, 0, 0]], jnp.int32)
    padded = model(padded_ids, jnp.array([[1, 1, 1, 1, 0, 0, 0]], jnp.int32))
    np.testing.assert_allclose(short, padded[:, :4], atol=1e-5)


def test_dropout_on_in_train_off_in_eval():
    model = BertEncoder(TINY_CONFIG, rngs=nnx.Rngs(0))
    ids, mask = jnp.array([[2, 40, 41, 3]]), jnp.ones((1, 4), jnp.int32)
    model.eval()
    np.testing.assert_array_equal(model(ids, mask), model(ids, mask))
    model.train()
    assert not np.allclose(model(ids, mask), model(ids, mask))


def test_config_checks():
    with pytest.raises(ConfigError, match="divisible"):
        BertConfig(hidden_size=36, num_attention_heads=5)
    with pytest.raises(ConfigError, match="gelu"):
        BertConfig(hidden_act="relu")


def test_tiny_folder_loads_and_encodes(tmp_path):
    folder = make_tiny_model_dir(tmp_path / "tiny", normalize=True)
    enc = SentenceEncoder.from_pretrained(folder)
    E = enc.encode(["the cat sat on the mat", "a dog runs", ""])
    assert E.shape == (3, 36)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)


def test_gelu_is_the_exact_gelu():
    """minisbert's erf GELU against the normal CDF in float64 (scipy), value and gradient.

    Tolerance: 1e-6 in float32 (a few float32 roundings of values up to 10).
    """
    import jax
    from scipy.special import ndtr  # the normal CDF, Phi

    from minisbert.bert import gelu

    x = np.linspace(-10, 10, 20_001)  # (P,)
    exact = x * ndtr(x)  # (P,) float64
    assert np.abs(np.asarray(gelu(jnp.asarray(x, jnp.float32))) - exact).max() < 1e-6
    # d/dx x Phi(x) = Phi(x) + x phi(x)
    slope = ndtr(x) + x * np.exp(-(x**2) / 2) / np.sqrt(2 * np.pi)
    grad = jax.vmap(jax.grad(gelu))(jnp.asarray(x, jnp.float32))
    assert np.abs(np.asarray(grad) - slope).max() < 1e-5

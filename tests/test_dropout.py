"""minisbert.dropout.Dropout: nnx.Dropout's behaviour, drawn from 16-bit random numbers.

Each test would fail on a plausible mistake: a wrong threshold or scale, halves taken from
the wrong words (an odd size), a key reused between calls, the mask ignored in the gradient.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from minisbert.dropout import LEVELS, Dropout

RATE = 0.1
THRESHOLD = round(RATE * LEVELS)  # 6554: a draw below it drops the value
KEEP = 1 - THRESHOLD / LEVELS  # 0.8999939


def test_eval_mode_returns_the_input_unchanged():
    layer = Dropout(RATE, rngs=nnx.Rngs(0))
    layer.eval()
    x = jnp.arange(12.0).reshape(3, 4)
    assert layer(x) is x


def test_drops_at_the_rate_and_scales_the_rest():
    layer = Dropout(RATE, rngs=nnx.Rngs(0))
    x = jnp.full((999, 1001), 2.0)  # an odd number of values: the last word is half used
    y = np.asarray(layer(x))
    dropped = np.mean(y == 0)
    # 999,999 Bernoulli draws: the standard error of the rate is 3e-4; allow 5 of them.
    assert abs(dropped - THRESHOLD / LEVELS) < 1.5e-3, dropped
    np.testing.assert_allclose(y[y != 0], 2.0 / KEEP, rtol=1e-6)  # kept values, scaled up
    assert abs(y.mean() - 2.0) < 5e-3  # so the expected output is the input


def test_masks_are_independent_across_positions():
    """Neighbouring values come from the two halves of one 32-bit word: they must not be
    dropped together more often than chance."""
    layer = Dropout(0.5, rngs=nnx.Rngs(1))
    dropped = np.asarray(layer(jnp.ones((500_000,)))) == 0
    both = np.mean(dropped[0::2] & dropped[1::2])  # the two halves of each word
    assert abs(both - 0.25) < 5e-3, both


def test_every_call_draws_a_new_mask_and_a_seed_repeats_them():
    x = jnp.ones((64, 64))
    first = Dropout(RATE, rngs=nnx.Rngs(3))
    again = Dropout(RATE, rngs=nnx.Rngs(3))
    a, b = first(x), first(x)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(again(x), a)
    np.testing.assert_array_equal(again(x), b)


def test_gradient_is_the_mask_over_the_keep_probability():
    layer = Dropout(RATE, rngs=nnx.Rngs(0))
    x = jnp.linspace(0.5, 1.5, 3 * 5 * 7).reshape(3, 5, 7)  # no zeros: y == 0 means dropped
    twin = nnx.clone(layer)  # the same key and call count: the same mask
    y = layer(x)
    grad = nnx.grad(lambda x, twin: twin(x).sum())(x, twin)
    keep = np.asarray(y) != 0
    np.testing.assert_allclose(grad, keep / KEEP, rtol=1e-6)


def test_keeps_the_input_dtype():
    layer = Dropout(RATE, rngs=nnx.Rngs(0))
    assert layer(jnp.ones((4, 4), jnp.bfloat16)).dtype == jnp.bfloat16


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_rejects_a_rate_outside_0_1(rate):
    with pytest.raises(ValueError, match=r"dropout rate must be in \[0, 1\)"):
        Dropout(rate, rngs=nnx.Rngs(0))


def test_rate_zero_is_the_identity_in_train_mode():
    layer = Dropout(0.0, rngs=nnx.Rngs(0))
    x = jnp.ones((8,))
    np.testing.assert_array_equal(layer(x), x)


def test_use_16bit_dropout_swaps_every_layer_and_keeps_its_stream():
    from tiny import TINY_CONFIG

    from minisbert.config import SentenceConfig
    from minisbert.fast import use_16bit_dropout
    from minisbert.sentence_encoder import SentenceModel

    model = SentenceModel(TINY_CONFIG, SentenceConfig(32), rngs=nnx.Rngs(0))
    layers = [n for _, n in nnx.iter_graph(model) if isinstance(n, nnx.Dropout)]
    assert len(layers) == 1 + 3 * TINY_CONFIG.num_hidden_layers  # embeddings + 3 per layer
    keys = [np.asarray(jax.random.key_data(layer.rngs.key.get_value())) for layer in layers]
    use_16bit_dropout(model)
    swapped = [n for _, n in nnx.iter_graph(model) if isinstance(n, nnx.Dropout)]
    assert [type(n) for n in swapped] == [Dropout] * len(layers)
    assert [n.rate for n in swapped] == [layer.rate for layer in layers]
    after = [np.asarray(jax.random.key_data(n.rngs.key.get_value())) for n in swapped]
    assert all((a == b).all() for a, b in zip(keys, after, strict=True))

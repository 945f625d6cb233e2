"""The gradient cache computes the full batch's loss and gradient, M sentences at a time.

With dropout off the cached step must equal the plain one (``nnx.value_and_grad`` through every
sentence at once); with dropout on it must equal the same chunks embedded with the graph kept,
from the same dropout keys: the proof that pass 3 replays pass 1's masks.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tiny import TINY_CONFIG

from minisbert.config import SentenceConfig
from minisbert.grad_cache import cached_loss_and_grad
from minisbert.losses import SoftmaxClassifier, get_loss, make_loss
from minisbert.sentence_encoder import SentenceModel
from minisbert.train import Trainable, compute_loss, seed_dropout

CONFIG = dataclasses.replace(TINY_CONFIG, num_hidden_layers=1)
S, B, T = 2, 6, 8


@nnx.jit(static_argnames="classifier")
def build(classifier: bool) -> Trainable:
    model = SentenceModel(CONFIG, SentenceConfig(32), rngs=nnx.Rngs(0))
    return Trainable(model, SoftmaxClassifier(36, 3, rngs=nnx.Rngs(1)) if classifier else None)


def batch(sides: int = S) -> tuple[jax.Array, jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    input_ids = jnp.asarray(rng.integers(5, 99, size=(sides, B, T)))  # (S, B, T)
    lengths = rng.integers(3, T + 1, size=(sides, B))  # (S, B)
    mask = jnp.asarray(np.arange(T) < lengths[..., None], jnp.int32)  # (S, B, T)
    return input_ids, mask, jnp.asarray([0, 1, 2, 0, 1, 2])


def twins(classifier: bool) -> tuple[Trainable, Trainable]:
    """Two trainables with the same weights and the same dropout keys."""
    first = build(classifier)
    seed_dropout(first, 7)
    graphdef, state = nnx.split(first)
    return nnx.merge(graphdef, state), nnx.merge(graphdef, jax.tree.map(jnp.copy, state))


def assert_same(got: tuple[jax.Array, nnx.State], want: tuple[jax.Array, nnx.State]) -> None:
    np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=1e-5)
    flat_got, flat_want = jax.tree.leaves(got[1]), jax.tree.leaves(want[1])
    assert len(flat_got) == len(flat_want)
    for g, w in zip(flat_got, flat_want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)


# Compiled, as the train step is: eager JAX runs op by op, many times slower on these shapes.
cached_jit = nnx.jit(cached_loss_and_grad, static_argnames=("loss_fn", "mini_batch_size"))


@nnx.jit(static_argnames=("loss_fn", "embed"))
def plain_jit(t: Trainable, batch: tuple, loss_fn: object, embed: object = None) -> tuple:
    if embed is not None:
        return nnx.value_and_grad(lambda t: embed(t, batch, loss_fn))(t)
    return nnx.value_and_grad(lambda t: compute_loss(t, *batch, loss_fn))(t)


CASES = [  # the long tier (make test-slow) compiles the rest: keeps make test fast
    ("mnrl", False, 3),
    pytest.param("mnrl_symmetric", False, 4, marks=pytest.mark.slow),  # chunks of 4 and 2
    pytest.param("softmax", True, 5, marks=pytest.mark.slow),  # the head's gradient too
]


@pytest.mark.parametrize("name, classifier, mini_batch", CASES)
def test_dropout_off_equals_the_full_batch(name: str, classifier: bool, mini_batch: int) -> None:
    loss_fn = make_loss(get_loss(name), name)
    plain, cached = twins(classifier)
    plain.eval()
    cached.eval()
    input_ids, mask, labels = batch()
    labels_or_none = labels if classifier else None
    want = plain_jit(plain, (input_ids, mask, labels_or_none), loss_fn)
    got = cached_jit(cached, (input_ids, mask, labels_or_none), loss_fn, mini_batch)
    assert_same(got, want)


@pytest.mark.slow  # the long tier: two more compiles
def test_dropout_on_replays_the_chunks_masks() -> None:
    loss_fn = make_loss(get_loss("mnrl_symmetric"), "mnrl_symmetric")
    plain, cached = twins(False)
    plain.train()
    cached.train()
    input_ids, mask, _ = batch()

    def chunked_with_graph(t: Trainable, batch: tuple, loss_fn: object) -> jax.Array:
        input_ids, mask, _ = batch  # the same chunks as the cache's, in the same order
        sides = [
            jnp.concatenate([t.model(input_ids[s, i : i + 4], mask[s, i : i + 4]) for i in (0, 4)])
            for s in range(S)
        ]
        return loss_fn(*sides)

    want = plain_jit(plain, (input_ids, mask, None), loss_fn, chunked_with_graph)
    got = cached_jit(cached, (input_ids, mask, None), loss_fn, 4)
    assert_same(got, want)
    # The streams moved on as the plain step's did, and dropout was on (else this is no test).
    keys = [jax.random.key_data(s.key[...]) for _, s in nnx.iter_graph(cached)
            if isinstance(s, nnx.RngStream)]  # fmt: skip
    counts = [int(s.count[...]) for _, s in nnx.iter_graph(cached) if isinstance(s, nnx.RngStream)]
    plain_counts = [
        int(s.count[...]) for _, s in nnx.iter_graph(plain) if isinstance(s, nnx.RngStream)
    ]
    assert keys and counts == plain_counts and max(counts) > 0
    plain.eval()
    off = compute_loss(plain, input_ids, mask, None, loss_fn)
    assert abs(float(off) - float(got[0])) > 1e-4


def test_mini_batch_must_be_positive() -> None:
    trainable = build(False)
    with pytest.raises(ValueError, match="mini_batch_size must be >= 1, not 0"):
        cached_loss_and_grad(trainable, batch(), get_loss("mnrl").function, 0)

"""Dropout whose random numbers cost half as much: ``nnx.Dropout`` with 16-bit draws; and
one rate for every dropout layer of a model (``--dropout``).

Dropout at rate p zeroes each value with probability p and scales the others up, so that
the expected output equals the input:

    keep_i ~ Bernoulli(1 - p)          y_i = keep_i * x_i / (1 - p)

``nnx.Dropout`` draws keep_i as ``uniform_i >= p``, one 32-bit random number per value.
JAX's random numbers are counter-based (Threefry: 20 rounds of add, rotate and xor per pair
of 32-bit words), and a training step draws millions of them, most for the attention
probabilities (N x T x T per sentence and layer): a visible share of a step on a CPU
(measured in bench/README.md).

A dropout decision needs far fewer than 32 bits. Here each 32-bit word is cut into two
16-bit halves (a bitcast, which moves no data), one per value:

    words  = random_bits(key, ceil(n / 2))          (ceil(n/2),) uint32
    halves = bitcast(words, uint16)                 (ceil(n/2), 2) uint16, uniform on 0..65535
    keep   = first n halves >= round(p * 65536)     (n,), reshaped to the input's shape

So the same masks cost half the Threefry work. The dropout rate becomes
round(p * 65536) / 65536: 0.1000061 for p = 0.1. The scale uses that exact rate, so the
expected output still equals the input.

Everything else is ``nnx.Dropout``'s: the same RNG stream (a fresh key per call, saved in
checkpoints), ``model.train()`` turns it on and ``model.eval()`` off. Two of its options are
left out because BERT uses neither: ``broadcast_dims`` (one mask shared along some axes) and
the per-call ``deterministic=`` / ``rngs=`` arguments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

LEVELS = 2**16  # the values a 16-bit draw can take


class Dropout(nnx.Dropout):
    """``nnx.Dropout``, drawing 16 random bits per value instead of 32."""

    def __init__(self, rate: float, *, rngs: nnx.Rngs):
        if not 0 <= rate < 1:
            raise ValueError(f"dropout rate must be in [0, 1), not {rate!r}")
        super().__init__(rate, rngs=rngs)

    def __call__(self, inputs: jax.Array) -> jax.Array:  # any shape, returned unchanged
        if self.deterministic or self.rate == 0:
            return inputs
        threshold = round(self.rate * LEVELS)  # a 16-bit draw below it drops the value
        keep_prob = 1 - threshold / LEVELS  # 1 - p, exactly as drawn
        n = inputs.size
        words = jax.random.bits(self.rngs(), (-(-n // 2),), jnp.uint32)  # (ceil(n/2),)
        halves = jax.lax.bitcast_convert_type(words, jnp.uint16)  # (ceil(n/2), 2)
        keep = (halves.reshape(-1)[:n] >= threshold).reshape(inputs.shape)
        return jnp.where(keep, inputs / keep_prob, 0).astype(inputs.dtype)


def use_16bit_dropout(model: nnx.Module) -> nnx.Module:
    """Make every ``nnx.Dropout`` of ``model`` draw 16-bit numbers: returns ``model``, changed.

    Each layer keeps its rate and its random stream (keys and counters, as checkpoints save
    them); only the draw changes, so the masks differ from ``nnx.Dropout``'s while their
    distribution is the same (up to the rate's rounding).
    """
    for _, node in nnx.iter_graph(model):
        if type(node) is nnx.Dropout:
            if not 0 <= node.rate < 1:
                raise ValueError(f"dropout rate must be in [0, 1), not {node.rate!r}")
            node.__class__ = Dropout  # same attributes; __call__ is the 16-bit one
    return model


def set_dropout_rate(model: nnx.Module, rate: float) -> nnx.Module:
    """Give every dropout layer of ``model`` the rate ``rate`` (0: no dropout at all): returns
    ``model``, changed. Only training sees it: ``model.eval()`` turns dropout off anyway, and
    a saved model keeps its config's rates."""
    if not 0 <= rate < 1:
        raise ValueError(f"dropout rate must be in [0, 1), not {rate!r}")
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Dropout):
            node.rate = rate
    return model

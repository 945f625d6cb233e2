"""A Dense layer after pooling: a linear projection of the sentence vector, then an activation.

    u' = activation(u W + b)          u (B, D_in), W (D_in, D_out), b (D_out,)

Some sentence-transformers models add one or more of these between pooling and
normalisation, e.g. LaBSE (768 -> 768, tanh) or models that shrink their vectors
(384 -> 128, identity). sentence-transformers' default activation is tanh.

Shapes: B batch, D_in and D_out the layer's input and output sizes.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from minisbert.config import ACTIVATION_NAMES, DenseConfig

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "identity": lambda x: x,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # torch.nn.GELU() is the exact one
    "sigmoid": jax.nn.sigmoid,
}
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES, "config.ACTIVATION_NAMES names these activations"


class Dense(nnx.Module):
    def __init__(self, config: DenseConfig, *, rngs: nnx.Rngs):
        self.activation = config.activation
        self.linear = nnx.Linear(
            config.in_features, config.out_features, use_bias=config.bias, rngs=rngs
        )

    def __call__(self, u: jax.Array) -> jax.Array:  # (B, D_in) -> (B, D_out)
        return ACTIVATIONS[self.activation](self.linear(u))

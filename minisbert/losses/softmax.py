"""The SBERT classification objective: a softmax classifier on top of the two sentence embeddings.

Shapes: B batch, D hidden, C classes (labels), K number of vectors concatenated.

Sentence-BERT (Reimers & Gurevych 2019, section 3) trains on NLI pairs with

    o = softmax(W [u; v; |u - v|])      W: (C, 3D)
    loss = cross-entropy(o, label)       mean over the batch

The classifier is thrown away after training; only the encoder that made u and v is kept.
The paper's ablation (its Table 6) tries other concatenations, for example (u, v), (|u - v|),
(u * v), (|u - v|, u * v), (u, v, u * v) and (u, v, |u - v|, u * v); (u, v, |u - v|) was best,
and it is the default both here and in sentence-transformers' SoftmaxLoss. The library always
concatenates in the order u, v, |u - v|, u * v; here `concat` may list any subset in any order.

Initialisation differs: nnx.Linear draws the weights lecun-normal with zero bias, torch.nn.Linear
(the library) uniform in +-1/sqrt(K D) for both. Neither paper nor library makes anything of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from minisbert.distances import abs_zero_grad

CONCAT_PARTS = ("u", "v", "abs_diff", "mul")


def _part(name: str, u: jax.Array, v: jax.Array) -> jax.Array:  # (B, D)
    if name == "u":
        return u
    if name == "v":
        return v
    if name == "abs_diff":
        return abs_zero_grad(u - v)  # |u - v|, gradient 0 where u = v, as in torch
    return u * v  # "mul"


class SoftmaxClassifier(nnx.Module):
    """logits = W [p_1(u, v); ...; p_K(u, v)] + b, each p_k one of u, v, |u - v|, u * v.

    **A randomly initialised head needs its own learning rate.** It starts random, and at
    the encoder's 2e-5 it stays nearly random for the whole run while its noise is
    back-propagated into a good encoder; and its inputs are pieces of unit vectors, so it
    needs large weights. ``minisbert train`` therefore gives it its own rate (``--head-lr``,
    default ``train_config.HEAD_LR``, 3e-2) and lets it learn alone, the encoder frozen, for
    the first 20% of the steps (``--probe-steps``, default ``PROBE_RATIO``): a linear probe,
    then fine-tuning, so that the encoder only sees a classifier that already separates the
    classes. What each of the two is worth in held-out NLI accuracy and STS-b Spearman, and
    the paper's Table 6 measured the same way: bench/README.md, "The classification
    objective" (``make recipes RECIPES=ablation``).
    """

    def __init__(
        self,
        dim: int,
        num_labels: int,
        *,
        concat: Sequence[str] = ("u", "v", "abs_diff"),
        rngs: nnx.Rngs,
    ) -> None:
        concat = tuple(concat)
        unknown = [name for name in concat if name not in CONCAT_PARTS]
        if not concat or unknown or len(set(concat)) != len(concat):
            raise ValueError(
                f"concat must be a non-empty list of distinct names from {CONCAT_PARTS}, "
                f"got {concat}"
            )
        self.concat = concat
        self.linear = nnx.Linear(len(concat) * dim, num_labels, rngs=rngs)  # (K D) -> C

    def features(self, u: jax.Array, v: jax.Array) -> jax.Array:  # (B, D), (B, D) -> (B, K D)
        """[p_1(u, v); ...; p_K(u, v)], the classifier's input."""
        return jnp.concatenate([_part(name, u, v) for name in self.concat], axis=-1)

    def __call__(self, u: jax.Array, v: jax.Array) -> jax.Array:  # (B, D), (B, D) -> (B, C)
        return self.linear(self.features(u, v))


def softmax_loss(
    classifier: SoftmaxClassifier,
    u: jax.Array,  # (B, D) first sentence of each pair
    v: jax.Array,  # (B, D) second sentence
    labels: jax.Array,  # (B,) integer class, or (B, C) class probabilities
) -> jax.Array:  # ()
    """mean_i -log softmax(W [u_i; v_i; |u_i - v_i|])[label_i], the SBERT NLI objective.

    With (B, C) probabilities the loss is the soft-label cross-entropy -sum_c p_ic log o_ic,
    which the library also accepts.
    """
    logits = classifier(u, v)  # (B, C)
    if labels.ndim == 2:
        return jnp.mean(optax.softmax_cross_entropy(logits, labels))
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

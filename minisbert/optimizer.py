"""The optimiser: the SBERT paper's (as sentence-transformers trains it), written with optax.

    g      = grad(loss) * min(1, max_grad_norm / ||grad(loss)||)    clipped at global norm 1
    theta <- theta - lr(t) (m_hat / (sqrt(v_hat) + 1e-8) + 0.01 theta)   AdamW

weight decay 0.01 on everything except biases and LayerNorm parameters, and "WarmupLinear":
the learning rate climbs from 0 over the warm-up steps W (10% of all N steps, as in the
paper's and sentence-transformers' training examples) and falls linearly back to 0,

    lr(t) = lr * max(0, min(t / W, (N - t) / (N - W)))

A loss with parameters of its own (the softmax head, which starts random) gets its own
learning rate ``head_lr``: see ``minisbert.losses.softmax.SoftmaxClassifier``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax


def warmup_linear(lr: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
    """lr(t) = lr * max(0, min(t / W, (N - t) / (N - W))); the update at step t uses lr(t)."""

    def schedule(count: jax.Array) -> jax.Array:
        t = jnp.asarray(count, jnp.float32)
        warm = t / warmup_steps if warmup_steps > 0 else 1.0
        decay = (total_steps - t) / max(total_steps - warmup_steps, 1)
        return lr * jnp.maximum(0.0, jnp.minimum(warm, decay))

    return schedule


def group_schedule(lr: float, total_steps: int, start: int, warmup_ratio: float) -> optax.Schedule:
    """0 until step ``start``, then warm-up-linear over the remaining steps."""
    steps = total_steps - start
    schedule = warmup_linear(lr, math.ceil(warmup_ratio * steps), steps)
    if not start:
        return schedule
    return optax.join_schedules([optax.constant_schedule(0.0), schedule], [start])


def decays(params: Any) -> Any:
    """Weight-decay mask: True for kernels and embedding tables, False for biases and LayerNorm.

    sentence-transformers excludes names containing "bias", "LayerNorm.weight" and
    "LayerNorm.bias"; in minisbert's names those are exactly the ``bias`` and ``scale``
    leaves, so "decay kernels and embeddings" is the same set.
    """

    def leaf_decays(path: tuple, _: Any) -> bool:
        names = [p.key for p in path if isinstance(p, jax.tree_util.DictKey)]
        return names[-1] in ("kernel", "embedding")

    return jax.tree_util.tree_map_with_path(leaf_decays, params)


def is_head(params: Any) -> Any:
    """Parameter-group labels: "head" for a loss's own parameters (``Trainable.classifier``),
    "encoder" for the sentence model's."""

    def label(path: tuple, _: Any) -> str:
        names = [p.key for p in path if isinstance(p, jax.tree_util.DictKey)]
        return "head" if names[0] == "classifier" else "encoder"

    return jax.tree_util.tree_map_with_path(label, params)


@functools.cache
def make_optimizer(
    lr: float,
    total_steps: int,
    *,
    head_lr: float | None = None,
    probe_steps: int = 0,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
) -> optax.GradientTransformation:
    """Clip at global norm, then AdamW with a warm-up-linear schedule and masked weight decay.

    With ``head_lr``, two parameter groups: the encoder learns at ``lr``, a loss's own
    parameters (the softmax head, which starts random) at ``head_lr``, each with its own
    warm-up-linear schedule (as torch's AdamW with two parameter groups); the clipping
    still sees one global norm over both, as in torch.
    With ``probe_steps`` P the encoder's rate is 0 for the first P steps (the head alone
    learns: a linear probe, then fine-tuning, as in Kumar et al. 2022), and its warm-up
    and decay then run over the remaining steps.

    Cached: ``nnx.Optimizer`` keeps the transformation as static structure, so a new but
    identical one would make ``nnx.jit`` compile the train step again; the same arguments
    now give the same object.
    """

    def rate(peak: float, start: int) -> optax.GradientTransformation:
        return optax.scale_by_learning_rate(group_schedule(peak, total_steps, start, warmup_ratio))

    # optax.adamw is exactly this chain: Adam's step, plus decoupled weight decay, times -lr(t).
    adam = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)  # torch.optim.AdamW's defaults
    decay = optax.add_decayed_weights(weight_decay, mask=decays)
    if head_lr is None:
        rates = rate(lr, probe_steps)
    else:  # only the last factor differs per group, so Adam's moments stay one tree
        rates = optax.multi_transform(
            {"encoder": rate(lr, probe_steps), "head": rate(head_lr, 0)}, is_head
        )
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.chain(adam, decay, rates))

"""Dense products in bfloat16, for GPUs and TPUs.

bfloat16 keeps float32's exponent and 8 bits of mantissa: half the memory traffic, and
what GPU and TPU matrix units run fastest. ``compute_in_bfloat16(model)`` makes every
``nnx.Linear`` of the model cast its input and kernel to bfloat16 before the product
(``nnx.Linear``'s own ``dtype`` setting). The parameters stay float32, and so do the
embeddings, the residual sums and LayerNorm (float32 + bfloat16 is float32 in JAX); the
attention scores, softmax and GELU compute in bfloat16, as the products they follow.
On a CPU without bfloat16 units it is slower, not faster (``make bench`` measures both).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx


def compute_in_bfloat16(model: nnx.Module) -> nnx.Module:
    """Every ``nnx.Linear`` of ``model`` computes in bfloat16; returns ``model``, changed."""
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Linear):
            node.dtype = jnp.bfloat16
    return model

"""minisbert.fast: the speed path, plugged into the teaching core.

The core (``minisbert.bert``, ``sentence_encoder``, ``train``) shows the paper's method
plainly: one sentence per padded row, one device, ``nnx.Dropout``. This package computes
the same things faster, and never changes the core's code; it is plugged in:

    FastEncoder.from_pretrained(path)            # encode packed (what the command uses)
    train(config, steps=PackedSteps())           # what `minisbert train` runs

    packing.py      several sentences to a row: positions, segment masks, first/best fit
    model.py        the sentence model on packed rows (same modules, per-query masks)
    encode.py       PackedBatcher, FastEncoder: encode's packed rows, finely bucketed padding
    buckets.py      shape buckets chosen per call or per run (at most 8 programs)
    training.py     PackedSteps: packed train step, row planning, data parallelism
    sharding.py     data parallelism over a device mesh (jax.sharding)
    (16-bit dropout is the core's minisbert/dropout.py, an option of every run: dropout_bits)
    bfloat16.py     dense products in bfloat16 (GPUs, TPUs)
    host_memory.py  glibc allocator settings for the training command

tests/test_packing.py proves each fast piece equal to its core counterpart: embeddings,
losses, gradients, and training steps.
"""

from minisbert.dropout import use_16bit_dropout
from minisbert.fast.bfloat16 import compute_in_bfloat16
from minisbert.fast.encode import FastEncoder, PackedBatcher
from minisbert.fast.model import embed_packed
from minisbert.fast.training import PackedSteps

__all__ = [
    "FastEncoder",
    "PackedBatcher",
    "PackedSteps",
    "compute_in_bfloat16",
    "embed_packed",
    "use_16bit_dropout",
]

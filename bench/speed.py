"""Encode, paraphrase-mining and memory measurements, minisbert vs sentence-transformers.

Every figure is a best-of-``repeats`` wall time on the same sentences in the same process,
after a warm-up call (so jit compilation and torch's first-call costs are excluded, and
reported separately).

FLOPs of one sentence of T real tokens through L layers (multiply-add = 2 FLOPs):
    projections Q, K, V, O   4 * 2 * T * D^2
    feed-forward             2 * 2 * T * D * F
    attention scores, mix    2 * 2 * T^2 * D
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """float32 GFLOP/s of one large jitted matrix product: this machine's practical peak."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    seconds = best_time(lambda: matmul(a, b).block_until_ready(), repeats)
    return 2 * n**3 / seconds / 1e9


def sentence_flops(token_counts: np.ndarray, D: int, F: int, L: int) -> float:
    T = token_counts.astype(np.float64)
    per_layer = 8 * T * D**2 + 4 * T * D * F + 4 * T**2 * D
    return float(np.sum(per_layer * L))


def encode_throughput(
    encode: Callable[[list[str], int], object],
    sentences: list[str],
    batch_size: int,
    repeats: int = 3,
) -> float:
    encode(sentences[: batch_size * 4], batch_size)  # warm-up
    return len(sentences) / best_time(lambda: encode(sentences, batch_size), repeats)


def compile_seconds(encoder, shape: tuple[str, tuple[int, ...]]) -> float:
    """Seconds to trace, lower and compile the sentence-embedding program for one shape of
    ``encoder.compiled_shapes``: ("packed", (R, L, n)) or ("sentence_embedding", (B, T)).

    Timed through jax's ahead-of-time API (``.lower(...).compile()``), so the figure is the
    compiler's alone, not a difference of two noisy wall times.
    """
    from flax import nnx

    from minisbert.fast.encode import _packed_embeddings
    from minisbert.fast.packing import PackedBatch
    from minisbert.sentence_encoder import _sentence_embeddings

    graphdef, state = nnx.split(encoder.model)
    what, dims = shape
    jax.clear_caches()
    start = time.perf_counter()
    if what == "packed":
        R, L, n = dims
        rows, sentences = np.zeros((R, L), np.int32), np.zeros((n, L), np.int32)
        batch = PackedBatch(rows, rows, rows, sentences, sentences)
        _packed_embeddings.lower(graphdef, state, batch).compile()
    else:
        ids = np.zeros(dims, np.int32)
        _sentence_embeddings.lower(graphdef, state, ids, ids).compile()
    return time.perf_counter() - start


def first_call_seconds(encoder, sentences: list[str]) -> tuple[float, float, int]:
    """Compile seconds of a user's first call (32 sentences), of every shape encoding all of
    ``sentences`` at batch 32 needs, and how many shapes that is."""
    encoder.compiled_shapes.clear()
    encoder.encode(sentences[:32], batch_size=32)
    first = sorted(encoder.compiled_shapes)
    encoder.compiled_shapes.clear()
    encoder.encode(sentences, batch_size=32)
    shapes = sorted(encoder.compiled_shapes)
    return (
        sum(compile_seconds(encoder, s) for s in first),
        sum(compile_seconds(encoder, s) for s in shapes),
        len(shapes),
    )


MEMORY_SCRIPT = """
import sys
from minisbert import FastEncoder as SentenceEncoder  # the command's encoder: packed

def peak_kib():  # VmHWM: this process image's peak RSS (ru_maxrss would count the parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

sentences = [line.rstrip("\\n") for line in open(sys.argv[1], encoding="utf-8")]
encoder = SentenceEncoder.from_pretrained(sys.argv[2])
n, base = int(sys.argv[3]), peak_kib()
texts = (f"{sentences[i % len(sentences)]} ({i})" for i in range(n))
E = encoder.encode(texts, batch_size=128)
assert E.shape[0] == n
print(base, peak_kib())
"""


def peak_memory_mib(sentence_file: str, model_dir: str, n: int) -> tuple[float, float]:
    """Peak resident memory (MiB) of a fresh process encoding ``n`` sentences: after loading
    the model, and at the end."""
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, sentence_file, model_dir, str(n)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    base_kib, peak_kib = int(out[-2]), int(out[-1])
    return base_kib / 1024, peak_kib / 1024


def self_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 14: in-batch negatives at scale
#
# **Time on a 2-core CPU:** fast mode 3 to 4 minutes (measured on a shared 2-core CPU); full mode,
# the default, up to 40 minutes (measured: 2,293 s top to bottom with two training runs sharing the
# 2 cores; the 15-minute estimate from the training steps alone left out the fresh processes that
# measure peak memory). On a GPU: not measured yet. Fast mode: set `MINISBERT_FAST=1` before
# starting Jupyter, or `FAST = True` in the cell that sets `FAST`.
#
# Lesson 9 trained the multiple negatives ranking loss (MNRL) at batch 16: each anchor
# picks its own positive out of the batch's candidates, and every other example's positive
# is a negative for free. This lesson is about what happens when that batch grows, and what
# goes wrong inside it:
#
# 1. **Why batch size matters.** Each anchor's task is a B-way classification. We measure
#    how its loss and its accuracy depend on B, show that gradient accumulation does not add
#    a single negative, and train one batch of B against the same examples as k accumulated
#    mini-batches.
# 2. **The gradient cache.** You write the step that trains a batch larger than the
#    activations that fit (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size
#    under Memory Limited Setup"; `minisbert train --mini-batch-size M`), and check that its
#    gradient is the full batch's. Then its memory.
# 3. **False negatives.** Real SNLI texts that appear in several triplets: what MNRL asks of
#    the model when a batch holds one twice, and the batches that avoid it.
# 4. **Mined hard negatives.** `minisbert mine`: the model's own nearest neighbours as
#    negatives, and the margins that keep positives out of them.
# 5. **Matryoshka embeddings.** STS-b against the number of dimensions kept, for a model
#    trained with and without `--matryoshka-dims`.
#
# `MINISBERT_FAST=1` measures on fewer sentences and replaces every training run with two
# steps on 32 triplets: the code runs, the figures mean little.

# %% [markdown]
# ## Set-up
#
# This cell finds the model weights, the datasets and the exercise solutions wherever the
# notebook runs (from `lessons/`, the repository root, or any folder), and fetches the
# weights or the data into `~/.cache/minisbert/` only if they are nowhere to be found.
# Where minisbert is missing (Colab), the cell installs it first, from `MINISBERT` below; where
# it is installed, that step is skipped (see `lessons/README.md`).

# %%
import importlib.util
import subprocess
import sys

# What pip installs where minisbert is missing: the repository's git+https address (minisbert
# is not on PyPI yet), or the folder of a clone. `minisbert lessons DIR` writes here the
# address the minisbert that wrote the notebooks was installed from.
MINISBERT = "git+https://github.com/OWNER/minisbert"
if importlib.util.find_spec("minisbert") is None:
    if "/OWNER/" in MINISBERT:  # the placeholder: only you know where your minisbert is
        raise SystemExit(
            "minisbert is not installed here: set MINISBERT above to the git+https address of "
            "your copy of the repository (or a wheel's or a clone's path) and run this cell again"
        )
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", MINISBERT], check=True)
    importlib.invalidate_caches()

from minisbert import lesson

paths = lesson.setup()

# %%
# %matplotlib inline
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

from minisbert import SentenceEncoder
from minisbert.cli import main as minisbert  # the `minisbert` command, in this process
from minisbert.data import load_dataset
from minisbert.distances import cos_sim_matrix
from minisbert.evaluate import encode_pairs, encode_unique, evaluate_sts, sts_metrics
from minisbert.grad_cache import (
    cached_grads,
    cached_loss_and_grad,
    chunk_grads,
    embed_chunk,
    loss_and_cache,
)
from minisbert.losses import multiple_negatives_ranking_loss
from minisbert.mining import MiningOptions, mine_negatives
from minisbert.sentence_encoder import SentenceModel
from minisbert.tokenizer import pad_batch
from minisbert.train import Trainable, TrainConfig
from minisbert.training_data import (
    distinct_batches,
    epoch_order,
    load_training_data,
    repeated_batches,
)

FAST = os.environ.get("MINISBERT_FAST") == "1"
SCALE = 20.0  # MNRL's scale, the library's default
N_MEASURED = 128 if FAST else 1024  # SNLI dev pairs embedded to measure batch sizes
SIZES = [2, 4, 8, 16, 32, 64] + ([] if FAST else [128, 256, 512])
N_STS_PAIRS = 200 if FAST else None  # STS-b test pairs scored; None = all 1,379
BATCH, BLOCKS, MINI_BATCH = (16, 2, 8) if FAST else (128, 8, 32)  # section 1's training
DIMS = (384, 256, 128, 64, 32)  # widths at which section 5 scores STS-b
MATRYOSHKA_DIMS = (384, 128, 64)  # the widths the Matryoshka loss trains

encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
triplets = load_dataset("snli-triplets", "dev")  # (premise, entailment, contradiction)
workdir = Path(tempfile.mkdtemp(prefix="minisbert-lesson14-"))
print(f"{'fast' if FAST else 'full'} mode; {len(triplets)} SNLI dev triplets")

# %% [markdown]
# ## 1. A batch of B pairs is B classifications among B
#
# MNRL scores anchor i against every positive of its batch, S_ij = 20 cos(a_i, p_j), and
# asks row i of that (B, B) matrix to put its probability on column i. Each row is a
# classification with B classes, so the chance level is 1/B. A model that gives every
# sentence the same vector puts 1/B on every column and pays exactly -log(1/B) = log B. A
# network with random weights is close to that model: its vectors barely depend on the
# sentence.
#
# We embed SNLI dev (premise, entailment) pairs with all-MiniLM-L6-v2 and with the same
# network at random weights (`SentenceModel(config, ...)` initialised from a seed), cut
# them into batches of B consecutive pairs, and measure per batch size the loss of each and
# the top-1 accuracy: is the anchor's own positive the highest-scoring of the B?

# %%
order = np.random.default_rng(0).permutation(len(triplets))
measured = [triplets[i] for i in order[:N_MEASURED]]
config, sentence_config = encoder.model.config, encoder.model.sentence_config
random_network = SentenceEncoder(
    SentenceModel(config, sentence_config, rngs=nnx.Rngs(0)), encoder.tokenizer
)
pair_vectors = {}  # name -> (anchors, positives), (N, D) each, unit length
for name, model in (("random weights", random_network), ("all-MiniLM-L6-v2", encoder)):
    pair_vectors[name] = encode_unique(
        model, [t.anchor for t in measured], [t.positive for t in measured]
    )


def in_batches(a: np.ndarray, p: np.ndarray, B: int) -> dict[str, float]:
    """MNRL and top-1 accuracy over the batches of B consecutive pairs (a leftover dropped)."""
    K = len(a) // B
    a, p = (jnp.asarray(x[: K * B].reshape(K, B, -1), jnp.float32) for x in (a, p))  # (K, B, D)
    loss = jax.vmap(multiple_negatives_ranking_loss)(a, p)  # (K,) one loss per batch
    logits = jax.vmap(cos_sim_matrix)(a, p)  # (K, B, B)
    top1 = jnp.argmax(logits, axis=2) == jnp.arange(B)  # (K, B)
    return {"loss": float(loss.mean()), "top-1": float(top1.mean()), "batches": K}


by_size = {name: {B: in_batches(a, p, B) for B in SIZES} for name, (a, p) in pair_vectors.items()}
random_by_size, trained_by_size = by_size["random weights"], by_size["all-MiniLM-L6-v2"]
print(f"{N_MEASURED} pairs; loss and top-1 accuracy averaged over the batches of each size")
print(f"{'B':>4} {'batches':>7} {'log B':>6} {'random: loss':>12} {'trained: loss':>13} "
      f"{'top-1':>6} {'chance 1/B':>10}")  # fmt: skip
for B in SIZES:
    r, t = random_by_size[B], trained_by_size[B]
    print(f"{B:4d} {t['batches']:7d} {math.log(B):6.3f} {r['loss']:12.3f} {t['loss']:13.3f} "
          f"{t['top-1']:6.3f} {1 / B:10.3f}")  # fmt: skip

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
left.plot(SIZES, [math.log(B) for B in SIZES], ":", color="gray", label="log B")
left.plot(SIZES, [random_by_size[B]["loss"] for B in SIZES], marker="o", label="random weights")
left.plot(SIZES, [trained_by_size[B]["loss"] for B in SIZES], marker="o", label="all-MiniLM-L6-v2")
left.set_ylabel("MNRL of a batch")
right.plot(SIZES, [trained_by_size[B]["top-1"] for B in SIZES], marker="o", color="C1")
right.set_ylabel("top-1 among the B positives (MiniLM)")
for ax in (left, right):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size B")
left.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The random network's loss stays just below log B, and a batch twice as large costs it
# about log 2 more: it can hardly tell its candidates apart (a little, since it still maps
# sentences that share words to nearby vectors). That is the loss a training run starts from,
# and it is the room there is to learn: a larger batch gives every anchor more wrong
# answers to rule out. The trained model is far below log B, and yet its top-1 accuracy
# falls as B grows: among more candidates, more of them come close to the anchor. A model
# trained at batch 16 only ever had to beat 15 random sentences; the task at batch 512 is
# to beat 511.
#
# ### Gradient accumulation adds no negatives
#
# When a batch does not fit in memory, the usual remedy is gradient accumulation: run k
# mini-batches of B / k, add up their gradients, update once. For a loss that is a mean of
# per-example terms it gives the full batch's gradient. MNRL's term for anchor i depends on
# every positive of its batch, and in a mini-batch of B / k the anchor only ever meets
# B / k - 1 of them. Accumulating k mini-batches computes the gradient of
#
#     mean over the k mini-batches of MNRL(mini-batch)       each a (B/k)-way task
#
# not of MNRL over the B pairs. Here it is on the logit matrix of 64 pairs, one batch of 64
# against 4 accumulated mini-batches of 16, with the gradient of each loss with respect to
# the logits (lesson 9: softmax minus the one-hot of the diagonal, over B).


# %%
def cross_entropy_on_diagonal(logits: jax.Array) -> jax.Array:  # (b, b) -> ()
    """mean_i -log softmax(logits_i)[i]: MNRL on a logit matrix."""
    targets = jnp.arange(logits.shape[0])  # (b,)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets))


def accumulated(logits: jax.Array, k: int) -> jax.Array:  # (B, B) -> ()
    """The mean of the k diagonal blocks' losses: k accumulated mini-batches of B / k."""
    b = logits.shape[0] // k
    blocks = [logits[j * b : (j + 1) * b, j * b : (j + 1) * b] for j in range(k)]  # (b, b) each
    return jnp.mean(jnp.stack([cross_entropy_on_diagonal(block) for block in blocks]))


a64, p64 = (jnp.asarray(x[:64], jnp.float32) for x in pair_vectors["all-MiniLM-L6-v2"])  # (64, D)
logits64 = SCALE * cos_sim_matrix(a64, p64)  # (64, 64)
whole_loss, whole_grad = jax.value_and_grad(cross_entropy_on_diagonal)(logits64)
accumulated_loss, accumulated_grad = jax.value_and_grad(accumulated)(logits64, 4)
library_whole = float(multiple_negatives_ranking_loss(a64, p64))
library_accumulated = float(
    np.mean([multiple_negatives_ranking_loss(a64[j : j + 16], p64[j : j + 16])
             for j in range(0, 64, 16)])
)  # fmt: skip
in_blocks = np.kron(np.eye(4), np.ones((16, 16))).astype(bool)  # (64, 64) the four blocks
push = np.abs(np.asarray(whole_grad)) * ~np.eye(64, dtype=bool)  # (64, 64) on wrong candidates
outside_share = float(push[~in_blocks].sum() / push.sum())
print(f"one batch of 64: MNRL {float(whole_loss):.4f} (the library: {library_whole:.4f})")
print(f"4 x 16 accumulated: {float(accumulated_loss):.4f} (the library, per mini-batch, "
      f"averaged: {library_accumulated:.4f})")  # fmt: skip
print(
    f"of the batch of 64's push on wrong candidates, {outside_share:.0%} falls on the "
    "48 positives an accumulated mini-batch never sees"
)

fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
panels = ((axes[0], whole_grad, "one batch of 64"),
          (axes[1], accumulated_grad, "4 accumulated mini-batches of 16"))  # fmt: skip
for ax, grad, title in panels:
    image = ax.imshow(np.log10(np.abs(np.asarray(grad)) + 1e-9), cmap="magma", vmin=-9, vmax=-1)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("positive j")
axes[0].set_ylabel("anchor i")
fig.colorbar(image, ax=axes, label="log10 |dL / dS_ij|")
plt.show()

# %% [markdown]
# On the left every positive of the batch pushes on every anchor; on the right only the
# 16 of its own mini-batch do, and the rest of the matrix is exactly zero: those pairs were
# never compared. The accumulated loss is lower because its task is easier (a logsumexp
# over fewer candidates is smaller, row by row), and the share printed above is the part of
# the gradient it gives up.
#
# ### Training: one batch of B against k accumulated mini-batches of B / k
#
# Does it matter for training? We compare two runs that differ in nothing but the
# negatives. Both train all-MiniLM-L6-v2 read through its [CLS] token (lesson 9: a
# sentence vector nobody trained, so that a short run has something to learn) with MNRL on
# SNLI dev triplets for one epoch, batch B = 128, seed 0: the same batches, the same
# learning-rate schedule, the same dropout masks. One run's loss is MNRL over the batch;
# the other's is `accumulated_mnrl` below, the mean of MNRL over 8 consecutive mini-batches
# of 16, which is what 8 accumulated steps of 16 compute. Both go through the gradient
# cache with M = 32 (section 2), so both fit.
#
# A single seed is one draw of the batch order and the dropout masks: the difference
# between the two runs is printed, not asserted. Fast mode trains two steps of 16 (2
# mini-batches of 8) on 32 triplets whose sentences all have 9 to 16 tokens (one padded
# length: each program compiles once).


# %%
def accumulated_mnrl(
    anchor: jax.Array,  # (B, D)
    positive: jax.Array,  # (B, D)
    negative: jax.Array,  # (B, D)
) -> jax.Array:  # ()
    """MNRL within each of BLOCKS consecutive mini-batches of B / BLOCKS, averaged."""
    a, p, n = (x.reshape(BLOCKS, -1, x.shape[-1]) for x in (anchor, positive, negative))
    return jnp.mean(jax.vmap(multiple_negatives_ranking_loss)(a, p, n))  # (k,) -> ()


def lengths_between(t, shortest: int, longest: int) -> bool:
    counts = encoder.token_counts([t.anchor, t.positive, t.negative])
    return shortest <= min(counts) and max(counts) <= longest


if FAST:  # 32 triplets of one padded length, in a file
    few = [triplets[i] for i in order if lengths_between(triplets[i], 9, 16)][:32]
    training_data = {"data": str(lesson.write_examples(workdir / "fast_triplets.jsonl", few))}
else:
    training_data = {"data": "snli-triplets", "split": "dev"}

sts = load_dataset("stsb", "test")
if N_STS_PAIRS is not None:
    sts = [sts[i] for i in np.random.default_rng(0).choice(len(sts), N_STS_PAIRS, replace=False)]


def sts_spearman(model: SentenceEncoder) -> float:
    return evaluate_sts(model, sts, show_progress_bar=True)["spearman_cosine"]


cls_start = lesson.read_through(paths.weights, "cls", workdir / "all-MiniLM-L6-v2-cls")
runs = {}  # name -> TrainResult
spearman = {"[CLS] start": sts_spearman(SentenceEncoder.from_pretrained(cls_start))}
for name, loss_fn in ((f"one batch of {BATCH}", None),
                      (f"{BLOCKS} x {BATCH // BLOCKS} accumulated", accumulated_mnrl)):  # fmt: skip
    print(f"{name}:")
    trained, runs[name] = lesson.finetune(
        model=str(cls_start), loss="mnrl", loss_fn=loss_fn, batch_size=BATCH,
        mini_batch_size=MINI_BATCH, epochs=1, seed=0, **training_data,
    )  # fmt: skip
    spearman[name] = sts_spearman(trained)
print(f"\nSTS-b test ({len(sts)} pairs), Spearman x100:")
for name, score in spearman.items():
    first = f"   first step's loss {runs[name].losses[0]:.4f}" if name in runs else ""
    print(f"{name:>28}: {score:6.2f}{first}")
whole_run, acc_run = runs  # the two names
whole_result, acc_result = runs.values()
gap = spearman[whole_run] - spearman[acc_run]
print(f"{whole_run} - {acc_run}: {gap:+.2f} (one seed)")

# %% [markdown]
# The first step's two losses are of the same embeddings (same batch, same masks): the
# larger task costs more, as on the 64 pairs above. The STS-b line is one seed's answer to
# "does the same data, seen as larger batches, make a better encoder?"; the difference it
# prints is what this run found, and a second seed would move it. (Fast mode trains two
# steps: its figures say nothing about this.)
#
# ## 2. The gradient cache
#
# Why does a large batch not fit? Back-propagation keeps every activation of the forward
# pass: for S sides of B sentences of T tokens, every layer's attention and feed-forward
# outputs, far more than the weights. But MNRL needs only the sentence vectors, e (S, B, D),
# which are small. The gradient cache (GradCache; sentence-transformers'
# CachedMultipleNegativesRankingLoss) uses the chain rule to split the step in three:
#
#     dL/dθ = Σ over chunks c of (d e_c / dθ)^T · dL/de_c
#
# 1. **embed**: run the network on chunks of M sentences and keep only their vectors, not
#    what back-propagation would need;
# 2. **loss**: compute L from the (S, B, D) vectors and its gradient with respect to them,
#    dL/de (S, B, D): the cache, as small as the vectors;
# 3. **backward**: for every chunk again, run its forward pass under `jax.vjp`, which keeps
#    that chunk's activations, and pull its rows of the cache back to the parameters; add
#    the chunks' parameter gradients.
#
# Memory holds one chunk's activations at a time plus the vectors and the cache; the price
# is a second forward pass. The gradient is the full batch's exactly: pass 3 computes each
# term of the sum above. That needs the same network in pass 3 as in pass 1: with dropout
# on, each chunk must draw the same masks twice (the library saves the random state
# before each chunk, `minisbert/grad_cache.py`); here dropout is off.
#
# In JAX nothing keeps activations unless you differentiate: pass 1 is a plain call.
#
# ## Exercise: write the cached step
#
# Write `cached_loss_and_grads(embed, params, input_ids, attention_mask, loss_fn, M)`.
# `embed(params, input_ids, attention_mask)` maps (m, T) token ids and mask to (m, D)
# vectors; `input_ids` and `attention_mask` are (S, B, T), one row of sentences per side;
# `loss_fn(e_1, ..., e_S)` takes the S sides' (B, D) vectors. Return the loss and its
# gradient with respect to `params` (the same tree as `params`), embedding at most M
# sentences per call of `embed`, each side's chunks in a Python loop. Useful:
# `jax.value_and_grad(f)(x)`, `jax.vjp(f, x)` (returns `f(x)` and a function that takes
# dL/df(x) and gives a tuple holding dL/dx), `jax.tree.map(jnp.add, g1, g2)` to add two
# gradients, `jnp.concatenate`, `jnp.stack`.
#
# The check runs it on all-MiniLM-L6-v2 (dropout off) with 8 SNLI triplets and M = 4,
# against `jax.value_and_grad` of the loss of the whole batch. It also checks that you
# embed at most M sentences at a time, that pass 1 runs without differentiation, and that
# each differentiation (pass 3) sees one chunk; and it fails if your function calls the
# library's gradient cache (`minisbert.grad_cache`).


# %%
def cached_loss_and_grads(
    embed: Callable[..., jax.Array],  # (params, (m, T), (m, T)) -> (m, D)
    params: nnx.State,
    input_ids: jax.Array,  # (S, B, T)
    attention_mask: jax.Array,  # (S, B, T)
    loss_fn: Callable[..., jax.Array],  # (e_1, ..., e_S), each (B, D) -> ()
    mini_batch_size: int,  # M
) -> tuple[jax.Array, nnx.State]:  # (), gradients: the tree of params
    """The loss of the batch and its gradient for ``params``, M sentences embedded at a time."""
    raise NotImplementedError("your code here")


# %% [markdown]
# The network as a function of its parameters: `nnx.split` separates the SentenceModel
# into its structure, its parameters and everything else (dropout's random state), and
# `nnx.merge` puts them back together around parameters that `jax.vjp` can trace.

# %%
sentence_model = encoder.model
sentence_model.eval()  # dropout off: a chunk run twice gives the same vectors
graphdef, params, rest = nnx.split(sentence_model, nnx.Param, ...)


def embed(params: nnx.State, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """(m, T) token ids and mask -> (m, D) sentence vectors of the SentenceModel."""
    return nnx.merge(graphdef, params, rest)(input_ids, attention_mask)


CHECK_M = 4
check_triplets = measured[:8]
check_sides = [[t.anchor for t in check_triplets], [t.positive for t in check_triplets],
               [t.negative for t in check_triplets]]  # fmt: skip
check_tokens = [encoder.tokenizer.tokenize(side) for side in check_sides]
T = max(len(ids) for side in check_tokens for ids in side)
padded = [pad_batch(side, T, encoder.tokenizer.pad_token_id) for side in check_tokens]
check_ids = jnp.stack([ids for ids, _ in padded])  # (3, 8, T)
check_mask = jnp.stack([mask for _, mask in padded])  # (3, 8, T)
print(f"check batch: input_ids {check_ids.shape} (S, B, T), M = {CHECK_M}")


# %%
def differentiating(params: nnx.State) -> object | None:
    """The autodiff trace (jax.vjp, jax.grad) that ``params`` are being differentiated in,
    or None: a parameter is then a tracer of that trace (JAX's ``_trace``)."""
    leaf = jax.tree.leaves(params)[0]
    if type(leaf).__name__ in ("JVPTracer", "LinearizeTracer"):
        return getattr(leaf, "_trace", leaf)
    return None


def check_cached_step(fn) -> None:
    fn = lesson.by_hand(
        fn, cached_loss_and_grad, cached_grads, chunk_grads, embed_chunk, loss_and_cache
    )  # the exercise is the three passes: the library's own may not be called
    calls = []  # per call of embed: (sentences, the trace differentiating it or None)

    def watched(params, input_ids, attention_mask):
        calls.append((input_ids.shape[0], differentiating(params)))
        return embed(params, input_ids, attention_mask)

    def whole_batch(params):  # every side embedded at once, one graph
        sides = [embed(params, check_ids[s], check_mask[s]) for s in range(len(check_ids))]
        return multiple_negatives_ranking_loss(*sides)

    loss, grads = fn(
        watched, params, check_ids, check_mask, multiple_negatives_ranking_loss, CHECK_M
    )
    expected_loss, expected = jax.value_and_grad(whole_batch)(params)
    largest = max(rows for rows, _ in calls) if calls else 0
    assert 0 < largest <= CHECK_M, (
        f"embed ran on {largest} sentences at once; at most M = {CHECK_M}"
    )
    assert any(trace is None for _, trace in calls), (
        "pass 1 must embed the chunks without differentiating (a plain call of embed)"
    )
    traces = [trace for _, trace in calls if trace is not None]
    assert traces, "pass 3 must run each chunk's forward pass under jax.vjp"
    assert all(sum(t is trace for t in traces) == 1 for trace in traces), (
        "one differentiation saw several chunks, so it kept all their activations at once: "
        "run jax.vjp on one chunk at a time"
    )
    assert abs(float(loss) - float(expected_loss)) < 1e-5, (
        f"loss {float(loss):.6f}, the whole batch's is {float(expected_loss):.6f}"
    )
    assert jax.tree.structure(grads) == jax.tree.structure(expected), (
        "the gradients must have the tree of params"
    )
    pairs = list(zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True))
    largest_grad = max(float(np.abs(e).max()) for _, e in pairs)  # numpy: nothing to compile
    error = max(float(np.abs(np.asarray(g) - np.asarray(e)).max()) for g, e in pairs)
    assert error <= 1e-4 * largest_grad, (
        f"the gradient differs from the whole batch's by {error:.2e} "
        f"(its largest entry is {largest_grad:.2e})"
    )


cached_loss_and_grads = lesson.exercise(
    check_cached_step, cached_loss_and_grads, lesson="14_in_batch_negatives_at_scale"
)

# %% [markdown]
# The library's `cached_loss_and_grad` is the same three passes on a `Trainable` (the
# SentenceModel and, for the softmax loss, its head) with dropout's random state saved and
# replayed; `minisbert train --mini-batch-size M` runs them, each pass jitted on its own so
# that one chunk's activations are alive at a time. On the same batch:

# %%
yours_loss, yours = cached_loss_and_grads(
    embed, params, check_ids, check_mask, multiple_negatives_ranking_loss, CHECK_M
)
library_loss, library_grads = cached_loss_and_grad(
    Trainable(sentence_model), (check_ids, check_mask, None), multiple_negatives_ranking_loss,
    CHECK_M,
)  # fmt: skip
library_gap = max(
    float(jnp.abs(a - b).max())
    for a, b in zip(jax.tree.leaves(yours), jax.tree.leaves(library_grads["model"]), strict=True)
)
print(f"loss: yours {float(yours_loss):.6f}, the library's {float(library_loss):.6f}; "
      f"largest gradient difference {library_gap:.1e}")  # fmt: skip

# %% [markdown]
# ### What it saves: peak memory
#
# The peak resident memory of a process (`resource.getrusage`, `ru_maxrss`) is the most it
# ever held. Full mode measures it here: `minisbert train` for one step on SNLI dev
# triplets at batch 512, with and without `--mini-batch-size 32`, each in a fresh process
# (a process's peak never comes down, so each run needs its own), with the child's own
# figure read by `os.wait4`. A child that would not fit in the memory free now is stopped by
# a limit on its heap, and says so. Fast mode does not train at batch 512: it prints the
# table that `make bench-grad-cache` wrote into `bench/results/` (the same command, batch
# 32, 256 and 1024, M = 16), when the repository holds one.

# %%
MEMORY_BATCH, MEMORY_M = 512, 32


def free_bytes() -> int:
    """MemAvailable of /proc/meminfo (Linux): what a new process can take."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_memory_mib(*flags: str) -> float | str:
    """Peak RSS (MiB) of one step of `minisbert train ... flags` alone in a fresh process,
    or why it failed."""
    limit = max(free_bytes() - (2 << 30), 1 << 30)  # leave 2 GiB to everything else

    def cap_heap() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryFile("w+") as log:
        command = [sys.executable, "-m", "minisbert.cli", "train", "--model", str(paths.weights),
                   "--loss", "mnrl", "--data", "snli-triplets", "--split", "dev",
                   "--max-steps", "1", "--eval-data", "none", "--no-progress",
                   "--output", f"{out}/run", *flags]  # fmt: skip
        child = subprocess.Popen(command, stdout=log, stderr=log, preexec_fn=cap_heap)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            log.seek(0)
            return f"failed ({log.read()[-300:].strip()})"
    return usage.ru_maxrss / 1024  # Linux reports KiB


if FAST:
    tables = sorted((lesson.REPO / "bench" / "results").glob("grad-cache-*.md"))
    memory = {}
    for table in tables:
        print(f"{table.relative_to(lesson.REPO)}:")
        print("\n".join(line for line in table.read_text().splitlines() if line.startswith("|")))
    if not tables:
        print("no bench/results/grad-cache-*.md here: `make bench-grad-cache` writes one")
else:
    memory = {
        "plain": peak_memory_mib("--batch-size", str(MEMORY_BATCH)),
        f"--mini-batch-size {MEMORY_M}": peak_memory_mib(
            "--batch-size", str(MEMORY_BATCH), "--mini-batch-size", str(MEMORY_M)
        ),
    }
    for name, peak in memory.items():
        figure = f"{peak:,.0f} MiB" if isinstance(peak, float) else peak
        print(f"batch {MEMORY_BATCH}, {name:>20}: peak RSS {figure}")

# %% [markdown]
# Without the cache, the step holds the activations of all 3 x 512 sentences at once;
# with it, those of 32, plus the (3, 512, 384) vectors and their cache (2.3 MB each). What
# is left is the model, its gradient and Adam's two moments (four copies of 22.7 million
# float32 numbers, about 360 MB), JAX itself, and the data. At small batches there is
# nothing to save and the extra programs cost a little memory; at 512 a laptop's memory
# is enough for the cached step (the figures above say how much).
#
# ## 3. False negatives: one text twice in a batch
#
# In-batch negatives assume that every other candidate of a batch is wrong for an anchor.
# That fails when the same text is in the batch twice. `snli-triplets` keeps one triplet
# per premise (`minisbert/data/nli.py`), so anchors never repeat; but short hypotheses do:
# "People are outside." ("outside ." in the pre-tokenized copy of SNLI) is the entailment
# of several premises. We load the triplets as
# `train` does (`load_training_data`: tokenized, each text numbered by its token ids, so
# "outside ." and "outside." are one text) and count the texts found in more than one
# triplet.

# %%
data = load_training_data(
    TrainConfig(loss="mnrl", data="snli-triplets", split="dev", output=str(workdir / "unused")),
    encoder.tokenizer,
)
texts = data.text_ids()  # (N, 3): anchor, positive, negative as numbers
sides = ("anchor", "positive", "negative")
where = {}  # text number -> [(triplet, side)]
for i, row in enumerate(texts.tolist()):
    for side, number in zip(sides, row, strict=True):
        where.setdefault(number, []).append((i, side))
repeated = {number: places for number, places in where.items() if len(places) > 1}
print(f"{len(texts)} triplets, {len(where)} distinct texts; {len(repeated)} of them in more "
      "than one place")  # fmt: skip
for places in sorted(repeated.values(), key=len, reverse=True)[:4]:
    i, side = places[0]
    text = getattr(triplets[i], side)
    print(f"  {text!r}: {len(places)} times, as " + ", ".join(
        f"{count} {role}" for role, count in Counter(s for _, s in places).items()))  # fmt: skip
print("texts by the sides they appear in:",
      dict(Counter(tuple(sorted({s for _, s in p})) for p in repeated.values())))  # fmt: skip

# %% [markdown]
# Now a batch of 32 in the order `train` would shuffle epoch 0 with seed 0
# (`epoch_order`), without the fix below. We take the first batch that holds a text twice
# and look at the rows of its logit matrix (positives, then hard negatives: (B, 2B)) whose
# own positive is that text.

# %%
B = 32
shuffled = epoch_order(0, 0, len(texts))  # (N,)


def rows_with_a_copy(batch: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The batch's candidate texts (2B,): p_1..p_B, n_1..n_B; and the rows whose own
    positive is among them twice."""
    candidates = np.concatenate([texts[batch, 1], texts[batch, 2]])  # (2B,)
    return candidates, [i for i in range(len(batch)) if (candidates == candidates[i]).sum() > 1]


first = next(
    k for k in range(len(texts) // B) if rows_with_a_copy(shuffled[k * B : (k + 1) * B])[1]
)
batch = shuffled[first * B : (first + 1) * B]  # (B,) triplet numbers
candidates, twice = rows_with_a_copy(batch)
print(f"batch {first} of epoch 0 (the first with such a row): rows {twice}")
for i in twice:
    j = [int(c) for c in np.flatnonzero(candidates == candidates[i]) if c != i]
    t = triplets[batch[i]]
    print(f"  row {i}: {t.anchor!r} -> {t.positive!r} (column {i}), again in column(s) {j}")

a, p, n = (encoder.encode([getattr(triplets[k], side) for k in batch]) for side in sides)
logits = SCALE * np.asarray(cos_sim_matrix(a, np.concatenate([p, n])))  # (B, 2B)
row_losses = np.asarray(
    optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits), jnp.arange(B))
)  # (B,)
for i in twice:
    same = np.flatnonzero(candidates == candidates[i])
    print(f"  row {i}: logits of the copies {np.round(logits[i, same], 3)}, row loss "
          f"{row_losses[i]:.3f} (log 2 = {math.log(2):.3f}); the batch's median row "
          f"{np.median(row_losses):.3f}")  # fmt: skip

# %% [markdown]
# The copies are one text, so they get one vector and the same logit in every row. MNRL
# asks row i to give all its probability to column i and none to the other copy, which has
# the same score: the best the model can do is split it evenly, and the row's loss can
# never fall below log 2. The gradient pulls the text towards the anchor as a positive and
# pushes it away as a negative: training on that row teaches nothing true.
#
# The fix is in the batches, not the loss: `distinct_batches` (sentence-transformers'
# NoDuplicatesBatchSampler rule) fills each batch in the shuffled order with examples none
# of whose texts it holds yet; one it skips waits, first in line for the next batch. `train`
# does it for every loss with in-batch negatives unless `--allow-duplicates`. How many
# batches of an epoch hold a text twice, at three batch sizes:

# %%
print(f"{'B':>5} {'batches':>8} {'with a repeat, shuffled':>24} {'distinct_batches':>17}")
repeats = {}
for size in (32, 128, 512):
    fixed = distinct_batches(shuffled, texts, size)  # (N,)
    assert sorted(fixed) == sorted(shuffled), "the same examples, in another order"
    repeats[size] = (repeated_batches(shuffled, texts, size), repeated_batches(fixed, texts, size))
    print(f"{size:5d} {len(texts) // size:8d} {repeats[size][0]:24d} {repeats[size][1]:17d}")

# %% [markdown]
# The larger the batch, the likelier it is to hold some text twice: the share of batches
# with a repeat grows with B. `distinct_batches` keeps the epoch's N // B batches and its
# examples, and leaves none with a repeat. It only sees texts that are *identical*: a
# hypothesis that means what another anchor's positive means, in other words, is still a
# false negative. Mining, next, has to face that too.
#
# ## 4. Mined hard negatives
#
# SNLI comes with a hard negative per premise, a contradiction written by a person. Most
# pair data does not. `minisbert mine` finds them with the model itself: it embeds the
# anchors and every positive of the data, and gives each anchor the positives of *other*
# anchors that it scores highest (`minisbert/mining.py`). We run the command on SNLI dev's
# (premise, entailment) pairs (fast mode: the first 64) and put its negative beside the
# contradiction that SNLI's annotators wrote.

# %%
N_MINE = 64 if FAST else len(triplets)
mine_input = workdir / "snli_pairs.tsv"  # anchor, positive, negative: mining keeps the first two
with open(mine_input, "w", encoding="utf-8") as f:
    f.write("anchor\tpositive\tnegative\n")
    f.writelines(f"{t.anchor}\t{t.positive}\t{t.negative}\n" for t in triplets[:N_MINE])


def mine(output: Path, *flags: str) -> list:
    """`minisbert mine` on the pairs, one negative each; the triplets it wrote."""
    command = ["mine", "--model", str(paths.weights), "--data", str(mine_input),
               "--output", str(output), "--num-negatives", "1", *flags]  # fmt: skip
    print("minisbert " + " ".join(command))
    assert minisbert(command) == 0, "the command failed"
    return load_dataset(str(output))  # (anchor, positive, mined negative) triplets


mined = mine(workdir / "mined.jsonl")
snli_negative = {t.anchor: t.negative for t in triplets[:N_MINE]}

a, p, n, written = encode_unique(
    encoder,
    [t.anchor for t in mined], [t.positive for t in mined], [t.negative for t in mined],
    [snli_negative[t.anchor] for t in mined],
)  # fmt: skip  # (N, D) each, unit length
score_p, score_n, score_written = ((a * x).sum(axis=1) for x in (p, n, written))  # (N,) each
for k in range(3):
    t = mined[k]
    print(f"anchor:   {t.anchor}\n  positive            {score_p[k]:+.3f}  {t.positive}\n"
          f"  mined negative      {score_n[k]:+.3f}  {t.negative}\n"
          f"  SNLI contradiction  {score_written[k]:+.3f}  {snli_negative[t.anchor]}")  # fmt: skip
above = score_n > score_p  # (N,) mined negatives the model scores above the positive
print(
    f"\n{len(mined)} triplets; mean cos(anchor, .): positive {score_p.mean():.3f}, mined "
    f"negative {score_n.mean():.3f}, SNLI's contradiction {score_written.mean():.3f}"
)
print(f"{above.sum()} mined negatives score above their anchor's positive, e.g.:")
for k in np.flatnonzero(above)[:2]:
    print(f"  {mined[k].anchor}\n    positive {score_p[k]:.3f}: {mined[k].positive}\n"
          f"    mined    {score_n[k]:.3f}: {mined[k].negative}")  # fmt: skip

# %% [markdown]
# Mined negatives score closer to the anchor than the written contradictions: they are
# harder. Some are too close: a mined negative that the model scores above the positive is
# often another true description of the same picture, a false negative that no rule on
# identical texts can catch. The **margins** drop every candidate within a distance of the
# anchor's positive (score p):
#
# - `--absolute-margin m` keeps a candidate of score s only if s <= p - m;
# - `--relative-margin r` only if s <= p - r |p|: a share r of the positive's own size
#   below it (0.05 in NV-Retriever's "95% of the positive").
#
# The same command with `--absolute-margin 0`: no negative may score above its positive.

# %%
kept = mine(workdir / "mined_margin.jsonl", "--absolute-margin", "0")
a_m, p_m, n_m = encode_unique(
    encoder, [t.anchor for t in kept], [t.positive for t in kept], [t.negative for t in kept]
)  # (N, D) each
margin_gap = ((a_m * p_m).sum(axis=1) - (a_m * n_m).sum(axis=1)).min()  # min over triplets
before = {(t.anchor, t.positive): t.negative for t in mined}
changed = sum(before.get((t.anchor, t.positive)) != t.negative for t in kept)
print(f"{len(kept)} triplets (of {len(mined)}); {changed} negatives changed; the smallest "
      f"p - s is {margin_gap:+.4f}")  # fmt: skip

# %% [markdown]
# **A negative positive score.** The relative margin's threshold is below p whatever its
# sign. Written as p (1 - r), which is the same thing for p >= 0, it lies *above* p when p
# is negative: with p = -0.2 and r = 0.1 that is -0.18, which keeps a candidate at -0.19
# that the model scores higher than the positive (sentence-transformers computed it that
# way once). Five corpus rows of two dimensions, at chosen cosines from the anchor (1, 0),
# through `mine_negatives`, the function the command calls:

# %%
cosines = np.array([-0.2, -0.19, -0.21, -0.25, -0.5])  # row 0 is the anchor's positive
corpus = np.stack([cosines, np.sqrt(1 - cosines**2)], axis=1)  # (5, 2) unit vectors
found = mine_negatives(
    np.array([[1.0, 0.0]]), corpus, positives=[[0]], own_rows=[-1],
    options=MiningOptions(num_negatives=4, relative_margin=0.1),
)  # fmt: skip
p_score, r = cosines[0], 0.1
right, wrong = p_score - r * abs(p_score), p_score * (1 - r)
print(f"positive p = {p_score}; threshold p - r|p| = {right:.2f}, p (1 - r) = {wrong:.2f}")
chosen = set(found.ids[0][found.ids[0] >= 0].tolist())
print(f"{'candidate':>9} {'score':>6} {'s <= p - r|p|':>13} {'s <= p(1-r)':>12} {'mined':>6}")
for row in range(1, 5):
    s = cosines[row]
    print(f"{row:9d} {s:6.2f} {str(s <= right):>13} {str(s <= wrong):>12} "
          f"{str(row in chosen):>6}")  # fmt: skip

# %% [markdown]
# ## 5. Matryoshka embeddings
#
# A sentence vector of 384 float32 numbers is 1.5 kB; an index of 100 million of them is
# 150 GB. Keeping only the first d dimensions would shrink it, but a model trained on whole
# vectors spreads what it knows over all of them. The Matryoshka loss (Kusupati et al.
# 2022) trains the prefixes too: the same loss is summed over the vectors cut to each width
# d in `--matryoshka-dims`, each cut normalised (`minisbert/losses/matryoshka.py`).
#
# Two runs that differ only in that: MNRL on SNLI dev triplets from all-MiniLM-L6-v2, one
# epoch, batch 32, seed 0, without and with `matryoshka_dims=(384, 128, 64)`: the command
#
#     minisbert train --loss mnrl --data snli-triplets --split dev --batch-size 32 \
#         --seed 0 [--matryoshka-dims 384,128,64]
#
# run through `train(TrainConfig(...))` (it packs rows, this pads them: the same
# function with other dropout masks). We score each model on STS-b test keeping the first d
# dimensions, as `encode(..., truncate_dim=d)` and `minisbert eval sts --truncate-dim d` do:
# cut, not normalised again (cosine does not care). Fast mode trains two steps of 16 on the
# 32 triplets of section 1, through the gradient cache (M = 8).

# %%
matryoshka_settings = dict(model=str(paths.weights), loss="mnrl", epochs=1, seed=0)
matryoshka_settings.update(
    {**training_data, "batch_size": 16, "mini_batch_size": 8} if FAST
    else {"data": "snli-triplets", "split": "dev", "batch_size": 32}
)  # fmt: skip
models = {"all-MiniLM-L6-v2": encoder}
print("without the Matryoshka loss:")
models["MNRL"], _ = lesson.finetune(**matryoshka_settings)
print(f"with matryoshka_dims={MATRYOSHKA_DIMS}:")
models["MNRL + Matryoshka"], _ = lesson.finetune(
    **matryoshka_settings, matryoshka_dims=MATRYOSHKA_DIMS
)

gold = np.array([e.label for e in sts], dtype=np.float64)  # (N,)
by_width = {}  # model -> {d: Spearman x100}
for name, model in models.items():
    u, v = encode_pairs(model, sts, "STS-b", 32, True)  # (N, 384) each
    by_width[name] = {d: sts_metrics(u[:, :d], v[:, :d], gold)["spearman_cosine"] for d in DIMS}
library_64 = evaluate_sts(models["MNRL + Matryoshka"], sts, truncate_dim=64)["spearman_cosine"]

print(f"\nSTS-b test ({len(sts)} pairs), Spearman x100, first d dimensions")
print(f"{'d':>5} " + " ".join(f"{name:>18}" for name in models))
for d in DIMS:
    print(f"{d:5d} " + " ".join(f"{by_width[name][d]:18.2f}" for name in models))
start = by_width["all-MiniLM-L6-v2"]
for name in ("MNRL", "MNRL + Matryoshka"):
    print(f"{name + ' - start':>23} " + " ".join(
        f"{by_width[name][d] - start[d]:+7.2f}" for d in DIMS))  # fmt: skip
print(f"{'Matryoshka - MNRL':>23} " + " ".join(
    f"{by_width['MNRL + Matryoshka'][d] - by_width['MNRL'][d]:+7.2f}" for d in DIMS))  # fmt: skip
print(f"{'at d =':>23} " + " ".join(f"{d:7d}" for d in DIMS))
print(f"evaluate_sts(truncate_dim=64) of the Matryoshka model: {library_64:.2f}")

fig, ax = plt.subplots(figsize=(5.5, 3.4))
for name in models:
    ax.plot(DIMS, [by_width[name][d] for d in DIMS], marker="o", label=name)
ax.set_xscale("log", base=2)
ax.set_xticks(DIMS, [str(d) for d in DIMS])
ax.set_xlabel("dimensions kept (d)")
ax.set_ylabel("STS-b test Spearman x100")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
shutil.rmtree(workdir)

# %% [markdown]
# Reading the figures (full mode; fast mode's two steps barely move either model):
#
# - all-MiniLM-L6-v2, trained on whole vectors, loses STS-b as its vector is cut: its
#   first 32 dimensions are a worse sentence vector than all 384.
# - The rows under the table say, at each width, how far each run moved from the model it
#   started from, and what the Matryoshka loss changed: the two runs saw the same batches
#   with the same dropout masks, so their difference is the loss's doing, for this seed.
# - Read the difference against how far the runs moved at all. One epoch of 2,943 triplets
#   at the library's learning rate (2e-5) is a small push on a model trained with MNRL on
#   about a billion pairs; a loss term can only steer a push that is there. Matryoshka
#   models are trained for far longer, from the start. The ideas below give the loss more
#   to do: a higher learning rate, more epochs, or the [CLS] start of section 1.
#
# ## Ideas to try
#
# - **More negatives, same memory.** Train section 1's runs at B = 512 with M = 32. How
#   long does a step take against B = 128, and what does that say about the second
#   forward pass?
# - **Two copies, on purpose.** Put a triplet into a training file twice and train with
#   `allow_duplicates=True` and without: what do the two runs' losses on that batch do?
# - **Mining with `--range-min 3`** skips the three nearest candidates, often unlabelled
#   positives. How many of the negatives that scored above their positive are left?
# - **Train on mined triplets**: the file `minisbert mine` wrote as `data=` instead of
#   SNLI's own, from the [CLS] start of section 1. Harder negatives: a better model?
# - **Give the Matryoshka loss something to do.** Train section 5's two runs from the
#   [CLS] start of section 1, or with `lr=1e-4`, or for 3 epochs: does the difference at
#   64 and 32 dimensions grow beyond what a second seed moves?
# - **Weights.** `matryoshka_weights=(1, 1, 4)` puts more of the loss on 64 dimensions.
#   What does it cost at 384?
#
# ## What we showed
#
# - An anchor's MNRL task is a B-way classification: a network with random weights pays
#   about log B, and a trained model's top-1 among B falls as B grows.
# - Gradient accumulation over k mini-batches computes the mean of k (B/k)-way losses: the
#   gradient outside its blocks is exactly zero. One batch against the same examples as
#   accumulated mini-batches is a comparison of negatives alone.
# - The gradient cache (embed without a graph, the loss's gradient with respect to the
#   vectors, each chunk's vjp pulled back by it) gives the full batch's gradient; you wrote
#   it and it matched `jax.value_and_grad` and the library's.
# - A text twice in a batch makes a row whose loss cannot fall below log 2;
#   `distinct_batches` keeps the examples and removes the repeats.
# - `minisbert mine` finds negatives harder than SNLI's written ones, some of them too
#   close; margins keep them below the positive, also when its score is negative.
# - A model trained on whole vectors loses STS-b when they are cut; the Matryoshka loss
#   trains the prefixes too, and the two runs' difference at each width is its effect
#   there, for one seed at one budget.

# %%
for name, by_b in by_size.items():
    for B in SIZES:
        assert math.isfinite(by_b[B]["loss"]), f"{name}: loss at B = {B}"
random_losses = [random_by_size[B]["loss"] for B in SIZES]
assert all(x < y for x, y in zip(random_losses, random_losses[1:], strict=False)), (
    "the random network's loss grows with B"
)
assert all(abs(random_by_size[B]["loss"] - math.log(B)) < abs(
    random_by_size[B]["loss"] - trained_by_size[B]["loss"]) for B in SIZES), (
    "the random network is nearer log B than the trained model"
)  # fmt: skip
assert all(random_by_size[B]["loss"] < math.log(B) for B in SIZES), "random: just below log B"
assert all(trained_by_size[B]["loss"] < math.log(B) for B in SIZES), "trained: far below log B"
assert trained_by_size[SIZES[-1]]["top-1"] < trained_by_size[2]["top-1"], "top-1 falls with B"
assert abs(float(whole_loss) - library_whole) < 1e-5, "MNRL on the logits = the library's"
assert abs(float(accumulated_loss) - library_accumulated) < 1e-5
assert float(accumulated_loss) < float(whole_loss), "accumulation: an easier task"
assert float(jnp.abs(accumulated_grad)[~in_blocks].max()) == 0.0, "no gradient between blocks"
assert float(jnp.abs(whole_grad)[~in_blocks].min()) > 0.0, "the whole batch: everywhere"
assert whole_result.losses[0] > acc_result.losses[0], "the same vectors, the larger task"
for result in runs.values():
    assert all(math.isfinite(x) for x in result.losses)
check_cached_step(cached_loss_and_grads)
assert abs(float(yours_loss) - float(library_loss)) < 1e-5
assert library_gap < 1e-4 * max(float(jnp.abs(g).max()) for g in jax.tree.leaves(yours))
if not FAST:
    plain, cached = memory.values()
    assert isinstance(cached, float), f"the cached step at batch {MEMORY_BATCH}: {cached}"
    if isinstance(plain, float):
        assert cached < plain, "the cache lowers the peak"
assert twice and all(row_losses[i] >= math.log(2) - 1e-4 for i in twice), "log 2, at least"
assert all(after == 0 for _, after in repeats.values()), "distinct batches hold no repeat"
shares = [before / (len(texts) // size) for size, (before, _) in repeats.items()]  # 32, 128, 512
assert shares[0] < shares[-1], "the larger the batch, the likelier a repeat"
assert score_n.mean() > score_written.mean(), "mined negatives: nearer than the written ones"
assert above.any(), "some mined negatives score above their positive"
assert margin_gap >= -1e-5, "with --absolute-margin 0 no negative scores above its positive"
assert chosen == {row for row in range(1, 5) if cosines[row] <= right}, "s <= p - r|p|"
assert any(right < cosines[row] <= wrong for row in range(1, 5)), "p (1 - r) would keep more"
assert abs(library_64 - by_width["MNRL + Matryoshka"][64]) < 1e-6, "truncation = the library's"
pretrained = by_width["all-MiniLM-L6-v2"]
assert pretrained[32] < pretrained[384], "cutting a vector trained whole costs STS-b"
print("all claims hold")

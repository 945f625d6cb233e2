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
# # Lesson 11: why a readable model can be fast
#
# minisbert's BERT is written for reading: one Python method per part, `einsum` strings
# that spell out shapes, no hand-fused kernels. Run op by op, that code would be slow.
# It is fast anyway because of four ideas that live *outside* the model code:
#
# 1. **jit**: `jax.jit` traces the Python once into a graph, and the XLA compiler turns
#    the graph into one fused program;
# 2. **smart batching**: sort sentences by length so that little compute is wasted on
#    padding (the SBERT paper's Table 7);
# 3. **bounded shapes**: round padded lengths up to a few buckets, so that jit compiles a
#    handful of programs instead of one per length;
# 4. **sharding**: the same program runs over several devices, each taking a slice of
#    the batch.
#
# We measure each one on the pretrained all-MiniLM-L6-v2 and STS Benchmark sentences.
# Timings depend on the machine and on what else runs on it: read the ratios, not the
# digits. `MINISBERT_FAST=1` times fewer sentences.

# %% [markdown]
# ## Set-up
#
# This cell finds the model weights, the datasets and the exercise solutions wherever the
# notebook runs (from `lessons/`, the repository root, or any folder), and fetches the
# weights or the data into `~/.cache/minisbert/` only if they are nowhere to be found.
# On Colab, install minisbert from a clone first, as the comment in the cell says, then
# restart the session once (see `lessons/README.md`).

# %%
# On Colab, once, in a cell above: `!git clone <the minisbert repository> minisbert`, then
# `!pip install -q -e "./minisbert[lessons]"`, then restart the session.
from minisbert import lesson

paths = lesson.setup()

# %%
# %matplotlib inline
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from minisbert import SentenceEncoder
from minisbert.batching import BUCKETS, bucket_length, smart_batches
from minisbert.data import load_dataset
from minisbert.fast.buckets import ENCODE_BUCKETS, MAX_SHAPES, choose_buckets
from minisbert.fast.dropout import Dropout
from minisbert.fast.model import embed_packed
from minisbert.fast.packing import encode_row_length, pack, packed_calls

FAST = os.environ.get("MINISBERT_FAST") == "1"
N_SENTENCES = 256 if FAST else 1280  # STS-b sentences encoded in the smart-batching race
BATCH_SIZE = 32

encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
model = encoder.model  # the SentenceModel: BERT + mean pooling + normalisation
config = model.config
MAX_LENGTH = encoder.max_seq_length  # 256 for this model

test = load_dataset("stsb", "test")
unique = list(dict.fromkeys(s for e in test for s in (e.sentence1, e.sentence2)))
# A random sample: the file is grouped by genre (captions first, then news, forums).
sample = np.random.default_rng(0).choice(len(unique), min(N_SENTENCES, len(unique)),
                                         replace=False)
sentences = [unique[i] for i in sample]
token_ids = encoder.tokenizer.tokenize(sentences)  # one list of ids per sentence
lengths = np.array([len(ids) for ids in token_ids])
print(f"{'fast' if FAST else 'full'} mode: {len(sentences)} sentences, "
      f"{lengths.min()}-{lengths.max()} tokens (median {np.median(lengths):.0f}); "
      f"devices: {jax.devices()}")


def seconds(fn, *args, repeat: int = 1) -> float:
    """Best wall-clock time of fn(*args) over `repeat` runs, waiting for the result."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


# %% [markdown]
# `seconds` calls `jax.block_until_ready`. That matters: JAX dispatches work
# *asynchronously*, so a call returns as soon as the work is queued. Without waiting for
# the result we would time the queueing, not the computation.
#
# ## 1. jit: trace once, compile, reuse
#
# Flax NNX modules are Python objects. To hand one to `jax.jit` we split it into a
# `graphdef` (the structure: which layers, which shapes; static) and a `state` (the
# parameter arrays; traced), and merge them back inside the jitted function. This is
# exactly what `SentenceEncoder.encode` does.

# %%
graphdef, state = nnx.split(model)


@jax.jit
def forward(state, input_ids, attention_mask):  # (B, T), (B, T) -> (B, D)
    return nnx.merge(graphdef, state)(input_ids, attention_mask)


# A typical batch: the middle one of the length-sorted batches.
all_batches = list(smart_batches(token_ids, BATCH_SIZE, MAX_LENGTH))
batch = all_batches[len(all_batches) // 2]
ids, mask = jnp.asarray(batch.input_ids), jnp.asarray(batch.attention_mask)  # (B, T) each

timings = {}  # input shape -> seconds: eager first, eager later, jit first, jit later
for i, m in [(ids[:1], mask[:1]), (ids, mask)]:  # one sentence, then the whole batch
    with jax.disable_jit():  # every jnp operation dispatched on its own, one after another
        eager_first = seconds(model, i, m)
        eager_later = seconds(model, i, m, repeat=3)
    jit_first = seconds(forward, state, i, m)  # trace + compile + run
    jit_later = seconds(forward, state, i, m, repeat=5)  # run only
    timings[i.shape] = (eager_first, eager_later, jit_first, jit_later)

print(f"{'shape':>9s} {'eager 1st':>10s} {'eager':>8s} {'jit 1st':>8s} {'jit':>8s}"
      f" {'speed-up':>9s}")
for shape, (e1, e, j1, j) in timings.items():
    print(f"{str(shape):>9s} {e1:9.2f}s {e * 1e3:6.0f}ms {j1:7.2f}s {j * 1e3:6.0f}ms "
          f"{e / j:8.1f}x")
later_call = timings[ids.shape][3]

# Same numbers either way, and the same as the library's encode:
with jax.disable_jit():
    eager_out = model(ids, mask)
jit_out = forward(state, ids, mask)
assert np.allclose(eager_out, jit_out, atol=1e-5)
assert np.allclose(jit_out[: len(batch.indices)],
                   encoder.encode([sentences[i] for i in batch.indices]), atol=1e-5)

# %% [markdown]
# Read the table column by column.
#
# - **eager, first call**: seconds, not milliseconds. Eager JAX is not an interpreter:
#   each primitive operation is compiled by XLA for its input shapes the first time it
#   is seen, so a forward pass over a new shape means hundreds of small compilations.
# - **eager, later calls**: those tiny programs are cached, but every operation is
#   still a separate round trip from Python, and writes its whole result to memory
#   before the next one reads it.
# - **jit, first call**: one trace and one compilation of the whole forward pass.
# - **jit, later calls**: the compiled program runs without Python in the loop.
#
# The speed-up is largest for one sentence, where the arithmetic is tiny and the
# per-operation overhead is everything. For a full batch on a CPU both versions spend
# most of their time inside the same matrix-multiply routines, and jit's gain shrinks to
# what fusing saves, which on this CPU is little or nothing. (On a GPU each operation
# is a kernel launch, and an unfused chain of them reads and writes the accelerator's
# memory each time, so there jit matters for big batches too.)
#
# What did jit trace? `jax.make_jaxpr` prints the program as a list of primitive
# operations: the list that eager mode walks through one by one. Compiled, XLA fuses
# chains of elementwise work (the GELU, the layer norms, the softmax's exp and divide)
# into the matrix products around them and plans the memory once.

# %%
with jax.disable_jit():  # inline small jitted helpers (softmax) into one list
    jaxpr = jax.make_jaxpr(lambda s, i, m: nnx.merge(graphdef, s)(i, m))(state, ids, mask)
names = [eqn.primitive.name for eqn in jaxpr.jaxpr.eqns]
print(f"{len(names)} primitive operations in one forward pass; the most common:")
for name in sorted(set(names), key=names.count, reverse=True)[:6]:
    print(f"  {name:20s} x{names.count(name)}")

# %% [markdown]
# ## 2. How much arithmetic is that?
#
# Almost all of BERT's work is matrix products. A product of a (T, D_in) matrix with a
# (D_in, D_out) weight costs `2 * T * D_in * D_out` floating point operations (one
# multiply and one add per weight per token). Summed over the layers, that is
# `2 * (weights in matmuls) * T` per sentence. Attention adds two products that grow
# with T²: the scores `Q Kᵀ` and the weighted sum `P V`, each `2 * T * T * D` per layer.
#
#     FLOPs per sentence ≈ 2 · W · T + 4 · L · T² · D,   W = L · (4 D² + 2 D F)
#
# (4 D² for the query, key, value and output projections, 2 D F for the feed-forward
# network.) The embedding lookups, layer norms, softmax and pooling are a rounding error.
# We count W from the model's own parameter shapes and check it against the formula.

# %%
W = sum(
    var.get_value().size
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))
    if path[-1] == "kernel"  # every Linear's weight matrix; embeddings are lookups
)
L, D, F = config.num_hidden_layers, config.hidden_size, config.intermediate_size
assert W == L * (4 * D * D + 2 * D * F)
print(f"weights in matmuls: W = {W:,} (L={L}, D={D}, F={F})")


def flops(B: int, T: int) -> float:
    """FLOPs of one forward pass over a (B, T) batch, padding included."""
    return B * (2 * W * T + 4 * L * T * T * D)


median_T = int(np.median(lengths))
print(f"a {median_T}-token sentence: {flops(1, median_T) / 1e6:.0f} MFLOP "
      f"({4 * L * median_T**2 * D / flops(1, median_T):.1%} of it in attention)")
print(f"our batch {ids.shape}: {flops(*ids.shape) / 1e9:.2f} GFLOP in {later_call * 1e3:.0f} ms"
      f" = {flops(*ids.shape) / later_call / 1e9:.0f} GFLOP/s achieved")

# %% [markdown]
# At sentence lengths attention is a small share: the model's cost is linear in the
# number of token *slots* it computes, padding slots included. Which brings us to
# padding.
#
# ## 3. Smart batching
#
# A batch is a rectangle: every sentence is padded to the batch's longest. In a random
# order, each batch of 32 likely holds one long sentence, and everyone pays for it.
# Sorted by length, neighbours in a batch are about as long as each other.
#
# `smart_batches(..., sort=True)` is what `encode` uses when it pads (for token
# embeddings, or with `encoder.batcher.pack_sentences = False`; by default it packs, as the
# packing section shows); `sort=False` keeps the caller's order. Both pad each batch to
# its bucket (next section). Let us count the slots.

# %%
orders = {
    "sorted": list(smart_batches(token_ids, BATCH_SIZE, MAX_LENGTH, sort=True)),
    "unsorted": list(smart_batches(token_ids, BATCH_SIZE, MAX_LENGTH, sort=False)),
}
real_tokens = int(lengths.sum())
slots, work = {}, {}
for name, batches in orders.items():
    slots[name] = sum(b.input_ids.size for b in batches)
    work[name] = sum(flops(*b.input_ids.shape) for b in batches)
    print(f"{name:9s} {real_tokens:6d} real tokens in {slots[name]:6d} slots: "
          f"{real_tokens / slots[name]:.0%} useful; {work[name] / 1e12:.2f} TFLOP")

fig, ax = plt.subplots(figsize=(5, 3.5))
for name, batches in orders.items():
    ax.step(range(len(batches)), [b.input_ids.shape[1] for b in batches], where="post",
            label=f"{name}: padded length")
ax.plot(np.arange(len(lengths)) / BATCH_SIZE, np.sort(lengths)[::-1], ".", ms=2,
        color="gray", label="sentence lengths, sorted")
ax.set_xlabel("batch")
ax.set_ylabel("tokens")
ax.set_title("padded length of each batch of 32")
ax.legend(fontsize=8, loc="center right")
plt.show()

# %% [markdown]
# Now the race: the same jitted `forward` over both batchings. We first run one batch of
# every shape, so that compilation is not in the timing.

# %%
for shape in {b.input_ids.shape for batches in orders.values() for b in batches}:
    forward(state, jnp.zeros(shape, jnp.int32), jnp.ones(shape, jnp.int32))  # compile


def encode_all(batches) -> list[jax.Array]:
    return [forward(state, b.input_ids, b.attention_mask) for b in batches]


speed = {}
for name, batches in orders.items():
    elapsed = seconds(encode_all, batches)
    speed[name] = len(sentences) / elapsed
    print(f"{name:9s} {speed[name]:7.1f} sentences/s  "
          f"({work[name] / elapsed / 1e9:.0f} GFLOP/s computed)")
print(f"smart batching: {speed['sorted'] / speed['unsorted'] - 1:+.0%} sentences/s")

# %% [markdown]
# The speed-up follows the padding: the compute rate (GFLOP/s) is similar either way
# (short batches run a little less efficiently), the sorted order simply has far fewer
# slots to compute. The SBERT paper measured the
# same effect (Table 7, STS benchmark sentences): SBERT-base went from 44 to 83
# sentences/s on a CPU with smart batching (+89%), and from 1378 to 2042 on a V100 GPU
# (+48%). Our gain comes out larger partly because minisbert rounds the unsorted batches
# up to a bucket as well: a random batch whose longest sentence has 40 tokens computes 64
# columns. Our model has about 8x fewer weights in its matrix products than BERT-base
# (6 layers of width 384 against 12 of width 768: 10.6 million against 85 million), hence
# more sentences per second on a small CPU than the paper's BERT-base on a bigger one.
#
# ### Exercise: padding efficiency without padding anything
#
# Write `padding_efficiency(lengths, batch_size, sort, max_length=256)`: the fraction of
# token slots that hold real tokens when minisbert batches sentences of these token
# lengths. Reproduce `smart_batches`'s rules from its source (`minisbert/batching.py`):
# cap each length at `max_length`; optionally sort longest first; cut into batches of
# `batch_size`. Each batch is padded to `bucket_length(longest, max_length)` columns, its
# own longest length rounded up to a bucket, and to `batch_rows(len(lengths), batch_size)`
# rows. Careful: that `n` is the number of sentences in the *whole call*, not in the
# batch, so every batch has the same rows, the short last one included (`batch_size`
# rows, or the next power of two when the whole call is smaller than one batch). No
# arrays needed: it is arithmetic on lengths.

# %%
def padding_efficiency(lengths: list[int], batch_size: int, sort: bool,
                       max_length: int = 256) -> float:
    raise NotImplementedError("your turn: real tokens / (rows x bucketed length), summed")


# %%
def check_padding_efficiency(fn) -> None:
    # By hand: [3, 30] -> 2 rows x 32 slots, [5, 9] -> 2 x 16, [7] -> 2 x 8 (a short
    # last batch keeps its 2 rows): 54 real tokens in 112 slots.
    got = fn([3, 30, 5, 9, 7], 2, sort=False)
    assert np.isclose(got, 54 / 112), f"unsorted, by hand: expected 54/112, got {got}"
    # Sorted: [30, 9] -> 2 x 32, [7, 5] -> 2 x 8, [3] -> 2 x 8: 54 in 96.
    got = fn([3, 30, 5, 9, 7], 2, sort=True)
    assert np.isclose(got, 54 / 96), f"sorted, by hand: expected 54/96, got {got}"
    # Real data: the same as counting the slots of smart_batches' own arrays.
    for sort in (True, False):
        for size in (8, 32, 100):
            batches = smart_batches(token_ids, size, MAX_LENGTH, sort=sort)
            want = real_tokens / sum(b.attention_mask.size for b in batches)
            got = fn([len(t) for t in token_ids], size, sort=sort, max_length=MAX_LENGTH)
            assert np.isclose(got, want), (sort, size, got, want)


padding_efficiency = lesson.exercise(
    check_padding_efficiency, padding_efficiency, lesson="11_speed"
)

# %% [markdown]
# ## 4. Bounded shapes: why buckets
#
# `jax.jit` compiles one program per input *shape*. Sorting gives nearly every batch its
# own longest length, so padding each batch exactly to its longest would mean a new
# compilation for almost every batch. How long does one compilation take? Let us compile
# `forward` for a length we have not used, 37 tokens.

# %%
odd = jax.ShapeDtypeStruct((BATCH_SIZE, 37), jnp.int32)
start = time.perf_counter()
forward.lower(state, odd, odd).compile()
compile_seconds = time.perf_counter() - start

exact_lengths = {max(len(token_ids[i]) for i in b.indices) for b in orders["sorted"]}
bucketed = {b.input_ids.shape[1] for b in orders["sorted"]}
print(f"one compilation: {compile_seconds:.1f} s, while a compiled batch runs in "
      f"{later_call * 1000:.0f} ms")
print(f"{len(orders['sorted'])} sorted batches: {len(exact_lengths)} distinct exact lengths "
      f"(~{len(exact_lengths) * compile_seconds:.0f} s of compiling), "
      f"but only {len(bucketed)} buckets: {sorted(bucketed)}")

# %% [markdown]
# So minisbert rounds each batch's length up to the next of a few **buckets**, and pads a
# short last batch with empty rows, so every batch has `batch_size` rows:

# %%
print("BUCKETS =", BUCKETS)
print({n: bucket_length(n, MAX_LENGTH) for n in (5, 9, 17, 33, 65, 129, 300)})

# %% [markdown]
# Each bucket costs some padding (a 33-token batch is computed as 64), which is why the
# sorted order above kept only part of its slots useful; the trade is a bounded number of
# programs, whatever the input. Compiling the forward pass for one more bucket takes
# about a second; compiling a train step (forward and backward), 10-30 s.
#
# When `encode` pads, it can afford more: compiling the forward pass alone takes about a
# second. It picks from finer candidates, `ENCODE_BUCKETS`, but never more than `MAX_SHAPES` (8) of
# them in one call: `choose_buckets` looks at the longest sentence of every batch the call
# will form and, when they need more than 8 lengths, merges neighbours where that wastes
# the fewest slots (a small dynamic programme, its formula in the docstring). Compare the
# two on our sorted batches:

# %%
longest = [max(len(token_ids[i]) for i in b.indices) for b in orders["sorted"]]
chosen = choose_buckets(longest, MAX_LENGTH)
fine_slots = sum(
    b.input_ids.shape[0] * bucket_length(n, MAX_LENGTH, chosen)
    for b, n in zip(orders["sorted"], longest, strict=True)
)
print("ENCODE_BUCKETS =", ENCODE_BUCKETS)
print("chosen for these batches:", chosen)
print(f"useful slots: {real_tokens / slots['sorted']:.0%} with BUCKETS, "
      f"{real_tokens / fine_slots:.0%} with the chosen ones")

# %% [markdown]
# ## Training: packing instead of sorting
#
# `encode` may sort its sentences by length; training may not. A training batch is 16
# pairs in the order the shuffle drew them, so its 32 sentences have any mix of lengths,
# and padded to the longest they are mostly padding. The clear version of a train step,
# `minisbert.train.compute_loss`, runs on exactly that: ids `(S, B, T)`, one sentence per
# row. What `minisbert train` runs, `minisbert.fast.PackedSteps`, computes the same loss
# from the same sentences *packed*: whole sentences one after another in rows of `L` slots
# (`minisbert.fast.packing`). Two things keep every sentence's vector what it was:
#
# - its positions restart at 0, so it gets the same position embeddings;
# - an attention mask of shape `(R, L, L)` lets each token see only its own sentence's
#   tokens: another sentence's key gets the score a padding key gets, so softmax gives it
#   weight exactly 0, and every other operation of BERT works on one token at a time.
#
# Then each sentence's token vectors are gathered back to a row of their own and pooled.
# Here is a batch of STS-b train, padded and packed:

# %%
train_pairs = load_dataset("stsb", "train")[:16]
batch_texts = [p.sentence1 for p in train_pairs] + [p.sentence2 for p in train_pairs]
batch_ids = encoder.tokenizer.tokenize(batch_texts)  # 32 lists of ids, unsorted
padded_slots = len(batch_ids) * bucket_length(max(map(len, batch_ids)), MAX_LENGTH)
packed = pack(batch_ids, row_length=96)  # rows (R, 96)
packed_slots = packed.input_ids.size
batch_tokens = sum(map(len, batch_ids))
print(f"{batch_tokens} real tokens: padded {padded_slots} slots "
      f"({batch_tokens / padded_slots:.0%} useful), packed into {packed.input_ids.shape[0]} "
      f"rows of 96: {packed_slots} slots ({batch_tokens / packed_slots:.0%} useful)")
print("row 0, segment ids: ", packed.segment_ids[0][:40])
print("row 0, position ids:", packed.position_ids[0][:40])

packed_vectors = np.asarray(embed_packed(model, packed))  # (32, D)
encoder.batcher.pack_sentences = False  # encode with padded batches, one sentence per row
padded_vectors = encoder.encode(batch_texts)  # (32, D)
encoder.batcher.pack_sentences = True
packing_gap = float(np.abs(packed_vectors - padded_vectors).max())
print(f"packed vs padded: max difference {packing_gap:.1e}")

# %% [markdown]
# Over an epoch of STS-b train this takes a step from 2.2 token slots per real token (each
# side padded to its own longest sentence) to 1.1, and the step time with it. The price:
# attention scores of `(L, L)` per row instead of `(T, T)` per sentence (small next to the
# dense products), and a step's shape is now its number of rows `R`, rounded up to a few
# buckets in the same way as lengths.
#
# ## Encode packs too
#
# Sorted batches leave little padding *within* a batch, but each batch is still rounded
# up to one of at most 8 bucket lengths. `encode` therefore packs as well, for sentence
# vectors (token embeddings stay padded): `packed_calls` lays a call's sentences into rows
# of one length, the first of 8, 16, 32, 48, 64 and 96 that holds 99% of them, and at least
# 32 (the longest 1%, if longer, are padded in batches of their own, so that one long
# sentence does not lengthen every row), and hands them to the model `R` rows at a time,
# with `R` chosen so that a forward pass holds about `batch_size` sentences. Placing up
# to 16,384 sentences by first fit would scan every open row for each sentence;
# `best_fit_rows` instead keeps the rows listed by their free slots and puts each
# sentence, longest first, into the row it fills most tightly. One call is one shape,
# `(R, L)`, instead of up to 8. On our sentences:

# %%
counts = [len(ids) for ids in token_ids]
call_row_length = encode_row_length(counts, MAX_LENGTH)  # holds 99% of the sentences
fit = [ids for ids in token_ids if len(ids) <= call_row_length]
fit_counts = [len(ids) for ids in fit]
calls = list(packed_calls(fit, BATCH_SIZE, call_row_length, float(np.mean(fit_counts))))
call_slots = sum(batch.input_ids.size for _, batch in calls)
print(f"rows of {call_row_length}: {len(fit)} of {len(token_ids)} sentences packed, "
      f"{len(token_ids) - len(fit)} padded apart")
print(f"{len(calls)} calls of {calls[0][1].input_ids.shape} (rows, row length), "
      f"{len(fit) / len(calls):.1f} sentences each on average")
print(f"useful slots: {sum(fit_counts) / call_slots:.0%} packed, "
      f"{real_tokens / fine_slots:.0%} with the chosen buckets")
encode_times = {True: [], False: []}
for packing in [True, False] * 3:  # alternate: this machine's speed drifts
    encoder.batcher.pack_sentences = packing
    encode_times[packing].append(
        seconds(lambda: encoder.encode(sentences, batch_size=BATCH_SIZE)))
encoder.batcher.pack_sentences = True
print(f"encode: packed {1000 * min(encode_times[True]):.0f} ms, padded "
      f"{1000 * min(encode_times[False]):.0f} ms (best of 3 each)")

# %% [markdown]
# Packing fills about 97% of the slots of all STS-b test where the buckets fill 87% (in
# fast mode, with fewer sentences, the buckets do worse); the forward pass runs about as
# fast per slot either way, so encode gains a few per cent (1-10% across our runs on a
# 2-core CPU: packed rows attend over all `L x L` pairs of a row, most of them masked).
# That cost grows with `L`: a slot of a row of 96 cost about a quarter more than one of a
# row of 48. Hence rows that hold 99% of the sentences rather than all of them, and a call whose
# rows would need more than `MAX_PACKED_ROW_LENGTH` (96) slots pads instead. The vectors
# are the same to about 1e-7.

# %% [markdown]
# ## Training: two lines that are about memory, not arithmetic
#
# A training step reads the parameters and Adam's two moments (three copies of the model's
# 22.7 M numbers) and writes new ones. Two settings keep it from paying for memory it
# does not need, and neither changes a single number it computes:
#
# - `train_step`, padded or packed, is
#   `nnx.jit(..., donate_argnames=("trainable", "optimizer"))`. *Donating* an argument
#   tells XLA that the caller is done with those arrays, so it writes the new parameters
#   and moments over the old ones instead of into fresh buffers. The old arrays are
#   deleted: code that kept one (say, to compare weights before and after a step) must
#   copy it first, with `np.array(...)`.
# - `minisbert.fast.host_memory.keep_freed_memory()`, which `minisbert train` calls first
#   thing, changes three settings of the C library's allocator. Each step needs scratch
#   memory, some of it large: the gradient of the word-embedding table alone is
#   30,522 x 384 floats, 47 MB, zero-filled every step. By default a block that large goes
#   back to the operating system when it is freed, and the next step pays for fresh
#   pages. The settings keep it in the process. The price is that the process stays
#   at its peak memory.
#
# The clear version of the step is the same code without either line; `make bench` times
# the step with and without the allocator settings, in the same run.

# %% [markdown]
# ## Training: dropout's random numbers
#
# In training mode each of BERT's 13 dropout layers draws a fresh random mask every step:
# keep a value with probability 0.9, scale the kept ones by 1 / 0.9. JAX's random numbers
# are *counter-based*: each 32-bit number is a hash (Threefry, 20 rounds of add, rotate and
# xor) of the key and the number's position. That makes them reproducible and splittable
# across devices, but not free: a step of 5 packed rows of 96 tokens draws 5.7 million of
# them, most for the attention probabilities (heads x L x L per row and layer).
#
# A keep-or-drop decision does not need 32 bits. `minisbert.fast.dropout.Dropout` is
# `nnx.Dropout` with one change: it cuts each 32-bit word into two 16-bit halves, one per
# value, and drops a value when its half is below round(0.1 x 65536) = 6554. Half the hash
# work for the same masks; the rate becomes 0.1000061, and the kept values are scaled by
# exactly 1 / (1 - that rate). The clear version is `nnx.Dropout` itself. Below, both
# drop the values of one training step (5 rows of 96 tokens), and we count what they drop.
# Only the hashing halves: reading the inputs and writing the outputs cost the same, so
# the whole layer saves less, and in a training step the masks are a small part of the
# work. On a 2-core CPU the step's median CPU time went from 588 to 575 ms (6 alternating
# passes over 60 batches): a small gain, for one short module.

# %%
rows, row_length, heads = 5, 96, config.num_attention_heads
hidden = (rows, row_length, config.hidden_size)  # (R, L, D): after embeddings, W_o, W_2
probs = (rows, heads, row_length, row_length)  # (R, N, L, L): attention probabilities
mask_shapes = [hidden] + config.num_hidden_layers * [probs, hidden, hidden]
step_values = [jnp.ones(shape) for shape in mask_shapes]  # what the 13 layers see in a step
n_values = sum(x.size for x in step_values)
print(f"{n_values / 1e6:.1f} M values to keep or drop per step")
dropped = {}
for name, kind in [("nnx.Dropout, 32 bits a value", nnx.Dropout),
                   ("minisbert Dropout, 16 bits", Dropout)]:
    dropouts = [kind(0.1, rngs=nnx.Rngs(i)) for i in range(len(mask_shapes))]
    drop_all = nnx.jit(lambda ds, xs: [d(x) for d, x in zip(ds, xs, strict=True)])
    drop_all(dropouts, step_values)  # compile
    took = seconds(drop_all, dropouts, step_values, repeat=5)
    outputs = drop_all(dropouts, step_values)
    dropped[name] = sum(float(jnp.sum(y == 0)) for y in outputs) / n_values
    print(f"{name:30s} {1000 * took:5.1f} ms, dropped {dropped[name]:.4f}")

# %% [markdown]
# `encoder.compiled_shapes` records the shapes `encode` has asked for. Let us feed it
# sentences of every length from a few tokens to the maximum, then a second and a third,
# different set of the same kind.

# %%
words = " ".join(sentences).split()
rng = np.random.default_rng(0)
n_varied = 48 if FAST else 256
top = 60 if FAST else 180  # words; ~1.3 tokens per word stays under the 256-token limit


def varied_sentences() -> list[str]:
    starts = rng.integers(0, len(words) - top, n_varied)
    sizes = np.exp(rng.uniform(0, np.log(top), n_varied)).astype(int)  # 1..top, many short
    return [" ".join(words[s : s + n]) for s, n in zip(starts, sizes, strict=True)]


batch_size = 8 if FAST else BATCH_SIZE
encoder.compiled_shapes.clear()  # start the record afresh for this experiment
encoder.batcher.pack_sentences = False  # padded batches, the shapes this section is about
shape_counts = []
for k in range(3):
    start = time.perf_counter()
    encoder.encode(varied_sentences(), batch_size=batch_size)
    shape_counts.append(len(encoder.compiled_shapes))
    print(f"varied set {k + 1}: {time.perf_counter() - start:5.1f} s, "
          f"{shape_counts[-1]} shapes compiled so far")
encoder.batcher.pack_sentences = True
varied_shapes = set(encoder.compiled_shapes)  # (output, (B, T)) of the three sets
print("compiled shapes:", sorted(shape for _, shape in varied_shapes))

# %% [markdown]
# The first set paid for most of the compilations and took longest; the next ones, just
# as varied, found most of their shapes compiled already, and the count grows slowly.
# One call compiles at most `MAX_SHAPES` (8) programs; over many calls with a given batch
# size, at most one per candidate length (15 here, since this model stops at 256 tokens),
# plus a few smaller row counts when a whole call holds fewer sentences than one batch.
#
# ## 5. Devices and sharding
#
# So far one device did everything. JAX sees the devices of the machine and can spread an
# array over them. We name the devices' arrangement with a **mesh** (here one axis,
# `"data"`), and say how an array is laid out over it with a `PartitionSpec`:
# `P("data", None)` splits axis 0 (the batch) over the `"data"` devices and keeps axis 1
# (tokens) whole; `P()` replicates an array (the parameters) on every device. jit then
# compiles a program in which each device embeds its own slice of the batch: data
# parallelism, with no change to the model code.

# %%
devices = jax.devices()
mesh = Mesh(np.array(devices), ("data",))
by_batch = NamedSharding(mesh, P("data", None))  # (B, T): rows split over devices
replicated = NamedSharding(mesh, P())

sharded_ids = jax.device_put(ids, by_batch)
sharded_mask = jax.device_put(mask, by_batch)
sharded_state = jax.device_put(state, replicated)
print(f"{len(devices)} device(s): {devices}")
print("input sharding:", sharded_ids.sharding.spec,
      "-> shards of shape", [s.data.shape for s in sharded_ids.addressable_shards])
sharded_out = forward(sharded_state, sharded_ids, sharded_mask)
print("output sharding:", sharded_out.sharding.spec)
sharded_matches = bool(np.allclose(sharded_out, jit_out, atol=1e-5))

# %% [markdown]
# On this machine there is likely a single CPU device, so the "split" has one piece. To
# see a real split without extra hardware, XLA can pretend a CPU is several devices:
# `XLA_FLAGS=--xla_force_host_platform_device_count=4`. The flag must be set *before*
# JAX starts, so we run a small separate Python process with it. It embeds 8 sentences
# with the batch split over 4 (simulated) devices, 2 sentences each.

# %%
child = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from minisbert import SentenceEncoder
    from minisbert.batching import smart_batches

    sentences = %r
    encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
    graphdef, state = nnx.split(encoder.model)
    forward = jax.jit(lambda state, ids, mask: nnx.merge(graphdef, state)(ids, mask))
    batch = next(smart_batches(encoder.tokenizer.tokenize(sentences), 8, 256, sort=False))
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rows = NamedSharding(mesh, P("data", None))
    ids = jax.device_put(batch.input_ids, rows)
    out = forward(jax.device_put(state, NamedSharding(mesh, P())), ids,
                  jax.device_put(batch.attention_mask, rows))
    print("devices:", jax.devices())
    print("shards:", [(str(s.device), s.data.shape) for s in ids.addressable_shards])
    print("output sharding:", out.sharding.spec)
    np.save(%r, np.asarray(out))
""")
few = sentences[:8]
out_file = Path(os.environ.get("TMPDIR", "/tmp")) / "minisbert_lesson11_sharded.npy"
env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
           JAX_PLATFORMS="cpu")
result = subprocess.run([sys.executable, "-c", child % (few, str(out_file))], env=env,
                        capture_output=True, text=True, timeout=300)
print(result.stdout or result.stderr[-2000:])
four_device_out = np.load(out_file)
out_file.unlink()
four_devices_match = bool(np.allclose(four_device_out, encoder.encode(few), atol=1e-5))
print("4 simulated devices give the same embeddings as 1:", four_devices_match)

# %% [markdown]
# Splitting the batch is the whole of data parallelism for *encoding*: no device needs
# another's rows. (For *training*, the gradients from each slice must be summed across
# devices; jit inserts that communication itself when the parameters are replicated and
# the loss is a mean over the sharded batch.) The batch size must divide evenly over the
# devices, one more reason to keep batches at a fixed number of rows.
#
# ## 6. On a GPU or TPU
#
# The code does not change: `jax.devices()` lists the accelerator, arrays land there by
# default, and `jit` compiles for it. What changes is where the time goes.
#
# - **Bigger batches.** An accelerator does tens to hundreds of TFLOP/s, against the tens
#   of GFLOP/s we measured here, but only when each program gives it enough work: a
#   (32, 16) batch is ~11 GFLOP, a tenth of a millisecond of work for it, not much more
#   than the fixed cost of starting the program. Batches of 128-512 sentences keep it busy.
# - **bfloat16.** Matrix units (tensor cores, the TPU's MXU) are fastest on 16-bit
#   inputs. Casting the parameters and activations to `jnp.bfloat16` (keeping layer norm
#   and softmax in float32) halves memory traffic and multiplies matmul throughput. The
#   price is precision: bfloat16 keeps only 8 bits of mantissa (2-3 decimal digits), so
#   the embeddings move a little; usually fine for search, worth re-checking on STS.
# - **Padding matters less, shapes matter more.** The paper saw +48% from smart batching
#   on a GPU against +89% on a CPU: a GPU computes a padded slot nearly for free while it
#   has spare capacity. On a TPU, compiling is slower still and shapes must be static, so
#   buckets are essential.
# - **Overlap.** `encode` queues batch k on the device and pads batch k+1 on the host
#   while it runs (asynchronous dispatch); the results are read back only at the end.
#
# ## What we showed, checked
#
# The asserts below fail if a claim of this lesson is false. Timings are compared with
# wide margins: this machine is shared and its timings wobble.

# %%
# jit: the compiled program beats op-by-op execution (by far on one sentence), eager
# mode compiles every operation on first sight, and jit's first call pays for compiling.
e1, e, j1, j = timings[ids[:1].shape]
assert 2 * j < e, timings
assert e1 > 3 * e and j1 > j, timings

# FLOPs: W counted from the shapes matches the formula (checked above); padding wastes
# less, and less arithmetic is done, when the sentences are sorted.
assert slots["sorted"] < slots["unsorted"]
assert work["sorted"] < work["unsorted"]
assert np.isclose(padding_efficiency(list(lengths), BATCH_SIZE, True),
                  real_tokens / slots["sorted"])

# Buckets: exact lengths would need more programs than buckets do; the chosen finer
# buckets waste fewer slots than the training ones and stay within 8 shapes; three varied
# sets compile one program per candidate length at most, the first at most 8.
assert len(exact_lengths) > len(bucketed)
assert len(chosen) <= MAX_SHAPES and fine_slots <= slots["sorted"]
assert shape_counts[0] <= MAX_SHAPES, varied_shapes
assert shape_counts[-1] <= len(ENCODE_BUCKETS), varied_shapes
assert all(T in ENCODE_BUCKETS for _, (_, T) in varied_shapes)

# Encode's packing: one shape for the whole call, more of its slots real.
assert len({batch.input_ids.shape for _, batch in calls}) == 1
assert real_tokens / call_slots > real_tokens / fine_slots

# Packing: fewer slots for the same sentence vectors.
assert packed_slots < padded_slots and packing_gap < 1e-5, (packed_slots, packing_gap)

# Dropout: 16-bit draws drop at the same rate as nnx.Dropout's 32-bit ones (5.7 M draws:
# a standard error of 1.3e-4).
assert all(abs(rate - 0.1) < 1e-3 for rate in dropped.values()), dropped

# Sharding: splitting the batch over devices changes where, not what.
assert sharded_matches and four_devices_match
print("all claims hold")

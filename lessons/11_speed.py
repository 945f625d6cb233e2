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
# **Time on a 2-core CPU:** fast mode 2 to 2.5 minutes (measured on a shared 2-core CPU); full mode,
# the default, about 5 minutes (measured, likewise). On a GPU: not measured yet. Fast mode: set
# `MINISBERT_FAST=1` before starting Jupyter, or `FAST = True` in the cell that sets `FAST`.
#
# minisbert's BERT is written for reading, not hand-fused for speed. It is fast anyway,
# because of four ideas that live *outside* the model code: **jit** (compile the Python
# once per input shape), **smart batching** (sort by length, so little work goes to
# padding: the SBERT paper's Table 7), **bounded shapes** (a few bucket lengths, so a few
# programs) and **packing** (several sentences to a row). We measure each on
# all-MiniLM-L6-v2 and STS Benchmark sentences, then say what changes on a GPU or TPU.
# Timings depend on the machine and what else runs on it: read the ratios, not the
# digits. `MINISBERT_FAST=1` times fewer sentences. The engineering details (allocator,
# 16-bit dropout, donation, how buckets are chosen) are in `bench/README.md`, section
# "Engineering notes (lesson 11's appendix)".

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
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from minisbert import FastEncoder, SentenceEncoder
from minisbert.batching import (
    BUCKETS,
    batch_rows,  # noqa: F401 - the exercise's to use
    bucket_length,
    smart_batches,
)
from minisbert.data import load_dataset
from minisbert.fast.model import embed_packed
from minisbert.fast.packing import encode_row_length, pack, packed_calls

FAST = os.environ.get("MINISBERT_FAST") == "1"
N_SENTENCES = 256 if FAST else 1280  # STS-b sentences encoded in the races
BATCH_SIZE = 32

encoder = FastEncoder.from_pretrained("all-MiniLM-L6-v2")  # encode packs
plain = SentenceEncoder(encoder.model, encoder.tokenizer)  # the core's: smart batching, padded
model = encoder.model  # the SentenceModel: BERT + mean pooling + normalisation
MAX_LENGTH = encoder.max_seq_length  # 256 for this model

test = load_dataset("stsb", "test")
unique = list(dict.fromkeys(s for e in test for s in (e.sentence1, e.sentence2)))
# A random sample: the file is grouped by genre (captions first, then news, forums).
sentences = [
    unique[i] for i in np.random.default_rng(0).choice(len(unique), N_SENTENCES, replace=False)
]
token_ids = encoder.tokenizer.tokenize(sentences)  # one list of ids per sentence
lengths = np.array([len(ids) for ids in token_ids])
real_tokens = int(lengths.sum())
print(
    f"{'fast' if FAST else 'full'} mode: {len(sentences)} sentences, "
    f"{lengths.min()}-{lengths.max()} tokens (median {np.median(lengths):.0f}); "
    f"devices: {jax.devices()}"
)


def seconds(fn, *args, repeat: int = 1) -> float:
    """Best wall-clock time of fn(*args) over `repeat` runs. JAX dispatches work
    asynchronously (a call returns once the work is queued): we wait for the result."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


# %% [markdown]
# ## 1. jit: trace once per shape, compile, reuse
#
# To hand an NNX module to `jax.jit` we split it into a `graphdef` (the structure; static)
# and a `state` (the parameter arrays; traced), and merge them inside the jitted function,
# as `encode` does. We time one sentence and a whole batch, op by op (eager) and jitted.

# %%
graphdef, state = nnx.split(model)


@jax.jit
def forward(state, input_ids, attention_mask):  # (B, T), (B, T) -> (B, D)
    return nnx.merge(graphdef, state)(input_ids, attention_mask)


all_batches = list(smart_batches(token_ids, BATCH_SIZE, MAX_LENGTH))
batch = all_batches[len(all_batches) // 2]  # a typical batch of the length-sorted ones
ids, mask = jnp.asarray(batch.input_ids), jnp.asarray(batch.attention_mask)  # (B, T) each

timings = {}  # input shape -> seconds: eager first, eager later, jit first, jit later
for i, m in [(ids[:1], mask[:1]), (ids, mask)]:  # one sentence, then the whole batch
    with jax.disable_jit():  # every jnp operation dispatched on its own
        eager_first = seconds(model, i, m)
        eager_later = seconds(model, i, m, repeat=3)
    jit_first = seconds(forward, state, i, m)  # trace + compile + run
    jit_later = seconds(forward, state, i, m, repeat=5)  # run only
    timings[i.shape] = (eager_first, eager_later, jit_first, jit_later)

print("shape      eager 1st    eager  jit 1st      jit  speed-up")
for shape, (e1, e, j1, j) in timings.items():
    print(f"{str(shape):9s} {e1:9.2f}s {e * 1e3:6.0f}ms {j1:7.2f}s {j * 1e3:6.0f}ms {e / j:8.1f}x")
later_call = timings[ids.shape][3]

with jax.disable_jit():
    eager_out = model(ids, mask)
jit_out = forward(state, ids, mask)
assert np.allclose(eager_out, jit_out, atol=1e-5)  # the same numbers, and the same as encode's
assert np.allclose(
    jit_out[: len(batch.indices)], encoder.encode([sentences[i] for i in batch.indices]), atol=1e-5
)

# %% [markdown]
# Eager JAX compiles each primitive operation for its shapes on first sight (hundreds of
# small compilations), then dispatches them one by one from Python, each writing its
# result to memory before the next reads it. jit traces the pass once (`jax.make_jaxpr`
# prints what it records) and compiles one program, fusing GELU, layer norms and softmax
# into the products around them. Its cost is the first call, paid again for every new
# input *shape*. The gain is largest for one sentence, where per-operation overhead is
# everything; for a full batch on a CPU both spend most of their time in the same products.
#
# ## 2. Smart batching (the paper's Table 7)
#
# Almost all of BERT's work is matrix products, 2 FLOPs per dense weight per token, so a
# batch costs roughly the same per token **slot**, B x T, padding included (attention's
# share grows with T², but is small at sentence lengths). A batch is a rectangle, every
# sentence padded to the batch's longest: in random order each batch of 32 likely holds
# one long sentence and everyone pays for it; sorted, neighbours are about as long as each
# other. `smart_batches(..., sort=True)` is the plain path's batching (`SmartBatcher`);
# `sort=False` keeps the caller's order; both round a batch's length up to a bucket
# (section 3). We count the slots, then time the same jitted `forward` over both.

# %%
orders = {
    "sorted": list(smart_batches(token_ids, BATCH_SIZE, MAX_LENGTH, sort=True)),
    "unsorted": list(smart_batches(token_ids, BATCH_SIZE, MAX_LENGTH, sort=False)),
}
slots = {name: sum(b.input_ids.size for b in batches) for name, batches in orders.items()}
for shape in {b.input_ids.shape for batches in orders.values() for b in batches}:
    forward(state, jnp.zeros(shape, jnp.int32), jnp.ones(shape, jnp.int32))  # compile first

speed = {}
for name, batches in orders.items():
    elapsed = seconds(
        lambda bs: [forward(state, b.input_ids, b.attention_mask) for b in bs], batches
    )
    speed[name] = len(sentences) / elapsed
    print(
        f"{name:9s} {real_tokens} real tokens in {slots[name]:6d} slots "
        f"({real_tokens / slots[name]:.0%} useful): {speed[name]:6.1f} sentences/s, "
        f"{1e6 * elapsed / slots[name]:.0f} us per slot"
    )
print(
    f"smart batching: {speed['sorted'] / speed['unsorted'] - 1:+.0%} sentences/s, "
    f"{slots['unsorted'] / slots['sorted']:.2f}x fewer slots"
)

plt.figure(figsize=(5, 3.5))
for name, batches in orders.items():
    plt.step(
        range(len(batches)),
        [b.input_ids.shape[1] for b in batches],
        where="post",
        label=f"{name}: padded length",
    )
plt.plot(
    np.arange(len(lengths)) / BATCH_SIZE,
    np.sort(lengths)[::-1],
    ".",
    ms=2,
    color="gray",
    label="sentence lengths, sorted",
)
plt.xlabel("batch of 32")
plt.ylabel("tokens")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# The sorted order has far fewer slots to compute. A slot of its short batches costs
# more (small matrix products run less efficiently), so the speed-up is smaller
# than the ratio of slots, but it follows them. The paper measured the same effect
# (Table 7, STS benchmark sentences): SBERT-base went from 44 to 83 sentences/s on a CPU
# with smart batching (+89%), and from 1378 to 2042 on a V100 GPU (+48%). Our model has
# about 8x fewer dense weights than BERT-base (6 layers of width 384 against 12 of 768).
#
# ### Exercise: padding efficiency without padding anything
#
# Write `padding_efficiency(lengths, batch_size, sort, max_length=256)`: the fraction of
# token slots that hold real tokens when `smart_batches` (`minisbert/batching.py`) batches
# sentences of these token lengths. Cap each length at `max_length`; optionally sort
# longest first; cut into batches of `batch_size`. Each batch is padded to
# `bucket_length(longest, max_length)` columns and `batch_rows(len(lengths), batch_size)`
# rows. Careful: that `n` counts the sentences of the *whole call*, so every batch has
# the same rows, the short last one included. No arrays needed: it is arithmetic.


# %%
def padding_efficiency(
    lengths: list[int], batch_size: int, sort: bool, max_length: int = 256
) -> float:
    raise NotImplementedError("your turn: real tokens / (rows x bucketed length), summed")


# %%
def check_padding_efficiency(fn) -> None:
    fn = lesson.by_hand(fn, smart_batches)  # arithmetic: no batches built
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
# ## 3. Bounded shapes: why buckets
#
# jit compiles one program per input *shape*. Sorting gives nearly every batch its own
# longest length, so padding each batch exactly to its longest would mean a compilation
# for almost every batch. We time one (`forward` for 37 tokens, a length not yet used).

# %%
odd = jax.ShapeDtypeStruct((BATCH_SIZE, 37), jnp.int32)
start = time.perf_counter()
forward.lower(state, odd, odd).compile()  # trace and compile, without running
compile_seconds = time.perf_counter() - start
exact_lengths = {max(len(token_ids[i]) for i in b.indices) for b in orders["sorted"]}
bucketed = {b.input_ids.shape[1] for b in orders["sorted"]}
print(
    f"one compilation: {compile_seconds:.1f} s, while a compiled batch runs in "
    f"{later_call * 1000:.0f} ms"
)
print(
    f"{len(orders['sorted'])} sorted batches: {len(exact_lengths)} exact lengths "
    f"(~{len(exact_lengths) * compile_seconds:.0f} s of compiling), "
    f"{len(bucketed)} buckets: {sorted(bucketed)}"
)
print("BUCKETS =", BUCKETS, {n: bucket_length(n, MAX_LENGTH) for n in (5, 9, 17, 33, 300)})

# %% [markdown]
# So minisbert rounds each batch's length up to the next of a few **buckets** and gives
# every batch `batch_size` rows (a short last batch gets empty ones). A bucket costs some
# padding (a 33-token batch is computed as 64); the trade is a bounded number of programs,
# whatever the input. `encode` records its shapes in `compiled_shapes`: we feed the plain
# encoder three sets of word runs of every length, from one word to the token limit.

# %%
words, rng = " ".join(sentences).split(), np.random.default_rng(0)
n_varied, top = (48, 60) if FAST else (256, 180)  # top: words; ~1.3 tokens a word < 256
shape_counts = []
for k in range(3):
    starts = rng.integers(0, len(words) - top, n_varied)
    sizes = np.exp(rng.uniform(0, np.log(top), n_varied)).astype(int)  # 1..top, many short
    start = time.perf_counter()
    plain.encode(
        [" ".join(words[s : s + n]) for s, n in zip(starts, sizes, strict=True)],
        batch_size=8 if FAST else BATCH_SIZE,
    )
    shape_counts.append(len(plain.compiled_shapes))
    print(
        f"varied set {k + 1}: {time.perf_counter() - start:5.1f} s, "
        f"{shape_counts[-1]} shapes compiled so far"
    )
varied_shapes = set(plain.compiled_shapes)  # (output, (B, T)) of the three sets
possible = {bucket_length(n, MAX_LENGTH) for n in range(1, MAX_LENGTH + 1)}
print(
    "compiled:", sorted(shape for _, shape in varied_shapes), "lengths possible:", sorted(possible)
)

# %% [markdown]
# The first set paid for most of the compilations; the next ones, just as varied, found
# their shapes compiled already: at most one program per bucket, whatever the input. (The
# fast path's padded batches pick finer lengths per call, at most 8 of 17, chosen to waste
# the fewest slots: `minisbert.fast.buckets`.)
#
# ## 4. Why packing helps
#
# Training may not sort: a batch is 16 pairs in the order the shuffle drew them, and its
# 32 sentences padded to the longest are mostly padding. The plain train step
# (`minisbert.train`) runs on exactly that. What `minisbert train` runs,
# `minisbert.fast.PackedSteps`, computes the same loss from the same sentences *packed*,
# one after another in rows of `L` slots (`minisbert.fast.packing`). Each sentence's
# positions restart at 0, and an attention mask `(R, L, L)` lets a token see only its own
# sentence: another sentence's key gets a padding key's score, so softmax gives it weight
# exactly 0 (every other operation of BERT works on one token at a time). A batch of
# STS-b train, padded and packed:

# %%
train_pairs = load_dataset("stsb", "train")[:16]
batch_texts = [p.sentence1 for p in train_pairs] + [p.sentence2 for p in train_pairs]
batch_ids = encoder.tokenizer.tokenize(batch_texts)  # 32 lists of ids, unsorted
padded_slots = len(batch_ids) * bucket_length(max(map(len, batch_ids)), MAX_LENGTH)
packed = pack(batch_ids, row_length=96)  # rows (R, 96)
packed_slots = packed.input_ids.size
batch_tokens = sum(map(len, batch_ids))
print(
    f"{batch_tokens} real tokens: padded {padded_slots} slots "
    f"({batch_tokens / padded_slots:.0%} useful), packed into {packed.input_ids.shape[0]} "
    f"rows of 96: {packed_slots} slots ({batch_tokens / packed_slots:.0%} useful)"
)
print("row 0, segment ids: ", packed.segment_ids[0][:40])
print("row 0, position ids:", packed.position_ids[0][:40])

packed_vectors = np.asarray(embed_packed(model, packed))  # (32, D)
padded_vectors = plain.encode(batch_texts)  # (32, D): one sentence per padded row
packing_gap = float(np.abs(packed_vectors - padded_vectors).max())
print(f"packed vs padded: max difference {packing_gap:.1e}")

# %% [markdown]
# The price: attention scores `(L, L)` per row instead of `(T, T)` per sentence, and a
# step's shape is its number of rows `R`, rounded up to a few buckets like lengths.
#
# `FastEncoder` (from `minisbert.fast`, what the `minisbert` command uses) packs `encode`'s
# sentence vectors too: sorted batches still round up to a bucket. It lays a call's
# sentences into rows of one length `L`, long enough for 99% of them (the rest are padded
# apart), about `batch_size` sentences per forward pass: one shape per call.
# `encoder.batcher.pack_sentences = False` switches it to padded batches; the core's
# `SentenceEncoder`, our `plain`, is the paper's smart batching (`SmartBatcher`). On our
# sentences, the slots and the time of a whole `encode`:

# %%
row_length = encode_row_length(lengths, MAX_LENGTH)
fit = [ids for ids in token_ids if len(ids) <= row_length]
calls = list(packed_calls(fit, BATCH_SIZE, row_length, float(np.mean(list(map(len, fit))))))
packed_useful = sum(map(len, fit)) / sum(batch.input_ids.size for _, batch in calls)
print(
    f"rows of {row_length}: {len(fit)} of {len(token_ids)} sentences packed, "
    f"{len(calls)} calls of shape {calls[0][1].input_ids.shape} (rows, row length)"
)
print(
    f"useful slots: {packed_useful:.0%} packed, "
    f"{real_tokens / slots['sorted']:.0%} sorted and bucketed"
)

encoders = {"packed": encoder, "plain": plain}
vectors = {name: e.encode(sentences, batch_size=BATCH_SIZE) for name, e in encoders.items()}
encode_times = {"packed": [], "plain": []}
for _ in range(3):  # alternate: this machine's speed drifts
    for name, e in encoders.items():
        encode_times[name].append(seconds(e.encode, sentences, BATCH_SIZE))
encode_gap = float(np.abs(vectors["packed"] - vectors["plain"]).max())
print(
    f"encode, best of 3: packed {1000 * min(encode_times['packed']):.0f} ms, plain "
    f"{1000 * min(encode_times['plain']):.0f} ms; vectors differ by {encode_gap:.1e}"
)

# %% [markdown]
# Packing fills more slots for the same vectors, up to float rounding. Time usually gains
# less than slots do: a packed row attends over all `L x L` pairs of its tokens, most of them
# masked, so encode keeps rows short (at most 96 slots, else it pads); `bench/README.md`
# has the measurements behind that choice.
#
# ## 5. On a GPU or TPU
#
# The code does not change: `jax.devices()` lists the accelerator and `jit` compiles for
# it. What changes is where the time goes.
#
# - **Bigger batches.** An accelerator does tens to hundreds of TFLOP/s, but only when each
#   program gives it enough work: batches of 128-512 sentences keep it busy.
# - **Precision.** On a recent NVIDIA GPU, JAX computes a float32 matrix product in TF32
#   by default (10 mantissa bits instead of 23), on a TPU in bfloat16 passes: about 1e-3
#   off. Fine for training; not for a check at 1e-5. minisbert's one policy
#   (`minisbert/precision.py`): what compares two computations runs at full float32 (the
#   tests, and every lesson: `lesson.setup()` above pinned it, and printed so), training
#   and encoding use the device's default unless asked (`minisbert --precision highest`).
#   `make device-check` measures what each costs on the device you have.
# - **bfloat16.** Matrix units (tensor cores, the TPU's MXU) are fastest on 16-bit inputs.
#   `minisbert.fast.compute_in_bfloat16(encoder.model)` makes every dense product compute
#   in bfloat16 (LayerNorm and the residual sums stay float32). bfloat16 stores 7 mantissa
#   bits (8 with the implicit leading one), so the embeddings move a little: re-check on
#   STS. On a CPU it is slower.
# - **Several devices.** A `jax.sharding.Mesh` names the devices (one axis, `"data"`), and
#   a `PartitionSpec` splits the batch's rows over it and copies the parameters to each.
#   jit compiles one program for the global arrays and XLA adds the communication the loss
#   needs, so the result is one device's (`minisbert.fast.sharding`, used by `PackedSteps`;
#   `tests/test_sharding.py` checks 4 simulated devices against 1).
# - **Padding matters less, shapes matter more.** The paper saw +48% from smart batching
#   on a V100 against +89% on a CPU: a GPU computes a padded slot nearly for free while
#   it has spare capacity. On a TPU compiling is slower and shapes must be static, so
#   buckets are essential.
#
# ## 6. Several processes: one run over several machines
#
# One machine's devices share one process. Past that (several GPU hosts, a TPU pod slice)
# JAX runs one *process* per host, all running the same program on their own devices, and
# joins them with `jax.distributed` (`minisbert/fast/distributed.py`):
#
#     minisbert train ... --coordinator HOST:PORT --num-processes 2 --process-id 0
#     minisbert train ... --coordinator HOST:PORT --num-processes 2 --process-id 1
#
# - **Replicated**: the model, the optimiser state, the seed. Every process loads the same
#   weights and data, so each knows every global batch and draws the same dropout keys.
# - **Split**: the rows of each global batch. The mesh's `"data"` axis spans the devices of
#   every process; each process hands JAX only the rows its devices hold
#   (`jax.make_array_from_process_local_data`).
# - **Where they meet**: inside the one jitted step. The gradient is a sum over every row
#   of the global batch, so XLA inserts an *all-reduce* that adds the devices' partial
#   gradients (gloo on CPUs, NCCL on GPUs); every process then takes the same optimiser
#   step and the copies stay equal. In-batch negatives (lesson 9) need every device's
#   positives: the (B, B) similarity matrix makes XLA *all-gather* them, so an anchor still
#   meets the whole global batch's negatives, as on one device.
# - **Written once**: process 0 writes the checkpoints and the model; a process that dies
#   stops the others (its peers' next collective fails; a heartbeat for a machine that
#   vanishes) instead of leaving them waiting in a collective.
#
# Two processes on this machine, one CPU device each, against one process with two devices:
# the same mesh, batches, seed and program, so the same weights.

# %%
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

workdir = Path(tempfile.mkdtemp(prefix="lesson11-processes-"))
train_pairs = load_dataset("stsb", "train")[:32]  # 4 global batches of 8
(workdir / "pairs.tsv").write_text(
    "sentence1\tsentence2\tscore\n"
    + "".join(f"{e.sentence1}\t{e.sentence2}\t{e.label / 5}\n" for e in train_pairs)
)
with socket.socket() as sock:  # a free port for the coordinator
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]


def start(output, devices, *extra):
    """`minisbert train` in a new process with `devices` CPU devices."""
    args = [
        "train",
        "--model",
        str(paths.weights),
        "--data",
        str(workdir / "pairs.tsv"),
        "--loss",
        "cosine",
        "--batch-size",
        "8",
        "--max-steps",
        "2",
        "--lr",
        "1e-4",
        "--eval-data",
        "none",
        "--no-progress",
        "--output",
        str(workdir / output),
        *extra,
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices))
    return subprocess.Popen(
        [sys.executable, "-m", "minisbert.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


runs = [start("one", 2)] + [
    start(
        "two",
        1,
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        "2",
        "--process-id",
        str(i),
    )
    for i in (0, 1)
]
for run in runs:
    out, err = run.communicate(timeout=1800)
    assert run.returncode == 0, err[-2000:]
    print(out.strip())

probe = sentences[:16]
start_vectors = encoder.encode(probe)
one_process = SentenceEncoder.from_pretrained(workdir / "one").encode(probe)
two_processes = SentenceEncoder.from_pretrained(workdir / "two").encode(probe)
shutil.rmtree(workdir)  # the two trained models, 90 MB each
moved = float(np.abs(one_process - start_vectors).max())
process_gap = float(np.abs(two_processes - one_process).max())
print(
    f"training moved the vectors by up to {moved:.2e}; two processes against one: {process_gap:.1e}"
)

# %% [markdown]
# ## What we showed, checked
#
# These asserts fail if a claim of this lesson is false. Timings are compared only as
# ratios with wide margins: this machine is shared and its timings wobble.

# %%
# jit: on one sentence the compiled program beats op-by-op execution, and its first call
# pays for compiling (jit equals eager, and encode, was checked in section 1).
_, e, j1, j = timings[ids[:1].shape]
assert 2 * j < e and j1 > 2 * j, timings

# Smart batching: sorting leaves fewer slots; the exercise counts smart_batches' slots.
assert slots["sorted"] < slots["unsorted"]
assert np.isclose(
    padding_efficiency(list(lengths), BATCH_SIZE, True), real_tokens / slots["sorted"]
)

# Bounded shapes: buckets need fewer programs than exact lengths; three varied sets
# compile one program per bucket at most, all of them bucket lengths.
assert len(bucketed) < len(exact_lengths)
assert shape_counts[-1] <= len(possible), varied_shapes
assert all(T in possible for _, (_, T) in varied_shapes), varied_shapes

# Packing: fewer slots for the same sentence vectors, in training and in encode; one
# shape for all of encode's packed calls.
assert packed_slots < padded_slots and packing_gap < 1e-5, (packed_slots, packing_gap)
assert len({batch.input_ids.shape for _, batch in calls}) == 1
assert packed_useful > real_tokens / slots["sorted"]
assert encode_gap < 1e-5, encode_gap

# Several processes: two processes of one device each train the weights of one process of
# two devices (the same program; at most float rounding in the collectives apart).
assert moved > 0 and process_gap <= 0.01 * moved, (moved, process_gap)
print("all claims hold")

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
# # Lesson 1: why sentence embeddings?
#
# **Time on a 2-core CPU:** fast mode 30 to 40 seconds (measured on a shared 2-core CPU); full mode,
# the default, about 2.5 minutes (measured, likewise). On a GPU: not measured yet. Fast mode: set
# `MINISBERT_FAST=1` before starting Jupyter, or `FAST = True` in the cell that sets `FAST`.
#
# You have 10,000 sentences and want the two that mean the most nearly the same thing.
# BERT is very good at judging whether two sentences are paraphrases, *if you show it both
# at once*. The Sentence-BERT paper (Reimers & Gurevych, 2019) opens with the catch:
#
# > Finding in a collection of n = 10,000 sentences the pair with the highest similarity
# > requires with BERT n·(n−1)/2 = 49,995,000 inference computations. On a modern V100
# > GPU, this requires about 65 hours.
#
# and with SBERT "about 5 seconds". In this lesson we measure both approaches on *this*
# machine, with a real model and real sentences, and see where the factor of many
# thousands comes from.
#
# Two ways to use a Transformer to score a pair of sentences:
#
# - **cross-encoder**: feed both sentences as *one* input, `[CLS] a [SEP] b [SEP]`, and
#   read a score off the output. Every token of `a` attends to every token of `b`, which
#   is accurate, but the work is done *per pair*: nothing computed for the pair (a, b)
#   can be reused for (a, c).
# - **bi-encoder** (Sentence-BERT): feed each sentence *alone*, pool its token vectors
#   into one vector `u`, and compare vectors with cosine similarity. The expensive part
#   is done *per sentence*; comparing two vectors is a 384-term dot product.
#
# Run with `MINISBERT_FAST=1` and the lesson times fewer sentences and pairs, then
# extrapolates; every extrapolated figure is labelled as such.

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
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from minisbert import SentenceEncoder, cos_sim
from minisbert.batching import smart_batches
from minisbert.data import load_dataset
from minisbert.similarity import paraphrase_mining_embeddings, semantic_search
from minisbert.tokenizer import pad_batch

FAST = os.environ.get("MINISBERT_FAST") == "1"
N_COLLECTION = 10_000  # the paper's collection size: the figure we estimate for
N_ENCODE = 500 if FAST else 10_000  # sentences we actually run through the bi-encoder
N_PAIRS = 64 if FAST else 512  # pairs we actually run through the cross-encoder
N_WARMUP = 256 if FAST else 512  # other sentences, encoded once before timing (not timed)
print(f"mode: {'fast' if FAST else 'full'}; jax devices: {jax.devices()}")

# %% [markdown]
# ## The model and the sentences
#
# We use the pretrained `all-MiniLM-L6-v2`: a small BERT (6 layers, hidden size 384,
# 12 heads) trained as a bi-encoder. For the cross-encoder timing we run the *same* BERT
# on sentence pairs. Its weights were not trained to score pairs that way, so the numbers
# it outputs would be meaningless as scores, but the amount of computation is what a
# cross-encoder of this size does, less its head. A real one (lesson 13) reads the `[CLS]`
# vector through BERT's pooler, a D x D linear layer and a tanh, then one linear layer to
# the score: about 150,000 multiply-adds per pair, next to the encoder's millions per token.
#
# The sentences are the distinct sentences of the STS Benchmark, shuffled.

# %%
encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
config = encoder.model.config
print(
    f"{config.num_hidden_layers} layers, hidden size {config.hidden_size}, "
    f"{config.num_attention_heads} heads"
)

examples = [ex for split in ("train", "dev", "test") for ex in load_dataset("stsb", split)]
distinct = list(dict.fromkeys(s for ex in examples for s in (ex.sentence1, ex.sentence2)))
rng = np.random.default_rng(0)
order = rng.permutation(len(distinct))
sentences = [distinct[i] for i in order[:N_COLLECTION]]
warmup_sentences = [distinct[i] for i in order[N_COLLECTION : N_COLLECTION + N_WARMUP]]
print(f"{len(distinct):,} distinct STS-b sentences; we use {len(sentences):,}, e.g.")
for s in sentences[:3]:
    print("  ", s)

# %% [markdown]
# ## The two architectures, drawn
#
# Left, what `cross_encoder_pass` below computes: one BERT pass over the pair, a score read
# off the `[CLS]` vector. Right, what `encoder.encode` and `cos_sim` compute: one BERT pass
# and one pooling per sentence, then a cosine of two stored vectors. Both BERTs on the right
# are the same module with the same weights, called twice.


# %%
def box(ax, x, y, text, color):
    """A rounded box holding ``text``, centred at (x, y) in axes coordinates (0 to 1)."""
    ax.text(
        x,
        y,
        text,
        ha="center",
        va="center",
        fontsize=8,
        bbox={"boxstyle": "round,pad=0.4", "facecolor": color, "edgecolor": "black"},
    )


def arrow(ax, start, end, style="->"):
    """An arrow between two box centres; shrinkA/B (in points) stop it at the box edges."""
    ax.annotate(
        "", xy=end, xytext=start, arrowprops={"arrowstyle": style, "shrinkA": 11, "shrinkB": 11}
    )


def chain(ax, x, ys, boxes):
    """Boxes (text, color) stacked at heights ``ys``, each with an arrow up to the next."""
    for i, (y, (text, color)) in enumerate(zip(ys, boxes, strict=True)):
        box(ax, x, y, text, color)
        if i > 0:
            arrow(ax, (x, ys[i - 1]), (x, y))


TEXT, MODEL, VECTOR = "#eeeeee", "#dbe9f6", "#fde7c8"
fig, (cross_ax, bi_ax) = plt.subplots(1, 2, figsize=(9, 3.8))
for ax in (cross_ax, bi_ax):
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.axis("off")

cross_ax.set_title("cross-encoder: one BERT pass per pair", fontsize=10)
for x, name in [(0.25, "sentence A"), (0.75, "sentence B")]:
    box(cross_ax, x, 0.04, name, TEXT)
    arrow(cross_ax, (x, 0.04), (0.5, 0.27))
chain(
    cross_ax,
    0.5,
    [0.27, 0.5, 0.73, 0.95],
    [
        ("[CLS] A [SEP] B [SEP]", TEXT),
        ("BERT: A and B attend to each other", MODEL),
        ("[CLS] vector → pooler (linear, tanh) → linear", MODEL),
        ("score(A, B)", VECTOR),
    ],
)

bi_ax.set_title("bi-encoder (SBERT): one BERT pass per sentence", fontsize=10)
for x, name, vector in [(0.25, "sentence A", "u"), (0.75, "sentence B", "v")]:
    chain(
        bi_ax,
        x,
        [0.04, 0.27, 0.5, 0.73],
        [(name, TEXT), ("BERT", MODEL), ("mean pooling", MODEL), (vector, VECTOR)],
    )
    arrow(bi_ax, (x, 0.73), (0.5, 0.95))
arrow(bi_ax, (0.36, 0.27), (0.64, 0.27), style="<->")
bi_ax.text(0.5, 0.31, "same weights", ha="center", fontsize=7)
box(bi_ax, 0.5, 0.95, "cos(u, v)", VECTOR)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## A cross-encoder pass
#
# The tokenizer already knows how to pack two sentences into one input. Look at the
# `token_type_ids` (BERT calls them segment ids): 0 for `[CLS]`, the first sentence and
# its `[SEP]`, 1 for the second sentence. BERT adds a learned "segment A" or "segment B"
# vector to each token so it can tell the two sentences apart.

# %%
a, b = sentences[0], sentences[1]
pair = encoder.tokenizer.backend.encode(a, b)
for token, type_id in zip(pair.tokens, pair.type_ids, strict=True):
    print(f"{token:>12s}  {type_id}")

# %% [markdown]
# To be fair to the cross-encoder we give it everything the bi-encoder gets: batches of
# 32 pairs, sorted by length so that little padding is needed (`smart_batches`, the same
# batching `encode` uses), and a jit-compiled forward pass. We compile first (a warm-up
# run) and time the second run, so the cross-encoder is not charged for compilation.

# %%
bert = encoder.model.bert


@nnx.jit
def cross_encoder_pass(bert, input_ids, attention_mask, token_type_ids):
    """Both sentences through BERT together; a cross-encoder reads its score off [CLS]."""
    return bert(input_ids, attention_mask, token_type_ids)[:, 0]  # (B, D)


def cross_encode(pairs: list[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
    """The [CLS] vector of every pair, (P, D), computed the cross-encoder way."""
    encodings = [encoder.tokenizer.backend.encode(a, b) for a, b in pairs]
    ids = [e.ids for e in encodings]
    type_ids = [e.type_ids for e in encodings]
    cls = np.zeros((len(pairs), config.hidden_size), np.float32)
    for batch in smart_batches(ids, batch_size, config.max_position_embeddings):
        B, T = batch.input_ids.shape
        token_type_ids, _ = pad_batch([type_ids[i] for i in batch.indices], T, 0, batch_size=B)
        out = cross_encoder_pass(bert, batch.input_ids, batch.attention_mask, token_type_ids)
        cls[batch.indices] = np.asarray(out)[: len(batch.indices)]
    return cls


first, second = rng.choice(len(sentences), size=(2, N_PAIRS))
second = np.where(first == second, (second + 1) % len(sentences), second)  # never (i, i)
sample_pairs = [(sentences[i], sentences[j]) for i, j in zip(first, second, strict=True)]

cross_encode(sample_pairs)  # warm-up: compiles one program per batch shape
start = time.perf_counter()
cross_cls = cross_encode(sample_pairs)
cross_seconds = time.perf_counter() - start
seconds_per_pair = cross_seconds / N_PAIRS
print(
    f"cross-encoder: {N_PAIRS} pairs in {cross_seconds:.2f} s "
    f"= {1000 * seconds_per_pair:.2f} ms per pair"
)

# %% [markdown]
# Why can nothing be reused? Because the `[CLS]` vector of (a, b) depends on *both*
# sentences: swap in another second sentence and the first sentence's tokens see different
# things. A cross-encoder has no "vector of a" to store.

# %%
(ab, ac) = cross_encode([(a, b), (a, sentences[2])])
print(f"max |CLS(a, b) - CLS(a, c)| = {np.abs(ab - ac).max():.3f}")

# %% [markdown]
# ## All pairs of 10,000 sentences, the cross-encoder way
#
# Finding the most similar pair means scoring every pair once:
# n·(n−1)/2 = 49,995,000 pairs for n = 10,000. We timed a sample, so we extrapolate.

# %%
n_pairs = N_COLLECTION * (N_COLLECTION - 1) // 2
cross_total = n_pairs * seconds_per_pair
print(
    f"{n_pairs:,} pairs x {1000 * seconds_per_pair:.2f} ms "
    f"= {cross_total:,.0f} s = {cross_total / 3600:,.1f} hours "
    f"(extrapolated from {N_PAIRS} timed pairs)"
)

# %% [markdown]
# ## The bi-encoder way
#
# Encode every sentence once, then compute *one* similarity matrix: for unit-length
# vectors, `S = E Eᵀ` holds all 10,000 x 10,000 cosines, and a matrix product is the one
# thing a computer does fastest.
#
# Same rules as for the cross-encoder: batches of 32, and a warm-up first. `encode`
# compiles one program per batch shape it meets; we warm it up on a few hundred *other* STS-b
# sentences, and count how many new shapes the timed run still had to compile (each one
# is charged to the bi-encoder).

# %%
encoder.encode(warmup_sentences, batch_size=32)  # warm-up: compiles the common shapes
shapes_before = len(encoder.compiled_shapes)
start = time.perf_counter()
embeddings = encoder.encode(sentences[:N_ENCODE], batch_size=32)  # (N_ENCODE, D)
encode_seconds = time.perf_counter() - start
print(f"shapes compiled during the timed run: {len(encoder.compiled_shapes) - shapes_before}")
seconds_per_sentence = encode_seconds / N_ENCODE
encode_total = N_COLLECTION * seconds_per_sentence
label = "measured" if N_ENCODE == N_COLLECTION else f"extrapolated from {N_ENCODE:,}"
print(
    f"encoded {N_ENCODE:,} sentences in {encode_seconds:.1f} s "
    f"= {1000 * seconds_per_sentence:.2f} ms per sentence"
)
print(f"{N_COLLECTION:,} sentences: {encode_total:.1f} s ({label})")

# %% [markdown]
# The similarity matrix is always timed at full size. In fast mode we have fewer real
# embeddings, so we repeat them to 10,000 rows: the arithmetic is the same size.

# %%
E = np.resize(embeddings, (N_COLLECTION, embeddings.shape[1]))  # (10000, D), rows repeat if needed
cos_sim(E[:10], E).block_until_ready()  # warm-up
start = time.perf_counter()
S = cos_sim(E, E).block_until_ready()  # (10000, 10000)
matrix_seconds = time.perf_counter() - start
bi_total = encode_total + matrix_seconds
print(f"similarity matrix {S.shape}: {matrix_seconds:.2f} s")
print(f"bi-encoder total: {bi_total:.1f} s")
del S

# %% [markdown]
# ## Side by side
#
# | | the paper (V100 GPU, BERT-base) | this machine (CPU, MiniLM-L6) |
# |---|---|---|
# | cross-encoder, all pairs | ~65 hours | printed below |
# | bi-encoder, encode + compare | ~5 seconds | printed below |

# %%
print(f"cross-encoder: {cross_total / 3600:10,.1f} hours")
print(f"bi-encoder:    {bi_total:10,.1f} seconds")
print(f"the bi-encoder is {cross_total / bi_total:,.0f}x cheaper")

# %% [markdown]
# ## Why the bi-encoder's cost is (nearly) linear
#
# Write `t_enc` for one pass of BERT over one sentence and `t_dot` for one 384-term dot
# product. Then, for n sentences:
#
# - cross-encoder: `n(n−1)/2 · t_pair`, where `t_pair ≈ t_enc` of a twice-as-long input.
#   Every new sentence must be run through BERT *with every old one*: quadratic in BERT passes.
# - bi-encoder: `n · t_enc + n²/2 · t_dot`. The quadratic term is there too, but
#   `t_dot` is hundreds of thousands of times smaller than `t_enc`: a pass of this model
#   costs about 10 million multiply-adds *per token* (6 layers of four D x D projections
#   and two D x F ones), so 100 million or more for a short sentence, while a dot product
#   is 384. Until n approaches a million the BERT passes dominate, and the total grows
#   linearly in n. Adding one sentence to the collection costs one BERT pass, and its
#   vector can be stored and reused for every future query.
#
# The plot uses the constants we just measured.

# %%
per_score = matrix_seconds / N_COLLECTION**2  # t_dot, amortised over a matrix product
n = np.logspace(1, 6, 60)
cross_cost = n * (n - 1) / 2 * seconds_per_pair
bi_cost = n * seconds_per_sentence + n**2 * per_score

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.loglog(n, cross_cost / 3600, label="cross-encoder: all pairs")
ax.loglog(n, bi_cost / 3600, label="bi-encoder: encode + matrix")
ax.axvline(N_COLLECTION, color="gray", linestyle=":", linewidth=1)
ax.axhline(65, color="gray", linestyle="--", linewidth=1)
ax.text(n[0], 65 * 1.5, "paper's 65 h", fontsize=8)
ax.set_xlabel("number of sentences n")
ax.set_ylabel("hours on this machine")
ax.set_title("Finding the most similar pair", fontsize=10)
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise: find the most similar pair
#
# The bi-encoder leaves one step: read the best pair off the similarity matrix. Write
# `most_similar_pair(embeddings)` that takes an (n, D) array and returns `(i, j)` with
# `i < j`, the pair with the highest cosine similarity. Careful: every sentence is
# most similar to itself, and each pair appears twice in the matrix.


# %%
def most_similar_pair(embeddings: np.ndarray) -> tuple[int, int]:
    """(i, j), i < j, of the two rows of ``embeddings`` (n, D) with the highest cosine."""
    raise NotImplementedError("your code here")


# %% [markdown]
# The check compares your answer with `minisbert.similarity.paraphrase_mining_embeddings`,
# which does the same job in chunks (so that 1,000,000 sentences need not fit in one
# matrix), on hand-made cases and on 500 real sentences. The model's vectors have length
# 1, where cosine and dot product agree; so the check also stretches each vector by its
# own factor, which changes every dot product and no cosine. Your function may not call
# `paraphrase_mining_embeddings`, nor `semantic_search` (which finds each row's nearest
# other row): `lesson.by_hand` makes the check fail if it does.


# %%
def check_most_similar_pair(fn) -> None:
    fn = lesson.by_hand(fn, paraphrase_mining_embeddings, semantic_search)
    toy = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [-1.0, 0.0]])
    assert tuple(fn(toy)) == (0, 2), f"toy case: expected (0, 2), got {fn(toy)}"
    # Rows 0 and 1 point almost the same way; row 2 is long, so its dot products are large.
    lengths_differ = np.array([[1.0, 0.0], [0.99, 0.14], [10.0, 5.0]])
    got = tuple(fn(lengths_differ))
    assert got == (0, 1), (
        f"vectors of different lengths: expected (0, 1), got {got} (cosine, "
        "not dot product: divide by the lengths)"
    )
    sample = embeddings[:500]
    _, i, j = paraphrase_mining_embeddings(sample, top_k=5)[0]
    assert tuple(fn(sample)) == (i, j), f"expected {(i, j)}, got {fn(sample)}"
    stretched = sample * np.random.default_rng(0).uniform(0.2, 5.0, size=(len(sample), 1))
    got = tuple(fn(stretched))
    assert got == (i, j), f"stretched vectors: expected {(i, j)}, got {got} (cosine ignores length)"


most_similar_pair = lesson.exercise(
    check_most_similar_pair, most_similar_pair, lesson="01_why_sentence_embeddings"
)

# %% [markdown]
# And here is what the bi-encoder finds among the sentences we encoded: the three most
# similar pairs. A pair that differs only in capital letters would score 1.000: the model
# is uncased, so the two are the same input (lesson 2 shows why). The last lines try it
# on the first sentence and its capitals.

# %%
for score, i, j in paraphrase_mining_embeddings(embeddings, top_k=5)[:3]:
    print(f"cosine {score:.3f}\n  {sentences[i]}\n  {sentences[j]}")
capitals = [sentences[0], sentences[0].upper()]
same_input = encoder.tokenizer.tokenize(capitals)
capitals_cos = float(cos_sim(*encoder.encode(capitals))[0, 0])
print(f"cosine {capitals_cos:.3f}, the same token ids: {same_input[0] == same_input[1]}")
for s in capitals:
    print("  ", s)

# %% [markdown]
# ## What we showed
#
# - A cross-encoder must run BERT on every pair: for 10,000 sentences that is about
#   50 million passes: thousands of times the bi-encoder's 10,000, hours on a CPU even
#   for a small model (the assert below checks the ratio, which holds on any device).
# - A bi-encoder runs BERT once per sentence and compares vectors with one matrix
#   product: seconds to a minute on a CPU. The price is accuracy: the two sentences never
#   see each other inside the network. The rest of these lessons are about how SBERT
#   trains the bi-encoder so that this price is small.
# - An uncased model gives a sentence and its capitals the same token ids, so the same
#   vector: cosine 1.000.
#
# The asserts below fail if these claims are false on this machine.

# %%
assert n_pairs == 49_995_000
assert cross_total / bi_total >= 100, "the bi-encoder should be at least 100x cheaper"
assert cross_total / encode_total > 1000, "all pairs take >1000x the bi-encoder's encoding"
assert matrix_seconds < encode_total, "comparing vectors is cheaper than making them"
assert seconds_per_sentence / per_score > 1e4, "one BERT pass costs far more than one dot product"
assert np.abs(ab - ac).max() > 1e-3, "a cross-encoder's output depends on both sentences"
assert same_input[0] == same_input[1], "capitals make no difference to an uncased tokenizer"
assert capitals_cos > 0.9995, "the same input, so the same vector: cosine 1.000"
print("all claims hold")

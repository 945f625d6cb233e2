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
# # Lesson 4: pooling, from token vectors to one sentence vector
#
# **Time on a 2-core CPU:** fast mode 20 to 40 seconds (measured on a shared 2-core CPU); full mode,
# the default, about 1 minute (measured, likewise). On a GPU: not measured yet. Fast mode: set
# `MINISBERT_FAST=1` before starting Jupyter, or `FAST = True` in the cell that sets `FAST`.
#
# BERT gives one D-vector per token (lesson 3). To compare sentences with a cosine we need
# *one* vector per sentence, of the same size whatever the sentence's length. Sentence-BERT
# gets it by **pooling** the token vectors. The paper tries three strategies, and the
# sentence-transformers library adds a fourth:
#
# | name | formula, over the real tokens t of the sentence (m_t = 1) |
# |---|---|
# | `mean` (SBERT's default) | u = Σ m_t x_t / Σ m_t |
# | `cls` | u = x_0, the vector of the `[CLS]` token |
# | `max` | u_d = max over real t of x_{t,d}, dimension by dimension |
# | `mean_sqrt_len` | u = Σ m_t x_t / √(Σ m_t) |
#
# In this lesson we compute each by hand on real token vectors and check them against
# `minisbert.pooling`; see what goes wrong when the padding mask is forgotten; and measure
# how each pooling does on the STS Benchmark with the pretrained all-MiniLM-L6-v2.

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
import dataclasses
import os

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from minisbert import SentenceEncoder, cos_sim
from minisbert.config import POOLING_MODES
from minisbert.data import load_dataset
from minisbert.evaluate import sts_metrics
from minisbert.pooling import (
    cls_pooling,
    max_pooling,
    mean_pooling,
    mean_sqrt_len_pooling,
    normalize,
    pool,
)
from minisbert.tokenizer import pad_batch

FAST = os.environ.get("MINISBERT_FAST") == "1"
N_STS_PAIRS = 200 if FAST else None  # STS-b test pairs scored per pooling; None = all 1,379

encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
print(encoder.model.sentence_config)

# %% [markdown]
# ## Real token vectors, in a padded batch
#
# Three sentences of different lengths, padded to the longest (lesson 2), through BERT.
# `encoder.model.bert` is the encoder alone, without pooling: (B, T) ids in, (B, T, D)
# token vectors out.

# %%
batch = ["A dog runs.", "A man is playing a guitar on stage.", "Kids read."]
token_ids = encoder.tokenizer.tokenize(batch)
input_ids, attention_mask = pad_batch(token_ids, max(len(t) for t in token_ids))
X = np.asarray(encoder.model.bert(input_ids, attention_mask))  # (B, T, D)
m = attention_mask[:, :, None].astype(np.float32)  # (B, T, 1): 1 = real token
print("token vectors", X.shape)
print("attention mask\n", attention_mask)

# %% [markdown]
# ## Three poolings by hand
#
# Mean: add up the real tokens' vectors and divide by how many there are. The mask does
# both jobs: multiplying by it zeroes the padding rows, and summing it counts the real
# tokens. `mean_sqrt_len` divides by the square root of the count instead, and `cls` just
# takes row 0 (the tokenizer always puts `[CLS]` first, and it is never padding).

# %%
count = m.sum(axis=1)  # (B, 1) real tokens per sentence
mean_by_hand = (X * m).sum(axis=1) / count  # (B, D)
cls_by_hand = X[:, 0, :]  # (B, D)
sqrt_len_by_hand = (X * m).sum(axis=1) / np.sqrt(count)  # (B, D)

for name, by_hand, library_fn in [
    ("mean", mean_by_hand, mean_pooling),
    ("cls", cls_by_hand, cls_pooling),
    ("mean_sqrt_len", sqrt_len_by_hand, mean_sqrt_len_pooling),
]:
    library = np.asarray(library_fn(jnp.asarray(X), jnp.asarray(attention_mask)))
    print(f"{name:>14}: max |by hand - minisbert| = {np.abs(by_hand - library).max():.1e}")
    assert np.allclose(by_hand, library, atol=1e-5)

# %% [markdown]
# all-MiniLM-L6-v2 uses mean pooling followed by L2 normalisation (its `sentence_config`
# above). So mean pooling by hand, normalised, must be exactly what `encode` returns:

# %%
by_hand = mean_by_hand / np.linalg.norm(mean_by_hand, axis=1, keepdims=True)
assert np.allclose(by_hand, encoder.encode(batch), atol=1e-5)
print("mean pooling + normalise by hand == encoder.encode(batch)")

# %% [markdown]
# Max pooling takes, for every dimension d separately, the largest value among the real
# tokens. Here is the library's result; computing it by hand, with the mask, is the
# exercise further down.

# %%
max_pooled = np.asarray(max_pooling(jnp.asarray(X), jnp.asarray(attention_mask)))  # (B, D)
print("max pooling:", max_pooled.shape, "first sentence, first 5 dims:", max_pooled[0, :5].round(3))

# %% [markdown]
# ## Forgetting the mask
#
# Padding positions are not empty: BERT computes a vector for every position, padding
# included (a `[PAD]` query still attends to the real tokens). The attention mask stops
# real tokens from *looking at* padding, so the real tokens' vectors do not depend on how
# much padding there is. But if pooling then averages over all T positions, the padding
# vectors leak into the sentence vector, and a sentence's embedding starts to depend on
# who else is in its batch.
#
# The experiment: embed "A dog runs." alone, and again in a batch next to a long
# neighbour, which pads it from 6 to dozens of positions.

# %%
short = "A dog runs."
neighbour = (
    "Two young children in bright raincoats are happily jumping into deep muddy "
    "puddles on a quiet street while their parents watch from under a large umbrella."
)


def token_vectors(sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """BERT's token vectors (B, T, D) and attention mask (B, T) of a padded batch."""
    ids = encoder.tokenizer.tokenize(sentences)
    input_ids, mask = pad_batch(ids, max(len(t) for t in ids))
    return np.asarray(encoder.model.bert(input_ids, mask)), mask


X_alone, mask_alone = token_vectors([short])  # (1, 6, D)
X_batch, mask_batch = token_vectors([short, neighbour])  # (2, T, D)
n_real = int(mask_alone.sum())
print(f"'{short}' has {n_real} tokens; in the batch it is padded to {X_batch.shape[1]}")
real_gap = np.abs(X_alone[0] - X_batch[0, :n_real]).max()
print(f"its real tokens' vectors, alone vs in the batch: max difference {real_gap:.1e}")
padding_norm = float(np.linalg.norm(X_batch[0, -1]))
print(f"a padding position's vector has norm {padding_norm:.1f}, not 0")


# %%
def cosine(u: np.ndarray, v: np.ndarray) -> float:
    return float(cos_sim(u, v)[0, 0])


unmasked_alone = X_alone[0].mean(axis=0)  # (D,) every position counts
unmasked_batch = X_batch[0].mean(axis=0)  # (D,) ... including the padding
masked_alone = np.asarray(mean_pooling(jnp.asarray(X_alone), jnp.asarray(mask_alone)))[0]
masked_batch = np.asarray(mean_pooling(jnp.asarray(X_batch), jnp.asarray(mask_batch)))[0]

unmasked_cos = cosine(unmasked_alone, unmasked_batch)
masked_gap = float(np.abs(masked_alone - masked_batch).max())
print(
    f"unmasked mean, alone vs next to the neighbour: cosine {unmasked_cos:.4f}, "
    f"max difference {np.abs(unmasked_alone - unmasked_batch).max():.3f}"
)
print(
    f"masked mean,   alone vs next to the neighbour: cosine "
    f"{cosine(masked_alone, masked_batch):.6f}, max difference {masked_gap:.1e}"
)

# %% [markdown]
# With the mask the two vectors agree to float precision; without it, the same sentence
# gets a noticeably different embedding depending on its neighbour. minisbert's batching
# (lesson 2) sorts sentences by length, so *which* neighbour a sentence gets depends on
# the rest of the input: an unmasked pooling would make results change when you add an
# unrelated sentence to the list. Every pooling in `minisbert.pooling` takes the mask.
#
# ## Which pooling works best? STS Benchmark
#
# The STS Benchmark's test set has 1,379 sentence pairs, each with a human similarity
# score from 0 to 5. A model is scored by the Spearman rank correlation between the
# cosine of its two sentence vectors and the human score, x100 (`minisbert.evaluate`).
#
# Pooling comes *after* BERT, so we run BERT once over every distinct test sentence
# (`output_value="token_embeddings"` gives each sentence's (T_i, D) token vectors), stack
# them into one zero-padded array with its mask, and pool that array four ways. The
# normalisation step is skipped: a cosine does not care about vector lengths.

# %%
test = load_dataset("stsb", "test")
if N_STS_PAIRS is not None:
    rng = np.random.default_rng(0)
    test = [test[i] for i in rng.choice(len(test), N_STS_PAIRS, replace=False)]
unique = list(dict.fromkeys(s for ex in test for s in (ex.sentence1, ex.sentence2)))
row = {sentence: i for i, sentence in enumerate(unique)}
print(
    f"{len(test)} STS-b test pairs{' (a random subsample: fast mode)' if FAST else ''}, "
    f"{len(unique)} distinct sentences"
)

token_list = encoder.encode(unique, output_value="token_embeddings")  # U arrays (T_i, D)
T_max = max(len(t) for t in token_list)
all_tokens = np.zeros((len(unique), T_max, encoder.dim), np.float32)  # (U, T, D)
all_mask = np.zeros((len(unique), T_max), np.int32)  # (U, T)
for i, t in enumerate(token_list):
    all_tokens[i, : len(t)], all_mask[i, : len(t)] = t, 1

gold = np.array([ex.label for ex in test])
first = [row[ex.sentence1] for ex in test]
second = [row[ex.sentence2] for ex in test]
spearman = {}
for mode in POOLING_MODES:
    u = np.asarray(pool(mode, jnp.asarray(all_tokens), jnp.asarray(all_mask)))  # (U, D)
    spearman[mode] = sts_metrics(u[first], u[second], gold)["spearman_cosine"]
    print(f"{mode:>14}: Spearman x100 = {spearman[mode]:.2f}")

# %% [markdown]
# To *use* another pooling, you change the model's `sentence_config`: a frozen
# dataclass, so `dataclasses.replace` makes a modified copy, and the weights stay the
# same. Check on the small batch from the start of the lesson that a model switched to
# `cls` pooling encodes exactly as `cls` by hand, normalised:

# %%
pretrained_config = encoder.model.sentence_config
encoder.model.sentence_config = dataclasses.replace(pretrained_config, pooling="cls")
cls_encoded = encoder.encode(batch)
encoder.model.sentence_config = pretrained_config  # back to mean pooling
cls_expected = cls_by_hand / np.linalg.norm(cls_by_hand, axis=1, keepdims=True)
assert np.allclose(cls_encoded, cls_expected, atol=1e-5)
print("encode with pooling='cls' == cls pooling by hand, normalised")

# %%
fig, ax = plt.subplots(figsize=(5, 3.5))
modes = list(spearman)
bars = ax.bar(
    modes,
    [spearman[k] for k in modes],
    color=["tab:green" if k == "mean" else "tab:gray" for k in modes],
)
ax.bar_label(bars, fmt="%.1f", fontsize=8)
ax.set_ylim(min(spearman.values()) - 10, 100)
ax.set_ylabel("STS-b test Spearman x100")
ax.set_title("all-MiniLM-L6-v2 (trained with mean pooling)", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# Three things to read from these numbers:
#
# - **Mean pooling wins**, and it should: all-MiniLM-L6-v2 was *trained* with mean
#   pooling, so its token vectors were shaped to be averaged. Swapping the pooling after
#   training asks the model for something it never practised. (The SBERT paper's
#   ablation, Table 6, trains a separate model for each pooling; there the gaps are
#   smaller: on STS-b dev, 87.44 for mean, 86.62 for CLS and 69.92 for max with the
#   regression objective; 80.78, 79.80 and 79.07 with the NLI classification objective.)
# - **`mean` and `mean_sqrt_len` tie exactly.** The two differ only by a positive number
#   per sentence (√n instead of n), and a cosine ignores the length of its vectors. They
#   would differ for a score that is not scale-invariant, such as the dot product of
#   unnormalised vectors.
# - **`cls` is the weakest here.** The `[CLS]` vector only becomes a sentence summary if
#   training makes it one; this model's training never looked at it on its own.
#
# ## Exercise: masked max pooling
#
# Write `masked_max_pooling(token_embeddings, attention_mask)`: for each sentence and each
# dimension, the largest value among its *real* tokens. Inputs are (B, T, D) and (B, T)
# (1 = real, 0 = padding); return (B, D). The trap: padding rows must never win, even when
# every real value in a dimension is negative and the padding rows are zeros.


# %%
def masked_max_pooling(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """u_d = max over real tokens t of x_{t,d}: (B, T, D), (B, T) -> (B, D)."""
    raise NotImplementedError("your code here")


# %% [markdown]
# The check compares with `minisbert.pooling.max_pooling` on the real padded batch from
# above, and on a hand-made batch where an unmasked max would pick a padding zero. Your
# function may not call `max_pooling` or `pool` itself, however it reaches them (an entry
# of the table `minisbert.pooling.POOLINGS` too): `lesson.by_hand` makes the check fail if
# it does.


# %%
def check_masked_max_pooling(fn) -> None:
    fn = lesson.by_hand(fn, max_pooling, pool)
    expected = np.asarray(max_pooling(jnp.asarray(X), jnp.asarray(attention_mask)))
    got = np.asarray(fn(X, attention_mask))
    assert got.shape == expected.shape, f"shape {got.shape}, expected {expected.shape}"
    assert np.allclose(got, expected, atol=1e-6), "differs from minisbert's max_pooling"
    toy = np.array([[[-3.0, -1.0], [-2.0, -5.0], [0.0, 0.0]]])  # (1, 3, 2), last row padding
    toy_mask = np.array([[1, 1, 0]])
    got = np.asarray(fn(toy, toy_mask))
    assert np.allclose(got, [[-2.0, -1.0]]), f"toy case: expected [[-2, -1]], got {got}"


masked_max_pooling = lesson.exercise(
    check_masked_max_pooling, masked_max_pooling, lesson="04_pooling"
)

# %% [markdown]
# ## What we showed
#
# - Each pooling is a line or two of array code, and every one must respect the mask.
# - Switching a model's pooling is a change of its `sentence_config`; the weights stay.
# - Without the mask, a sentence's vector changes with its batch neighbours; with it, the
#   vector is the same to float precision.
# - On STS-b, the pooling the model was trained with (mean) scores best; `mean_sqrt_len`
#   gives the very same cosines; `max` falls behind, and `cls`, which this model's training
#   never read on its own, furthest.

# %%
library_mean = mean_pooling(jnp.asarray(X), jnp.asarray(attention_mask))  # (B, D)
assert np.allclose(mean_by_hand, library_mean, atol=1e-5)
assert np.allclose(normalize(jnp.asarray(mean_by_hand)), encoder.encode(batch), atol=1e-5)
assert real_gap < 1e-5, "the attention mask keeps real tokens independent of padding"
assert masked_gap < 1e-5, "masked mean pooling does not depend on the neighbour"
assert unmasked_cos < 0.99, "unmasked mean pooling does depend on the neighbour"
assert np.allclose(cls_encoded, cls_expected, atol=1e-5), "sentence_config picks the pooling"
assert spearman["mean"] == max(spearman.values()), "mean pooling scores highest"
assert spearman["mean"] > spearman["cls"] and spearman["mean"] > spearman["max"]
assert spearman["cls"] == min(spearman.values()), "cls pooling scores lowest"
assert padding_norm > 1.0, "a padding position gets a vector of its own, not zeros"
assert abs(spearman["mean"] - spearman["mean_sqrt_len"]) < 1e-6, "cosine ignores the scale"
if not FAST:
    # 82.03 is what minisbert.evaluate.evaluate_sts reports for this model on the full test set.
    assert abs(spearman["mean"] - 82.03) < 0.01, "mean pooling reproduces evaluate_sts"
print("all claims hold")

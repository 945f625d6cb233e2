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
# # Lesson 10: measuring a sentence encoder, then putting it to work
#
# **Time on a 2-core CPU:** fast mode under a minute (measured on a shared 2-core CPU); full mode,
# the default, about 1.5 minutes (measured, likewise). On a GPU: not measured yet. Fast mode: set
# `MINISBERT_FAST=1` before starting Jupyter, or `FAST = True` in the cell that sets `FAST`.
#
# A sentence encoder turns each sentence into one vector. Two questions follow:
#
# 1. **Is it any good?** The SBERT paper's headline test is the STS Benchmark: pairs of
#    sentences that people scored from 0 (unrelated) to 5 (same meaning). We score each
#    pair by the cosine of its two vectors and ask how well those scores *rank* the pairs
#    the way people did: the Spearman rank correlation, x100.
# 2. **What is it for?** Once every sentence is a vector, comparing two sentences costs
#    one dot product. That makes three things cheap that are hopeless with a cross-encoder
#    (BERT run on each *pair*): semantic search, paraphrase mining and clustering.
#
# We use the pretrained `all-MiniLM-L6-v2` (6 layers, 384 dimensions, mean pooling,
# normalised output) on real data: STS Benchmark test and SNLI dev sentences.
#
# It runs from any folder: `lesson.setup()`, below, finds the weights and the data.
# `MINISBERT_FAST=1` evaluates on a random sample of pairs instead of all of them.

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

import matplotlib.pyplot as plt
import numpy as np

from minisbert import SentenceEncoder, cos_sim, paraphrase_mining, semantic_search
from minisbert.data import load_dataset
from minisbert.evaluate import (
    evaluate_sts,
    pair_scores,
    paired_bootstrap,
    pearson,
    rank,
    spearman,
    sts_metrics,
)
from minisbert.similarity import paraphrase_mining_embeddings

FAST = os.environ.get("MINISBERT_FAST") == "1"
N_PAIRS = 300 if FAST else None  # STS-b test pairs to evaluate (None: all 1379)
N_SNLI = 300 if FAST else 1000  # SNLI premises added to the search corpus
REFERENCE_SPEARMAN = 82.03  # all-MiniLM-L6-v2, STS-b test, cosine x100, by sentence-transformers

encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
test = load_dataset("stsb", "test")
if N_PAIRS is not None:
    sample = np.random.default_rng(0).choice(len(test), N_PAIRS, replace=False)
    test = [test[i] for i in sorted(sample)]
print(f"{'fast' if FAST else 'full'} mode: {len(test)} STS-b test pairs")
for example in test[:3]:
    print(f"  {example.label:.2f}  {example.sentence1!r} / {example.sentence2!r}")

# %% [markdown]
# Every sentence we need is encoded once, here: both sides of the STS-b pairs, plus some
# SNLI premises for the search corpus later (as the data folder's copy of SNLI writes
# them: one copy is pre-tokenized, "outside ." with a space, the official release is
# not). Duplicates are dropped first; `position` finds a sentence's row.

# %%
snli = load_dataset("snli", "dev")
premises = list(dict.fromkeys(e.sentence1 for e in snli))[:N_SNLI]
corpus = list(dict.fromkeys([s for e in test for s in (e.sentence1, e.sentence2)] + premises))
corpus_embeddings = encoder.encode(corpus, show_progress_bar=True)  # (M, D)
position = {sentence: i for i, sentence in enumerate(corpus)}
print(f"corpus: {len(corpus)} sentences -> {corpus_embeddings.shape}")

# %% [markdown]
# ## 1. Spearman's rank correlation, by hand
#
# Pearson's correlation asks whether two lists lie on a straight line. That is too strict
# for us: a cosine of 0.9 does not "mean" a gold score of 4.5, and no one promised the
# relation would be linear. What we want is weaker: *more similar pairs should get higher
# scores*. Spearman's correlation measures exactly that. Replace each list by its ranks
# (1 for the smallest value, N for the largest), then take Pearson's correlation of the
# ranks.
#
# One detail matters on STS data: **ties**. Gold scores are averages of a few
# annotators, so many pairs share a score (3.8, 4.0, 5.0, ...). Tied values get the
# *average* of the ranks they occupy: in `[10, 30, 20, 20]` the two 20s would be ranks 2
# and 3, so both get 2.5.
#
# A short way to write that: the rank of `x_i` is the number of values below it, plus the
# middle of the block of values equal to it, `(#equal + 1) / 2`.


# %%
def rank_by_hand(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties averaged: #(x_j < x_i) + (#(x_j == x_i) + 1) / 2."""
    x = np.asarray(x, dtype=np.float64)  # (N,)
    below = (x[None, :] < x[:, None]).sum(axis=1)  # (N,) an N x N comparison: fine for N ~ 1000s
    equal = (x[None, :] == x[:, None]).sum(axis=1)  # (N,) includes x_i itself
    return below + (equal + 1) / 2


def pearson_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    return float((dx @ dy) / np.sqrt((dx @ dx) * (dy @ dy)))


def spearman_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    return pearson_by_hand(rank_by_hand(x), rank_by_hand(y))


print(rank_by_hand(np.array([10, 30, 20, 20])))  # [1. 4. 2.5 2.5]
assert np.array_equal(rank_by_hand(np.array([10, 30, 20, 20])), [1, 4, 2.5, 2.5])

gold = np.array([e.label for e in test], dtype=np.float64)  # (N,) 0..5
values, counts = np.unique(gold, return_counts=True)
print(
    f"{len(gold)} gold scores, only {len(values)} distinct values; "
    f"the most common, {values[counts.argmax()]}, appears {counts.max()} times"
)
assert np.array_equal(rank_by_hand(gold), rank(gold))  # minisbert.evaluate.rank agrees

# %% [markdown]
# Now the scores we will correlate with the gold: the cosine between the embeddings of
# the two sentences of each pair. We compare our Spearman with
# `minisbert.evaluate.spearman`.

# %%
u = corpus_embeddings[[position[e.sentence1] for e in test]]  # (N, D)
v = corpus_embeddings[[position[e.sentence2] for e in test]]  # (N, D)
cosine = np.asarray(cos_sim(u, v)).diagonal().astype(np.float64)  # (N,) cos(u_i, v_i)

ours, theirs = spearman_by_hand(cosine, gold), spearman(cosine, gold)
print(f"Spearman by hand {100 * ours:.4f}, minisbert {100 * theirs:.4f}")
assert abs(ours - theirs) < 1e-12

# Ignoring ties (ranks from a plain argsort) gives a slightly different, wrong number:
naive_ranks = np.argsort(np.argsort(gold, kind="stable")).astype(np.float64)
print(
    f"ties ranked arbitrarily instead of averaged: "
    f"{100 * pearson_by_hand(rank(cosine), naive_ranks):.4f}"
)

# %% [markdown]
# **Why ranks?** Any strictly increasing function of the scores (cubing them,
# exponentiating them) leaves every rank where it was, so Spearman cannot change, while
# Pearson does. A model is not punished for using a different "scale" than the
# annotators, only for putting pairs in the wrong order.

# %%
for name, f in [
    ("cos", lambda c: c),
    ("cos ** 3", lambda c: c**3),
    ("exp(10 cos)", lambda c: np.exp(10 * c)),
]:
    print(
        f"{name:12s} Pearson {100 * pearson(f(cosine), gold):6.2f}   "
        f"Spearman {100 * spearman(f(cosine), gold):6.2f}"
    )

spearman_changes = abs(spearman(np.exp(10 * cosine), gold) - spearman(cosine, gold))
pearson_changes = abs(pearson(np.exp(10 * cosine), gold) - pearson(cosine, gold))

unrelated = cosine[gold < 1]
print(
    f"{len(unrelated)} pairs with gold < 1: median cosine {np.median(unrelated):.2f}; "
    f"{np.mean(cosine < 0):.1%} of all pairs have a negative cosine"
)

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.scatter(gold, cosine, s=4, alpha=0.4)
ax.set_xlabel("gold similarity (0-5)")
ax.set_ylabel("cosine of the two embeddings")
ax.set_title(f"STS-b test: Spearman {100 * spearman(cosine, gold):.2f}")
plt.show()

# %% [markdown]
# The cloud rises from left to right but is far from a line, and it bends: the model
# almost never gives a pair a cosine below 0, and pairs that people scored near 0 still
# get a cosine well above 0, since they often share a topic or a genre (two news
# headlines, two captions of people outdoors).
#
# ## 2. The STS evaluation in one call
#
# `evaluate_sts(encoder, examples)` does what we just did: encode every distinct sentence
# once (it encodes them again here, from scratch), score each pair, correlate with the
# gold. It reports Pearson and Spearman for four
# ways to score a pair, all oriented so that higher means more similar:
#
# | column | score of a pair (u, v) |
# |---|---|
# | cosine | u·v / (\|u\| \|v\|) |
# | euclidean | -\|u - v\| |
# | manhattan | -Σ\|u_d - v_d\| |
# | dot | u·v |
#
# The SBERT paper reports the Spearman of the cosine column (e.g. 77.03 for SBERT-NLI-base
# on STS-b test, Table 1). For all-MiniLM-L6-v2, a smaller model trained later on far
# more sentence pairs, the reference library reports 82.03.

# %%
results = evaluate_sts(encoder, test, show_progress_bar=True)
for metric in ("cosine", "euclidean", "manhattan", "dot"):
    print(
        f"{metric:10s} Pearson {results['pearson_' + metric]:6.2f}   "
        f"Spearman {results['spearman_' + metric]:6.2f}"
    )

# evaluate_sts is the encoding above plus sts_metrics; same embeddings, same numbers:
assert abs(sts_metrics(u, v, gold)["spearman_cosine"] - results["spearman_cosine"]) < 1e-6

# %% [markdown]
# Three of the four Spearman columns are *identical*. That is not a coincidence but a
# consequence of normalisation. This model's vectors have length 1, so
#
# - `u·v = cos(u, v)`: dot and cosine are the same number;
# - `|u - v|² = |u|² + |v|² - 2 u·v = 2 - 2 cos(u, v)`: the euclidean distance is a
#   decreasing function of the cosine, so `-|u - v|` ranks the pairs exactly as the
#   cosine does, and Spearman only sees ranks. (Pearson differs slightly: the function is
#   not linear.)
#
# Manhattan distance is not a function of the cosine: two pairs at the same angle can be
# at different L1 distances, depending on how the difference spreads over the 384
# coordinates. So its column differs, a little.
#
# For a model *without* normalisation (the SBERT paper's BERT-base models) the four
# columns can differ more, and the dot product rewards long vectors.

# %%
norms = np.linalg.norm(u, axis=1)
print(f"embedding lengths: min {norms.min():.6f}, max {norms.max():.6f}")
same_three = {round(results[f"spearman_{m}"], 6) for m in ("cosine", "euclidean", "dot")}
print("distinct Spearman values among cosine / euclidean / dot:", same_three)

# %% [markdown]
# **How precise is that number?** In fast mode we evaluated on a few hundred pairs, not
# 1379. A bootstrap shows how much the score moves when we draw the pairs again: resample
# pairs with replacement, recompute Spearman, look at the spread.

# %%
rng = np.random.default_rng(0)
boot = [
    100 * spearman(cosine[i], gold[i])
    for i in (rng.integers(0, len(gold), len(gold)) for _ in range(200))
]
boot_std = float(np.std(boot))
print(
    f"Spearman {results['spearman_cosine']:.2f} on {len(gold)} pairs, "
    f"bootstrap standard error {boot_std:.2f}"
)

# %% [markdown]
# That spread (on all 1379 pairs in full mode, about a point) is the noise of *one*
# model's score: how far it would move on a fresh draw of pairs. But two models are
# compared on the *same* pairs, and a pair that is hard for one is mostly hard for the
# other, so their difference moves far less from draw to draw than either score does.
# Judging a difference by each score's own spread overstates the noise. The right test
# draws the pairs once per resample and scores both models on that draw: a **paired
# bootstrap** (`minisbert.evaluate.paired_bootstrap`). Here the two "models" are two
# scorings of the same embeddings, the cosine and the manhattan distance of section 2,
# whose Spearman values differ a little.

# %%
manhattan = pair_scores(u, v)["manhattan"]  # (N,)
difference = 100 * paired_bootstrap(spearman, cosine, manhattan, gold, samples=200)  # (200,)
paired_std = float(np.std(difference))
low, high = np.percentile(difference, [2.5, 97.5])
observed = 100 * (spearman(cosine, gold) - spearman(manhattan, gold))
print(
    f"Spearman, cosine - manhattan: {observed:+.2f}; paired bootstrap standard error "
    f"{paired_std:.2f}, 95% interval [{low:+.2f}, {high:+.2f}]; each score alone: {boot_std:.2f}"
)

# %% [markdown]
# The paired standard error is a small fraction of one score's (the final cell asserts
# under half): a difference of a few tenths between two models on the same pairs can be
# beyond noise, and the paired interval, not each score's spread, says whether it is.
# (This is why papers can report two decimals: every model meets the same pairs.)
#
# ## 3. Semantic search
#
# The corpus is encoded once (we did it at the start: the STS-b sentences and the SNLI
# premises). Then each query costs one encoding plus one matrix product against the
# corpus, and a top-k.

# %%
queries = [
    "A man is playing a guitar.",
    "The stock market fell sharply.",
    "A dog is running through the snow.",
    "How can I learn to cook?",
]
query_embeddings = encoder.encode(queries)  # (Q, D)
hits = semantic_search(query_embeddings, corpus_embeddings, top_k=3)
for query, query_hits in zip(queries, hits, strict=True):
    print(query)
    for hit in query_hits:
        print(f"   {hit['score']:.3f}  {corpus[hit['corpus_id']]}")

# %% [markdown]
# Read the hits: do they share the query's *thing*, in other words than the query's? And
# the last query asks how to *learn* to cook: do its hits answer that, or only talk about
# cooking? A model can match topic better than intent; which this one does, the hits above
# say, for the corpus this mode built.
#
# A fair test: take the STS-b pairs that people scored as (near-)paraphrases, gold >= 4.6,
# search the corpus with the first sentence, and see whether the *second* one comes
# first, skipping the query itself (which is in the corpus with score 1).

# %%
paraphrases = [e for e in test if e.label >= 4.6 and e.sentence1 != e.sentence2]
found = semantic_search(
    corpus_embeddings[[position[e.sentence1] for e in paraphrases]], corpus_embeddings, top_k=2
)
first_hits = [
    next(h["corpus_id"] for h in hits_e if h["corpus_id"] != position[e.sentence1])
    for e, hits_e in zip(paraphrases, found, strict=True)
]
correct = [position[e.sentence2] == hit for e, hit in zip(paraphrases, first_hits, strict=True)]
recall_at_1 = float(np.mean(correct))
print(
    f"the paraphrase comes first for {sum(correct)} / {len(correct)} queries "
    f"(recall@1 = {recall_at_1:.2f}) among {len(corpus)} candidates"
)
for e, hit, ok in list(zip(paraphrases, first_hits, correct, strict=True))[:4]:
    print(f"  {'ok  ' if ok else 'MISS'} {e.sentence1!r}\n       -> {corpus[hit]!r}")

# %% [markdown]
# ### Exercise: top-k search, by hand
#
# Write `top_k_search(query_vec, corpus, k)`: given one query vector `(D,)` and a corpus
# matrix `(M, D)` (not necessarily normalised), return the `k` most cosine-similar rows as
# a list of `(index, score)` pairs, best first. Two lines of numpy for the scores, one
# `argsort` for the order.


# %%
def top_k_search(query_vec: np.ndarray, corpus: np.ndarray, k: int) -> list[tuple[int, float]]:
    raise NotImplementedError("your turn: cosine scores, then the k best")


# %%
def check_top_k_search(fn) -> None:
    fn = lesson.by_hand(fn, semantic_search)  # the check fails if fn calls semantic_search
    # Queries of lengths other than 1: the cosine divides by the query's length too.
    # A case small enough to do in your head: the query points mostly along x.
    tiny = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]])  # lengths differ: cosine, not dot
    got = fn(np.array([1.0, 0.1]), tiny, 2)
    assert [i for i, _ in got] == [0, 2], f"expected rows [0, 2] first, got {got}"
    # Real embeddings: the same hits and scores as minisbert.semantic_search.
    for q in range(len(queries)):
        query = (0.5 + q) * query_embeddings[q]  # (D,) length 0.5, 1.5, 2.5, ...
        got = fn(query, corpus_embeddings, 5)
        want = semantic_search(query, corpus_embeddings, top_k=5)[0]
        assert [i for i, _ in got] == [h["corpus_id"] for h in want], (got, want)
        assert np.allclose([s for _, s in got], [h["score"] for h in want], atol=1e-5)


top_k_search = lesson.exercise(
    check_top_k_search, top_k_search, lesson="10_evaluation_and_applications"
)

# %% [markdown]
# ## 4. Paraphrase mining
#
# Which pairs *within* one collection mean the same? With M sentences there are
# M(M-1)/2 pairs: millions for our corpus in full mode (the whole-corpus cell below prints
# how many), and a cross-encoder would run BERT once for each. With embeddings it is one
# (M, M) matrix of cosines, read row by row: `paraphrase_mining` keeps each sentence's
# `top_k` best partners and sorts the union.
#
# First, a check on a small piece that brute force can handle: every pair's cosine,
# the upper triangle (i < j), the 20 highest.

# %%
n_small = 200 if FAST else 400
small = corpus[:n_small]
mined = paraphrase_mining(encoder, small, top_k=10)[:20]  # encodes `small`, then mines

scores_small = np.asarray(cos_sim(corpus_embeddings[:n_small], corpus_embeddings[:n_small]))
i_upper, j_upper = np.triu_indices(n_small, k=1)  # every pair i < j once
pair_scores = scores_small[i_upper, j_upper]  # (n(n-1)/2,)
best = np.argsort(-pair_scores)[:20]
brute = [(float(pair_scores[b]), int(i_upper[b]), int(j_upper[b])) for b in best]

print(f"{len(pair_scores)} pairs by brute force; top 3:")
for score, i, j in brute[:3]:
    print(f"  {score:.3f}  {small[i]!r} / {small[j]!r}")
assert np.allclose([s for s, _, _ in mined], [s for s, _, _ in brute], atol=1e-4)
assert all(abs(scores_small[i, j] - s) < 1e-4 for s, i, j in mined)

# %% [markdown]
# The top-20 scores agree, and every mined pair really has the score it claims. The
# shortcut (`top_k=10` partners per sentence) is safe for the *top* of the list: a pair
# in the overall top 20 is surely among the 10 best partners of at least one of its two
# sentences (were it not, each sentence would have 10 better partners: 20 pairs above it),
# and one is enough, since the union keeps a pair that either sentence ranks in its top 10.
#
# Now the whole corpus. `paraphrase_mining(encoder, sentences)` is `encode` followed by
# `paraphrase_mining_embeddings`; we already have the embeddings, so we call the second
# half directly instead of encoding everything again.

# %%
pairs = paraphrase_mining_embeddings(corpus_embeddings, top_k=10)
print(f"{len(pairs)} candidate pairs out of {len(corpus) * (len(corpus) - 1) // 2}")
for r in [0, 1, 2, 3, 4, len(pairs) // 20, len(pairs) // 5]:
    score, i, j = pairs[r]
    print(f"#{r:<5d} {score:.3f}  {corpus[i]!r}\n{'':13s}{corpus[j]!r}")

# %% [markdown]
# The top is near-duplicates (a missing article, a full stop). Further down, the pairs
# share a situation but no longer say the same thing: where to cut is a choice that
# depends on the use, and a score threshold (say 0.9) is easy to set by reading a sample
# of pairs around it.
#
# ## 5. Clustering: k-means on the unit sphere
#
# Our vectors have length 1 and we compare them by cosine, so we use *spherical* k-means:
#
# 1. pick k sentences at random as centroids;
# 2. **assign** each sentence to the centroid with the highest cosine;
# 3. **update** each centroid to the mean of its sentences, rescaled to length 1;
# 4. repeat.
#
# Each step can only increase the objective, the average cosine between a sentence and
# its centroid: step 2 picks the best centroid for each sentence, and the normalised mean
# is the unit vector with the highest total cosine to a group.


# %%
def kmeans(x: np.ndarray, k: int, steps: int = 20, seed: int = 0):
    """Spherical k-means on unit rows x (M, D): assignments (M,), centroids (k, D), history."""
    rng = np.random.default_rng(seed)
    centroids = x[rng.choice(len(x), k, replace=False)]  # (k, D)
    history = []
    for _ in range(steps):
        assign = np.argmax(x @ centroids.T, axis=1)  # (M,)
        history.append(float(np.mean(np.sum(x * centroids[assign], axis=1))))
        for c in range(k):
            if np.any(assign == c):  # an empty cluster keeps its old centroid
                mean = x[assign == c].mean(axis=0)
                centroids[c] = mean / np.linalg.norm(mean)
    assign = np.argmax(x @ centroids.T, axis=1)
    history.append(float(np.mean(np.sum(x * centroids[assign], axis=1))))
    return assign, centroids, history


K = 8
assign, centroids, history = kmeans(corpus_embeddings, K)
print("average cosine to own centroid:", " ".join(f"{h:.3f}" for h in history[::4]))
for c in range(K):
    members = np.flatnonzero(assign == c)
    central = members[np.argsort(-(corpus_embeddings[members] @ centroids[c]))[:3]]
    print(f"cluster {c} ({len(members)} sentences):")
    for m in central:
        print(f"    {corpus[m]}")

# %% [markdown]
# Nobody told k-means about topics. Read the three central sentences of each cluster
# above and try to name what they share: a subject (animals, children, cooking, a region
# in the news), or a genre. STS-b mixes news headlines, image captions and forum posts,
# and SNLI premises are captions, so genre can show up as much as topic. (Run it with
# another `seed` or `K` and see which themes stay.)
#
# ## 6. A picture: 384 dimensions down to 2
#
# Principal component analysis finds the directions along which the embeddings vary
# most. With the centred data matrix `X` (M, D) and its singular value decomposition
# `X = U S Vᵀ`, the rows of `Vᵀ` are those directions, ordered, and the variance along
# direction r is `S_r² / M`. Projecting on the first two gives a 2-D map.

# %%
X = corpus_embeddings - corpus_embeddings.mean(axis=0)  # (M, D) centred
U, S, Vt = np.linalg.svd(X, full_matrices=False)  # U (M, D), S (D,), Vt (D, D)
xy = X @ Vt[:2].T  # (M, 2) coordinates on the first two principal directions
explained = S**2 / np.sum(S**2)
print(
    f"the first two directions explain {100 * explained[0]:.1f}% + "
    f"{100 * explained[1]:.1f}% of the variance"
)

# The same directions from the covariance matrix: its top eigenvalue is the variance S_0^2 / M.
top_eigenvalue = np.linalg.eigvalsh(X.T @ X / len(X))[-1]
assert np.isclose(top_eigenvalue, S[0] ** 2 / len(X), rtol=1e-3)
assert np.allclose(xy, U[:, :2] * S[:2], atol=1e-3)

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.scatter(xy[:, 0], xy[:, 1], c=assign, cmap="tab10", vmin=0, vmax=9, s=3, alpha=0.6)
for c in range(K):
    cx, cy = xy[assign == c].mean(axis=0)
    ax.text(cx, cy, str(c), fontsize=11, weight="bold", ha="center", va="center")
ax.set_xlabel("principal direction 1")
ax.set_ylabel("principal direction 2")
ax.set_title("corpus embeddings, coloured by k-means cluster")
plt.show()

# %% [markdown]
# The clusters occupy different regions but overlap a lot: two directions keep only a
# small share of the variance, and clusters that look mixed on the map are well apart in
# the other 382 dimensions. Read such pictures as hints, not evidence; the evidence is
# the numbers above.
#
# ## What we showed, checked
#
# The asserts below fail if a claim of this lesson is false.

# %%
# Paired: two scorings of the same pairs differ by far less noise than either score has.
assert paired_std < boot_std / 2, (paired_std, boot_std)

# Spearman by hand = minisbert's; ranks survive monotone transforms, Pearson does not.
assert abs(spearman_by_hand(cosine, gold) - spearman(cosine, gold)) < 1e-12
assert spearman_changes < 1e-12 and pearson_changes > 0.01

# The headline number: 82.03 on all of STS-b test. On a sample, only as close as the
# sample allows: within four bootstrap standard errors (and never below 70).
if N_PAIRS is None:
    assert abs(results["spearman_cosine"] - REFERENCE_SPEARMAN) < 0.05, results
else:
    assert abs(results["spearman_cosine"] - REFERENCE_SPEARMAN) < max(4 * boot_std, 1.0)
    assert results["spearman_cosine"] > 70

# Normalised vectors: cosine, dot and euclidean rank the pairs identically; manhattan not.
assert np.allclose(norms, 1.0, atol=1e-5)
assert len(same_three) == 1
assert results["spearman_manhattan"] != results["spearman_cosine"]

# Search: a gold paraphrase is the first hit for most high-scored STS-b pairs.
assert recall_at_1 > 0.6, recall_at_1

# Mining: the top pairs are near-duplicates and sorted best first.
assert pairs[0][0] > 0.95
assert all(a[0] >= b[0] for a, b in zip(pairs, pairs[1:], strict=False))

# k-means: the objective never decreases, and no cluster is empty.
assert all(b >= a - 1e-6 for a, b in zip(history, history[1:], strict=False)), history
assert np.bincount(assign, minlength=K).min() > 0
print("all claims hold")

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
# # Lesson 12: modify a loss, check it, train with it
#
# **Time on a 2-core CPU:** fast mode 1 to 2 minutes (measured on a shared 2-core CPU); full mode,
# the default, about 8 minutes (measured: 484 s, top to bottom, with a training run sharing the 2
# cores). On a GPU: not measured yet. Fast mode: set
# `MINISBERT_FAST=1` before starting Jupyter, or `FAST = True` in the cell that sets `FAST`.
#
# Sentence-BERT is a recipe with a free slot: the same siamese network (one BERT, one
# pooling, used on every sentence) can be trained with any objective that turns sentence
# embeddings into a number to minimise. In minisbert that slot is a plain function:
#
#     loss_fn(anchor, positive, negative) -> scalar        each argument (B, D)
#
# pure (no state, no side effects), jittable, with its formula in its docstring. Every loss
# in `minisbert/losses/` has that shape, and `train(config, loss_fn=...)` accepts yours.
#
# In this lesson you write two new losses and take each through the three checks a new loss
# should pass before it is allowed near a model:
#
# 1. its **value** on a case small enough to compute by hand (a golden);
# 2. its **gradient** against finite differences, with `minisbert.loss_check.check_loss`,
#    which we first watch fail on a loss whose value is right and whose gradient is wrong;
# 3. a **training run**: fine-tune all-MiniLM-L6-v2 on SNLI triplets with your loss and with
#    the library's, same seed, same steps, and compare the STS Benchmark test scores.

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
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from minisbert import SentenceEncoder
from minisbert.data import load_dataset
from minisbert.distances import cos_sim_matrix, normalize  # noqa: F401  (yours to use below)
from minisbert.evaluate import evaluate_sts
from minisbert.loss_check import check_loss, random_inputs
from minisbert.losses import (
    multiple_negatives_ranking_loss,
    symmetric_multiple_negatives_ranking_loss,
    triplet_loss,
)
from minisbert.train import epoch_order

LossFn = Callable[..., jax.Array]  # embeddings (and labels) -> scalar
FAST = os.environ.get("MINISBERT_FAST") == "1"
print(f"{'fast' if FAST else 'full'} mode")

# %% [markdown]
# ## The gradient check, on a loss that is right
#
# `check_loss(f, *inputs)` computes `jax.grad(f)` and, separately, a central finite
# difference for every entry k of every input,
#
#     d loss / d x_k  ~  (loss(x + h e_k) - loss(x - h e_k)) / (2 h),      h = 1e-6,
#
# in float64, and raises if the two disagree anywhere. `random_inputs(3)` gives three
# (4, 8) batches: an anchor and two partners correlated with it, so a loss's margins and
# rankings fall both ways as they do in training. Here it is on the library's multiple
# negatives ranking loss (MNRL), which we will meet again at the end:

# %%
anchor, positive, negative = random_inputs(3)  # (4, 8) each
report = check_loss(multiple_negatives_ranking_loss, anchor, positive, negative)
print(report)

# %% [markdown]
# The errors are many orders of magnitude inside the tolerance on the first line: what is
# left of float64 rounding. The check passes.
#
# ## Exercise 1: a cosine-margin triplet loss
#
# The SBERT paper's triplet objective asks the anchor to be closer to its positive than to
# its negative by a margin, in euclidean distance. Measured in cosine instead:
#
#     loss = mean_i max(cos(a_i, n_i) - cos(a_i, p_i) + margin, 0)
#
# A triplet costs nothing once the positive beats the negative by `margin` in cosine; below
# that, the cost grows linearly. Write it, with `margin` a keyword argument defaulting to
# 0.5 (our choice: a cosine lies in [-1, 1], so the gap between two cosines is at most 2;
# sentence-transformers' TripletLoss keeps its default margin of 5 whatever the distance,
# which no cosine gap can reach, so with cosine distance its hinge never switches off).
#
# Use `jax.numpy`, not numpy, so that `jax.jit` and `jax.grad` see through it.
# `minisbert.distances.normalize(x)` scales each row of x to unit length, and the cosine of
# two unit vectors is their dot product.


# %%
def cosine_triplet_loss(
    anchor: jax.Array,  # (B, D)
    positive: jax.Array,  # (B, D)
    negative: jax.Array,  # (B, D)
    *,
    margin: float = 0.5,
) -> jax.Array:  # ()
    """mean_i max(cos(a_i, n_i) - cos(a_i, p_i) + margin, 0)."""
    raise NotImplementedError("your code here")


# %% [markdown]
# **The golden.** Two triplets in two dimensions, small enough to do on paper:
#
# | i | anchor | positive | negative | cos(a, p) | cos(a, n) | max(cos(a,n) - cos(a,p) + 0.5, 0) |
# |---|---|---|---|---|---|---|
# | 1 | (1, 0) | (0, 1) | (1, 1) | 0 | 1/√2 ≈ 0.7071 | 1.2071 |
# | 2 | (1, 0) | (2, 0) | (0, -3) | 1 | 0 | max(-0.5, 0) = 0 |
#
# The mean is (1/√2 + 0.5) / 2 ≈ 0.6036. Triplet 1 is in the wrong order and pays; triplet 2
# beats the margin and costs nothing. Lengths do not matter: (2, 0) is as close to (1, 0)
# as (1, 0) itself. With margin 0 the loss is (1/√2) / 2 ≈ 0.3536.
#
# The check also compares with the library: the cosine *distance* is 1 - cos, so
# `triplet_loss(..., distance="cosine")`, max(d(a,p) - d(a,n) + margin, 0), is the same
# function. Then the gradient goes through `check_loss`.

# %%
GOLDEN_ANCHOR = jnp.array([[1.0, 0.0], [1.0, 0.0]])  # (2, 2)
GOLDEN_POSITIVE = jnp.array([[0.0, 1.0], [2.0, 0.0]])  # (2, 2)
GOLDEN_NEGATIVE = jnp.array([[1.0, 1.0], [0.0, -3.0]])  # (2, 2)
GOLDEN_TRIPLET = (1 / math.sqrt(2) + 0.5) / 2  # 0.6036, the table above


def check_cosine_triplet(fn: LossFn) -> None:
    fn = lesson.by_hand(fn, triplet_loss)  # the check fails if fn calls the library's loss
    golden = (GOLDEN_ANCHOR, GOLDEN_POSITIVE, GOLDEN_NEGATIVE)
    value = float(fn(*golden))
    assert abs(value - GOLDEN_TRIPLET) < 1e-6, f"golden: expected {GOLDEN_TRIPLET:.6f}, got {value}"
    value = float(fn(*golden, margin=0.0))
    assert abs(value - 1 / math.sqrt(2) / 2) < 1e-6, f"margin=0: expected 0.353553, got {value}"
    a, p, n = random_inputs(3)
    library = float(triplet_loss(a, p, n, margin=0.5, distance="cosine"))
    assert abs(float(fn(a, p, n)) - library) < 1e-5, "differs from triplet_loss(distance='cosine')"
    check_loss(fn, a, p, n)  # raises AssertionError if jax.grad disagrees with finite differences


cosine_triplet_loss = lesson.exercise(
    check_cosine_triplet, cosine_triplet_loss, lesson="12_modify_a_loss"
)

# %% [markdown]
# ## Can the gradient check fail? A loss with the right value and the wrong gradient
#
# A check that always passes teaches nothing, so here is a loss that should fail. It is the
# cosine triplet loss again, with one plausible-looking shortcut: "the norm is just a number
# we divide by", so it is wrapped in `jax.lax.stop_gradient` (the same happens by accident if
# a norm is computed in numpy, or cached from an earlier step). Every *value* is unchanged.


# %%
def cosine_triplet_loss_frozen_norms(
    anchor: jax.Array,  # (B, D)
    positive: jax.Array,  # (B, D)
    negative: jax.Array,  # (B, D)
    *,
    margin: float = 0.5,
) -> jax.Array:  # ()
    """The cosine triplet loss, but no gradient flows through the norms. Deliberately wrong."""

    def unit(x: jax.Array) -> jax.Array:  # (B, D) -> (B, D)
        return x / jax.lax.stop_gradient(jnp.linalg.norm(x, axis=-1, keepdims=True))

    a, p, n = unit(anchor), unit(positive), unit(negative)
    cos_ap = jnp.einsum("BD,BD->B", a, p)  # (B,)
    cos_an = jnp.einsum("BD,BD->B", a, n)  # (B,)
    return jnp.mean(jax.nn.relu(cos_an - cos_ap + margin))


frozen_golden = float(
    cosine_triplet_loss_frozen_norms(GOLDEN_ANCHOR, GOLDEN_POSITIVE, GOLDEN_NEGATIVE)
)
print(f"value on the golden: {frozen_golden:.6f} (expected {GOLDEN_TRIPLET:.6f}): passes")
frozen_caught = False
try:
    check_loss(cosine_triplet_loss_frozen_norms, anchor, positive, negative)
except AssertionError as error:
    frozen_caught = True
    print("check_loss says:\n", error)

# %% [markdown]
# The golden could not see the bug; `check_loss` names the input, the entry, and the two
# numbers that disagree, and every input fails.
#
# What the shortcut broke is easy to see once you know where to look. A loss made only of
# cosines does not change when you stretch an input row: L(c a_i) = L(a_i) for any c > 0.
# So its gradient with respect to a row has no component along that row,
# ⟨∂L/∂a_i, a_i⟩ = 0: the gradient only turns a vector, it never lengthens it. With frozen
# norms, the gradient of cos(a, p) with respect to a becomes p / (|a| |p|), which also
# pushes along a. Measure the radial part ⟨∂L/∂a_i, a_i⟩ of both gradients:


# %%
def radial_part(loss: LossFn, inputs: tuple[jax.Array, ...]) -> float:
    """max_i |<dL/da_i, a_i>|: how much the gradient pushes each anchor along itself."""
    grad_anchor = jax.grad(loss)(*inputs)  # (B, D)
    return float(jnp.abs(jnp.einsum("BD,BD->B", grad_anchor, inputs[0])).max())


def right_loss(a: jax.Array, p: jax.Array, n: jax.Array) -> jax.Array:
    return triplet_loss(a, p, n, margin=0.5, distance="cosine")


radial_right = radial_part(right_loss, (anchor, positive, negative))
radial_frozen = radial_part(cosine_triplet_loss_frozen_norms, (anchor, positive, negative))
print(f"cosine triplet loss:         max |<grad_a, a>| = {radial_right:.1e}")
print(f"with frozen norms (the bug): max |<grad_a, a>| = {radial_frozen:.1e}")

# %% [markdown]
# During training the frozen-norm gradient would waste part of every step growing or
# shrinking embeddings that the cosine then ignores, and point the rest in a slightly wrong
# direction: the kind of bug that trains, just worse, and is never noticed without a check.
#
# **The check can also fail on a right loss.** Finite differences assume the loss is smooth
# at the point you test. A hinge is not smooth where its argument is exactly 0. Give the
# library's (correct) cosine triplet loss margin 0 and a negative equal to the positive: every
# triplet sits on the kink, `jax.grad` takes the relu's gradient there as 0, and finite
# differences average the two slopes:


# %%
def on_the_kink(a: jax.Array, p: jax.Array, n: jax.Array) -> jax.Array:
    return triplet_loss(a, p, n, margin=0.0, distance="cosine")


kink_caught = False
try:
    check_loss(on_the_kink, anchor, positive, positive)  # negative == positive: cos gap is 0
except AssertionError as error:
    kink_caught = True
    print(str(error).splitlines()[0])

# %% [markdown]
# So when a check fails, first ask whether your inputs sit on a kink (a hinge at exactly 0,
# a zero vector, a tie in a max); random inputs such as `random_inputs` almost never do. If
# they do not, the gradient is wrong.
#
# ## Exercise 2: a symmetric MNRL
#
# The library's multiple negatives ranking loss scores every anchor against every candidate
# in the batch: the B positives, then the B hard negatives,
#
#     S_ij = scale * cos(a_i, c_j),    c = [p_1 .. p_B, n_1 .. n_B],    S: (B, 2B)
#
# and asks each **row** to pick out its own positive with a softmax cross-entropy (the true
# pair is on the diagonal). It trains one direction: given a premise, find its entailment.
#
# The symmetric version also reads the **columns** of the anchor-positive block S[:, :B]:
# given positive j, which of the B anchors is its own? Hard negatives have no anchor of their
# own, so they take part in the rows only. The loss averages the two directions:
#
#     row_i    = -log softmax(S_i,:)[i]           over all 2B candidates
#     column_j = -log softmax(S_:,j)[j]           over the B anchors, j <= B
#     loss     = 1/2 (mean_i row_i + mean_j column_j)
#
# (sentence-transformers has a symmetric variant of MNRL too; here the formula above is the
# definition.) Write it with the same arguments as `multiple_negatives_ranking_loss`:
# `negatives` may be None (pairs only), `scale` defaults to 20. `cos_sim_matrix(a, b)` from
# `minisbert.distances` gives the (B, M) cosine matrix, and
# `optax.softmax_cross_entropy_with_integer_labels(logits, labels)` the cross-entropy of
# each row of `logits`.


# %%
def symmetric_mnrl_loss(
    anchors: jax.Array,  # (B, D)
    positives: jax.Array,  # (B, D)
    negatives: jax.Array | None = None,  # (B, D) hard negatives, or None
    *,
    scale: float = 20.0,
) -> jax.Array:  # ()
    """1/2 (mean_i CE(row i, i) + mean_j CE(column j, j)), S_ij = scale cos(a_i, c_j)."""
    raise NotImplementedError("your code here")


# %% [markdown]
# **The golden**, with scale 1 and no negatives so that it fits on paper. Anchors a_1 = (1, 0),
# a_2 = (0, 1); positives p_1 = (1, 0), p_2 = (1, 1). With c = 1/√2:
#
# | | p_1 | p_2 |
# |---|---|---|
# | a_1 | 1 | c |
# | a_2 | 0 | c |
#
# - row 1, target p_1: -log(e^1 / (e^1 + e^c)) = log(1 + e^(c-1))
# - row 2, target p_2: -log(e^c / (e^0 + e^c)) = log(1 + e^(-c))
# - column 1 (1, 0), target a_1: log(1 + e^(-1))
# - column 2 (c, c), target a_2: a tie between the two anchors, log 2
#
# The cell computes these four numbers with `math`, nothing else. The check then compares
# with the library on random inputs with hard negatives, and runs `check_loss` on them.

# %%
c = 1 / math.sqrt(2)
golden_rows = (math.log(1 + math.exp(c - 1)) + math.log(1 + math.exp(-c))) / 2
golden_columns = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
GOLDEN_SYMMETRIC = (golden_rows + golden_columns) / 2
print(f"rows {golden_rows:.6f}, columns {golden_columns:.6f}, loss {GOLDEN_SYMMETRIC:.6f}")


def check_symmetric_mnrl(fn: LossFn) -> None:
    library = (multiple_negatives_ranking_loss, symmetric_multiple_negatives_ranking_loss)
    fn = lesson.by_hand(fn, *library)  # write it with cos_sim_matrix
    anchors = jnp.array([[1.0, 0.0], [0.0, 1.0]])  # (2, 2)
    positives = jnp.array([[1.0, 0.0], [1.0, 1.0]])  # (2, 2)
    value = float(fn(anchors, positives, scale=1.0))
    assert abs(value - GOLDEN_SYMMETRIC) < 1e-6, f"golden: {GOLDEN_SYMMETRIC:.6f}, got {value}"
    a, p, n = random_inputs(3)
    rows = multiple_negatives_ranking_loss(a, p, n)  # anchors look for their positives
    columns = multiple_negatives_ranking_loss(p, a)  # positives look for their anchors
    expected = float(0.5 * (rows + columns))
    assert abs(float(fn(a, p, n)) - expected) < 1e-5, "with hard negatives: differs from expected"
    check_loss(fn, a, p, n)


symmetric_mnrl_loss = lesson.exercise(
    check_symmetric_mnrl, symmetric_mnrl_loss, lesson="12_modify_a_loss"
)

# %% [markdown]
# The check gives away a one-line solution: the column loss is the library's MNRL with the
# roles of anchors and positives swapped (and no negatives). The check refuses it (its
# `lesson.by_hand` fails if your function calls `multiple_negatives_ranking_loss`, or the
# library's own symmetric loss, `LOSSES["mnrl_symmetric"]`, by any name): writing
# it out with `cos_sim_matrix` is the exercise, the (B, 2B) matrix read two ways.
#
# ## Train with it
#
# `train(config, loss_fn=symmetric_mnrl_loss)` puts your function where the library's loss
# would go. `config.loss` still says two things: which data the loss needs, and how it is
# called. With `loss="mnrl"` the data must be triplets (or unlabelled pairs) and the call is
# `loss_fn(anchor, positive, negative)`, each (B, D) from the same encoder: exactly the
# signature we wrote. The train step is jitted with the loss inside it, so the loss must be
# jittable (the checks above jitted it already).
#
# **Data.** SNLI's dev split gives triplets (premise, a hypothesis it entails, one it
# contradicts). We keep those whose three sentences have at most 24 tokens
# (`lesson.within_tokens`), so that the step compiles once per loss (lesson 5, "Training"),
# and write them to a file that `TrainConfig(data=...)` reads (`lesson.write_examples`).
# Before training, the cell also asks how hard the task already is: in the batches the
# run will see, how many anchors rank their own entailment first among the 2B candidates of
# their batch?
#
# **Start.** Both losses train from the same starting point: all-MiniLM-L6-v2 read through
# its [CLS] token, as in lesson 9. Through its mean pooling the model was trained with
# in-batch negatives (the symmetric loss of exercise 2) on about a billion pairs, and a few
# dozen steps of either loss can hardly move it: a comparison there could compare two ways
# of standing still. Its [CLS] output was never trained as a sentence vector, so both
# losses have something to teach.
#
# **Runs.** For a given seed both losses see the same batches in the same order, the same
# dropout masks and the same learning-rate schedule (`TrainConfig`'s defaults); only the
# loss differs. Each trained model is scored on the STS Benchmark test set, which neither
# trained on. One run is one draw, so full mode trains each loss with three seeds: a
# difference between the two losses means something only if it is larger than the spread
# of one loss across seeds. `lesson.finetune` (lesson 6) runs
# `train(TrainConfig(...), loss_fn=...)` in a temporary folder and deletes it once the
# trained model is loaded back (a checkpoint and the model; it prints their size).
#
# Fast mode trains only your loss, with one seed, for 5 steps on one batch of 8 triplets:
# each new loss costs another compile, and the point there is only that training runs and
# the loss falls.

# %%
BATCH_SIZE = 8 if FAST else 16
STEPS = 5 if FAST else 40
SEEDS = (0,) if FAST else (0, 1, 2)
N_STS_PAIRS = 200 if FAST else None  # STS-b test pairs scored; None = all 1,379

encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
workdir = Path(tempfile.mkdtemp(prefix="minisbert-lesson12-"))
cls_start = lesson.read_through(paths.weights, "cls", workdir / "all-MiniLM-L6-v2-cls")
start_encoder = SentenceEncoder.from_pretrained(cls_start)

snli = load_dataset("snli-triplets", "dev")
# fast mode: one batch, seen STEPS times
short = lesson.within_tokens(snli, encoder.tokenizer, 24, limit=BATCH_SIZE if FAST else None)
print(
    f"{len(snli)} SNLI dev triplets; training on {len(short)} whose sentences fit 24 tokens"
    + (" (fast mode: the first batch of them)" if FAST else "")
)
print("for example:", short[0])

triplet_file = lesson.write_examples(workdir / "snli_triplets.jsonl", short)
print(f"one epoch of them: {len(short) // BATCH_SIZE} step(s) of {BATCH_SIZE}")

# The batches seed 0 will see: the first STEPS of epoch 0, in train's order.
seen = [short[i] for i in epoch_order(0, 0, len(short))[: STEPS * BATCH_SIZE]]
seen_a, seen_p, seen_n = (
    start_encoder.encode([getattr(t, side) for t in seen])
    for side in ("anchor", "positive", "negative")
)  # (n, D) each
picks_own = []  # per anchor: is its own entailment the best of the batch's 2B candidates?
for start in range(0, len(seen) - BATCH_SIZE + 1, BATCH_SIZE):
    rows = slice(start, start + BATCH_SIZE)
    candidates = np.concatenate([seen_p[rows], seen_n[rows]])  # (2B, D)
    scores = np.asarray(cos_sim_matrix(seen_a[rows], candidates))  # (B, 2B), positive i in column i
    picks_own += list(scores.argmax(axis=1) == np.arange(BATCH_SIZE))
share_own = float(np.mean(picks_own))
print(
    f"before training, {share_own:.0%} of the anchors in the {len(seen) // BATCH_SIZE} "
    f"batch(es) seed 0 sees rank their own entailment first of {2 * BATCH_SIZE} candidates"
)

test = load_dataset("stsb", "test")
if N_STS_PAIRS is not None:
    rng = np.random.default_rng(0)
    test = [test[i] for i in rng.choice(len(test), N_STS_PAIRS, replace=False)]
mean_pooled = evaluate_sts(encoder, test, show_progress_bar=True)["spearman_cosine"]
start_spearman = evaluate_sts(start_encoder, test, show_progress_bar=True)["spearman_cosine"]
print(
    f"STS-b test ({len(test)} pairs), Spearman x100: {mean_pooled:.2f} through mean pooling "
    f"(as trained), {start_spearman:.2f} through [CLS] (the start)"
)

# %%
losses = {}  # name -> the training losses of its seed-0 run, for the plot


def train_and_score(name: str, loss_fn: LossFn) -> dict:
    """Fine-tune the [CLS] start with loss_fn, once per seed; STS-b test Spearman of each."""

    def run(seed: int) -> dict:
        trained, result = lesson.finetune(
            model=str(cls_start),
            data=str(triplet_file),
            loss="mnrl",  # triplets, called as loss_fn(anchor, positive, negative)
            loss_fn=loss_fn,
            batch_size=BATCH_SIZE,
            epochs=STEPS if FAST else 1,  # fast mode: the one batch, STEPS times
            max_steps=STEPS,
            seed=seed,
        )
        assert all(math.isfinite(x) for x in result.losses), f"{name}: a loss was not finite"
        losses.setdefault(name, result.losses)
        score = evaluate_sts(trained, test, show_progress_bar=True)["spearman_cosine"]
        return {"STS-b test": score}

    print(f"{name}:")
    return lesson.over_seeds(run, SEEDS)


runs = {"symmetric MNRL (yours)": symmetric_mnrl_loss}
if not FAST:
    runs["MNRL (minisbert)"] = multiple_negatives_ranking_loss
spearman = {name: train_and_score(name, loss_fn)["STS-b test"] for name, loss_fn in runs.items()}
shutil.rmtree(workdir)

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, curve in losses.items():
    ax.plot(np.arange(1, len(curve) + 1), curve, marker=".", label=name)
ax.set_xlabel("step")
ax.set_ylabel("training loss (before the step's update)")
ax.set_yscale("log")
ax.legend(loc="upper right")
ax.set_title(f"SNLI triplets from the [CLS] start, batch {BATCH_SIZE}, seed 0", fontsize=10)
fig.tight_layout()
plt.show()

for name, values in spearman.items():
    print(f"{name}, from the [CLS] start ({start_spearman:.2f}):")
    lesson.seed_table({"STS-b test": start_spearman}, {"STS-b test": values})
if len(spearman) == 2:
    yours, library = spearman.values()
    gap = yours - library  # (seeds,): the same batches and masks, two losses
    print(
        f"yours - library, per seed: {np.round(gap, 2)}; spread of yours across seeds "
        f"{np.std(yours, ddof=1):.2f}, of the library's {np.std(library, ddof=1):.2f}"
    )
    # Seed 0's two curves, step by step: do they move up and down on the same batches?
    steps_together = float(np.corrcoef(*[np.diff(curve) for curve in losses.values()])[0, 1])
    print(f"correlation of the two curves' step-to-step changes (seed 0): {steps_together:.2f}")

# %% [markdown]
# Reading the figures (full mode; fast mode trains too little to move STS-b):
#
# - **Both losses teach the [CLS] vector**: STS-b test, a task neither trained on, rises
#   on every seed, beyond the seeds' noise. Forty steps of SNLI triplets made
#   the output at [CLS] a better sentence vector in general.
# - **Neither reaches mean pooling** (the first figure the data cell printed): that vector
#   had a billion pairs behind it.
# - **Yours against the library's.** The last line compares the two losses seed by seed
#   (for one seed both saw the same batches, so the per-seed difference is the loss's
#   doing) and prints how far one loss alone moves across seeds. A gap smaller than that
#   spread, or one that changes sign from seed to seed, is noise: at this scale the two
#   losses cannot be told apart, and saying so is the finding. A gap of the same sign on
#   every seed, larger than the spread, would be worth a longer run; in the symmetric loss
#   each pair is asked twice (anchor finds positive, positive finds anchor), a second
#   signal on the same batch.
# - **The loss curves**: both saw the same batch at each step. Where they rise and fall
#   together (the correlation of their step-to-step changes, printed last, is high), a
#   step's loss says more about how hard its batch happens to be than about progress.
#   (They are not on one scale: the symmetric loss averages in a second term.)
#
# ## Ideas to try
#
# - **Train with the cosine triplet loss** from exercise 1: `TrainConfig(loss="triplet",
#   ...)` and `loss_fn=functools.partial(cosine_triplet_loss, margin=0.3)`. Then run the
#   library's loss with `distance="cosine", margin=0.3` in the config and no `loss_fn`: the
#   two runs should print the same losses step for step. Do they, and to how many digits?
# - **Scale.** MNRL's scale 20 is a temperature of 0.05. Train the symmetric loss with
#   `functools.partial(symmetric_mnrl_loss, scale=5.0)` and `scale=50.0`. How does the
#   starting loss change, and the STS-b score?
# - **Drop the hard negatives**: `loss_fn=lambda a, p, n: symmetric_mnrl_loss(a, p)`. The
#   contradictions were the hardest candidates; does the model notice their absence?
# - **Batch size.** In-batch negatives make a bigger batch a harder task: try 8 and 32.
# - **Put the negatives in the columns too.** What would the target of a column be for a
#   hard negative, which has no anchor? Write down what such a loss would ask of the model.
# - **Break a loss yourself.** Compute the norms with `np.linalg.norm` inside the loss: what
#   does `check_loss` (which jits the loss) say? Then round the cosines to three decimals
#   with `jnp.round`: the check *passes*. Why, and what would training with that loss do?
#   (A check compares two gradients; it cannot tell you that both are useless.)
# - **Train longer**: raise `STEPS` (the data cell prints how many steps one epoch of the
#   filtered triplets is) and see whether the per-seed gap between the two losses grows
#   beyond the spread across seeds.
# - **Start from mean pooling**: `model="all-MiniLM-L6-v2"` in `run`. Do either of the
#   losses move STS-b now?

# %% [markdown]
# ## What we showed
#
# - A new loss is a short pure function of (B, D) embeddings; `train(config, loss_fn=...)`
#   trains with it when its signature matches what `config.loss` says the data gives.
# - A hand-computed golden checks the value but not the gradient: the frozen-norm loss passed
#   the golden and failed `check_loss`, whose gradient also had a radial part that a loss of
#   cosines cannot have. `check_loss` can also fail on a right loss, at a kink.
# - The symmetric MNRL is the library's MNRL read both ways. From a sentence vector nobody
#   had trained (all-MiniLM-L6-v2's [CLS] output) it raises STS-b on every seed, as the
#   library's loss does, and the per-seed comparison says whether the two differ by more
#   than the seeds do.

# %%
check_cosine_triplet(cosine_triplet_loss)
check_symmetric_mnrl(symmetric_mnrl_loss)
assert abs(frozen_golden - GOLDEN_TRIPLET) < 1e-6, "the frozen-norm loss has the right value"
assert frozen_caught, "check_loss catches the frozen-norm gradient"
assert radial_right < 1e-5 < 1e-2 < radial_frozen, "cosine losses have no radial gradient"
assert kink_caught, "finite differences disagree with jax.grad on a kink"
for name, curve in losses.items():
    assert all(math.isfinite(value) for value in curve), f"{name}: a loss was not finite"
    assert len(curve) == STEPS
assert start_spearman < mean_pooled, "[CLS] starts below mean pooling"
mine = spearman["symmetric MNRL (yours)"]
if FAST:
    # One batch seen 5 times: the loss on it must fall.
    curve = losses["symmetric MNRL (yours)"]
    assert curve[-1] < curve[0], f"the loss did not fall on the batch it trained on: {curve}"
else:
    library = spearman["MNRL (minisbert)"]
    assert lesson.beyond_noise(start_spearman, mine), "your loss teaches [CLS], beyond the noise"
    assert lesson.beyond_noise(start_spearman, library), "so does the library's"
    assert max(mine.max(), library.max()) < mean_pooled, "neither catches up with mean pooling"
print("all claims hold")

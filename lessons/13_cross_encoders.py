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
# # Lesson 13: cross-encoders, the other side of the paper's trade
#
# **Time on a 2-core CPU:** fast mode 4 to 5 minutes (measured on a shared 2-core CPU); full
# mode, the default, about an hour: 4,112 s measured on a quiet 2-core CPU while the
# cross-encoder still trained with dropout, most of it three seeds of the cross-encoder's
# 1,436 steps (about 11 minutes each then) and of the bi-encoder's. Without dropout one such
# run took 8 minutes (487 s, quiet, from the command line), so expect a little less (an
# estimate). On a GPU: not measured yet. Fast mode: set `MINISBERT_FAST=1` before starting
# Jupyter, or `FAST = True` in the cell that sets `FAST`.
#
# Every lesson so far built a **bi-encoder**: each sentence goes through BERT alone and
# comes out as one vector, and two sentences are compared by the cosine of their vectors.
# A **cross-encoder** is BERT as Devlin et al. (2019) used it for sentence pairs: both
# sentences go in together, as one sequence, and a small head on the output of the first
# token, `[CLS]`, gives one score for the pair.
#
#     bi-encoder      u = pool(BERT(a)),  v = pool(BERT(b)),  score = cos(u, v)
#     cross-encoder   score = head(BERT([CLS] a [SEP] b [SEP])[0])
#
# Inside a cross-encoder every token of `a` attends to every token of `b`, in every layer,
# so the model can compare the words of the two sentences directly. Inside a bi-encoder,
# `a` never sees `b`: everything that matters about `a` must fit in one vector before `b`
# is looked at.
#
# **The paper's trade.** The SBERT paper (Reimers & Gurevych 2019) measured both on the
# STS benchmark, in its Table 2: Spearman x100 on STS-b test, the mean ± standard deviation
# over 10 random seeds, 4 epochs of STS-b train, BERT-base.
#
# | trained on | cross-encoder (BERT) | bi-encoder (SBERT) |
# |---|---|---|
# | STS-b train | BERT-STSb-base 84.30 ± 0.76 | SBERT-STSb-base 84.67 ± 0.19 |
# | NLI, then STS-b train | BERT-NLI-STSb-base 88.33 ± 0.27 | SBERT-NLI-STSb-base 85.35 ± 0.17 |
#
# With NLI training first, the cross-encoder scores pairs three points better. But it has
# no vector to keep: to find the most similar pair among n sentences it must run BERT once
# per pair, n(n−1)/2 times, where the bi-encoder runs it n times and compares the vectors
# with one matrix product. For n = 10,000 the paper gives about 65 hours on a V100 GPU
# against about 5 seconds. Lesson 1 timed BERT on pairs; this lesson builds and trains a
# real cross-encoder (`minisbert.cross_encoder`), so that both sides of the trade are
# measured here:
#
# 1. the cost of both ways on this machine, for 10,000 sentences;
# 2. the pair input and the head, by hand (the exercise);
# 3. a cross-encoder trained on STS-b, and our Table 2 next to the paper's;
# 4. retrieve & re-rank: the bi-encoder finds candidates, the cross-encoder orders them;
# 5. when to use which.
#
# `MINISBERT_FAST=1` times fewer sentences and pairs, trains for a few steps and scores
# samples of the STS-b splits, so that the test suite can run the lesson; every figure
# it prints says so. Full mode runs the real recipe over three seeds, for both kinds of
# encoder: a long run on a CPU (each training run prints its seconds per step).

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
import shutil
import tempfile
import time
from pathlib import Path

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from minisbert import SentenceEncoder, semantic_search
from minisbert.cli import main as minisbert_command
from minisbert.cross_encoder import CrossEncoder, CrossEncoderModel
from minisbert.cross_encoder_training import evaluate_pairs, start_model
from minisbert.data import load_dataset
from minisbert.evaluate import evaluate_sts
from minisbert.fast import PackedSteps
from minisbert.fast.pairs import PackedPairSteps
from minisbert.tokenizer import pad_batch
from minisbert.train import TrainConfig, train
from minisbert.train_config import flag_words

FAST = os.environ.get("MINISBERT_FAST") == "1"
N_COLLECTION = 10_000  # the paper's collection size: the figure we estimate for
N_ENCODE = 500 if FAST else 10_000  # sentences we actually run through the bi-encoder
N_PAIRS = 64 if FAST else 512  # pairs we actually run through the cross-encoder
N_WARMUP = 256  # other sentences, encoded once before timing (not timed)
N_EVAL = 200 if FAST else None  # STS-b dev and test pairs scored; None: all of them
SEEDS = (0,) if FAST else (0, 1, 2)  # one training run per seed and kind of encoder
# Fast mode: a few steps, at five times the recipe's learning rate so that they show something.
FAST_CHANGES = {"max_steps": 32, "lr": 1e-4} if FAST else {}
N_QUERIES = 50 if FAST else None  # re-ranking queries; None: every paraphrase pair's
K = 10  # candidates the bi-encoder hands to the cross-encoder

encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
# The run's start: all-MiniLM-L6-v2's BERT and pooler, a new head (seed 0), as
# `minisbert train --cross-encoder --model all-MiniLM-L6-v2 --seed 0` starts.
cross_encoder = start_model(paths.weights, num_labels=1, seed=0, data="stsb")
cross_encoder.model.eval()  # dropout off: we score pairs, we do not train here
print(f"{'fast' if FAST else 'full'} mode; cross-encoder head: {cross_encoder.config}")

# %% [markdown]
# ## 1. The cost of finding the most similar pair, measured
#
# The sentences are the distinct sentences of the STS benchmark, shuffled, as in lesson 1.
# The cross-encoder is all-MiniLM-L6-v2's BERT with a new head: its scores mean nothing
# yet (it is trained in part 3), but its computation is exactly that of a trained one.
# Both sides get the same treatment: batches of 32 sorted by length, a compiled forward
# pass, a warm-up run first so that compiling is not timed.

# %%
examples = [e for split in ("train", "dev", "test") for e in load_dataset("stsb", split)]
distinct = list(dict.fromkeys(s for e in examples for s in (e.sentence1, e.sentence2)))
rng = np.random.default_rng(0)
order = rng.permutation(len(distinct))
sentences = [distinct[i] for i in order[:N_COLLECTION]]
warmup_sentences = [distinct[i] for i in order[N_COLLECTION : N_COLLECTION + N_WARMUP]]

first, second = rng.choice(len(sentences), size=(2, N_PAIRS))
second = np.where(first == second, (second + 1) % len(sentences), second)  # never (i, i)
timed_pairs = [(sentences[i], sentences[j]) for i, j in zip(first, second, strict=True)]
cross_encoder.predict(timed_pairs)  # warm-up: compiles one program per padded length
start = time.perf_counter()
cross_encoder.predict(timed_pairs)  # (N_PAIRS,) scores
seconds_per_pair = (time.perf_counter() - start) / N_PAIRS

n_pairs = N_COLLECTION * (N_COLLECTION - 1) // 2
cross_total = n_pairs * seconds_per_pair
print(
    f"cross-encoder: {1000 * seconds_per_pair:.2f} ms per pair (timed on {N_PAIRS} pairs); "
    f"x {n_pairs:,} pairs = {cross_total / 3600:,.1f} hours (extrapolated)"
)

# %% [markdown]
# The bi-encoder: encode every sentence once, then one matrix product. The vectors have
# length 1, so `S = E Eᵀ` holds every pair's cosine; the most similar pair is the largest
# entry off the diagonal (S is symmetric: the pair is there twice). The product is always
# timed at 10,000 x 10,000; in fast mode fewer real vectors are encoded, so they are
# repeated to 10,000 rows (the arithmetic is the same) and the encoding time is extrapolated.

# %%
encoder.encode(warmup_sentences, batch_size=32)  # warm-up: compiles the common shapes
start = time.perf_counter()
embeddings = encoder.encode(sentences[:N_ENCODE], batch_size=32)  # (N_ENCODE, D)
encode_total = (time.perf_counter() - start) * N_COLLECTION / N_ENCODE

E = np.resize(embeddings, (N_COLLECTION, embeddings.shape[1]))  # (10000, D)
start = time.perf_counter()
S = E @ E.T  # (10000, 10000) cosines
np.fill_diagonal(S, -np.inf)  # a sentence with itself does not count
i, j = np.unravel_index(np.argmax(S), S.shape)
product_seconds = time.perf_counter() - start
bi_total = encode_total + product_seconds
del S  # 400 MB
label = "measured" if N_ENCODE == N_COLLECTION else f"extrapolated from {N_ENCODE:,}"
print(f"bi-encoder: {N_COLLECTION:,} encodings {encode_total:.1f} s ({label})")
print(f"            one 10,000 x 10,000 product and its arg-max {product_seconds:.2f} s (measured)")
if N_ENCODE == N_COLLECTION:
    print(f"most similar pair, cosine {E[i] @ E[j]:.3f}:\n  {sentences[i]}\n  {sentences[j]}")
print(
    f"\ncross-encoder {cross_total / 3600:,.1f} hours, bi-encoder {bi_total:,.1f} s: "
    f"the bi-encoder is {cross_total / bi_total:,.0f}x cheaper on this machine"
)

# %% [markdown]
# The ratio is roughly n/2 times the cost of a pair over the cost of a sentence: each new
# sentence costs the bi-encoder one BERT pass, the cross-encoder one pass with every
# sentence before it. The paper's 65 hours against 5 seconds is a ratio of about 47,000 on a
# GPU; the ratio printed above is this machine's, and the cross-encoder side assumes every
# pair is as fast as the sampled ones.
#
# ## 2. The pair input and the head
#
# The tokenizer writes a pair as one sequence, and gives each token a **segment id**
# (`token_type_ids`): 0 for `[CLS]`, the first sentence and its `[SEP]`; 1 for the second
# sentence and the last `[SEP]`. BERT adds a learned "segment A" or "segment B" vector to
# each token's embedding (lesson 3), so that it can tell the two sentences apart.
# `CrossEncoder.tokenize_pairs` does it for a list of pairs:

# %%
a, b = examples[0].sentence1, examples[0].sentence2
(ids,), (types,) = cross_encoder.tokenize_pairs([(a, b)])
for token_id, type_id in zip(ids, types, strict=True):
    print(f"{cross_encoder.tokenizer.backend.id_to_token(token_id):>12s} {token_id:6d}  {type_id}")

# %% [markdown]
# On top of BERT sit two layers, as in BERT's own sentence-pair classifier. Write
# h = BERT(pair), (T, D), and h_0 for its first row, the output at `[CLS]`:
#
#     pooled = tanh(h_0 W_p + b_p)        (D,)   BERT's pooler: W_p (D, D), b_p (D,)
#     logits = pooled W_c + b_c           (C,)   the head: W_c (D, C), b_c (C,); C = 1 here
#     score  = sigmoid(logits)            (C,)   what `predict` gives for one label: 0 to 1
#
# (Dropout sits between the pooler and the head during training; `predict` runs without
# it.) The pooler comes with the checkpoint: a bi-encoder never runs it, but `minisbert
# convert` keeps it beside the model (`pooler.safetensors`), and a run starts from it, as
# transformers' BERT sequence classifier loaded from the same checkpoint does. Only the head
# is new, drawn from the seed.

# %%
model = cross_encoder.model
print(
    f"pooler W_p {model.pooler.kernel.get_value().shape}, b_p {model.pooler.bias.get_value().shape}"
)
print(
    f"head   W_c {model.classifier.kernel.get_value().shape}, "
    f"b_c {model.classifier.bias.get_value().shape}"
)

# %% [markdown]
# ### Exercise: the pair input and the head, by hand
#
# 1. Write `pair_input(a_ids, b_ids, vocab)`. `a_ids` and `b_ids` are the WordPiece ids of
#    the two sentences without `[CLS]` and `[SEP]` (what `wordpieces` below gives); `vocab`
#    is the tokenizer's vocabulary, a dict from token to id. Return `(input_ids,
#    token_type_ids)`: two lists of ints, `[CLS] a [SEP] b [SEP]` and its segment ids. Look
#    `[CLS]` and `[SEP]` up in `vocab`. (The pairs here fit in the model's max length; a
#    longer pair is cut first, as `CrossEncoder.tokenize_pairs` explains.)
# 2. Write `pair_head(cls, pooler_kernel, pooler_bias, classifier_kernel,
#    classifier_bias)`: the logits (B, C) of B pairs from their `[CLS]` vectors (B, D),
#    the formula above, in numpy.
#
# The check compares your input with `tokenize_pairs` on STS-b pairs (an empty side
# included) and on a made-up vocabulary, and your head with `CrossEncoderModel`'s logits
# on the same pairs and with another head of three labels. It fails if your functions call
# the cross-encoder's own (`tokenize_pairs`, `predict`, the model or its `classify`).

# %%
vocab = cross_encoder.tokenizer.backend.get_vocab()  # token -> id
check_pairs = [(e.sentence1, e.sentence2) for e in examples[:4]]  # what the check uses


def wordpieces(sentence: str) -> list[int]:
    """The WordPiece ids of one sentence, without [CLS] and [SEP]."""
    return cross_encoder.tokenizer.tokenize([sentence])[0][1:-1]


print(f"{len(vocab):,} tokens; {a!r} -> {wordpieces(a)}")


def pair_input(
    a_ids: list[int], b_ids: list[int], vocab: dict[str, int]
) -> tuple[list[int], list[int]]:
    """[CLS] a [SEP] b [SEP] as token ids, and its segment ids (0 for [CLS] a [SEP], 1 after)."""
    raise NotImplementedError("your code here")


def pair_head(
    cls: np.ndarray,  # (B, D) BERT's output at [CLS]
    pooler_kernel: np.ndarray,  # (D, D)
    pooler_bias: np.ndarray,  # (D,)
    classifier_kernel: np.ndarray,  # (D, C)
    classifier_bias: np.ndarray,  # (C,)
) -> np.ndarray:  # (B, C) logits
    """tanh(cls W_p + b_p) W_c + b_c."""
    raise NotImplementedError("your code here")


# %%
def head_weights(model: CrossEncoderModel) -> list[np.ndarray]:
    """W_p (D, D), b_p (D,), W_c (D, C), b_c (C,) of a cross-encoder, as numpy arrays."""
    layers = (model.pooler, model.classifier)
    return [np.asarray(p.get_value()) for layer in layers for p in (layer.kernel, layer.bias)]


@nnx.jit
def cls_and_logits(model, input_ids, attention_mask, token_type_ids):
    """BERT's output at [CLS] (B, D), and the whole model's logits (B, C), of padded pairs."""
    h = model.bert(input_ids, attention_mask, token_type_ids)  # (B, T, D)
    return h[:, 0], model(input_ids, attention_mask, token_type_ids)


def check_cross_encoder_by_hand(pair_input, pair_head) -> None:
    library = (
        CrossEncoder.tokenize_pairs,
        CrossEncoder.predict,
        CrossEncoderModel.__call__,
        CrossEncoderModel.classify,
    )
    pair_input = lesson.by_hand(pair_input, *library)  # fails if it calls one of these
    pair_head = lesson.by_hand(pair_head, *library)
    tokenizer = cross_encoder.tokenizer
    vocab = tokenizer.backend.get_vocab()
    pairs = [*check_pairs, ("", check_pairs[0][1]), (check_pairs[0][0], "")]
    want_ids, want_types = cross_encoder.tokenize_pairs(pairs)
    for (a, b), ids, types in zip(pairs, want_ids, want_types, strict=True):
        a_ids, b_ids = (tokenizer.tokenize([s])[0][1:-1] for s in (a, b))
        got_ids, got_types = pair_input(a_ids, b_ids, vocab)
        assert list(got_ids) == ids, f"token ids of {(a, b)}: {list(got_ids)}, not {ids}"
        assert list(got_types) == types, f"segment ids of {(a, b)}: {list(got_types)}, not {types}"
    toy = {"[PAD]": 0, "[SEP]": 1, "[CLS]": 2}  # another vocabulary: look the tokens up
    got_ids, got_types = pair_input([7, 8], [9], toy)
    assert list(got_ids) == [2, 7, 8, 1, 9, 1], (
        f"with {toy}: {list(got_ids)}, not [2, 7, 8, 1, 9, 1]"
    )
    assert list(got_types) == [0, 0, 0, 0, 1, 1], f"with {toy}: segments {list(got_types)}"

    model = cross_encoder.model
    T = max(len(ids) for ids in want_ids)
    input_ids, mask = pad_batch(want_ids, T, tokenizer.pad_token_id)  # (B, T) each
    token_type_ids, _ = pad_batch(want_types, T, 0)  # (B, T)
    cls, want = map(np.asarray, cls_and_logits(model, input_ids, mask, token_type_ids))
    got = np.asarray(pair_head(cls, *head_weights(model)))
    assert got.shape == want.shape, f"logits of shape {got.shape}, not {want.shape}"
    assert np.allclose(got, want, atol=1e-5), "the head's logits differ from CrossEncoderModel's"

    D, rng = cls.shape[1], np.random.default_rng(1)
    other = nnx.clone(model)  # another head: three labels, other weights
    other.classifier = nnx.eval_shape(lambda: nnx.Linear(D, 3, rngs=nnx.Rngs(1)))  # shapes
    other.classifier.kernel.set_value(jnp.asarray(rng.normal(size=(D, 3)), jnp.float32))
    other.classifier.bias.set_value(jnp.asarray(rng.normal(size=3), jnp.float32))
    other.pooler.bias.set_value(jnp.linspace(-1.0, 1.0, D))
    got = np.asarray(pair_head(cls, *head_weights(other)))
    want = np.asarray(other.classify(jnp.asarray(cls)))  # (B, 3)
    assert got.shape == want.shape, f"three labels: logits of shape {got.shape}, not {want.shape}"
    assert np.allclose(got, want, atol=1e-5), "three labels: use the weights you are given"


pair_input, pair_head = lesson.exercise(
    check_cross_encoder_by_hand, pair_input, pair_head, lesson="13_cross_encoders"
)

# %% [markdown]
# With both parts the whole cross-encoder is BERT in the middle: the pair in by hand, the
# score out by hand, and the score `predict` gives for the same pair.

# %%
input_ids, token_type_ids = pair_input(wordpieces(a), wordpieces(b), vocab)
ones = np.ones((1, len(input_ids)), np.int32)  # (1, T) attention mask: every token is real
cls, _ = cls_and_logits(model, np.array([input_ids]), ones, np.array([token_type_ids]))
logit = pair_head(np.asarray(cls), *head_weights(model))[0, 0]  # cls: (1, D)
score_by_hand = float(1 / (1 + np.exp(-logit)))  # the sigmoid
score_predict = float(cross_encoder.predict((a, b)))
print(f"score by hand {score_by_hand:.6f}, predict {score_predict:.6f} (an untrained head)")

# %% [markdown]
# ## 3. Training a cross-encoder on STS-b
#
# The command line trains one with
#
#     minisbert train --cross-encoder --model all-MiniLM-L6-v2 --data stsb --epochs 4 \
#         --batch-size 16 --seed 0 --output CROSS_DIR
#     minisbert eval sts --model CROSS_DIR --split test
#
# and `train_cross_encoder` below is the same run in Python: a `TrainConfig` with
# `cross_encoder=True`, and the packed steps the command uses (pairs packed several to a
# row, `minisbert.fast.pairs`). What it does (`minisbert.cross_encoder_training`):
#
# - the model starts as above: all-MiniLM-L6-v2's BERT and pooler, a new head from the seed;
# - each STS-b train pair is read as the data gives it, (a, b). (`--pair-order both` adds
#   (b, a) as well, twice the steps an epoch; measured with seed 0, both orders at the
#   bi-encoder's rate scored lower on STS-b dev than one order at the rate below:
#   bench/results/cross-encoder-*.md);
# - the loss is binary cross-entropy between sigmoid(logit) and the gold score rescaled to
#   0..1: `softplus(z) - y z`, averaged over the batch. A score is not a class, but the
#   sigmoid's cross-entropy is lowest where sigmoid(z) = y, so the model learns to output
#   the score;
# - the optimiser, its schedule and their settings are the bi-encoder's (`TrainConfig`'s
#   defaults: AdamW, a linear warm-up then decay), but for the peak rate: `CROSS_ENCODER_LR`,
#   higher than the bi-encoder's, since the head starts random; among the
#   rates measured it scored best on STS-b dev. The values are printed below;
# - no dropout (`CROSS_ENCODER_DROPOUT`, 0 for a cross-encoder learning scores; `--dropout`
#   sets another rate). Dropout zeroes a random tenth of the values in every layer while
#   training, and nothing at prediction, so the spread of each layer's values differs
#   between the two; a class survives that as long as the largest logit stays largest, a
#   score is the number itself (a likely reason, not one this lesson measures, why a model
#   that outputs a number may do better without). Measured here over three seeds against
#   the checkpoint's 0.1: level on STS-b dev, with steps about 1.2 times cheaper (no random
#   masks to draw), which is why it was chosen; on test it came out a little higher on each
#   seed (bench/results/cross-encoder-*.md).
#
# The scores are Spearman x100 against the gold scores, as for a bi-encoder, with the
# cross-encoder's score of a pair in place of the cosine (`evaluate_pairs`; `minisbert eval
# sts` computes the same). The bi-encoder of the comparison trains on the same data from the
# same model, with the same settings but its own default rate.

# %%
workdir = Path(tempfile.mkdtemp(prefix="lesson13-"))
dev = load_dataset("stsb", "dev")
test = load_dataset("stsb", "test")
n_test = len(test)
if N_EVAL is not None:  # a fixed random sample of each split
    dev = [dev[i] for i in sorted(np.random.default_rng(0).choice(len(dev), N_EVAL, False))]
    test = [test[i] for i in sorted(np.random.default_rng(1).choice(len(test), N_EVAL, False))]
test_pairs = [(e.sentence1, e.sentence2) for e in test]
gold = np.array([e.label for e in test])  # (N,) 0..5


def cross_config(seed: int) -> TrainConfig:
    """The recipe, at ``seed``; fast mode's changes on top."""
    return TrainConfig(
        cross_encoder=True,
        model="all-MiniLM-L6-v2",
        data="stsb",
        epochs=4,
        batch_size=16,
        seed=seed,
        output=str(workdir / f"cross-{seed}"),
        eval_data="none",  # we evaluate ourselves, below
        **FAST_CHANGES,
    )


names = ("cross_encoder", "model", "data", "epochs", "batch_size", "seed", *FAST_CHANGES)
command = ["minisbert", "train"] + [
    w for n in names for w in flag_words(n, getattr(cross_config(0), n))
]
print(" ".join(command), "--output CROSS_DIR")
config = cross_config(0)
print(
    f"lr {config.peak_lr():g}, warm-up {config.warmup_ratio:.0%} of the steps, "
    f"weight decay {config.weight_decay}, gradient clipped at norm {config.max_grad_norm}"
)

kept = {}  # the first seed's trained models, used in parts 3 and 4


def train_cross_encoder(seed: int) -> dict[str, float]:
    """Train the cross-encoder at ``seed``; its STS-b figures before and after."""
    untrained = start_model(paths.weights, num_labels=1, seed=seed, data="stsb")  # the start
    figures = {
        "dev, untrained": evaluate_pairs(untrained, dev)["spearman"],
        "test, untrained": evaluate_pairs(untrained, test)["spearman"],
    }
    result = train(cross_config(seed), steps=PackedPairSteps())  # as `minisbert train` runs it
    trained = CrossEncoder.from_pretrained(result.output)
    figures |= {
        "dev, trained": evaluate_pairs(trained, dev)["spearman"],
        "test, trained": evaluate_pairs(trained, test)["spearman"],
    }
    print(
        f"  {result.steps} steps, {result.seconds_per_step:.2f} s per step (median); "
        f"loss {np.mean(result.losses[:10]):.4f} (first 10) -> "
        f"{np.mean(result.losses[-10:]):.4f} (last 10); "
        + ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
    )
    if seed == SEEDS[0]:
        kept["cross"] = trained, result
    else:
        shutil.rmtree(result.output)  # a checkpoint and a model: a few hundred MB
    return figures


cross = lesson.over_seeds(train_cross_encoder, SEEDS)

# %% [markdown]
# The bi-encoder: the same run without `cross_encoder=True`, so the cosine similarity loss
# of lesson 6 on the two sentences' vectors (`minisbert train --model all-MiniLM-L6-v2
# --data stsb --epochs 4 --batch-size 16 --loss cosine`), packed as the command packs it.

# %%
bi_before = evaluate_sts(encoder, test)["spearman_cosine"]


def bi_config(seed: int) -> TrainConfig:
    changes = {"cross_encoder": False, "loss": "cosine", "output": str(workdir / f"bi-{seed}")}
    return dataclasses.replace(cross_config(seed), **changes)


def train_bi_encoder(seed: int) -> dict[str, float]:
    """Train the bi-encoder at ``seed``; its STS-b test figure."""
    result = train(bi_config(seed), steps=PackedSteps())  # as `minisbert train` runs it
    trained = SentenceEncoder.from_pretrained(result.output)
    shutil.rmtree(result.output)  # a checkpoint and a model: a few hundred MB
    figures = {"test, trained": evaluate_sts(trained, test)["spearman_cosine"]}
    print(
        f"  {result.steps} steps, {result.seconds_per_step:.2f} s per step (median); "
        f"test, trained {figures['test, trained']:.2f}"
    )
    if seed == SEEDS[0]:
        kept["bi"] = trained
    return figures


bi = lesson.over_seeds(train_bi_encoder, SEEDS)

# %% [markdown]
# ### Our Table 2 next to the paper's
#
# The paper's rows are the paper's figures (BERT-base, 10 seeds); ours are computed above.
# Two differences to keep in mind when reading them side by side. Our start is not plain
# BERT but all-MiniLM-L6-v2, a 6-layer BERT already trained for sentence similarity on
# more than a billion pairs (NLI among them), so our "STS-b train" rows start from more
# than the paper's did; the paper's "NLI, then STS-b" rows are its nearest kin, and this
# lesson does not run NLI training first. And ours are over the seeds in `SEEDS` (three in
# full mode, one in fast mode), the paper's over 10.

# %%
PAPER = {  # Table 2 of the paper: STS-b test Spearman x100, mean ± std over 10 seeds
    "STS-b train": ((84.30, 0.76), (84.67, 0.19)),  # BERT-STSb-base, SBERT-STSb-base
    "NLI, then STS-b train": ((88.33, 0.27), (85.35, 0.17)),  # BERT-/SBERT-NLI-STSb-base
}


def mean_std(values: np.ndarray) -> str:
    spread = f" ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else ""
    return f"{np.mean(values):.2f}{spread}"


ours = "STS-b train" + (f" ({FAST_CHANGES['max_steps']} steps, fast mode)" if FAST else "")
paper_rows = [
    (f"  {name}", f"{c:.2f} ± {c_sd:.2f}", f"{b:.2f} ± {b_sd:.2f}")
    for name, ((c, c_sd), (b, b_sd)) in PAPER.items()
]
our_rows = [
    (
        "  before training",
        f"(random head) {mean_std(cross['test, untrained'])}",
        f"{bi_before:.2f}",
    ),
    (f"  {ours}", mean_std(cross["test, trained"]), mean_std(bi["test, trained"])),
]
print(f"{'STS-b test, Spearman x100':40s} {'cross-encoder':>24} {'bi-encoder':>14}")
print("the paper: BERT-base, 10 seeds")
for name, c, b in paper_rows:
    print(f"{name:40s} {c:>24} {b:>14}")
print(f"here: all-MiniLM-L6-v2, {len(SEEDS)} seed(s), {len(test)} of {n_test} test pairs")
for name, c, b in our_rows:
    print(f"{name:40s} {c:>24} {b:>14}")
lead = cross["test, trained"] - bi["test, trained"]  # (len(SEEDS),) per seed, same seed
print(
    f"\ncross-encoder minus bi-encoder, per seed: {np.round(lead, 2).tolist()}; "
    f"ahead beyond the seeds' noise: {lesson.beyond_noise(0.0, lead)}, "
    f"behind beyond it: {lesson.beyond_noise(0.0, -lead)}"
)
dev_gain = cross["dev, trained"] - cross["dev, untrained"]  # (len(SEEDS),)
test_gain = cross["test, trained"] - cross["test, untrained"]
print(
    f"cross-encoder STS-b dev, per seed: {np.round(cross['dev, untrained'], 2).tolist()} "
    f"untrained -> {np.round(cross['dev, trained'], 2).tolist()} trained"
)

# %% [markdown]
# Read the last lines above: whether our cross-encoder ends above or below our bi-encoder,
# and whether by more than the seeds' noise, is what this run measured. The paper's own
# "STS-b train" pair of rows differ by less than their spreads: on STS-b alone, neither way
# won clearly. Fast mode's figures come from 32 steps at a raised learning rate and say only
# that training moved the cross-encoder away from its random head.
#
# A picture of the first seed's two models on the scored test pairs: the cross-encoder's
# score (a sigmoid, 0 to 1) and the bi-encoder's cosine, each against the gold score.

# %%
trained_cross, cross_result = kept["cross"]
trained_bi = kept["bi"]
cross_scores = trained_cross.predict(test_pairs)  # (N,) in 0..1
u = trained_bi.encode([e.sentence1 for e in test])  # (N, D), unit length
v = trained_bi.encode([e.sentence2 for e in test])  # (N, D)
cosines = np.sum(u * v, axis=1)  # (N,)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharex=True)
for ax, scores, name in [
    (axes[0], cross_scores, "cross-encoder score"),
    (axes[1], cosines, "bi-encoder cosine"),
]:
    ax.scatter(gold, scores, s=4, alpha=0.4)
    ax.set_xlabel("gold similarity (0-5)")
    ax.set_ylabel(name)
axes[0].set_title(f"cross-encoder, seed {SEEDS[0]}", fontsize=10)
axes[1].set_title(f"bi-encoder, seed {SEEDS[0]}", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Retrieve & re-rank
#
# A cross-encoder cannot search a large collection: one pass per (query, document) pair.
# What it can do is re-order a short list. The usual pattern (`minisbert rerank`, and
# `CrossEncoder.rank`): the bi-encoder retrieves the K documents closest to the query, one
# matrix product over vectors computed once; the cross-encoder reads the K (query,
# document) pairs and orders them again. Its cost is K passes per query, whatever the
# size of the collection.
#
# A test we can score: the STS-b test pairs that people rated as near-paraphrases (gold
# at least 4). The query is the first sentence; the collection is the second sentences of
# all test pairs; the right answer is the query's own second sentence. Recall@1: how often
# the right answer comes first, from the bi-encoder alone and after re-ranking its top K.
# The retriever is all-MiniLM-L6-v2 as downloaded; the re-ranker is the first seed's
# trained cross-encoder.

# %%
all_test = load_dataset("stsb", "test")
collection = list(dict.fromkeys(e.sentence2 for e in all_test))
position = {s: i for i, s in enumerate(collection)}
queries = [e for e in all_test if e.label >= 4 and e.sentence1 != e.sentence2][:N_QUERIES]
collection_embeddings = encoder.encode(collection)  # (M, D)
query_embeddings = encoder.encode([e.sentence1 for e in queries])  # (Q, D)
# K + 1 hits: a query can be in the collection itself (as another pair's second sentence),
# and finding itself does not count.
hits = semantic_search(query_embeddings, collection_embeddings, top_k=K + 1)
retrieved = [
    [h for h in query_hits if collection[h["corpus_id"]] != e.sentence1][:K]
    for e, query_hits in zip(queries, hits, strict=True)
]  # (Q, K) hits, best cosine first

retrieved_first, reranked_first, in_top_k = [], [], []
for e, query_hits in zip(queries, retrieved, strict=True):
    candidates = [h["corpus_id"] for h in query_hits]  # (K,) bi-encoder order
    ranked = trained_cross.rank(e.sentence1, [collection[c] for c in candidates])
    answer = position[e.sentence2]
    retrieved_first.append(candidates[0] == answer)
    reranked_first.append(candidates[ranked[0]["corpus_id"]] == answer)
    in_top_k.append(answer in candidates)
print(f"{len(queries)} queries, a collection of {len(collection)} sentences, K = {K}")
print(f"  right answer among the bi-encoder's top {K}:  {np.mean(in_top_k):.2f}")
print(f"  recall@1, bi-encoder alone:                {np.mean(retrieved_first):.2f}")
print(f"  recall@1, re-ranked by the cross-encoder:  {np.mean(reranked_first):.2f}")

# %% [markdown]
# Re-ranking can only choose among what was retrieved: the first line bounds the other
# two. In fast mode the re-ranker has trained for a few steps only, and its order says
# little; full mode's is the first seed's cross-encoder of part 3. One query, its first five
# candidates in the bi-encoder's order, and the cross-encoder's order of the same five:

# %%
q = next(
    (q for q, (r, b) in enumerate(zip(reranked_first, retrieved_first, strict=True)) if r != b),
    0,
)  # a query where the two orders disagree on the first place, if there is one
e, query_hits = queries[q], retrieved[q][:5]
candidates = [collection[h["corpus_id"]] for h in query_hits]
ranked = trained_cross.rank(e.sentence1, candidates)
print(f"query: {e.sentence1!r}\nright answer: {e.sentence2!r}\n")
print(f"{'cosine':>7}  bi-encoder order")
for h, text in zip(query_hits, candidates, strict=True):
    print(f"{h['score']:7.3f}  {text}")
print(f"\n{'score':>7}  re-ranked by the cross-encoder")
for r in ranked:
    print(f"{r['score']:7.3f}  {candidates[r['corpus_id']]}")

# %% [markdown]
# The command line does the same, from a text file of one document a line and a trained
# cross-encoder folder (the training run's output). The file leaves the query out:

# %%
collection_file = workdir / "collection.txt"
lines = [s for s in collection if s != e.sentence1]
collection_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
rerank_args = ["rerank", e.sentence1, str(collection_file), "--retriever", "all-MiniLM-L6-v2"]
rerank_args += ["--reranker", str(cross_result.output), "--candidates", "5", "--top-k", "3"]
print("minisbert", " ".join(f'"{w}"' if " " in w else w for w in rerank_args), "\n")
assert minisbert_command(rerank_args) == 0

# %% [markdown]
# ## 5. When to use which
#
# - **Many sentences against many** (search in a large collection, paraphrase mining,
#   clustering, deduplication): a bi-encoder. Its vectors are computed once and stored;
#   a comparison is a dot product. A cross-encoder's cost grows with the number of pairs,
#   and part 1 measured what that means at 10,000 sentences.
# - **Few pairs, scored as well as possible** (is this answer right for this question,
#   are these two sentences paraphrases): a cross-encoder, which reads both at once. In the
#   paper's Table 2, after NLI training, it scores STS-b pairs three points above the
#   bi-encoder.
# - **Both**: retrieve with the bi-encoder, re-rank its top K with the cross-encoder. The
#   cost per query is one encoding, one product and K cross-encoder passes; the re-ranker
#   cannot bring back what the retriever missed, so K trades cost against recall.
# - A trained cross-encoder can also label sentence pairs for a bi-encoder to train on: a
#   way to carry some of its accuracy into the cheap model (Augmented SBERT, Thakur et al.
#   2021). It pays only where the cross-encoder is the better of the two (part 3 printed
#   which one is, here); bench/results/cross-encoder-*.md reports what gold + silver did
#   with our cross-encoder (`python -m bench.cross_encoder --augmented`).
#
# ## What we showed, checked
#
# - Finding the most similar pair among 10,000 sentences: n(n−1)/2 cross-encoder passes
#   against n encodings and one matrix product, both timed on this machine; the
#   bi-encoder is more than a hundred times cheaper (part 1 printed by how much).
# - A cross-encoder is `[CLS] a [SEP] b [SEP]` with segment ids, BERT, a tanh pooler on the
#   `[CLS]` output and a linear head; written by hand it gives `predict`'s score.
# - Trained on STS-b as `minisbert train --cross-encoder` trains it, it leaves its random
#   head behind on STS-b dev (on every seed, beyond the seeds' noise, in full mode);
#   our Table 2 rows are printed beside the paper's.
# - Re-ranking only re-orders what the retriever found: its recall@1 is bounded by the
#   retriever's recall at K.
#
# The asserts below fail if a claim of this lesson is false on this machine.

# %%
assert n_pairs == 49_995_000
assert cross_total / bi_total > 100, "the bi-encoder finds the pair 100x cheaper, at least"
assert abs(score_by_hand - score_predict) < 1e-5, "the cross-encoder by hand is predict"
assert lesson.beyond_noise(0.0, dev_gain), "training lifts STS-b dev above the untrained start"
assert np.all(np.isfinite(cross["test, trained"])) and np.all(np.isfinite(bi["test, trained"]))
assert np.mean(reranked_first) <= np.mean(in_top_k), "re-ranking only chooses among the top K"
assert np.mean(retrieved_first) <= np.mean(in_top_k)
if not FAST:
    n_train = len(load_dataset("stsb", "train"))
    assert cross_result.steps == 4 * (n_train // 16), "4 epochs of the pairs, batch 16"
    assert lesson.beyond_noise(0.0, test_gain), "and STS-b test, on every seed"
print("all claims hold")
shutil.rmtree(workdir)  # the training runs' files (checkpoints and models, hundreds of MB)

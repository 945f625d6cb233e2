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
# # Lesson 3: inside the BERT encoder
#
# **Time on a 2-core CPU:** fast mode about half a minute (measured on a shared 2-core CPU); full
# mode, the default, about 1 minute (measured, likewise). On a GPU: not measured yet. Fast mode: set
# `MINISBERT_FAST=1` before starting Jupyter, or `FAST = True` in the cell that sets `FAST`.
#
# Sentence-BERT is BERT plus a pooling step. This lesson opens the BERT part: token ids
# go in, one vector per token comes out. We take the pretrained weights of
# all-MiniLM-L6-v2 and recompute, with nothing but `jax.numpy`, everything its encoder
# does: the embeddings, one attention head, all twelve heads, the feed-forward network,
# a whole layer, and finally all six layers. After each step we check our numbers against
# minisbert's `BertEncoder` (`minisbert/bert.py`).
#
# Shapes, as in the library: **T** tokens, **D** hidden size (384), **N** attention heads
# (12), **H** head size (D / N = 32), **F** feed-forward size (1536), **V** vocabulary
# (30,522). We work on one sentence at a time, so there is no batch axis except where the
# library needs one.

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

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx
from jax.scipy.special import erf

from minisbert import SentenceEncoder
from minisbert.data import load_dataset
from minisbert.tokenizer import pad_batch

FAST = os.environ.get("MINISBERT_FAST") == "1"

encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
bert = encoder.model.bert
config = bert.config
D, N, H = config.hidden_size, config.num_attention_heads, config.head_size
F = config.intermediate_size
print(
    f"D={D}, N={N}, H={H}, F={F}, {config.num_hidden_layers} layers, "
    f"LayerNorm eps={config.layer_norm_eps}"
)

sentence = "The animal didn't cross the street because it was too tired."
tokens = encoder.tokenizer.tokens(sentence)
ids = jnp.array(encoder.tokenizer.tokenize([sentence])[0])  # (T,)
T = len(ids)
print(T, "tokens:", tokens)

# %% [markdown]
# ## Embeddings
#
# BERT's first step looks up three vectors per token and adds them:
#
# - the **word** embedding, row `id` of a (V, D) table;
# - the **position** embedding, row `t` of a (512, D) table: attention itself has no
#   notion of order, so position is added to the input;
# - the **token type** (segment) embedding, row 0 or 1 of a (2, D) table: which of two
#   sentences a token belongs to (lesson 1's cross-encoder). A single sentence is all 0.
#
# The sum goes through **LayerNorm**: each token vector is shifted to mean 0 and scaled to
# variance 1 over its D numbers, then multiplied by a learned `scale` and shifted by a
# learned `bias` (both D-vectors):
#
# $$\mathrm{LN}(x) = \frac{x - \mathrm{mean}(x)}{\sqrt{\mathrm{var}(x) + \epsilon}}
# \cdot \mathrm{scale} + \mathrm{bias}$$

# %%
embeddings = bert.embeddings
word_table = embeddings.word_embeddings.embedding[...]  # (V, D)
position_table = embeddings.position_embeddings.embedding[...]  # (512, D)
type_table = embeddings.token_type_embeddings.embedding[...]  # (2, D)
print(word_table.shape, position_table.shape, type_table.shape)


def layer_norm(x: jax.Array, norm, eps: float = config.layer_norm_eps) -> jax.Array:
    """LayerNorm over the last axis with the scale and bias of the nnx.LayerNorm ``norm``."""
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # (..., 1)
    return (x - mean) / jnp.sqrt(var + eps) * norm.scale[...] + norm.bias[...]


x0 = word_table[ids] + position_table[:T] + type_table[0]  # (T, D)
x0 = layer_norm(x0, embeddings.layer_norm)  # (T, D)

library_x0 = embeddings(ids[None], jnp.zeros((1, T), jnp.int32))[0]  # the library, (T, D)
print("max |by hand - library| =", float(jnp.abs(x0 - library_x0).max()))
assert jnp.allclose(x0, library_x0, atol=1e-5)

# %% [markdown]
# ## One attention head, by hand
#
# Self-attention lets every token gather information from every other token. Each token
# vector is projected three ways: a **query** ("what am I looking for?"), a **key** ("what
# do I contain?") and a **value** ("what do I pass on?"). Token t's output is an average of
# all tokens' values, weighted by how well t's query matches each key:
#
# $$\mathrm{attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{H}}\right) V$$
#
# The division by √H keeps the dot products from growing with the head size, which would
# push the softmax into a near one-hot regime with tiny gradients.
#
# minisbert stores each projection as one (D, D) kernel for all heads together: the
# output columns `h*H : (h+1)*H` belong to head h. So head h's query projection is a
# (D, H) slice of the kernel, plus the matching slice of the bias.

# %%
attention = bert.layers[0].attention


def project(x: jax.Array, linear, head: int) -> jax.Array:
    """Head ``head``'s slice of a query/key/value projection: (T, D) -> (T, H)."""
    columns = slice(head * H, (head + 1) * H)
    return x @ linear.kernel[...][:, columns] + linear.bias[...][columns]


def one_head(x: jax.Array, attention, head: int) -> tuple[jax.Array, jax.Array]:
    """Scaled dot-product attention of one head: context (T, H) and probabilities (T, T)."""
    q = project(x, attention.query, head)  # (T, H)
    k = project(x, attention.key, head)  # (T, H)
    v = project(x, attention.value, head)  # (T, H)
    scores = q @ k.T / math.sqrt(H)  # (T, T): row t = query t against every key s
    probs = jax.nn.softmax(scores, axis=-1)  # (T, T), each row sums to 1
    return probs @ v, probs  # (T, H), (T, T)


context0, probs0 = one_head(x0, attention, head=0)
print("context", context0.shape, "probabilities", probs0.shape)
print("each row sums to 1:", bool(jnp.allclose(probs0.sum(axis=-1), 1.0, atol=1e-6)))
it = tokens.index("it")
print(
    "head 0, query 'it' attends to:",
    {tokens[s]: round(float(p), 2) for s, p in enumerate(probs0[it]) if p > 0.1},
)

# %% [markdown]
# There is no padding here: one sentence, every position real. In a padded batch, the
# scores of padding *keys* are set to a huge negative number before the softmax, so they
# get probability 0 (that is the exercise below).
#
# ## Multi-head attention
#
# Twelve heads, each with its own (D, H) projections, run side by side; each can attend
# to something different. Their (T, H) outputs are concatenated back to (T, D) and mixed
# by an **output** projection (D, D). Then comes the pattern that closes every sub-layer
# in BERT: dropout (off at inference), a **residual** connection (add the input back), and
# LayerNorm *after* the sum ("post-LN", as in the original Transformer).


# %%
def multi_head(x: jax.Array, attention) -> tuple[jax.Array, jax.Array]:
    """All heads: concatenated context (T, D) and probabilities (N, T, T)."""
    contexts, probs = zip(*(one_head(x, attention, h) for h in range(N)), strict=True)
    return jnp.concatenate(contexts, axis=-1), jnp.stack(probs)  # (T, N*H) = (T, D), (N, T, T)


def attention_block(x: jax.Array, attention) -> jax.Array:
    """LayerNorm(x + W_o · MultiHead(x)): (T, D) -> (T, D)."""
    context, _ = multi_head(x, attention)  # (T, D)
    out = context @ attention.output.kernel[...] + attention.output.bias[...]  # (T, D)
    return layer_norm(x + out, attention.layer_norm)


# Slicing the kernel per head is the same as one big projection reshaped to (T, N, H):
q_all = (x0 @ attention.query.kernel[...] + attention.query.bias[...]).reshape(T, N, H)
assert jnp.allclose(q_all[:, 0], project(x0, attention.query, 0), atol=1e-6)

a0 = attention_block(x0, attention)  # (T, D)
# The library's attention takes the mask as (B, 1, 1, S): one row of "may this key be
# seen" per sentence, broadcast over heads and queries (BertEncoder builds it from (B, T)).
mask = jnp.ones((1, 1, 1, T), bool)  # (B=1, 1, 1, S=T): every token real
library_a0 = attention(x0[None], mask)[0]
print("max |by hand - library| =", float(jnp.abs(a0 - library_a0).max()))
assert jnp.allclose(a0, library_a0, atol=1e-5)

# %% [markdown]
# ## The feed-forward network and GELU
#
# After attention, every token goes through the same two-layer network on its own:
# widen from D = 384 to F = 1536, apply GELU, narrow back to D. Then again residual and
# LayerNorm.
#
# GELU is `x · Φ(x)` with Φ the standard normal CDF, `Φ(x) = (1 + erf(x/√2)) / 2`. Many
# libraries offer a cheaper tanh approximation; BERT was trained with the exact one. The
# two differ by up to about 5e-4, fifty times the 1e-5 we hold our layer to.


# %%
def gelu(x: jax.Array) -> jax.Array:
    """The exact GELU, x * Phi(x)."""
    return x * 0.5 * (1.0 + erf(x / math.sqrt(2.0)))


grid = jnp.linspace(-5, 5, 1001)
assert jnp.allclose(gelu(grid), jax.nn.gelu(grid, approximate=False), atol=1e-6)
tanh_gap = float(jnp.abs(gelu(grid) - jax.nn.gelu(grid, approximate=True)).max())
print(f"largest gap between exact and tanh GELU on [-5, 5]: {tanh_gap:.1e}")


def layer_by_hand(x: jax.Array, layer) -> jax.Array:
    """One Transformer block: attention block, then LayerNorm(a + W_2 GELU(W_1 a))."""
    a = attention_block(x, layer.attention)  # (T, D)
    h = gelu(a @ layer.intermediate.kernel[...] + layer.intermediate.bias[...])  # (T, F)
    out = h @ layer.output.kernel[...] + layer.output.bias[...]  # (T, D)
    return layer_norm(a + out, layer.output_layer_norm)


x1 = layer_by_hand(x0, bert.layers[0])
library_x1 = bert.layers[0](x0[None], mask)[0]
layer_error = float(jnp.abs(x1 - library_x1).max())
print(f"layer 0, max |by hand - library| = {layer_error:.1e}")
assert jnp.allclose(x1, library_x1, atol=1e-5)

# %% [markdown]
# ## All six layers
#
# The encoder is the embeddings followed by the same block six times, each with its own
# weights. Its output, one D-vector per token, is what BERT calls the `sequence_output`
# and Sentence-BERT calls the **token embeddings**; `encode(..., output_value=
# "token_embeddings")` returns exactly that. We run the whole thing by hand, keep each
# layer's attention probabilities for a picture, and compare on real STS-b sentences too.


# %%
def encoder_by_hand(ids: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
    """Token ids (T,) -> token embeddings (T, D) and each layer's attention (N, T, T)."""
    T = len(ids)
    x = word_table[ids] + position_table[:T] + type_table[0]  # (T, D)
    x = layer_norm(x, embeddings.layer_norm)
    all_probs = []
    for layer in bert.layers:
        all_probs.append(multi_head(x, layer.attention)[1])
        x = layer_by_hand(x, layer)
    return x, all_probs


token_embeddings, all_probs = encoder_by_hand(ids)
library_tokens = encoder.encode(sentence, output_value="token_embeddings")  # (T, D)
print("max |by hand - encode| =", float(jnp.abs(token_embeddings - library_tokens).max()))
assert np.allclose(token_embeddings, library_tokens, atol=1e-5)

n_check = 4 if FAST else 32
stsb_sentences = [ex.sentence1 for ex in load_dataset("stsb", "test")[:n_check]]
library_list = encoder.encode(stsb_sentences, output_value="token_embeddings")
worst = 0.0
for s, library in zip(stsb_sentences, library_list, strict=True):
    by_hand, _ = encoder_by_hand(jnp.array(encoder.tokenizer.tokenize([s])[0]))
    worst = max(worst, float(jnp.abs(by_hand - library).max()))
print(f"{n_check} STS-b sentences, worst max |by hand - encode| = {worst:.1e}")

# %% [markdown]
# ## What does a head look at?
#
# Each row of the picture is one head of the fourth layer (index 3); each column is a
# token that the query token "it" can attend to; the colour is the attention probability.
# Heads differ a lot. The lines under the picture count them: several give `[CLS]` more
# than half of the attention of "it" (a common "nothing to do here" pattern), none give
# that much to `[SEP]`, the other token every sentence has, some spread it with no token
# above half, and one sends most of it to "animal", the noun "it" refers to. Attention
# maps are suggestive, not explanations: the value vectors, the other heads and the later
# layers all matter too.

# %%
LAYER = 3
it_probs = np.asarray(all_probs[LAYER][:, it, :])  # (N, T): every head, query "it"
fig, ax = plt.subplots(figsize=(5, 3.5))
image = ax.imshow(it_probs, cmap="viridis", vmin=0, vmax=1, aspect="auto")
ax.set_xticks(range(T), tokens, rotation=90, fontsize=8)
ax.set_yticks(range(N), [f"head {h}" for h in range(N)], fontsize=7)
ax.set_title(f"layer index {LAYER}: where does 'it' attend?", fontsize=10)
fig.colorbar(image, ax=ax, fraction=0.04)
fig.tight_layout()
plt.show()
parked_on_cls = int((it_probs[:, 0] > 0.5).sum())  # [CLS] is the first token
parked_on_sep = int((it_probs[:, -1] > 0.5).sum())  # [SEP] the last
spread = int((it_probs.max(axis=1) <= 0.5).sum())  # no token gets more than half
print(
    f"of {N} heads: {parked_on_cls} give [CLS] more than half of the attention of 'it', "
    f"{parked_on_sep} give [SEP] that much, {spread} give no token more than half"
)
best_head = int(it_probs[:, tokens.index("animal")].argmax())
print(
    f"head {best_head} gives 'animal' {it_probs[best_head, tokens.index('animal')]:.2f} "
    "of the attention of 'it'"
)

# %% [markdown]
# ## Exercise: masked scaled dot-product attention
#
# Our `one_head` handled one unpadded sentence. Write the batched, masked version that the
# library runs: `masked_attention(q, k, v, mask)` with `q`, `k`, `v` of shape (B, T, N, H)
# and `mask` (B, T) of booleans (True = real token). Return the context (B, T, N, H):
# for each batch row and head, `softmax(q kᵀ / √H) v`, where the scores of *padding keys*
# are replaced by a very negative number (`jnp.finfo(scores.dtype).min`, say) before the
# softmax, so that they get zero weight. `jnp.einsum` with letters like `"BTNH,BSNH->BNTS"`
# keeps the axes straight.


# %%
def masked_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Context (B, T, N, H) of multi-head attention in which padding keys get zero weight."""
    raise NotImplementedError("your code here")


# %% [markdown]
# The check builds a padded batch of two sentences of different lengths, computes q, k, v
# with layer 0's projections, runs your attention, then finishes the block (output
# projection, residual, LayerNorm) and compares with the library's attention block on
# every real token. It also checks that the short sentence's result does not depend on
# the padding. Your function may not call an attention function of a library
# (`jax.nn.dot_product_attention`, `nnx.dot_product_attention`): `lesson.by_hand` makes the
# check fail if it does.


# %%
def check_masked_attention(fn) -> None:
    fn = lesson.by_hand(fn, jax.nn.dot_product_attention, nnx.dot_product_attention)
    pair = ["A dog runs.", "Two children are reading books outside in the garden."]
    token_ids = encoder.tokenizer.tokenize(pair)
    input_ids, attention_mask = pad_batch(token_ids, max(map(len, token_ids)))
    input_ids, real = jnp.asarray(input_ids), jnp.asarray(attention_mask, bool)  # (2, T)
    B, T = input_ids.shape
    x = embeddings(input_ids, jnp.zeros_like(input_ids))  # (B, T, D)
    q, k, v = (f(x).reshape(B, T, N, H) for f in (attention.query, attention.key, attention.value))
    context = fn(q, k, v, real)
    assert context.shape == (B, T, N, H), f"context shape {context.shape}, expected {(B, T, N, H)}"
    out = layer_norm(x + attention.output(context.reshape(B, T, D)), attention.layer_norm)
    expected = attention(x, real[:, None, None, :])  # the library's mask: (B, 1, 1, S)
    assert jnp.allclose(out[real], expected[real], atol=1e-5), "differs from the library"
    n = len(token_ids[0])  # the short sentence alone, no padding at all
    alone = fn(q[:1, :n], k[:1, :n], v[:1, :n], real[:1, :n])
    assert jnp.allclose(alone[0], context[0, :n], atol=1e-5), "padding changed the short sentence"


masked_attention = lesson.exercise(
    check_masked_attention, masked_attention, lesson="03_bert_encoder"
)

# %% [markdown]
# ## What we showed
#
# - Embeddings are word + position + token type, then LayerNorm.
# - An attention head is `softmax(QKᵀ/√H) V` with (D, H) slices of the projection kernels;
#   twelve heads concatenated and projected back make multi-head attention.
# - Each sub-layer ends with residual + LayerNorm (post-LN); the feed-forward network
#   uses the exact GELU.
# - With those pieces, six layers computed in plain `jax.numpy` reproduce minisbert's
#   token embeddings.
# - In layer index 3, several heads park most of the attention of "it" on `[CLS]`, none
#   on `[SEP]`, and one sends most of it to "animal".

# %%
assert jnp.allclose(x0, library_x0, atol=1e-5), "embeddings by hand"
assert jnp.allclose(a0, library_a0, atol=1e-5), "attention block by hand"
assert layer_error < 1e-5, "a whole layer by hand"
assert np.allclose(token_embeddings, library_tokens, atol=1e-5), "all six layers by hand"
assert worst < 1e-5, "all six layers by hand, on STS-b sentences"
assert tanh_gap > 1e-4, "the tanh GELU is not the exact GELU"
assert all(jnp.allclose(p.sum(axis=-1), 1.0, atol=1e-5) for p in all_probs)
assert it_probs[best_head, tokens.index("animal")] > 0.5, "one head links 'it' to 'animal'"
assert parked_on_cls >= 2 and parked_on_sep == 0, "several heads park 'it' on [CLS], none on [SEP]"
print("all claims hold")

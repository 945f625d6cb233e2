"""The BERT encoder, written out: token ids in, one vector per token out.

    embeddings   = LayerNorm(word[ids] + position[0..T) + token_type[type_ids])
    for each of L layers:
        a        = LayerNorm(x + Dropout(W_o · MultiHeadAttention(x, mask)))
        x        = LayerNorm(a + Dropout(W_2 · GELU(W_1 · a)))
    sequence_output = x

BERT puts LayerNorm *after* each residual sum ("post-LN"), as in the original
Transformer. Every module owns its parameters as ``nnx.Param`` leaves and its dropout
as ``nnx.Dropout``; ``model.train()`` turns dropout on and ``model.eval()`` turns it off.

Shapes (declared once, used in every comment below):
    B batch, T tokens (after padding), D hidden size, N attention heads,
    H head size (D = N * H), F feed-forward size, V vocabulary size.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from minisbert.config import BertConfig


def _layer_norm(config: BertConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # use_fast_variance=False computes E[(x - mean)^2] rather than E[x^2] - mean^2:
    # the same formula as PyTorch, and what keeps us within 1e-5 of the reference.
    return nnx.LayerNorm(
        config.hidden_size, epsilon=config.layer_norm_eps, use_fast_variance=False, rngs=rngs
    )


def gelu(x: jax.Array) -> jax.Array:
    """BERT's GELU, the exact one (not the tanh fit): x * Phi(x), Phi the normal CDF,

        gelu(x) = x / 2 * (1 + erf(x / sqrt(2)))

    ``jax.nn.gelu(x, approximate=False)`` is the same function written with erfc(-x / sqrt(2));
    the two agree to 1e-6 in float32.
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))


class BertEmbeddings(nnx.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        D = config.hidden_size
        self.word_embeddings = nnx.Embed(config.vocab_size, D, rngs=rngs)  # (V, D)
        self.position_embeddings = nnx.Embed(config.max_position_embeddings, D, rngs=rngs)
        self.token_type_embeddings = nnx.Embed(config.type_vocab_size, D, rngs=rngs)
        self.layer_norm = _layer_norm(config, rngs)
        self.dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)

    def __call__(
        self,
        input_ids: jax.Array,  # (B, T) int
        token_type_ids: jax.Array,  # (B, T) int, all 0 for a single sentence
        position_ids: jax.Array | None = None,  # (B, T) int; default 0..T-1 in every row
    ) -> jax.Array:  # (B, T, D)
        if position_ids is None:
            position_ids = jnp.arange(input_ids.shape[1])[None, :]  # (1, T): token t, row t
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(position_ids)
            + self.token_type_embeddings(token_type_ids)
        )  # (B, T, D)
        return self.dropout(self.layer_norm(x))


class BertAttention(nnx.Module):
    """Multi-head self-attention with its output projection, residual and LayerNorm.

    Q, K, V        = x W_q, x W_k, x W_v              split into N heads of size H
    attention_probs = softmax(Q K^T / sqrt(H), masked)  padding keys get the lowest score
    context        = attention_probs V                 heads concatenated back to D
    output         = LayerNorm(x + Dropout(context W_o))
    """

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        D = config.hidden_size
        self.num_heads = config.num_attention_heads  # N
        self.head_size = config.head_size  # H
        self.query = nnx.Linear(D, D, rngs=rngs)  # kernel (D, D) = (D, N*H)
        self.key = nnx.Linear(D, D, rngs=rngs)
        self.value = nnx.Linear(D, D, rngs=rngs)
        self.output = nnx.Linear(D, D, rngs=rngs)
        self.layer_norm = _layer_norm(config, rngs)
        self.attention_dropout = nnx.Dropout(config.attention_probs_dropout_prob, rngs=rngs)
        self.output_dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,  # (B, T, D)
        mask: jax.Array,  # (B, 1, 1, S) or (B, 1, T, S) bool: True where query t may see key s
    ) -> jax.Array:  # (B, T, D)
        B, T, D = x.shape
        N, H = self.num_heads, self.head_size
        q = self.query(x).reshape(B, T, N, H)
        k = self.key(x).reshape(B, T, N, H)
        v = self.value(x).reshape(B, T, N, H)

        # Every query position t scores every key position s, separately per head.
        scores = jnp.einsum("BTNH,BSNH->BNTS", q, k) / math.sqrt(H)  # (B, N, T, S=T)
        # A padding key must receive zero attention. We set its score to the lowest
        # finite float rather than -inf so that a row of only padding stays finite.
        scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)  # mask broadcasts
        attention_probs = jax.nn.softmax(scores, axis=-1)  # (B, N, T, S), rows sum to 1
        attention_probs = self.attention_dropout(attention_probs)

        context = jnp.einsum("BNTS,BSNH->BTNH", attention_probs, v)  # (B, T, N, H)
        context = context.reshape(B, T, D)  # heads side by side: (B, T, N*H)
        return self.layer_norm(x + self.output_dropout(self.output(context)))


class BertLayer(nnx.Module):
    """One Transformer block: attention, then a position-wise feed-forward network."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        D, F = config.hidden_size, config.intermediate_size
        self.attention = BertAttention(config, rngs=rngs)
        self.intermediate = nnx.Linear(D, F, rngs=rngs)  # kernel (D, F)
        self.output = nnx.Linear(F, D, rngs=rngs)  # kernel (F, D)
        self.output_layer_norm = _layer_norm(config, rngs)
        self.output_dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,  # (B, T, D)
        mask: jax.Array,  # (B, 1, 1, S) or (B, 1, T, S) bool
    ) -> jax.Array:  # (B, T, D)
        a = self.attention(x, mask)  # (B, T, D)
        h = gelu(self.intermediate(a))  # (B, T, F)
        return self.output_layer_norm(a + self.output_dropout(self.output(h)))


class BertEncoder(nnx.Module):
    """Embeddings followed by ``num_hidden_layers`` Transformer blocks.

    BERT's pooler (a dense + tanh on the [CLS] vector) is left out on purpose:
    Sentence-BERT pools the token vectors itself and never uses it.
    """

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = BertEmbeddings(config, rngs=rngs)
        self.layers = nnx.List(
            [BertLayer(config, rngs=rngs) for _ in range(config.num_hidden_layers)]
        )

    def __call__(
        self,
        input_ids: jax.Array,  # (B, T) int
        attention_mask: jax.Array,  # (B, T): 1 for real tokens, 0 for padding; or (B, T, S)
        token_type_ids: jax.Array | None = None,  # (B, T) int
        position_ids: jax.Array | None = None,  # (B, T) int; default 0..T-1
    ) -> jax.Array:  # (B, T, D) sequence_output: one vector per token
        """One sentence (or sentence pair) per row: ``attention_mask`` (B, T) says which tokens
        are real, and every token sees all of them. Several sentences packed in a row (the
        speed path, ``minisbert.fast.packing``): ``attention_mask`` (B, T, S) says which key s
        each query t may see (its own sentence's), and ``position_ids`` restart at 0 with each
        sentence. The same modules, the same vectors."""
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if attention_mask.ndim == 2:  # every query sees the same keys
            mask = attention_mask.astype(bool)[:, None, None, :]  # (B, 1 head, 1 query, S)
        else:  # a mask per query
            mask = attention_mask.astype(bool)[:, None, :, :]  # (B, 1 head, T, S)
        x = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, D)
        for layer in self.layers:
            x = layer(x, mask)
        return x

"""The sentence model run on packed rows: the same vectors, from fewer token slots.

``minisbert.bert`` runs one sentence per row, each row attending to its own tokens. A
packed row holds several sentences (``minisbert.fast.packing``); running the same modules
on it needs two changes to what they are given, and none to the modules:

- positions restart at 0 with each sentence (``PackedBatch.position_ids``), so each
  token gets the position embedding it gets alone;
- the attention mask is per query, (R, 1, L, L): token t may see token s only when both
  belong to the same sentence, where the padded model's mask is (B, 1, 1, S).

Shapes: R rows of L tokens, D hidden size, n sentences.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from minisbert.bert import BertEncoder
from minisbert.fast.packing import PackedBatch, segment_attention_mask
from minisbert.sentence_encoder import SentenceModel


def packed_token_embeddings(bert: BertEncoder, batch: PackedBatch) -> jax.Array:  # (R, L, D)
    """``BertEncoder.__call__``, written for packed rows: the same modules, in the same order."""
    e = bert.embeddings
    x = (
        e.word_embeddings(batch.input_ids)
        + e.position_embeddings(batch.position_ids)  # restarts at each sentence
        + e.token_type_embeddings(jnp.zeros_like(batch.input_ids))
    )  # (R, L, D)
    x = e.dropout(e.layer_norm(x))
    mask = segment_attention_mask(batch.segment_ids)[:, None, :, :]  # (R, 1, L, L)
    for layer in bert.layers:
        x = layer(x, mask)
    return x


def embed_packed(model: SentenceModel, batch: PackedBatch) -> jax.Array:  # (n, D')
    """The vectors ``model`` gives the batch's sentences padded one to a row, from packed rows:
    token vectors gathered back per sentence (n, L, D), then the model's own pooling head."""
    R, L = batch.input_ids.shape
    tokens = packed_token_embeddings(model.bert, batch)  # (R, L, D)
    token_embeddings = tokens.reshape(R * L, -1)[batch.token_index]  # (n, L, D)
    return model.head(token_embeddings, batch.token_mask)  # (n, D')

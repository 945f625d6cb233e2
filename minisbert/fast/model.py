"""The sentence model run on packed rows: the same vectors, from fewer token slots.

``minisbert.bert`` runs one sentence per row, each row attending to its own tokens. A
packed row holds several sentences (``minisbert.fast.packing``); running the same
``BertEncoder`` on it needs two changes to what it is given, and none to its code:

- positions restart at 0 with each sentence (``PackedBatch.position_ids``), so each
  token gets the position embedding it gets alone;
- the attention mask is per query, (R, 1, L, L): token t may see token s only when both
  belong to the same sentence, where the padded model's mask is (B, 1, 1, S).

Shapes: R rows of L tokens, D hidden size, n sentences.
"""

from __future__ import annotations

import jax

from minisbert.fast.packing import PackedBatch, segment_attention_mask
from minisbert.sentence_encoder import SentenceModel


def embed_packed(model: SentenceModel, batch: PackedBatch) -> jax.Array:  # (n, D')
    """The vectors ``model`` gives the batch's sentences padded one to a row, from packed rows:
    token vectors gathered back per sentence (n, L, D), then the model's own pooling,
    Dense layers and normalisation (``SentenceModel.pool_and_project``)."""
    R, L = batch.input_ids.shape
    mask = segment_attention_mask(batch.segment_ids)  # (R, L, L): a token sees its sentence
    tokens = model.bert(batch.input_ids, mask, position_ids=batch.position_ids)  # (R, L, D)
    token_embeddings = tokens.reshape(R * L, -1)[batch.token_index]  # (n, L, D)
    return model.pool_and_project(token_embeddings, batch.token_mask)  # (n, D')

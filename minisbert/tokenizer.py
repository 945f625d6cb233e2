"""WordPiece tokenization through Hugging Face ``tokenizers``, with padding done per batch.

The model folder's ``tokenizer.json`` holds BERT's whole recipe: lower-casing and
accent stripping (the normalizer), splitting on whitespace and punctuation (the
pre-tokenizer), greedy longest-match WordPiece with ``##`` continuations (the model),
and ``[CLS] ... [SEP]`` around every sentence (the post-processor).

One gotcha matters for matching the reference library exactly: the shipped
``tokenizer.json`` of all-MiniLM-L6-v2 has *fixed* padding to 128 tokens and truncation
at 128 built in, while the model's own ``max_seq_length`` is 256. We switch both off
and then truncate at ``max_seq_length`` ourselves; padding happens later, per batch,
only as far as the batch needs (see ``pad_batch``).

Shapes: B batch, T tokens.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tokenizers

from minisbert.config import ConfigError
from minisbert.io.bounded import UnreadableFile, read_bytes_bounded


class Tokenizer:
    """Sentences to token ids, truncated at ``max_seq_length``; no padding."""

    def __init__(self, backend: tokenizers.Tokenizer, max_seq_length: int):
        backend.no_padding()
        backend.enable_truncation(max_length=max_seq_length)
        self.backend = backend
        self.max_seq_length = max_seq_length
        self.pad_token_id = backend.token_to_id("[PAD]") or 0
        self.warned_truncation = False  # once per tokenizer, not once per batch

    @classmethod
    def from_file(cls, path: str | Path, max_seq_length: int) -> Tokenizer:
        try:  # read here, bounded (64 MB, a plain file): tokenizers would read any size
            text = read_bytes_bounded(path).decode("utf-8", errors="replace")
        except UnreadableFile as err:
            raise ConfigError(str(err)) from None
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found; fetch or convert the model again") from None
        try:
            backend = tokenizers.Tokenizer.from_str(text)
        except Exception as err:  # the Rust library raises a bare Exception with no file name
            raise ConfigError(
                f"{path}: not a readable tokenizer.json ({err}); the file may be truncated or "
                "damaged: fetch or convert the model again"
            ) from None
        return cls(backend, max_seq_length)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def tokenize(self, sentences: Sequence[str]) -> list[list[int]]:
        """Token ids of each sentence, ``[CLS]`` first, ``[SEP]`` last, at most max_seq_length.

        Every path from text to ids (``encode``, the training data) comes through here, so a
        sentence cut at max_seq_length is warned about the same way on each: once per tokenizer.
        """
        # encode_batch tokenizes in parallel in Rust; one call per batch of sentences.
        encodings = self.backend.encode_batch(list(sentences), add_special_tokens=True)
        if not self.warned_truncation and any(encoding.overflowing for encoding in encodings):
            self.warned_truncation = True
            warnings.warn(
                f"some sentences are longer than max_seq_length={self.max_seq_length} tokens "
                "and were truncated; only their first tokens are embedded",
                stacklevel=_stacklevel_outside_minisbert(),
            )
        return [encoding.ids for encoding in encodings]

    def tokens(self, sentence: str) -> list[str]:
        """The WordPiece strings of one sentence, for reading rather than computing."""
        return self.backend.encode(sentence).tokens


def _stacklevel_outside_minisbert() -> int:
    """The ``stacklevel`` that points a warning raised by its caller at the first line outside
    the minisbert package: the user's ``encode`` or training call, however deep the path."""
    package = os.path.dirname(__file__) + os.sep
    level, frame = 1, sys._getframe(1)  # the frame that calls warnings.warn is stacklevel 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        level, frame = level + 1, frame.f_back
    return level


def pad_batch(
    token_ids: Sequence[Sequence[int]],
    length: int,
    pad_token_id: int = 0,
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists into arrays.

    Returns ``input_ids`` (B, T) int32 and ``attention_mask`` (B, T) int32, 1 for real
    tokens. ``batch_size`` > len(token_ids) appends empty rows (mask all 0) so that a
    short last batch has the same shape as the others and reuses the compiled function.
    """
    B = batch_size if batch_size is not None else len(token_ids)
    input_ids = np.full((B, length), pad_token_id, dtype=np.int32)  # (B, T)
    attention_mask = np.zeros((B, length), dtype=np.int32)  # (B, T)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask

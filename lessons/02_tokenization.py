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
# # Lesson 2: from a sentence to token ids
#
# **Time on a 2-core CPU:** fast mode 10 to 20 seconds (measured on a shared 2-core CPU); full mode,
# the default, about 20 seconds (measured, likewise). On a GPU: not measured yet. Fast mode: set
# `MINISBERT_FAST=1` before starting Jupyter, or `FAST = True` in the cell that sets `FAST`.
#
# BERT never sees letters. Before anything else, a sentence becomes a list of integers,
# each the row number of a vector in BERT's embedding table. The recipe has four steps,
# all stored in the model folder's `tokenizer.json`:
#
# 1. **normalize**: lower-case, strip accents (`Café` becomes `cafe`);
# 2. **pre-tokenize**: split on whitespace and punctuation into words;
# 3. **WordPiece**: split each word into pieces found in a fixed vocabulary of 30,522
#    entries, e.g. `unaffable` into `una ##ffa ##ble`;
# 4. **post-process**: put `[CLS]` in front and `[SEP]` at the end.
#
# Then, for a batch, the lists are padded to a common length and an **attention mask**
# says which positions are real. minisbert runs steps 1 to 4 with Hugging Face's
# `tokenizers` library (fast, in Rust); in this lesson we do each step by hand first and
# check that we get the same answer. At the end is a gotcha that bites anyone who loads
# this model's `tokenizer.json` directly.

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
import unicodedata
import warnings

import matplotlib.pyplot as plt
import numpy as np
import tokenizers

from minisbert import SentenceEncoder, cos_sim
from minisbert.batching import smart_batches
from minisbert.data import load_dataset
from minisbert.tokenizer import Tokenizer, pad_batch

FAST = os.environ.get("MINISBERT_FAST") == "1"

encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
backend = encoder.tokenizer.backend  # a tokenizers.Tokenizer, configured by minisbert
vocab = backend.get_vocab()  # {piece: id}
print(
    f"{len(vocab):,} pieces in the vocabulary, "
    f"{sum(p.startswith('##') for p in vocab):,} of them continuations (##...)"
)
print({p: vocab[p] for p in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "guitar", "##ing"]})

# %% [markdown]
# ## Step 1: normalize
#
# all-MiniLM-L6-v2 is an *uncased* model: its vocabulary has no capital letters and no
# accents, so the input must not have them either. The normalizer lower-cases and strips
# accents. Stripping an accent is a Unicode trick: decompose each character (NFD form,
# so `é` becomes `e` followed by a "combining acute accent") and drop the combining marks.

# %%
print(backend.normalizer)


def normalize_by_hand(text: str) -> str:
    """Lower-case, then strip accents: decompose (NFD) and drop combining marks (category Mn)."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


texts = ["Héllo WÖRLD!", "Café crème, naïve résumé.", "A Man Is Playing The Guitar."]
for text in texts:
    print(f"{text!r:32} -> {normalize_by_hand(text)!r}")
    assert normalize_by_hand(text) == backend.normalizer.normalize_str(text)

# %% [markdown]
# The real normalizer also removes control characters and puts spaces around Chinese
# characters; our version skips those, which is fine for these sentences.
#
# ## Step 2: pre-tokenize
#
# Words are split on whitespace, and every punctuation mark becomes a word of its own.
# Note that `don't` becomes three words.

# %%
words = backend.pre_tokenizer.pre_tokenize_str(normalize_by_hand("Don't stop-believing, OK?"))
print([word for word, _span in words])

# %% [markdown]
# ## Step 3: WordPiece, by hand
#
# A vocabulary cannot hold every word, so rare words are spelt out of pieces. A piece that
# *starts* a word is stored as is (`una`); a piece that *continues* a word carries a `##`
# prefix (`##ffa`), so `##ble` (end of a word) and `ble` (a word on its own) are different
# entries with different vectors.
#
# The rule is **greedy longest-match-first**: at the current position, take the longest
# piece in the vocabulary that matches the letters ahead; move past it; repeat. Here is one
# step of that rule: the longest piece starting at position `start`.


# %%
def longest_piece(word: str, start: int, vocab: dict[str, int]) -> str | None:
    """The longest vocabulary piece that matches ``word`` from ``start`` (``##`` after 0)."""
    for end in range(len(word), start, -1):  # longest first
        piece = word[start:end] if start == 0 else "##" + word[start:end]
        if piece in vocab:
            return piece
    return None  # no piece matches, not even a single letter


# %% [markdown]
# Walk `unaffable` by hand, one piece at a time:

# %%
word = "unaffable"
print(f"{word!r} in the vocabulary? {word in vocab}")
first = longest_piece(word, 0, vocab)  # tries unaffable, unaffabl, ..., una: found
second = longest_piece(word, 3, vocab)  # tries ##ffable, ##ffabl, ..., ##ffa: found
third = longest_piece(word, 6, vocab)  # tries ##ble: found, and we are at the end
by_hand = [first, second, third]
print(by_hand)

# %% [markdown]
# The same word through `tokenizers` (`add_special_tokens=False` leaves out `[CLS]` and
# `[SEP]`):

# %%
through_library = backend.encode(word, add_special_tokens=False).tokens
print(through_library)
assert by_hand == through_library

# %% [markdown]
# Two more rules:
#
# - if at some position **no** piece matches, the *whole word* becomes `[UNK]` (unknown),
#   not just the letter that failed;
# - a word longer than 100 characters is `[UNK]` straight away.
#
# The emoji below is not in the vocabulary, so `hello🙂` is entirely `[UNK]`, even though
# `hello` alone would have been fine. And without step 1, `résumé` would be `[UNK]` too:
# this uncased vocabulary has no accented pieces.

# %%
print("longest piece at 0:", longest_piece("hello🙂", 0, vocab))
print("longest piece at 5:", longest_piece("hello🙂", 5, vocab))
print("hello🙂 ->", backend.encode("hello🙂", add_special_tokens=False).tokens)
print("résumé, WordPiece alone ->", [t.value for t in backend.model.tokenize("résumé")])
print("résumé, whole pipeline  ->", backend.encode("résumé", add_special_tokens=False).tokens)

# %% [markdown]
# ## Exercise: WordPiece for one word
#
# Turn `longest_piece` into a loop. Write `wordpiece(word, vocab)` that returns the list
# of pieces of one (already normalized) word, following the three rules: greedy
# longest-match-first with `##` continuations, `["[UNK]"]` if any position has no match,
# and `["[UNK]"]` for a word longer than 100 characters.


# %%
def wordpiece(word: str, vocab: dict[str, int]) -> list[str]:
    """The pieces of one normalized word: 'unaffable' -> ['una', '##ffa', '##ble']."""
    raise NotImplementedError("your code here")


# %% [markdown]
# The check compares your function with `tokenizers`' WordPiece model on words that stay
# whole, words that split into several pieces, and words that become `[UNK]`. Your function
# may not call that model (`backend.model.tokenize`, or a WordPiece model of your own), nor
# run a whole tokenizer (`backend.encode`, `encoder.tokenizer.tokens`): `lesson.by_hand`
# makes the check fail if it does.

# %%
CHECK_WORDS = [
    "playing",
    "unaffable",
    "embeddings",
    "electroencephalography",
    "skateboarder",
    "bicyclists",
    "sbert",
    "a",
    "hello🙂",
    "résumé",
    "x" * 101,
]


def check_wordpiece(fn) -> None:
    fn = lesson.by_hand(
        fn,
        tokenizers.models.Model.tokenize,  # every WordPiece model's, backend.model's included
        tokenizers.Tokenizer.encode,
        tokenizers.Tokenizer.encode_batch,
        Tokenizer.tokens,
        Tokenizer.tokenize,
    )
    for w in CHECK_WORDS:
        expected = [token.value for token in backend.model.tokenize(w)]
        got = fn(w, vocab)
        assert got == expected, f"{w!r}: expected {expected}, got {got}"


wordpiece = lesson.exercise(check_wordpiece, wordpiece, lesson="02_tokenization")

# %% [markdown]
# ## Step 4 and the whole pipeline
#
# Put the steps together: normalize, pre-tokenize, WordPiece each word (here with the
# library's WordPiece model, so this cell does not depend on your exercise), then add
# `[CLS]` and `[SEP]`. The result must equal what `encoder.tokenizer` produces.

# %%
sentence = "The skateboarder's unaffable grin, captured in électroencéphalography!"
normalized = backend.normalizer.normalize_str(sentence)
pieces = ["[CLS]"]
for w, _span in backend.pre_tokenizer.pre_tokenize_str(normalized):
    pieces += [token.value for token in backend.model.tokenize(w)]
pieces.append("[SEP]")
print(pieces)
assert pieces == encoder.tokenizer.tokens(sentence)
ids = [vocab[p] for p in pieces]
assert ids == encoder.tokenizer.tokenize([sentence])[0]
print(ids)

# %% [markdown]
# `[CLS]` ("classification") has id 101 and `[SEP]` ("separator") id 102 in every BERT
# uncased vocabulary. BERT was pre-trained with them in these places, so the model expects
# them even though Sentence-BERT never reads a score off `[CLS]`.
#
# ## Padding and the attention mask
#
# Sentences have different lengths, but a batch is one rectangular array. So the shorter
# lists are padded with `[PAD]` (id 0) and an attention mask marks the real tokens with 1.
# BERT uses the mask so that no token attends to padding, and pooling (lesson 4) uses it
# so that padding does not count in the average. minisbert pads **per batch**, only as
# far as the batch's longest sentence: `pad_batch`.

# %%
batch = ["A man is playing a guitar.", "A dog runs.", "Two children are reading books outside."]
token_ids = encoder.tokenizer.tokenize(batch)
longest = max(len(t) for t in token_ids)
input_ids, attention_mask = pad_batch(token_ids, longest, encoder.tokenizer.pad_token_id)
print("input_ids\n", input_ids)
print("attention_mask\n", attention_mask)
assert (attention_mask.sum(axis=1) == [len(t) for t in token_ids]).all()

# %% [markdown]
# How much padding does that save? Compare three ways of batching STS-b sentences in
# batches of 32: pad everything to a fixed 128 tokens; pad each batch to its longest
# sentence; or sort by length first and round up to a few bucket lengths (`smart_batches`,
# the paper's smart batching, so that `jax.jit` compiles only a handful of shapes). By
# default `encode` goes one step further and packs several sentences into each row
# (lesson 11).

# %%
splits = ("dev",) if FAST else ("train", "dev", "test")
stsb = [ex for split in splits for ex in load_dataset("stsb", split)]
stsb_sentences = list(dict.fromkeys(s for ex in stsb for s in (ex.sentence1, ex.sentence2)))
stsb_ids = encoder.tokenizer.tokenize(stsb_sentences)
lengths = np.array([len(t) for t in stsb_ids])
real = lengths.sum()


def padded_tokens(sort: bool) -> int:
    batches = smart_batches(stsb_ids, 32, encoder.max_seq_length, sort=sort)
    return sum(int(b.attention_mask[: len(b.indices)].size) for b in batches)


fixed = len(stsb_ids) * 128
unsorted = sum(32 * lengths[i : i + 32].max() for i in range(0, len(lengths), 32))
smart = padded_tokens(sort=True)
print(
    f"{len(stsb_sentences):,} STS-b sentences, {real:,} real tokens; "
    f"mean {lengths.mean():.1f}, max {lengths.max()} tokens"
)
for name, total in [("fixed 128", fixed), ("per batch", unsorted), ("sorted + buckets", smart)]:
    print(f"{name:>17}: {total:>9,} positions, {100 * (1 - real / total):4.1f}% padding")

# %% [markdown]
# ## Truncation at `max_seq_length`
#
# BERT has 512 position embeddings, and attention costs grow with the square of the
# length, so every sentence model fixes a `max_seq_length`. For all-MiniLM-L6-v2 it is 256:
# longer inputs keep their first 254 pieces plus `[CLS]` and `[SEP]`, and the rest is
# dropped. STS-b sentences are nowhere near that, as the histogram shows; a paragraph is.

# %%
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.hist(lengths, bins=range(0, lengths.max() + 2, 2), color="tab:blue")
for limit, text in [(128, "128: tokenizer.json"), (256, "256: max_seq_length")]:
    ax.axvline(limit, color="gray", linestyle="--", linewidth=1)
    ax.text(limit + 3, ax.get_ylim()[1] * 0.8, text, fontsize=8, rotation=90, va="top")
ax.set_xlim(0, 270)
ax.set_xlabel("tokens per sentence, [CLS] and [SEP] included")
ax.set_ylabel("STS-b sentences")
fig.tight_layout()
plt.show()

# %%
paragraph = " ".join(stsb_sentences[:40])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    long_embedding = encoder.encode(paragraph)
# Pieces never cross a space, so the paragraph has the 40 sentences' tokens, minus the
# [CLS] and [SEP] that 39 of them no longer get.
full_length = int(lengths[:40].sum()) - 2 * 39
truncated_ids = encoder.tokenizer.tokenize([paragraph])[0]
print(
    f"{full_length} tokens, kept {len(truncated_ids)}; "
    f"last token kept: {backend.id_to_token(truncated_ids[-1])}"
)
# Only the warning about truncation is ours to count: a library may warn about other things.
truncation_warnings = [str(w.message) for w in caught if "max_seq_length" in str(w.message)]
print("encode warned:", truncation_warnings)

# %% [markdown]
# ## The gotcha: the shipped `tokenizer.json` pads and truncates at 128
#
# The `tokenizer.json` that ships with all-MiniLM-L6-v2 has *fixed* padding to 128 and
# truncation at 128 written into it, left over from how it was exported. The model's own
# `max_seq_length` (in its sentence-transformers config) is 256, and the reference library
# overrides the file's settings. Load the raw file with `tokenizers` and look:

# %%
raw = tokenizers.Tokenizer.from_file(str(paths.weights / "tokenizer.json"))
print("raw padding:   ", raw.padding)
print("raw truncation:", raw.truncation)
short = raw.encode("A dog runs.")
print(
    f"'A dog runs.' -> {len(short.ids)} ids, {sum(short.attention_mask)} real:",
    short.tokens[:8],
    "...",
)

# %% [markdown]
# minisbert switches both off when it loads the tokenizer (`Tokenizer.__init__` calls
# `no_padding()` and `enable_truncation(max_seq_length)`), then pads per batch itself:

# %%
print("minisbert padding:   ", backend.padding)
print("minisbert truncation:", backend.truncation)
print(f"'A dog runs.' -> {len(backend.encode('A dog runs.').ids)} ids")

# %% [markdown]
# Does it matter? The padding only wastes work: the attention mask hides the 122 `[PAD]`
# positions, so a short sentence gets the same embedding either way. The truncation
# changes the answer: a long text cut at 128 tokens is a different input from one cut at
# 256, and its embedding differs from the reference library's.

# %%
short_text = "A dog runs."


def embed_with_raw_tokenizer(text: str) -> np.ndarray:
    encoding = raw.encode(text)
    input_ids = np.array([encoding.ids])  # (1, 128)
    attention_mask = np.array([encoding.attention_mask])  # (1, 128)
    return np.asarray(encoder.model(input_ids, attention_mask))[0]  # (D,)


short_cos = float(cos_sim(embed_with_raw_tokenizer(short_text), encoder.encode(short_text))[0, 0])
long_cos = float(cos_sim(embed_with_raw_tokenizer(paragraph), long_embedding)[0, 0])
print(f"short sentence, raw file vs minisbert: cosine {short_cos:.6f}")
print(f"long paragraph, raw file vs minisbert: cosine {long_cos:.4f}")

# %% [markdown]
# ## What we showed
#
# - Normalizing is lower-casing plus accent stripping (NFD, drop combining marks).
# - WordPiece is greedy longest-match-first over a fixed vocabulary, `##` marks pieces that
#   continue a word, and a word with any unmatched position is `[UNK]` as a whole.
# - `[CLS]` and `[SEP]` frame every sentence; padding is per batch, and the attention
#   mask tells the model which positions are real.
# - Inputs longer than 256 tokens are truncated; the raw `tokenizer.json` would truncate
#   at 128 and pad everything to 128, which minisbert switches off.

# %%
assert by_hand == ["una", "##ffa", "##ble"] == through_library
assert backend.encode("hello🙂", add_special_tokens=False).tokens == ["[UNK]"]
assert len(backend.encode("electroencephalography", add_special_tokens=False).tokens) > 2
assert all(normalize_by_hand(t) == backend.normalizer.normalize_str(t) for t in texts)
assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]" and vocab["[CLS]"] == 101
assert smart < unsorted < fixed, "per-batch padding and sorting should each save padding"
assert len(truncated_ids) == encoder.max_seq_length == 256
assert full_length > 256 and truncated_ids[-1] == vocab["[SEP]"]
assert len(truncation_warnings) == 1, "encode warns once that it truncated"
assert raw.padding["length"] == 128 and raw.truncation["max_length"] == 128
assert len(short.ids) == 128 and backend.padding is None
assert short_cos > 0.9999, "padding to 128 must not change a masked embedding"
assert long_cos < 0.99, "truncating at 128 instead of 256 should change a long text's embedding"
print("all claims hold")

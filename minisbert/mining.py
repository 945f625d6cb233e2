"""Hard negatives, mined with the model itself: for each (anchor, positive) pair, texts the
model places near the anchor that are not its positive, to train MNRL on (anchor, positive,
negative) triplets.

In-batch negatives are mostly easy: a random sentence of the batch has little to do with
the anchor. A mined negative is one of the anchor's nearest neighbours in the model's own
embedding space, so the loss has to work to push it away. The corpus it is mined from is
the pairs' positives, each text once. For every distinct anchor:

1. **score**: the cosine similarity of the anchor with every corpus text, a chunk of
   anchors at a time (``C x P`` scores, never ``A x P``), keeping the ``K`` best,
   ``K = range_max + M + 1``: room for the texts that are never its negatives, its ``M``
   (at most) positives and its own text, when that is in the corpus too;
2. **exclude** those, and, with a margin, every candidate too close to the positive (below);
3. **rank** the rest best first: ranks ``range_min .. range_max - 1`` (from 0) are the
   window. ``range_min`` skips the very nearest, which are often unlabelled positives;
4. **pick** ``num_negatives`` of the window: ``"top"`` takes the first, ``"random"`` draws
   them (all of them when fewer are left), seeded by ``seed`` and the anchor, and orders
   them by score.

**Margins** are measured from the anchor's hardest positive, the one with the lowest score
``p`` (an anchor may have several). A candidate of score ``s`` is kept only if

- ``absolute_margin = m``: ``s <= p - m`` (``m = 0``: never nearer than the positive);
- ``relative_margin = r``: ``s <= p - r |p|``, a share ``r`` of the positive's own size
  below it (``r = 0.05``, NV-Retriever's "TopK-PercPos 95%").

The relative threshold is always *below* ``p``, whatever its sign: that is what "right" means
for a negative ``p``. The form ``p (1 - r)``, equal for ``p >= 0``, puts it above ``p``
when ``p < 0`` (``p = -0.2, r = 0.1``: ``-0.18``) and so keeps negatives that score higher
than the positive; sentence-transformers computed it that way once (its #3819).

The triplets: each distinct anchor in order of first appearance, each of its distinct
positives, each of its negatives best first; an anchor short of negatives gets those found.
These are sentence-transformers' ``mine_hard_negatives`` (6.3: cosine, no faiss,
``output_format="triplet"``), with a seeded ``"random"`` and one difference: ``M`` counts
an anchor's distinct positives, where it counts its pairs (a repeated pair twice). Its 6.2
kept one candidate fewer and offered an anchor's own text as the anchor's nearest negative.

Shapes: A distinct anchors, P corpus texts, D embedding size, C anchors in a chunk, K
candidates kept per anchor, W the window, n = num_negatives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from minisbert.data import DataError, PairExample, TripletExample

if TYPE_CHECKING:
    from minisbert.sentence_encoder import SentenceEncoder

SAMPLINGS = ("top", "random")
SCORES_PER_CHUNK = 1 << 23  # C x P scores at a time: 32 MB of float32 (and 64 MB of ranks)


@dataclasses.dataclass(frozen=True)
class Negatives:
    """What ``mine_negatives`` found for each anchor."""

    ids: np.ndarray  # (A, n) int64 corpus rows, best first; -1 where fewer were found
    scores: np.ndarray  # (A, n) float32 their cosine similarity to the anchor; -inf for -1
    hardest_positive: np.ndarray  # (A,) float32 the lowest score of the anchor's positives


@dataclasses.dataclass(frozen=True)
class MiningOptions:
    """Which negatives to mine for each anchor (the module docstring says how each option
    acts). The defaults are sentence-transformers' ``mine_hard_negatives``'. Options that
    cannot mine anything, or make no sense, are refused here, in one line."""

    num_negatives: int = 3  # n: negatives per anchor, each a triplet
    range_min: int = 0  # the window's first rank; the nearest are often unlabelled positives
    range_max: int | None = None  # the rank past the window's end; None: ``range_max_for``
    absolute_margin: float | None = None  # m: keep a candidate only if s <= p - m
    relative_margin: float | None = None  # r: keep a candidate only if s <= p - r |p|
    sampling: str = "top"  # "top": the window's first n; "random": n drawn from it
    seed: int = 0  # the draws of "random", with the anchor's place

    def __post_init__(self) -> None:
        n, low, high = self.num_negatives, self.range_min, self.range_max
        if n < 1:
            raise ValueError(f"num_negatives {n}: must be at least 1")
        if low < 0:
            raise ValueError(f"range_min {low}: must be 0 or more")
        if high is not None and low >= high:
            raise ValueError(f"range_min {low}: must be below range_max {high}")
        if high is not None and n > high - low:
            raise ValueError(
                f"range_min {low} to range_max {high} leaves {high - low} ranks, fewer than "
                f"num_negatives {n}; raise range_max"
            )
        for name, margin in (
            ("absolute_margin", self.absolute_margin),
            ("relative_margin", self.relative_margin),
        ):
            if margin is not None and not 0 <= margin < float("inf"):  # also refuses nan
                raise ValueError(f"{name} {margin}: must be a number, 0 or more")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling {self.sampling!r}: use one of {', '.join(SAMPLINGS)}")

    def range_max_for(self, most_positives: int) -> int:
        """``range_max`` as given, else sentence-transformers' default: enough ranks for
        ``num_negatives`` after ``range_min`` and an anchor's positives (at most
        ``most_positives``), ten times as many with a margin (it removes some)."""
        if self.range_max is not None:
            return self.range_max
        margin = self.absolute_margin is not None or self.relative_margin is not None
        return self.range_min + self.num_negatives * (10 if margin else 1) + most_positives


def mine_negatives(
    anchors: np.ndarray,  # (A, D)
    corpus: np.ndarray,  # (P, D)
    positives: Sequence[Sequence[int]],  # A lists of corpus rows: each anchor's positives
    own_rows: Sequence[int],  # (A,) the corpus row of each anchor's own text, -1 if none
    options: MiningOptions = MiningOptions(),
    *,
    chunk_size: int | None = None,
    show_progress_bar: bool = False,
) -> Negatives:
    """The hard negatives of each anchor among the corpus rows, by cosine similarity (the
    module docstring says how). ``chunk_size`` (anchors scored at once) defaults to what
    keeps ``SCORES_PER_CHUNK`` scores; the result does not depend on it."""
    A, P = len(anchors), len(corpus)
    if len(positives) != A or len(own_rows) != A or any(len(rows) == 0 for rows in positives):
        raise ValueError("every anchor needs its own text's row and one positive or more")
    M = max(len(rows) for rows in positives) if A else 0
    n, range_min, range_max = options.num_negatives, options.range_min, options.range_max_for(M)

    anchors, corpus = _unit(anchors), _unit(corpus)  # cosine = dot product of unit vectors
    never = np.full((A, M + 1), -1, dtype=np.int64)  # (A, M + 1) rows that are no negative
    for a, rows in enumerate(positives):
        never[a, : len(rows)] = rows
    never[:, M] = own_rows
    K = min(range_max + M + 1, P)
    C = chunk_size or max(1, SCORES_PER_CHUNK // max(P, 1))

    ids = np.full((A, n), -1, dtype=np.int64)  # (A, n)
    scores = np.full((A, n), -np.inf, dtype=np.float32)  # (A, n)
    hardest = np.zeros(A, dtype=np.float32)  # (A,)
    for start in _chunks(A, C, show_progress_bar):
        chunk = slice(start, min(start + C, A))
        all_scores = anchors[chunk] @ corpus.T  # (C, P)
        hardest[chunk] = _hardest_positive(all_scores, never[chunk, :M])
        candidates, candidate_scores = _best(all_scores, K)  # (C, K) each, best first
        keep = ~np.any(candidates[:, :, None] == never[chunk, None, :], axis=2)  # (C, K)
        keep &= _outside_margins(candidate_scores, hardest[chunk], options)  # (C, K)
        # Kept candidates first, still best first (a stable sort), then the window.
        order = np.argsort(~keep, axis=1, kind="stable")[:, range_min:range_max]  # (C, W)
        window = np.take_along_axis(candidates, order, axis=1)  # (C, W)
        window_scores = np.take_along_axis(candidate_scores, order, axis=1)  # (C, W)
        kept = np.take_along_axis(keep, order, axis=1).sum(axis=1)  # (C,) the first kept
        for row, a in enumerate(range(chunk.start, chunk.stop)):
            picked = _pick(int(kept[row]), options, a)  # places in the window
            ids[a, : len(picked)] = window[row, picked]
            scores[a, : len(picked)] = window_scores[row, picked]
    return Negatives(ids=ids, scores=scores, hardest_positive=hardest)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)  # (N, D)
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (N, 1)
    return x / np.maximum(norms, 1e-12)  # a zero vector stays zero, as torch's cos_sim keeps it


def _chunks(A: int, C: int, show: bool) -> Iterable[int]:
    starts = range(0, A, C)
    if not show:
        return starts
    from tqdm.auto import tqdm

    return tqdm(starts, desc="Mining", unit="chunk")


def _hardest_positive(
    all_scores: np.ndarray,  # (C, P)
    positives: np.ndarray,  # (C, M) corpus rows, -1 past an anchor's last positive
) -> np.ndarray:  # (C,)
    """The lowest score of each anchor's positives: the margins are measured from it."""
    found = np.take_along_axis(all_scores, np.maximum(positives, 0), axis=1)  # (C, M)
    return np.where(positives >= 0, found, np.inf).min(axis=1)


def _best(all_scores: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """The K highest scores of each row and their columns, (C, K) each, best first; equal
    scores in column order."""
    columns = np.argpartition(-all_scores, K - 1, axis=1)[:, :K]  # (C, K) in no order
    found = np.take_along_axis(all_scores, columns, axis=1)  # (C, K)
    order = np.lexsort((columns, -found), axis=1)  # by score, then by column
    return np.take_along_axis(columns, order, axis=1), np.take_along_axis(found, order, axis=1)


def _outside_margins(
    candidate_scores: np.ndarray,  # (C, K)
    hardest: np.ndarray,  # (C,)
    options: MiningOptions,
) -> np.ndarray:  # (C, K) bool
    """Which candidates are far enough below the hardest positive ``p``: ``s + m <= p``
    and ``s <= p - r |p|`` (the module docstring explains the ``|p|``)."""
    p = hardest[:, None]  # (C, 1)
    m, r = options.absolute_margin, options.relative_margin
    keep = np.ones(candidate_scores.shape, dtype=bool)
    if m is not None:
        keep &= candidate_scores + np.float32(m) <= p
    if r is not None:
        keep &= candidate_scores <= p - np.abs(p) * np.float32(r)
    return keep


def _pick(kept: int, options: MiningOptions, anchor: int) -> np.ndarray:
    """Places in the window (its first ``kept`` are the kept candidates, best first) of the
    negatives: the first ``n``, or ``n`` drawn at random; in score order either way."""
    n = options.num_negatives
    if options.sampling == "top" or kept <= n:
        return np.arange(min(kept, n))
    rng = np.random.default_rng((options.seed, anchor))  # per anchor: the same for any chunking
    return np.sort(rng.choice(kept, size=n, replace=False))


# ---------------------------------------------------------------- sentences in, triplets out


def anchor_positive_pairs(
    examples: Sequence[PairExample] | Sequence[TripletExample], data: str
) -> list[tuple[str, str]]:
    """The (anchor, positive) pairs of a dataset: a triplet's anchor and positive (its
    negative is replaced), an unlabelled pair's two sentences. Labelled pairs are refused:
    a score or a class does not say which pairs are positive."""
    pairs = []
    for e in examples:
        if isinstance(e, TripletExample):
            pairs.append((e.anchor, e.positive))
        elif e.label is None:
            pairs.append((e.sentence1, e.sentence2))
        else:
            at = f"{data}:{e.line}" if e.line is not None else data
            raise DataError(
                f"{at}: a labelled pair (label {e.label!r}); mining needs (anchor, positive) "
                "pairs: triplets (such as snli-triplets) or a file of sentence1, sentence2 "
                "without a label column"
            )
    if not pairs:
        raise DataError(f"{data}: no pairs to mine negatives for")
    return pairs


def mine_triplets(
    encoder: SentenceEncoder,
    pairs: Sequence[tuple[str, str]],
    options: MiningOptions = MiningOptions(),
    *,
    batch_size: int = 32,
    show_progress_bar: bool = False,
) -> list[TripletExample]:
    """(anchor, positive, negative) triplets: ``pairs`` with negatives mined from their own
    positives by ``encoder`` (a ``SentenceEncoder`` or ``FastEncoder``); the module docstring
    says how, and in which order they come."""
    anchors = list(dict.fromkeys(anchor for anchor, _ in pairs))  # (A,) texts
    corpus = list(dict.fromkeys(positive for _, positive in pairs))  # (P,) texts
    row = {text: i for i, text in enumerate(corpus)}
    positives: dict[str, list[int]] = {anchor: [] for anchor in anchors}
    for anchor, positive in dict.fromkeys(pairs):  # each distinct pair once
        positives[anchor].append(row[positive])

    prompts = encoder.model.sentence_config.prompt_texts

    def embed(texts: list[str], prompt_name: str) -> np.ndarray:  # (N, D)
        """With the model's "query" or "document" prompt, if it has one, as
        sentence-transformers' encode_query and encode_document do."""
        return np.asarray(
            encoder.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                show_progress_bar=show_progress_bar,
                prompt_name=prompt_name if prompt_name in prompts else None,
            )
        )

    anchor_embeddings = embed(anchors, "query")  # (A, D)
    corpus_embeddings = embed(corpus, "document")  # (P, D)
    negatives = mine_negatives(
        anchor_embeddings,
        corpus_embeddings,
        [positives[anchor] for anchor in anchors],
        [row.get(anchor, -1) for anchor in anchors],
        options,
        show_progress_bar=show_progress_bar,
    )
    return [
        TripletExample(anchor, corpus[p], corpus[n])
        for a, anchor in enumerate(anchors)
        for p in positives[anchor]
        for n in negatives.ids[a]
        if n >= 0
    ]

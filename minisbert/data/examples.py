"""What one training or evaluation example is: a pair with a label, or a triplet.

SBERT trains and evaluates on two shapes of example:

- a **pair** ``(sentence1, sentence2, label)``: the label is a float similarity score
  (STS Benchmark 0..5, SICK relatedness 1..5, or either rescaled to 0..1) for the
  regression objective and STS evaluation, or an int class for the classification
  objective (NLI: ``u, v, |u-v|`` into a softmax over ``C = 3`` classes);
- a **triplet** ``(anchor, positive, negative)`` for the triplet objective and for
  in-batch negatives, where ``positive`` should land closer to ``anchor`` than
  ``negative`` does.

NLI class order: ``entailment = 0, neutral = 1, contradiction = 2`` (``NLI_LABELS``).
This is the order of the SNLI and MultiNLI releases on the Hugging Face hub, so label ids
read here mean the same as there. sentence-transformers' NLI training example sorts the
names alphabetically instead (contradiction, entailment, neutral); the order does not
matter for training, because SBERT's softmax classifier is trained from scratch, but a
classifier head converted from elsewhere must use this order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from minisbert.data.lines import DataError, where

NLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
ENTAILMENT, NEUTRAL, CONTRADICTION = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class PairExample:
    """Two sentences and a label: a float score, an int class, or None (unlabelled pair).

    ``line`` is the line of the file it was read from, for error messages (it takes no
    part in comparing examples).
    """

    sentence1: str
    sentence2: str
    label: float | int | None = None
    line: int | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class TripletExample:
    """An anchor sentence, one that should be close to it, and one that should be far."""

    anchor: str
    positive: str
    negative: str


def nli_label(text: str, path: str | Path, line: int) -> int:
    """The class id of an NLI label name (any case): entailment 0, neutral 1, contradiction 2."""
    name = text.strip().lower()
    if name not in NLI_LABELS:
        raise DataError(
            f"{where(path, line)}: NLI label {text.strip()!r} is not one of {', '.join(NLI_LABELS)}"
        )
    return NLI_LABELS.index(name)


def parse_score(
    text: str, path: str | Path, line: int, low: float, high: float, name: str = "score"
) -> float:
    """A float score read from ``text``, checked to lie in ``[low, high]``."""
    try:
        score = float(text)
    except ValueError:
        raise DataError(f"{where(path, line)}: {name} {text!r} is not a number") from None
    if not low <= score <= high:  # also rejects nan
        raise DataError(f"{where(path, line)}: {name} {score:g} is outside [{low:g}, {high:g}]")
    return score


def rescale(score: float, low: float, high: float) -> float:
    """Map a score from ``[low, high]`` to ``[0, 1]``: ``(score - low) / (high - low)``.

    STS Benchmark is 0..5, so ``rescale(s, 0, 5) = s / 5``; SICK relatedness is 1..5, so
    ``rescale(s, 1, 5) = (s - 1) / 4``. SBERT's regression objective compares the gold
    score with a cosine similarity, so it trains on the rescaled score.
    """
    return (score - low) / (high - low)

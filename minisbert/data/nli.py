"""SNLI and MultiNLI: sentence pairs with an entailment label, and the triplets they yield.

Two layouts of the same data are read:

- the official release ``snli_1.0_{train,dev,test}.jsonl``: one JSON object per line with
  ``sentence1`` (premise), ``sentence2`` (hypothesis) and ``gold_label``. MultiNLI's
  ``multinli_1.0_{train,dev_matched,dev_mismatched}.jsonl`` has the same fields (and a
  ``genre``, unused) and is read by the same function;
- a line-aligned copy ``s1.{split}``, ``s2.{split}``, ``labels.{split}``: line i of each
  file is the premise, hypothesis and label of pair i (the shared data's ``snli/``).

A ``gold_label`` of ``"-"`` means the five annotators did not agree; those pairs have no
gold label and are dropped (SNLI dev keeps 9842 of its 10000 pairs). Labels become ints
in the order of ``NLI_LABELS``: entailment 0, neutral 1, contradiction 2.

**Triplets.** A premise with an entailed hypothesis and a contradicting one gives
``(anchor=premise, positive=entailment, negative=contradiction)``, the data of SBERT's
triplet and in-batch-negative training. Where a premise has several entailment (or
contradiction) hypotheses, the first one in file order is used, so the result is
deterministic and there is at most one triplet per distinct premise.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from minisbert.data.examples import (
    CONTRADICTION,
    ENTAILMENT,
    PairExample,
    TripletExample,
    nli_label,
)
from minisbert.data.lines import DataError, iter_json_objects, read_lines, where

NO_GOLD_LABEL = "-"


def read_snli_jsonl(path: str | Path, *, missing_hint: str = "") -> list[PairExample]:
    """Pairs from an official ``snli_1.0_*.jsonl`` or ``multinli_1.0_*.jsonl`` file, without
    the ``"-"`` label rows."""
    examples = []
    for number, row in iter_json_objects(path, missing_hint=missing_hint):
        missing = [k for k in ("sentence1", "sentence2", "gold_label") if k not in row]
        if missing:
            raise DataError(f"{where(path, number)}: missing field(s) {', '.join(missing)}")
        if not (isinstance(row["sentence1"], str) and isinstance(row["sentence2"], str)):
            raise DataError(f"{where(path, number)}: sentence1 and sentence2 must be strings")
        if row["gold_label"] == NO_GOLD_LABEL:
            continue
        label = nli_label(str(row["gold_label"]), path, number)
        examples.append(
            PairExample(row["sentence1"].strip(), row["sentence2"].strip(), label, line=number)
        )
    return examples


def read_snli_lines(
    premises: str | Path, hypotheses: str | Path, labels: str | Path, *, missing_hint: str = ""
) -> list[PairExample]:
    """Pairs from three line-aligned files (``s1.dev``, ``s2.dev``, ``labels.dev``)."""
    s1 = read_lines(premises, missing_hint=missing_hint)
    s2 = read_lines(hypotheses, missing_hint=missing_hint)
    gold = read_lines(labels, missing_hint=missing_hint)
    counts = {premises: len(s1), hypotheses: len(s2), labels: len(gold)}
    if len(set(counts.values())) != 1:
        sizes = ", ".join(f"{p}: {n} lines" for p, n in counts.items())
        raise DataError(f"line-aligned SNLI files differ in length ({sizes})")
    examples = []
    for (number, premise), (_, hypothesis), (_, label) in zip(s1, s2, gold, strict=True):
        if label.strip() == NO_GOLD_LABEL:
            continue
        examples.append(
            PairExample(
                premise.strip(), hypothesis.strip(), nli_label(label, labels, number), line=number
            )
        )
    return examples


def nli_triplets(pairs: Iterable[PairExample]) -> list[TripletExample]:
    """(premise, entailment, contradiction) triplets from labelled NLI pairs.

    Premises are kept in order of first appearance; for each, the first entailment and
    the first contradiction hypothesis in file order are used. Premises lacking either
    give no triplet.
    """
    positive: dict[str, str] = {}
    negative: dict[str, str] = {}
    order: dict[str, None] = {}  # an insertion-ordered set of premises
    for pair in pairs:
        order.setdefault(pair.sentence1)
        if pair.label == ENTAILMENT:
            positive.setdefault(pair.sentence1, pair.sentence2)
        elif pair.label == CONTRADICTION:
            negative.setdefault(pair.sentence1, pair.sentence2)
    return [
        TripletExample(premise, positive[premise], negative[premise])
        for premise in order
        if premise in positive and premise in negative
    ]

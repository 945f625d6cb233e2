"""Readers for the two similarity benchmarks: STS Benchmark and SICK.

**STS Benchmark** (``sts-{train,dev,test}.csv``; 5749 / 1500 / 1379 rows): tab-separated,
no header, no quoting. Columns::

    genre  file  year  id  score  sentence1  sentence2  [source1  source2]

Some rows carry two trailing source notes; they are ignored. Sentences contain quote
characters, so lines are split on tabs and nothing else. Scores are 0 (unrelated) to 5
(same meaning).

**SICK** (``SICK_train.txt``, ``SICK_trial.txt``, ``SICK_test_annotated.txt``; 4500 / 500 /
4927 pairs): tab-separated with a header line, possibly with Windows line endings::

    pair_ID  sentence_A  sentence_B  relatedness_score  entailment_judgment

Relatedness is 1 to 5; the entailment judgment is NEUTRAL, ENTAILMENT or CONTRADICTION.
SICK is licensed CC BY-NC-SA 3.0 (non-commercial use only).

Sentences are returned with surrounding whitespace stripped.
"""

from __future__ import annotations

from pathlib import Path

from minisbert.data.examples import PairExample, nli_label, parse_score, rescale
from minisbert.data.lines import DataError, read_lines, split_tsv, where

STSB_RANGE = (0.0, 5.0)
SICK_RANGE = (1.0, 5.0)
SICK_COLUMNS = ("pair_ID", "sentence_A", "sentence_B", "relatedness_score", "entailment_judgment")


def read_stsb(
    path: str | Path, *, normalize: bool = False, missing_hint: str = ""
) -> list[PairExample]:
    """STS Benchmark pairs with their gold score, 0..5 as given or 0..1 with ``normalize``.

    ``normalize=True`` divides by 5, the scale SBERT's regression objective trains on.
    """
    low, high = STSB_RANGE
    examples = []
    for number, line in read_lines(path, missing_hint=missing_hint):
        fields = split_tsv(path, number, line, allowed=(7, 9))
        if number == 1:
            _reject_header(path, fields[4])
        score = parse_score(fields[4], path, number, low, high)
        if normalize:
            score = rescale(score, low, high)
        examples.append(PairExample(fields[5].strip(), fields[6].strip(), score, line=number))
    return examples


def _reject_header(path: str | Path, score_field: str) -> None:
    try:
        float(score_field)
    except ValueError:
        raise DataError(
            f"{where(path, 1)}: score column holds {score_field!r}, not a number: this looks "
            f"like a header line, but STS Benchmark files have none"
        ) from None


def read_sick(
    path: str | Path, *, normalize: bool = False, missing_hint: str = ""
) -> list[PairExample]:
    """SICK pairs with their relatedness score, 1..5 as given or 0..1 with ``normalize``.

    ``normalize=True`` maps 1..5 to 0..1 by ``(score - 1) / 4``.
    """
    low, high = SICK_RANGE
    examples = []
    for number, a, b, score_text, _ in _sick_rows(path, missing_hint):
        score = parse_score(score_text, path, number, low, high, name="relatedness_score")
        if normalize:
            score = rescale(score, low, high)
        examples.append(PairExample(a, b, score, line=number))
    return examples


def read_sick_entailment(path: str | Path, *, missing_hint: str = "") -> list[PairExample]:
    """SICK pairs with their entailment class: entailment 0, neutral 1, contradiction 2."""
    return [
        PairExample(a, b, nli_label(label, path, number), line=number)
        for number, a, b, _, label in _sick_rows(path, missing_hint)
    ]


def _sick_rows(path: str | Path, missing_hint: str) -> list[tuple[int, str, str, str, str]]:
    """``(line, sentence_A, sentence_B, relatedness, entailment)`` per row, by header name.

    Columns are found by name, so the full SICK.txt (which has more columns) reads too.
    """
    lines = read_lines(path, missing_hint=missing_hint)
    header = lines[0][1].split("\t")
    missing = [name for name in SICK_COLUMNS[1:] if name not in header]
    if missing:
        raise DataError(
            f"{where(path, 1)}: SICK header lacks column(s) {', '.join(missing)}; "
            f"expected a header line {' '.join(SICK_COLUMNS)}"
        )
    if len(lines) == 1:
        raise DataError(f"{path}: has a header line but no rows")
    index = [header.index(name) for name in SICK_COLUMNS[1:]]
    rows = []
    for number, line in lines[1:]:
        fields = split_tsv(path, number, line, allowed=(len(header),))
        a, b, score, label = (fields[i] for i in index)
        rows.append((number, a.strip(), b.strip(), score, label))
    return rows

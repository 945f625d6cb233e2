"""Your own data: pairs and triplets from CSV, TSV or JSONL files (and triplets written back
as JSONL, ``write_triplets``: what ``minisbert mine`` writes).

The format follows the file name: ``.jsonl`` is one JSON object per line; ``.csv`` is
comma-separated with CSV quoting (``"a, b"`` is one field), as spreadsheets and pandas
write it; ``.tsv`` and ``.txt`` are tab-separated with no quoting, like STS Benchmark.
``delimiter=","`` or ``"\\t"`` overrides the guess.

Columns are found from the header (or the JSON keys of all the rows) by name,
case-insensitively:

- pairs: ``sentence1`` (or sentence_a, premise, text1, s1), ``sentence2`` (or
  sentence_b, hypothesis, text2, s2) and, optionally, ``label`` (or score, gold_label,
  relatedness_score, similarity);
- triplets: ``anchor``, ``positive``, ``negative``.

Or the caller names them: ``columns=("question", "answer", "relevance")``; for a file
with no header (``header=False``) ``columns`` holds positions, ``(0, 1, 2)`` by default.

Ambiguity is refused, not guessed: a header that names a column twice, two columns that
differ only in case (``Sentence1`` and ``sentence1``), or a JSONL row that lacks a key
other rows have (a row without ``label`` among labelled rows) is a ``DataError`` naming
the file, the line and the columns. Of two different aliases (``sentence1`` and
``premise``) the one listed first above is used.

Labels: an NLI name (entailment, neutral, contradiction, any case) becomes its class id;
otherwise an integer text (``"1"``) becomes an int class and any other number a float
score. If one label in a file is a float, all numeric labels become floats (``"5"`` next
to ``"4.5"`` is a score). A label of ``"-"`` (SNLI's "no gold label") drops the row; a
pair with no label column has ``label=None``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from minisbert.data.examples import NLI_LABELS, PairExample, TripletExample
from minisbert.data.lines import DataError, iter_json_objects, iter_lines, where

Key = str | int  # a column: a header name / JSON key, or a position in a headerless row
Row = tuple[int, dict[Key, Any]]  # (line number, column -> value)

PAIR_ALIASES = {
    "sentence1": ("sentence1", "sentence_a", "premise", "text1", "s1"),
    "sentence2": ("sentence2", "sentence_b", "hypothesis", "text2", "s2"),
    "label": ("label", "score", "gold_label", "relatedness_score", "similarity"),
}
NO_GOLD_LABEL = "-"
TRIPLET_ALIASES = {"anchor": ("anchor",), "positive": ("positive",), "negative": ("negative",)}


def read_pairs(
    path: str | Path,
    *,
    columns: Sequence[Key] | None = None,
    header: bool = True,
    delimiter: str | None = None,
) -> list[PairExample]:
    """Pairs from a CSV/TSV/JSONL file: ``columns`` = (sentence1, sentence2[, label])."""
    (s1, s2, *label), rows = _read_columns(
        path, PAIR_ALIASES, columns, header, delimiter, optional=("label",)
    )
    if not label:
        return [
            PairExample(_text(path, n, row, s1), _text(path, n, row, s2), line=n) for n, row in rows
        ]
    rows = [(n, row) for n, row in rows if _value(path, n, row, label[0]) != NO_GOLD_LABEL]
    labels = _parse_labels(path, [(n, row[label[0]]) for n, row in rows])
    return [
        PairExample(_text(path, n, row, s1), _text(path, n, row, s2), y, line=n)
        for (n, row), y in zip(rows, labels, strict=True)
    ]


def read_triplets(
    path: str | Path,
    *,
    columns: Sequence[Key] | None = None,
    header: bool = True,
    delimiter: str | None = None,
) -> list[TripletExample]:
    """Triplets from a CSV/TSV/JSONL file: ``columns`` = (anchor, positive, negative)."""
    (a, p, q), rows = _read_columns(path, TRIPLET_ALIASES, columns, header, delimiter)
    return [
        TripletExample(_text(path, n, row, a), _text(path, n, row, p), _text(path, n, row, q))
        for n, row in rows
    ]


def write_triplets(path: str | Path, triplets: Sequence[TripletExample]) -> Path:
    """Write ``triplets`` as a JSONL file that ``read_triplets`` (and so ``minisbert train
    --data FILE``) reads back: one ``{"anchor", "positive", "negative"}`` object a line.

    JSON, not TSV: a sentence may hold a tab or a quote, which JSON escapes. The file is
    written whole (``minisbert.io.manifest.atomic_file``): a reader sees the old file or
    the new one, never half."""
    from minisbert.io.manifest import atomic_file  # looked up now: the tests spy on it

    path = Path(path)
    if path.suffix.lower() != ".jsonl":
        raise DataError(f"{path}: triplets are written as JSON lines; name the file *.jsonl")
    with atomic_file(path) as f:
        for t in triplets:
            row = {"anchor": t.anchor, "positive": t.positive, "negative": t.negative}
            f.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    return path


def read_examples(path: str | Path) -> list[PairExample] | list[TripletExample]:
    """Triplets if the header names anchor, positive and negative; otherwise pairs."""
    keys, _ = read_records(path, header=True)
    names = {str(k).lower() for k in keys}
    if set(TRIPLET_ALIASES) <= names:
        return read_triplets(path)
    return read_pairs(path)


def read_records(
    path: str | Path, *, header: bool = True, delimiter: str | None = None
) -> tuple[list[Key], list[Row]]:
    """The columns of a file and its rows as ``(line, {column: value})``; blank lines skipped.

    Every row has every column: a JSONL file's columns are the keys of all its rows (in
    the order they first appear), and a row that lacks one is refused.
    """
    path = Path(path)
    if delimiter is None and path.suffix.lower() == ".jsonl":
        rows: list[Row] = list(iter_json_objects(path))
        keys: list[Key] = list(dict.fromkeys(k for _, row in rows for k in row))
        for n, row in rows:
            missing = [k for k in keys if k not in row]
            if missing:
                have = next(m for m, other in rows if missing[0] in other)
                raise DataError(
                    f"{where(path, n)}: missing field {', '.join(map(repr, missing))}, which "
                    f"other rows have (line {have}); give every row the same keys"
                )
    else:
        if delimiter is None:
            delimiter = "," if path.suffix.lower() == ".csv" else "\t"
        table = _csv_rows(path) if delimiter == "," else _tsv_rows(path, delimiter)
        if not table:
            raise DataError(f"{path}: no rows (only blank lines)")
        if header:
            keys = list(table[0][1])
            twice = sorted({k for k in keys if keys.count(k) > 1})
            if twice:
                raise DataError(
                    f"{where(path, table[0][0])}: the header names column(s) "
                    f"{', '.join(map(repr, twice))} more than once; rename one of each"
                )
            table = table[1:]
        else:
            keys = list(range(len(table[0][1])))
        rows = []
        for n, fields in table:
            if len(fields) != len(keys):
                raise DataError(
                    f"{where(path, n)}: expected {len(keys)} columns like the "
                    f"{'header' if header else 'first row'}, found {len(fields)}"
                )
            rows.append((n, dict(zip(keys, fields, strict=True))))
    if not rows:
        raise DataError(f"{path}: no rows" + (" after the header line" if header else ""))
    return keys, rows


def _tsv_rows(path: Path, delimiter: str) -> list[tuple[int, list[str]]]:
    return [(n, line.split(delimiter)) for n, line in iter_lines(path) if line.strip()]


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    lines = (text + "\n" for _, text in iter_lines(path))
    reader = csv.reader(lines)
    rows, start = [], 1
    try:
        for fields in reader:
            if fields:  # a quoted field can span lines: a row starts after the last one ended
                rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataError(f"{where(path, reader.line_num)}: bad CSV ({e})") from None
    return rows


def _read_columns(
    path: str | Path,
    aliases: dict[str, tuple[str, ...]],
    columns: Sequence[Key] | None,
    header: bool,
    delimiter: str | None,
    optional: tuple[str, ...] = (),
) -> tuple[list[Key], list[Row]]:
    """A file's rows and the column of each role in ``aliases``: ``columns`` if given; else,
    without a header, the first columns in the roles' order (an optional role's only where
    the file has one more); else found by the header's names."""
    keys, rows = read_records(path, header=header, delimiter=delimiter)
    if columns is None and not header:
        required = len(aliases) - len(optional)
        columns = tuple(range(max(required, min(len(keys), len(aliases)))))
    return _choose(path, keys, aliases, columns, optional), rows


def _choose(
    path: str | Path,
    keys: list[Key],
    aliases: dict[str, tuple[str, ...]],
    columns: Sequence[Key] | None,
    optional: tuple[str, ...],
) -> list[Key]:
    """The column key for each role, from ``columns`` or by alias; optional roles may lack one."""
    roles = list(aliases)
    if columns is not None:
        if not len(roles) - len(optional) <= len(columns) <= len(roles):
            raise DataError(f"columns={tuple(columns)} should name the {', '.join(roles)} columns")
        unknown = [c for c in columns if c not in keys]
        if unknown:
            raise DataError(f"{path}: no column(s) {unknown}; the file has {keys}")
        return list(columns)
    lower: dict[str, Key] = {}
    for k in keys:
        name = str(k).lower()
        if name in lower and any(name in names for names in aliases.values()):
            raise DataError(
                f"{path}: columns {lower[name]!r} and {k!r} differ only in case, so "
                f"either could be the {name} column; rename one"
            )
        lower.setdefault(name, k)
    chosen, missing = [], []
    for role in roles:
        found = [lower[a] for a in aliases[role] if a in lower]
        if found:
            chosen.append(found[0])
        elif role not in optional:
            missing.append(role)
    if missing:
        raise DataError(
            f"{where(path, 1)}: found no {', '.join(missing)} column among {keys}; "
            f"name the columns with columns=(...)"
        )
    return chosen


def _value(path: str | Path, n: int, row: dict[Key, Any], key: Key) -> Any:
    if key not in row:
        raise DataError(f"{where(path, n)}: missing field {key!r}")
    value = row[key]
    return value.strip() if isinstance(value, str) else value


def _text(path: str | Path, n: int, row: dict[Key, Any], key: Key) -> str:
    value = _value(path, n, row, key)
    if not isinstance(value, str):
        raise DataError(f"{where(path, n)}: field {key!r} should be text, found {value!r:.40}")
    return value


def _parse_labels(path: str | Path, values: list[tuple[int, Any]]) -> list[float | int]:
    """One label per row, by the rules in the module docstring."""
    labels = [_label(path, n, value) for n, value in values]
    if any(isinstance(y, float) for y in labels):
        names = [n for n, value in values if _is_name(value)]
        if names:
            raise DataError(f"{where(path, names[0])}: NLI label name in a file of float scores")
        labels = [float(y) for y in labels]
    return labels


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in NLI_LABELS


def _label(path: str | Path, n: int, value: Any) -> float | int:
    if isinstance(value, bool) or value is None:
        raise DataError(f"{where(path, n)}: label {value!r} is not a number or an NLI label")
    if isinstance(value, int | float):
        label: float | int = value
    else:
        text = str(value).strip()
        if _is_name(text):
            return NLI_LABELS.index(text.lower())
        try:
            label = int(text)
        except ValueError:
            try:
                label = float(text)
            except ValueError:
                raise DataError(
                    f"{where(path, n)}: label {text!r} is neither a number nor an NLI label "
                    f"({', '.join(NLI_LABELS)})"
                ) from None
    if isinstance(label, float) and not math.isfinite(label):
        raise DataError(f"{where(path, n)}: label {label} is not finite")
    return label

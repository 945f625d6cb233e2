"""Reading a text data file line by line, with errors that point at the file and line.

Every reader in ``minisbert.data`` starts here. A data file is decoded one line at a
time, so that a bad byte is reported as ``sts-train.csv:812: invalid UTF-8`` rather
than as a position in a megabyte of text, and every later problem (a missing column, a
score out of range) can name the line it came from. Line numbers are 1-based and count
physical lines, as an editor shows them.

Line endings: ``\\n`` and ``\\r\\n`` (SICK's Windows line endings) both end a line; a
UTF-8 byte order mark at the start of the file is dropped.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A data file is missing, empty, or holds a row minisbert cannot read.

    The message names the file and, where there is one, the line.
    """


def where(path: str | Path, line: int | None = None) -> str:
    """``path:line``, the prefix every error message starts with."""
    return f"{path}:{line}" if line is not None else str(path)


def read_lines(path: str | Path, *, missing_hint: str = "") -> list[tuple[int, str]]:
    """All lines of a UTF-8 text file as ``(line_number, text)``, newline removed.

    A final newline does not make an extra empty line. Raises ``DataError`` if the file is
    missing (``missing_hint`` is appended: what to set or fetch), empty, or not UTF-8.
    """
    return list(iter_lines(path, missing_hint=missing_hint))


def iter_lines(
    path: str | Path, *, missing_hint: str = "", allow_empty: bool = False
) -> Iterator[tuple[int, str]]:
    """Like ``read_lines``, one line at a time (for files too big to hold twice).

    ``allow_empty``: an empty file gives no lines instead of a ``DataError`` (the CLI's
    ``encode`` turns it into an array of 0 rows; a dataset with no rows is an error)."""
    path = Path(path)
    if not path.is_file():
        hint = f"; {missing_hint}" if missing_hint else ""
        raise DataError(f"{path}: file not found{hint}")
    empty = True
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            empty = False
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{where(path, number)}: invalid UTF-8 ({e.reason} at byte {e.start} "
                    f"of the line); re-save the file as UTF-8"
                ) from None
            yield number, text.rstrip("\r\n")
    if empty and not allow_empty:
        raise DataError(f"{path}: file is empty")


def iter_json_objects(
    path: str | Path, *, missing_hint: str = ""
) -> Iterator[tuple[int, dict[Any, Any]]]:
    """Each non-blank line of a JSONL file as ``(line number, JSON object)``; a line that is
    not a JSON object is a ``DataError`` naming it."""
    for number, line in iter_lines(path, missing_hint=missing_hint):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where(path, number)}: not a JSON object ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where(path, number)}: expected a JSON object, got {row!r:.40}")
        yield number, row


def split_tsv(path: str | Path, number: int, line: str, allowed: tuple[int, ...]) -> list[str]:
    """Split one tab-separated line, no quoting, and check its column count.

    Quotes are ordinary characters here: STS and SICK sentences contain ``"`` and are
    not quoted, so a CSV reader's quote handling would merge rows.
    """
    fields = line.split("\t")
    if len(fields) not in allowed:
        expected = " or ".join(str(n) for n in allowed)
        raise DataError(
            f"{where(path, number)}: expected {expected} tab-separated columns, found {len(fields)}"
        )
    return fields

"""A folder that proves it is whole: atomic writes and a checksum manifest.

Model folders, download caches and training checkpoints are written the same way:

1. every file goes to a temporary name in the same folder, is flushed to disk and renamed
   into place (``atomic_file``: ``os.replace`` is atomic, so a reader sees the old file or
   the new one, never half);
2. ``manifest.json`` is written last, listing the sha256 and size of every other file.

A folder whose manifest is missing was interrupted before it finished; a file whose
checksum differs was damaged or edited afterwards. ``verify_manifest`` tells both apart
from a good folder in one pass, and says which file is wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

MANIFEST = "manifest.json"


class ManifestError(RuntimeError):
    """A folder is incomplete (no manifest) or one of its files does not match it."""


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: its content replaces ``path`` only when the
    ``with`` block ends without an error, flushed to disk (fsync) and renamed into place.

    The file is a temporary one beside ``path`` (same folder, so the rename is atomic). An
    error in the block removes it and leaves ``path`` as it was; a kill leaves ``path`` as
    it was too, and a hidden ``.NAME.*.tmp`` beside it. minisbert's one atomic writer: whole
    data (``write_atomic``) and streams (a dataset archive's members, ``minisbert encode``'s
    ``np.save``) alike."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; these are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (a str as UTF-8) to ``path`` through ``atomic_file``."""
    with atomic_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_files(folder: Path) -> list[str]:
    """Every regular file under ``folder`` (relative, '/'-separated), but the manifest and
    temporary or hidden files."""
    names = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        hidden = any(part.startswith(".") for part in rel.split("/"))
        if path.is_file() and rel != MANIFEST and not hidden:
            names.append(rel)
    return names


def write_manifest(folder: str | Path, names: list[str] | None = None) -> dict[str, dict]:
    """Checksum ``names`` (default: every file in ``folder``) into ``folder/manifest.json``.

    Call it last: the manifest's presence is what marks the folder complete."""
    folder = Path(folder)
    names = folder_files(folder) if names is None else sorted(names)
    files = {
        name: {"sha256": sha256_of(folder / name), "size": (folder / name).stat().st_size}
        for name in names
    }
    write_atomic(folder / MANIFEST, json.dumps({"files": files}, indent=2) + "\n")
    return files


def read_manifest(folder: str | Path) -> dict[str, dict]:
    path = Path(folder) / MANIFEST
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        raise ManifestError(f"{path}: missing, so the folder was never completed") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ManifestError(f"{path}: unreadable ({err})") from None
    if not isinstance(files, dict):
        raise ManifestError(f"{path}: 'files' is not a JSON object")
    return files


def verify_manifest(
    folder: str | Path, check_sizes_only: bool = False, only_suffix: str = ""
) -> None:
    """Raise ``ManifestError`` naming the first file that is missing or differs (of the files
    whose names end in ``only_suffix``, when given)."""
    folder = Path(folder)
    for name, entry in read_manifest(folder).items():
        if not name.endswith(only_suffix):
            continue
        path = folder / name
        if not path.is_file():
            raise ManifestError(f"{path}: listed in {MANIFEST} but missing")
        if path.stat().st_size != entry.get("size"):
            raise ManifestError(
                f"{path}: {path.stat().st_size} bytes, {MANIFEST} says {entry.get('size')}"
            )
        if not check_sizes_only and sha256_of(path) != entry.get("sha256"):
            raise ManifestError(f"{path}: sha256 differs from {MANIFEST} (damaged or edited)")

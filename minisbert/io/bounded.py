"""Reading a model folder's small files with a size limit, and only if they are plain files.

A model folder comes from outside: a download, a colleague's disk, an archive. Its
``config.json`` could be a link to ``/dev/zero`` or a named pipe (FIFO), and a plain
``read_text()`` would then read until memory runs out, or wait forever for a writer. So
every JSON or text file of a model folder is read here:

1. ``os.stat`` after following links: anything but a regular file (a device, a FIFO, a
   socket, a folder) is refused before it is opened;
2. opened without blocking (a FIFO swapped in after the check cannot hang the open), and
   checked again on the open file;
3. at most ``limit + 1`` bytes read: one byte more than allowed proves the file too large,
   whatever size ``stat`` reported (files under /proc report 0).

The limits are the file kind's (``LIMITS``): 64 MB for a ``tokenizer.json`` (all-MiniLM-L6-v2's,
30,522 tokens, is 0.47 MB; LaBSE's 501,153 tokens would take about 8 MB), 1 MB for any other
settings file (all-MiniLM-L6-v2's config.json is 334 bytes).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

MB = 1 << 20
SMALL_FILE_LIMIT = 1 * MB  # config.json, sentence.json, modules.json, ...
LIMITS = {
    "tokenizer.json": 64 * MB,
    "model.safetensors.index.json": 16 * MB,  # one line per tensor of a sharded checkpoint
}


class UnreadableFile(ValueError):
    """A file that is not a regular file, or larger than the limit for its kind."""


def limit_for(path: str | Path) -> int:
    """The most bytes minisbert reads from a file of this name."""
    return LIMITS.get(Path(path).name, SMALL_FILE_LIMIT)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):  # fmt: skip
        if test(mode):
            return name
    return "not a regular file"


def open_regular_file(path: str | Path) -> BinaryIO:
    """``path`` opened for reading, if it is a regular file (links followed).

    Raises FileNotFoundError if it does not exist, UnreadableFile if it is anything else."""
    path = Path(path)
    try:
        info = os.stat(path)  # follows links: a link to /dev/zero is a character device
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    _check_regular(path, info)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    file = os.fdopen(fd, "rb")
    try:
        _check_regular(path, os.fstat(fd))  # the file opened, not only the name checked
    except UnreadableFile:
        file.close()
        raise
    return file


def _check_regular(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        target = f" (a link to {os.path.realpath(path)})" if path.is_symlink() else ""
        raise UnreadableFile(f"{path}{target} is {_kind(info.st_mode)}, not a regular file; "
                             "refused without reading it")  # fmt: skip


def read_bytes_bounded(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of regular file ``path``, refused (UnreadableFile) above ``limit`` bytes."""
    path = Path(path)
    limit = limit_for(path) if limit is None else limit
    with open_regular_file(path) as file:
        size = os.fstat(file.fileno()).st_size
        if size > limit:
            raise UnreadableFile(f"{path}: {size} bytes, more than the {limit} allowed for "
                                 f"{path.name}; refused without reading it")  # fmt: skip
        data = file.read(limit + 1)
    if len(data) > limit:  # it grew, or reported no size (as files under /proc do)
        raise UnreadableFile(f"{path}: more than the {limit} bytes allowed for {path.name}; "
                             "refused")  # fmt: skip
    return data


def read_text_bounded(path: str | Path, limit: int | None = None) -> str:
    """``read_bytes_bounded`` decoded as UTF-8 (UnicodeDecodeError if it is not)."""
    return read_bytes_bounded(path, limit).decode("utf-8")


def read_json_bounded(path: str | Path, limit: int | None = None) -> Any:
    """A bounded JSON file's content (json.JSONDecodeError, UnicodeDecodeError if damaged)."""
    return json.loads(read_text_bounded(path, limit))

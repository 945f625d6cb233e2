"""Folders written whole: every folder minisbert writes is built beside its destination and
swapped in, so that after any kill the destination is absent, the old folder, or the new one.

    write_folder(dst, fill, sources=[src])

1. **Refuse what would destroy the source.** ``dst`` may not be a source, lie inside one, or
   hold one (``convert A A``, ``export A A/out``, ``export A/x A``): checked on the resolved
   paths, before anything is written.
2. **Refuse what is not ours.** An existing, non-empty ``dst`` is replaced only if minisbert
   wrote it (its ``manifest.json``, or a minisbert model's ``sentence.json``), or with
   ``overwrite``: a user's own folder is never replaced by surprise.
3. **Build beside, swap in.** ``fill`` writes into ``.NAME.partial-PID-XXXX/new``, a sibling
   of ``dst`` (the same file system, so a rename moves it). ``manifest.json``, the sha256 and
   size of every file, is written last. Then two renames: the old ``dst`` into the temporary
   folder, the new folder onto ``dst``; the temporary folder, with the old one, is removed.

A kill during ``fill`` leaves only the hidden temporary folder, which the next write to the
same destination removes (``remove_leftovers``: its process is gone). Between the two renames
the destination is briefly absent, never half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from minisbert.io.manifest import MANIFEST, write_manifest

Log = Callable[[str], object]


class FolderError(RuntimeError):
    """A destination that would destroy its source, or a folder minisbert did not write."""


def check_apart(dst: Path, sources: Iterable[Path], what: str = "the destination") -> None:
    """Refuse a ``dst`` that is a source, is inside one, or holds one."""
    target = dst.expanduser().resolve()
    for src in sources:
        source = Path(src).expanduser().resolve()
        if target == source:
            problem = "is the source folder itself"
        elif source in target.parents:
            problem = f"is inside the source folder {src}"
        elif target in source.parents:
            problem = f"holds the source folder {src}"
        else:
            continue
        raise FolderError(
            f"{what} {dst} {problem}: writing it would destroy what is being read; "
            "choose a folder outside the source"
        )


def written_by_minisbert(folder: Path) -> bool:
    """Whether ``folder`` is one minisbert wrote: a manifest in minisbert's format, or a
    minisbert model folder from before manifests (``sentence.json`` beside ``config.json``)."""
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
        if isinstance(files, dict):
            return True
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return (folder / "sentence.json").is_file() and (folder / "config.json").is_file()


def check_replaceable(dst: Path, overwrite: bool, flag: str = "--overwrite") -> None:
    """Refuse to replace an existing folder (or file) that minisbert did not write."""
    if not (dst.exists() or dst.is_symlink()):
        return
    if not dst.is_dir():
        raise FolderError(f"{dst} is a file, not a folder; choose another destination")
    if overwrite or written_by_minisbert(dst) or not any(dst.iterdir()):
        return
    shown = sorted(p.name for p in dst.iterdir())
    listed = ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")
    raise FolderError(
        f"{dst} already holds files minisbert did not write ({listed}); choose a new folder, "
        f"or pass {flag} to replace it"
    )


def remove_leftovers(dst: Path, log: Log = print) -> None:
    """Remove the temporary siblings of ``dst`` (``.NAME.partial-PID-*``) whose process was
    killed; those of a live process (another write at work) are left alone."""
    if os.name != "posix":  # os.kill(pid, 0) would not just probe on Windows
        return
    for partial in dst.parent.glob(f".{dst.name}.partial-*"):
        pid = partial.name.removeprefix(f".{dst.name}.partial-").split("-")[0]
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue  # alive, someone else's
        log(f"removing {partial}, left by an interrupted write")
        shutil.rmtree(partial, ignore_errors=True)


def _sync_folder(folder: Path) -> None:
    """fsync every file and folder under ``folder``, so the swap never shows unsynced data."""
    if os.name != "posix":
        return
    for path in [*sorted(folder.rglob("*")), folder]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_folder(
    dst: str | Path,
    fill: Callable[[Path], object],
    *,
    sources: Iterable[str | Path] = (),
    overwrite: bool = False,
    manifest: bool = True,
    log: Log = print,
) -> Path:
    """Build the folder ``dst`` with ``fill(tmp)`` beside it, then swap it in whole.

    ``sources``: folders ``fill`` reads, which ``dst`` may not be, be in, or hold.
    ``overwrite``: replace an existing folder minisbert did not write.
    ``manifest``: write ``manifest.json`` last (the folder's checksums)."""
    dst = Path(dst).expanduser()
    check_apart(dst, [Path(s) for s in sources])
    check_replaceable(dst, overwrite)
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(dst, log)
    work = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.partial-{os.getpid()}-"))
    try:
        new = work / "new"
        new.mkdir()
        fill(new)
        if manifest:
            write_manifest(new)  # last: the folder is complete
        _sync_folder(new)
        if dst.exists() or dst.is_symlink():
            os.rename(dst, work / "old")  # removed with ``work`` below
        os.rename(new, dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dst

"""Downloading the official releases of STS Benchmark, SICK, SNLI and MultiNLI.

``fetch_datasets(dest)`` fetches each archive over HTTP, keeps only the files the
readers need (plus readme and licence), and writes them into the layout of
``minisbert.data.loading``::

    dest/stsbenchmark/sts-{train,dev,test}.csv   from Stsbenchmark.tar.gz (STS wiki, UPV/EHU)
    dest/sick/SICK_{train,trial,test_annotated}.txt  from the SemEval-2014 task 1 zips
    dest/snli/snli_1.0_{train,dev,test}.jsonl    from snli_1.0.zip (Stanford NLP)
    dest/multinli/multinli_1.0_{train,dev_matched,dev_mismatched}.jsonl
                                                 from multinli_1.0.zip (NYU, Williams et al.)

SNLI and MultiNLI together are "AllNLI", the data of the paper's NLI training (about
570,000 + 433,000 pairs; the zips are about 90 and 230 MB).

Only the standard library is used (urllib, tarfile, zipfile). A download counts only when
whole, as a model's does (``minisbert.io.hub.download_verified``: its Content-Length, a
size cap, a stall timeout). Every file is written to a
temporary name in its folder and renamed into place (``minisbert.io.manifest.atomic_file``),
so an interrupted download never leaves a half-written file that a reader would take for
data. A dataset whose files are all present is skipped unless ``force=True``.

Where the archives come from, first match wins:

1. ``base_urls``: a mapping from dataset name to a base URL, or one base URL for all;
2. the environment variable ``MINISBERT_DATA_MIRROR``: one base URL for all;
3. the official sources in ``OFFICIAL_BASE_URLS``.

An archive's URL is its base URL followed by its file name, e.g.
``http://localhost:8000/snli_1.0.zip`` for a mirror at ``http://localhost:8000``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tarfile
import tempfile
import urllib.error
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import IO

from minisbert.data.lines import DataError
from minisbert.io.archive import UnsafeArchiveError, safe_target, tar_member_kind, zip_member_kind
from minisbert.io.hub import FetchError, download_verified, one_line
from minisbert.io.manifest import atomic_file

MIRROR_ENV = "MINISBERT_DATA_MIRROR"
OFFICIAL_BASE_URLS = {
    "stsb": "http://ixa2.si.ehu.eus/stswiki/images/4/48/",
    "sick": "http://alt.qcri.org/semeval2014/task1/data/uploads/",
    "snli": "https://nlp.stanford.edu/projects/snli/",
    "mnli": "https://cims.nyu.edu/~sbowman/multinli/",
}


@dataclasses.dataclass(frozen=True)
class Release:
    """One dataset's archives, the folder they unpack into, and the files to keep."""

    folder: str
    archives: tuple[str, ...]
    required: tuple[str, ...]  # the data files; the download fails without them
    extra: tuple[str, ...] = ()  # readme and licence, kept when present


RELEASES = {
    "stsb": Release(
        "stsbenchmark",
        ("Stsbenchmark.tar.gz",),
        ("sts-train.csv", "sts-dev.csv", "sts-test.csv"),
        ("readme.txt", "LICENSE.txt"),
    ),
    "sick": Release(
        "sick",
        ("sick_train.zip", "sick_trial.zip", "sick_test_annotated.zip"),
        ("SICK_train.txt", "SICK_trial.txt", "SICK_test_annotated.txt"),
        ("readme.txt",),
    ),
    "snli": Release(
        "snli",
        ("snli_1.0.zip",),
        ("snli_1.0_train.jsonl", "snli_1.0_dev.jsonl", "snli_1.0_test.jsonl"),
        ("README.txt",),
    ),
    # MultiNLI has no public test labels; its two dev sets (genres seen in training, and
    # genres not seen) are its held-out splits.
    "mnli": Release(
        "multinli",
        ("multinli_1.0.zip",),
        (
            "multinli_1.0_train.jsonl",
            "multinli_1.0_dev_matched.jsonl",
            "multinli_1.0_dev_mismatched.jsonl",
        ),
        ("README.txt",),
    ),
}
# What a plain fetch downloads: the evaluation data and SNLI. MultiNLI (a 230 MB zip) is
# needed only for AllNLI training (`make paper`), so it is fetched when named: mnli.
DEFAULT_NAMES = ("stsb", "sick", "snli")


def fetch_datasets(
    dest: str | Path,
    *,
    names: Iterable[str] | None = None,
    base_urls: Mapping[str, str] | str | None = None,
    force: bool = False,
    timeout: float = 60.0,
) -> dict[str, list[Path]]:
    """Download and unpack datasets ``names`` (default ``DEFAULT_NAMES``) into ``dest``.

    Returns, per dataset, the data files now in place.
    """
    dest = Path(dest)
    names = list(DEFAULT_NAMES) if names is None else list(names)
    unknown = [n for n in names if n not in RELEASES]
    if unknown:
        raise DataError(f"cannot fetch {unknown}; known datasets: {', '.join(RELEASES)}")
    fetched = {}
    for name in names:
        release = RELEASES[name]
        folder = dest / release.folder
        targets = [folder / f for f in release.required]
        if force or not all(t.is_file() for t in targets):
            folder.mkdir(parents=True, exist_ok=True)
            base = _base_url(name, base_urls)
            for archive in release.archives:
                _fetch_archive(base.rstrip("/") + "/" + archive, folder, release, timeout)
            missing = [t.name for t in targets if not t.is_file()]
            if missing:
                raise DataError(
                    f"archives {', '.join(release.archives)} from {base} did not contain "
                    f"{', '.join(missing)}"
                )
        fetched[name] = targets
    return fetched


def _base_url(name: str, base_urls: Mapping[str, str] | str | None) -> str:
    if isinstance(base_urls, str):
        return base_urls
    if base_urls is not None and name in base_urls:
        return base_urls[name]
    return os.environ.get(MIRROR_ENV) or OFFICIAL_BASE_URLS[name]


def _fetch_archive(url: str, folder: Path, release: Release, timeout: float) -> None:
    """Download one archive to a temporary file and unpack the wanted members from it.

    The download is the model downloads' (``minisbert.io.hub.download_verified``): a body
    shorter than its Content-Length, or over the size cap, is refused and deleted, so a cut
    connection reads as a failed download, not as a damaged archive.
    """
    keep = set(release.required) | set(release.extra)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".download-")
    os.close(fd)
    archive = Path(name)
    try:
        try:
            download_verified(url, archive, timeout)
        except FetchError as e:  # short, too big, stalled, a redirect loop: says which
            raise DataError(f"could not download {e}") from None
        except urllib.error.URLError as e:  # an HTTP error, or no connection
            raise DataError(
                f"could not download {url} ({one_line(e.reason)}); without network, copy the "
                f"files into {folder} by hand or set {MIRROR_ENV} to a URL that serves the "
                "archives"
            ) from None
        _unpack(archive, url, folder, keep)
    finally:
        archive.unlink(missing_ok=True)


def _unpack(archive: Path, url: str, folder: Path, keep: set[str]) -> None:
    """Write each archive member whose base name is in ``keep`` to ``folder / base name``.

    Only base names are used, so no member can write outside ``folder``. Still, an archive
    with a member that could (an absolute path, '..', a link or a device file; see
    ``minisbert.io.archive``) is refused whole before anything is written: it is not the release.
    """
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member(folder, info.filename, zip_member_kind(info), url)
                for info in zf.infolist():
                    member = PurePosixPath(info.filename)
                    if not info.is_dir() and member.name in keep and "__MACOSX" not in member.parts:
                        with zf.open(info) as src:
                            _write_member(folder / member.name, src)
        else:
            with tarfile.open(archive, "r:*") as tf:
                for info in tf.getmembers():
                    _check_member(folder, info.name, tar_member_kind(info), url)
                for info in tf:
                    name = PurePosixPath(info.name).name
                    src = tf.extractfile(info) if info.isfile() and name in keep else None
                    if src is not None:
                        _write_member(folder / name, src)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        # one_line: tarfile's ReadError lists each compression it tried, a line each
        raise DataError(f"{url}: not a readable zip or tar archive ({one_line(e)})") from None


def _check_member(folder: Path, name: str, kind: str, url: str) -> None:
    try:
        safe_target(folder, name, kind)
    except UnsafeArchiveError as e:
        raise DataError(f"{url}: unsafe archive member, refused: {e}") from None


def _write_member(target: Path, src: IO[bytes]) -> None:
    """Copy ``src`` to ``target`` through the one atomic writer (temporary file, fsync, rename)."""
    with atomic_file(target) as out:
        shutil.copyfileobj(src, out)

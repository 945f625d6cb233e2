"""minisbert.fast.host_memory: the allocator settings apply on Linux with glibc, and are skipped
quietly where there is no glibc."""

from __future__ import annotations

import ctypes
import os
import sys

import pytest

from minisbert.fast import host_memory


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"),
    reason="glibc on Linux only",
)
def test_glibc_accepts_the_settings():
    assert host_memory.keep_freed_memory() is True


def test_no_glibc_changes_nothing(monkeypatch):
    def no_libc(*args, **kwargs):
        raise OSError("no such library")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert host_memory.keep_freed_memory() is False


def test_other_systems_change_nothing(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert host_memory.keep_freed_memory() is False

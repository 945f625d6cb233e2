"""Every lesson runs top to bottom in fast mode, and its .ipynb twin matches its .py source.

A lesson ends with asserts that fail when its claims are false, so running it is a test.
Fast mode (MINISBERT_FAST=1) shrinks data and training steps so the suite stays short.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
sys.path.insert(0, str(LESSONS))

from run import execute, in_sync, lesson_sources  # noqa: E402

SOURCES = lesson_sources()


def test_there_are_lessons():
    assert SOURCES, "no lessons/NN_topic.py found"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_in_sync(source: Path):
    assert in_sync(source), (
        f"{source.with_suffix('.ipynb').name} differs from {source.name} or has outputs; "
        "run `python lessons/run.py --sync`"
    )


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_lesson_runs_in_fast_mode(source: Path, pretrained_dir, data_dir, monkeypatch):
    monkeypatch.setenv("MINISBERT_FAST", "1")
    monkeypatch.setenv("MINISBERT_SOLUTIONS", "1")
    monkeypatch.setenv("MINISBERT_DATA", str(data_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    execute(source, out_dir=None, timeout=600)
    assert os.environ["MINISBERT_FAST"] == "1"

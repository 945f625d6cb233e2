"""The `minisbert` command: its outputs, and one clear line (no traceback) for user errors."""

from __future__ import annotations

import numpy as np
import pytest

from minisbert.cli import main


@pytest.fixture
def tiny(tiny_files):
    """The session's one-layer tiny model (conftest.py), read, never written."""
    return str(tiny_files["model"])


def test_encode_writes_npy(tmp_path, tiny, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("the cat sat\n\na dog runs\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    assert main(["encode", str(lines), "-o", str(out), "--model", tiny]) == 0
    assert np.load(out).shape == (3, 36)  # row i is line i: the blank line keeps its row


def test_encode_reports_invalid_utf8_with_file_and_line(tmp_path, tiny, capsys):
    lines = tmp_path / "bad.txt"
    lines.write_bytes(b"fine line\nbad \xff byte\n")
    assert main(["encode", str(lines), "-o", str(tmp_path / "o.npy"), "--model", tiny]) == 1
    err = capsys.readouterr().err
    assert "bad.txt:2: invalid UTF-8" in err
    assert "Traceback" not in err


def test_similarity_prints_a_matrix(tiny, capsys):
    assert main(["similarity", "the cat", "the cat", "a dog", "--model", tiny]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 3
    assert rows[0].split()[:2] == ["1.000", "1.000"]


def test_search(tmp_path, tiny, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\na dog runs\n", encoding="utf-8")
    assert main(["search", "the cat sat on the mat", str(corpus), "--model", tiny]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("the cat sat on the mat")


def test_missing_model_is_one_clear_line(capsys):
    assert main(["similarity", "a", "--model", "no-such-model"]) == 1
    err = capsys.readouterr().err
    assert "minisbert fetch" in err and "Traceback" not in err


@pytest.mark.slow  # the pretrained model end to end (17.6 s at load 7)
def test_demo_runs_on_the_pretrained_model(pretrained_dir, capsys):
    assert main(["demo", "--model", str(pretrained_dir)]) == 0
    out = capsys.readouterr().out
    assert "most similar pair" in out and "quick brown fox" in out

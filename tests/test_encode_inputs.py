"""What encode and the data readers do with inputs at the edges: a batch size far larger
than the input, blank lines, rows that lack a key, columns that differ only in case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from minisbert.cli import main, read_lines
from minisbert.data import DataError
from minisbert.data.files import read_examples, read_pairs
from minisbert.fast import FastEncoder as SentenceEncoder  # packed encode, whose plan is tested
from minisbert.fast.packing import packed_calls

FIVE = ["the cat sat on the mat", "a dog", "the dog is running", "cats!", "a cat, a dog, a mat"]


@pytest.fixture(scope="module")
def tiny_dir(tiny_files) -> Path:
    """The session's one-layer tiny model (conftest.py), read, never written."""
    return tiny_files["model"]


@pytest.fixture(scope="module")
def tiny(tiny_dir) -> SentenceEncoder:
    return SentenceEncoder.from_pretrained(tiny_dir)


# ------------------------------------------------------------ batch size beyond the input


def test_a_huge_batch_size_plans_what_the_input_needs(tiny):
    counts = tiny.token_counts(FIVE)
    plan = tiny.batcher.plan
    assert plan(tiny, counts, 10**9) == plan(tiny, counts, 5)
    assert plan(tiny, counts, 10**9).batch_size == 5
    assert plan(tiny, counts, 3).batch_size == 3  # smaller than the input: kept


def test_a_huge_batch_size_compiles_the_shapes_of_the_input(tiny):
    tiny.compiled_shapes.clear()
    small = tiny.encode(FIVE, batch_size=5)
    shapes = set(tiny.compiled_shapes)
    tiny.compiled_shapes.clear()
    huge = tiny.encode(FIVE, batch_size=10**9)  # was MemoryError: room for 3e9 vectors
    assert tiny.compiled_shapes == shapes
    default = tiny.encode(FIVE, batch_size=32)
    np.testing.assert_allclose(huge, default, atol=1e-6, rtol=0)
    np.testing.assert_allclose(small, default, atol=1e-6, rtol=0)
    assert np.abs(default).max() > 0


def test_packed_calls_room_follows_the_sentences_not_the_batch_size():
    five = [[2, 7, 8, 3]] * 5
    ((indices, batch),) = packed_calls(five, 16384, 32, 4.0)  # was (49152, 32) vectors
    assert sorted(indices.tolist()) == list(range(5))
    assert batch.token_index.shape == (8, 32)  # 5, to a power of two
    assert batch.input_ids.shape == (1, 32)
    twenty = [[2] + [7] * 18 + [3]] * 5  # one to a row: 5 rows, to a power of two
    for batch_size in (5, 10**9):  # a batch that holds them all: one call, not 4 rows + 4
        ((indices, batch),) = packed_calls(twenty, batch_size, 32, 20.0)
        assert batch.input_ids.shape == (8, 32) and batch.token_index.shape == (8, 32)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8", None])
def test_a_bad_batch_size_is_refused_in_one_line(tiny, bad):
    with pytest.raises(ValueError, match="batch_size must be a positive integer") as err:
        tiny.encode(FIVE, batch_size=bad)
    assert "\n" not in str(err.value)


def test_the_cli_encodes_with_a_huge_batch_size(tmp_path, tiny_dir, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(FIVE) + "\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    argv = ["encode", str(lines), "-o", str(out), "--model", str(tiny_dir)]
    assert main([*argv, "--batch-size", str(10**9)]) == 0
    huge = np.load(out)
    assert main(argv) == 0
    np.testing.assert_allclose(huge, np.load(out), atol=1e-6, rtol=0)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--batch-size", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "'0' is not a positive integer" in err and "Traceback" not in err


# ------------------------------------------------------------ blank lines keep their row


def test_encode_keeps_row_i_for_line_i_blank_lines_too(tmp_path, tiny_dir, tiny):
    lines = ["the cat", "", "   ", "a dog", ""]
    path = tmp_path / "lines.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")  # BOM, CRLF
    out = tmp_path / "out.npy"
    assert main(["encode", str(path), "-o", str(out), "--model", str(tiny_dir)]) == 0
    rows = np.load(out)
    assert rows.shape == (5, 36)  # was (2, 36): the blank lines were dropped
    np.testing.assert_allclose(rows, tiny.encode(lines), atol=1e-6, rtol=0)
    np.testing.assert_allclose(rows[1], tiny.encode(""), atol=1e-6, rtol=0)
    assert read_lines(path) == ["the cat", "a dog"]  # search still skips them


# ------------------------------------------------------------ data files: no silent guess


def test_jsonl_columns_come_from_every_row(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"sentence1": "a", "sentence2": "b"}\n{"sentence1": "c", "sentence2": "d", "label": 1}\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"pairs.jsonl:1: missing field 'label', which other rows"):
        read_pairs(path)  # was: every label dropped, label=None throughout


def test_jsonl_a_later_row_without_a_key_is_named(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = ['{"sentence1": "a", "sentence2": "b", "label": 0.5}'] * 3
    rows.insert(2, '{"sentence1": "c", "sentence2": "d"}')
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.jsonl:3: missing field 'label'"):
        read_examples(path)


def test_mnrl_on_a_file_whose_first_row_lacks_a_label_is_refused(tmp_path, tiny_dir, capsys):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"sentence1": "a cat", "sentence2": "a dog"}\n'
        '{"sentence1": "the mat", "sentence2": "the dog", "label": 1}\n',
        encoding="utf-8",
    )
    argv = ["train", "--model", str(tiny_dir), "--data", str(path), "--loss", "mnrl",
            "--output", str(tmp_path / "run"), "--eval-data", "none", "--no-progress",
            "--max-steps", "1"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "pairs.jsonl:1: missing field 'label'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_columns_that_differ_only_in_case_are_refused(tmp_path, suffix):
    sep = "," if suffix == ".csv" else "\t"
    path = tmp_path / f"pairs{suffix}"
    rows = [["Sentence1", "sentence1", "sentence2", "label"], ["a", "b", "c", "1"]]
    path.write_text("\n".join(sep.join(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="'Sentence1' and 'sentence1' differ only in case"):
        read_pairs(path)  # was: 'sentence1' kept, 'Sentence1' silently ignored


def test_a_column_named_twice_is_refused(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("sentence1,sentence2,sentence2\na,b,c\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.csv:1: the header names column\(s\) 'sentence2'"):
        read_pairs(path)


def test_case_only_matters_for_the_columns_used(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("sentence1,sentence2,Note,note\na,b,x,y\n", encoding="utf-8")
    (pair,) = read_pairs(path)
    assert (pair.sentence1, pair.sentence2, pair.label) == ("a", "b", None)


# ------------------------------------------------------------ eval: pairs vs triplets (fuzz)


@pytest.mark.parametrize(
    ("kind", "header", "needs"),
    [
        ("sts", "anchor\tpositive\tnegative", "needs (sentence1, sentence2, label) pairs"),
        ("triplets", "sentence1\tsentence2\tlabel", "needs (anchor, positive, negative)"),
    ],
)
def test_eval_on_the_other_kind_of_examples_is_one_line(tmp_path, tiny_dir, capsys, kind,
                                                        header, needs):  # fmt: skip
    path = tmp_path / "d.tsv"
    path.write_text(f"{header}\nthe cat\ta dog\t1\n", encoding="utf-8")
    assert main(["eval", kind, "--model", str(tiny_dir), "--data", str(path)]) == 1
    err = capsys.readouterr().err  # was: AttributeError, a traceback
    assert needs in err and len(err.strip().splitlines()) == 1


def test_eval_nli_refuses_labels_that_are_not_its_classes(tmp_path, softmax_run, capsys):
    run = softmax_run  # conftest.py: a softmax run of 3 classes
    path = tmp_path / "e.tsv"
    for body, found in [("sentence1\tsentence2\nthe cat\ta dog\n", "None"),
                        ("sentence1\tsentence2\tlabel\nthe cat\ta dog\t0.5\n", "0.5"),
                        ("sentence1\tsentence2\tlabel\nthe cat\ta dog\t7\n", "7")]:  # fmt: skip
        path.write_text(body, encoding="utf-8")
        assert main(["eval", "nli", "--model", str(run), "--data", str(path)]) == 1
        err = capsys.readouterr().err  # was: accuracy 0.00, as if the model were wrong
        assert "e.tsv:2: NLI evaluation needs class labels 0..2" in err and found in err
        assert len(err.strip().splitlines()) == 1

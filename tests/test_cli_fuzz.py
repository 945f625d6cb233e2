"""Fuzzing what a user can type: CLI arguments and the rows of their data files.

For any arguments to ``minisbert encode``, ``similarity``, ``search``, ``train`` (tiny
settings, one step) and ``eval``, and any CSV/TSV/JSONL rows (random text, missing
columns, bad labels, NaN, empty files, bad bytes), the CLI must

- exit 0, or print one line on stderr (``minisbert CMD: error: ...``; argparse's usage
  errors exit 2 with ``error:`` on their last line), never a traceback;
- write nothing outside the ``--output`` / ``-o`` it was given: each example runs in a
  fresh temporary working folder, whose tree (names, sizes, modification times) is
  compared before and after.

The CLI runs in-process (``minisbert.cli.main``) on the tiny BERT of ``tests/tiny.py``.
The default runs a few examples of each command, the same ones every time (derandomized);
``-m slow`` runs many more, new ones each time. The data readers alone get more examples:
they need no model.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minisbert.cli import main
from minisbert.data import DataError
from minisbert.data.files import read_examples

pytestmark = pytest.mark.filterwarnings("ignore")  # truncation and JAX warnings are not errors

QUICK = {"encode": 12, "similarity": 8, "search": 8, "train": 6, "eval": 8, "files": 150}
LONG = {"encode": 150, "similarity": 80, "search": 80, "train": 40, "eval": 80, "files": 3000}

WORDS = "the cat dog sat on a mat is running , . ! ? 3".split()
# Text a user may put anywhere: mostly words of the tiny vocabulary (so sentences reach
# the model), sometimes any Unicode, including newlines, tabs, quotes and lone surrogates
# (argv holds them for bytes that are not UTF-8).
words = st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join)
any_text = st.text(st.characters(exclude_characters="\x00"), max_size=20)
text = st.one_of(words, words, any_text)


def pick(draw: Any, good: list[str], bad: list[str], valid: bool = False) -> str:
    """A good value (three times in four, or always if ``valid``): runs should get past
    one setting to the next, and some all the way to the model."""
    return draw(st.sampled_from(good if valid or draw(st.integers(0, 3)) else bad))


GOOD_NUMBERS = ["1", "2", "3", "8", "1000000000"]
BAD_NUMBERS = ["0", "-1", "1.5", "nan", "inf", "-inf", "", "abc", "1e9", "0x10",
               "99999999999999999999", "\uff11", "\u00b2"]  # fmt: skip
LABELS = ["0", "1", "2", "0.5", "4.8", "5", "-3", "1e400", "nan", "NaN", "inf", "-", "",
          "entailment", "Neutral", "CONTRADICTION", "abc", " 1 "]  # fmt: skip
COLUMNS = ["sentence1", "sentence2", "label", "score", "Sentence1", "premise", "hypothesis",
           "anchor", "positive", "negative", "s1", "x"]  # fmt: skip


# ---------------------------------------------------------------- data files


@st.composite
def data_file(draw: Any) -> tuple[str, bytes]:
    """(file name, contents): a CSV, TSV or JSONL file of a few random rows."""
    kind = draw(st.sampled_from(["csv", "tsv", "jsonl", "txt", "bytes", "empty"]))
    if kind == "empty":
        return draw(st.sampled_from(["d.csv", "d.tsv", "d.jsonl"])), b""
    if kind == "bytes":
        name = draw(st.sampled_from(["d.csv", "d.tsv", "d.jsonl"]))
        return name, draw(st.binary(max_size=60))
    good = [["sentence1", "sentence2", "label"], ["anchor", "positive", "negative"],
            ["sentence1", "sentence2"]]  # fmt: skip
    if draw(st.integers(0, 2)):  # a well-formed file, so that runs reach the model
        header = draw(st.sampled_from(good))
        label = st.sampled_from(["0", "1", "2"] if draw(st.booleans()) else ["0.2", "0.9"])
        rows = [[draw(words) for _ in header[:2]] for _ in range(draw(st.integers(1, 8)))]
        rows = [[*r, draw(label if header[-1] == "label" else words)][: len(header)] for r in rows]
        cell = st.one_of(*[words] * 8, st.sampled_from(LABELS), any_text)  # a few bad cells
        rows = [[draw(cell) if not draw(st.integers(0, 9)) else c for c in r] for r in rows]
    else:
        header = draw(st.lists(st.sampled_from(COLUMNS), max_size=4))
        cell = st.one_of(words, words, st.sampled_from(LABELS), any_text)
        rows = draw(
            st.lists(st.lists(cell, min_size=len(header), max_size=len(header)), max_size=6)
        )
    if kind == "jsonl":
        value = st.one_of(
            cell, st.integers(-3, 5), st.floats(allow_nan=True), st.none(), st.booleans(),
            st.lists(st.integers(), max_size=2),
        )  # fmt: skip
        lines = []
        for row in rows:
            keep = [bool(draw(st.integers(0, 5))) for _ in row]
            record = {k: v if draw(st.integers(0, 5)) else draw(value)
                      for k, v, kept in zip(header, row, keep, strict=True) if kept}  # fmt: skip
            lines.append(json.dumps(record) if draw(st.integers(0, 9)) else "[1, 2]")
        return "d.jsonl", "\n".join(lines).encode("utf-8", "surrogatepass")
    if kind == "csv":
        out = io.StringIO()
        csv.writer(out).writerows([header, *rows])
        body = out.getvalue()
    else:
        body = "\n".join("\t".join(r) for r in [header, *rows]) + "\n"
    return f"d.{kind}", body.encode("utf-8", "surrogatepass")


def lines_file(draw: Any) -> bytes:
    lines = draw(st.lists(st.one_of(text, st.just("")), max_size=6))
    body = "\n".join(lines).encode("utf-8", "surrogatepass")
    return draw(st.one_of(st.just(body), st.just(body), st.binary(max_size=40)))


# ---------------------------------------------------------------- running the CLI


def tree(root: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path under ``root``: (is a folder, size, modification time) of files."""
    found = {}
    for path in root.rglob("*"):
        stat = path.lstat()
        is_dir = path.is_dir() and not path.is_symlink()
        found[str(path.relative_to(root))] = (is_dir, 0 if is_dir else stat.st_size,
                                              0 if is_dir else stat.st_mtime_ns)  # fmt: skip
    return found


def allowed(rel: str, outputs: list[str], cwd: Path) -> bool:
    """Is ``rel`` an output, inside one, or a folder made to hold one?"""
    path = (cwd / rel).resolve()
    for output in outputs:
        if not output:
            continue
        target = (cwd / output).resolve()
        if path == target or target in path.parents or path in target.parents:
            return True
    return False


def run_cli(argv: list[str], files: dict[str, bytes], outputs: list[str]) -> tuple[int, str]:
    """Run ``minisbert argv`` in a fresh folder holding ``files``; check the rules; (code, err)."""
    cwd = Path(tempfile.mkdtemp(prefix="fuzz-"))
    old = os.getcwd()
    try:
        for name, body in files.items():
            (cwd / name).write_bytes(body)
        before = tree(cwd)
        err, out = io.StringIO(), io.StringIO()
        os.chdir(cwd)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                try:
                    code = main(argv)
                except SystemExit as exit_:  # argparse: usage errors
                    code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            os.chdir(old)
        after = tree(cwd)
        changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
        stray = sorted(p for p in changed if not allowed(p, outputs, cwd))
        message = err.getvalue()
        assert not stray, f"minisbert {argv} wrote outside {outputs}: {stray}"
        check_outcome(argv, code, message)
        return code, message
    finally:
        shutil.rmtree(cwd, ignore_errors=True)


def check_outcome(argv: list[str], code: int, err: str) -> None:
    assert "Traceback" not in err, f"minisbert {argv}:\n{err}"
    lines = err.strip().splitlines()
    if code == 0:
        return
    if code == 2:  # argparse: a usage line, then "minisbert CMD: error: ..."
        assert lines and "error:" in lines[-1], f"minisbert {argv} exit 2:\n{err}"
        return
    assert code == 1, f"minisbert {argv} exited {code}:\n{err}"
    assert len(lines) == 1, f"minisbert {argv}: {len(lines)} lines on stderr:\n{err}"
    assert lines[0].startswith(f"minisbert {argv[0]}") and ": error: " in lines[0], err


# ---------------------------------------------------------------- the properties


def encode_case(draw: Any, model: str) -> None:
    target = pick(draw, ["in.txt"], ["missing.txt", ".", ""])
    output = pick(draw, ["out.npy", "out", "in.txt"], ["sub/out.npy", "new/out.npy", ".", ""])
    argv = ["encode", target, "-o", output, "--model", model]
    if draw(st.booleans()):
        argv += ["--batch-size", pick(draw, GOOD_NUMBERS, BAD_NUMBERS)]
    files = {"in.txt": lines_file(draw)}
    if draw(st.booleans()):
        files["sub"] = b""  # a file where -o expects a folder
    run_cli(argv, files, [output, output + ".npy"])


def similarity_case(draw: Any, model: str) -> None:
    sentences = draw(st.lists(text, min_size=0, max_size=4))
    run_cli(["similarity", *sentences, "--model", model], {}, [])


def search_case(draw: Any, model: str) -> None:
    argv = ["search", draw(text), pick(draw, ["c.txt"], ["missing.txt", "."])]
    if draw(st.booleans()):
        argv += ["--top-k", pick(draw, GOOD_NUMBERS, BAD_NUMBERS)]
    run_cli([*argv, "--model", model], {"c.txt": lines_file(draw)}, [])


def train_case(draw: Any, model: str) -> None:
    name, body = draw(data_file())
    output = pick(draw, ["run", "a/b/run"], [name, ".", ""])
    losses = ["cosine", "softmax", "mnrl", "triplet", "contrastive", "cosent"]
    valid = draw(st.booleans())  # every setting good: the data file decides
    triplets = b"anchor" in body.split(b"\n")[0]
    fitting = ["triplet", "mnrl"] if triplets else ["cosine", "softmax", "mnrl", "cosent"]
    argv = [
        "train", "--model", model, "--data", pick(draw, [name], ["missing.csv", "."], valid),
        "--loss", draw(st.sampled_from(fitting)) if valid else pick(draw, losses, ["nope", ""]),
        "--output", output, "--max-steps", pick(draw, ["1"], ["0", "-1", "x"], valid),
        "--batch-size", pick(draw, ["2", "4"], ["0", "-1", "1.5", "abc", "nan"], valid),
        "--epochs", pick(draw, ["1", "2"], ["0", "-1"], valid),
        "--lr", pick(draw, ["1e-3"], ["0", "-1", "nan", "inf", "2"], valid),
        "--eval-data", pick(draw, ["none", name], ["missing.csv", "."], valid), "--no-progress",
    ]  # fmt: skip
    if not valid and draw(st.booleans()):
        option = draw(st.sampled_from(["--warmup-ratio", "--margin", "--scale"]))
        argv += [option, pick(draw, ["0.1", "0.5"], BAD_NUMBERS)]
    run_cli(argv, {name: body}, [output])


def eval_case(draw: Any, model: str) -> None:
    name, body = draw(data_file())
    argv = ["eval", pick(draw, ["sts", "triplets"], ["nli"]), "--model", model,
            "--data", pick(draw, [name], ["missing.tsv", "."])]  # fmt: skip
    if draw(st.booleans()):
        argv += ["--split", pick(draw, ["test", "dev"], ["x", ""])]
    if draw(st.booleans()):
        argv += ["--batch-size", pick(draw, GOOD_NUMBERS, BAD_NUMBERS)]
    run_cli(argv, {name: body}, [])


def files_case(draw: Any, model: str) -> None:
    """The readers alone: examples, or a DataError of one line naming the file."""
    name, body = draw(data_file())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(body)
        try:
            read_examples(path)
        except DataError as err:
            assert "\n" not in str(err) and str(path) in str(err), str(err)


CASES = {"encode": encode_case, "similarity": similarity_case, "search": search_case,
         "train": train_case, "eval": eval_case, "files": files_case}  # fmt: skip


@pytest.fixture(scope="module")
def model(tiny_files) -> str:
    """The session's one-layer tiny model (conftest.py): its encode programs are compiled once
    for every test that reads it. No case writes into it: run_cli checks every write."""
    return str(tiny_files["model"])


def fuzz(command: str, model: str, examples: int, derandomize: bool) -> None:
    @settings(
        max_examples=examples, deadline=None, derandomize=derandomize, database=None,
        suppress_health_check=list(HealthCheck), print_blob=True,
    )  # fmt: skip
    @given(st.data())
    def prop(data: st.DataObject) -> None:
        CASES[command](data.draw, model)

    prop()


@pytest.mark.parametrize("command", list(CASES))
def test_fuzz_the_cli_and_data_files(command, model):
    fuzz(command, model, QUICK[command], derandomize=True)


@pytest.mark.slow
@pytest.mark.parametrize("command", list(CASES))
def test_fuzz_the_cli_and_data_files_long(command, model):
    fuzz(command, model, LONG[command], derandomize=False)


def test_a_usage_error_with_a_control_character_stays_on_one_line(model):
    # Found by the long fuzz run: argparse printed the argument "\r0" raw, splitting its line.
    code, err = run_cli(["similarity", "", "-:", "\r0", "a\nb", "--model", model], {}, [])
    assert code == 2 and r"arguments: -: \r0 a\nb;" in err.strip().splitlines()[-1], err


@pytest.mark.parametrize(("argv", "hint"), [
    (["similarity", "-ish"], True),  # taken for an option: "required: sentences"
    (["similarity", "cold", "-ish"], True),  # "unrecognized arguments: -ish"
    (["similarity", "--", "-ish", "cold"], False),  # the way the hint shows: runs
    (["similarity", "cold", "--modle", "m"], False),  # a mistyped option, not text
    (["encode", "in.txt"], False),  # a missing option, not text
])  # fmt: skip
def test_text_that_starts_with_a_dash_gets_a_hint(argv, hint, model):
    command, *rest = argv  # options first: after "--" every word is text
    code, err = run_cli([command, "--model", model, *rest], {"in.txt": b"a\n"}, ["out.npy"])
    assert ("put it after '--'" in err) == hint, err
    assert code == (2 if argv[1] != "--" else 0), err

"""MultiNLI in the downloader, ``--data mnli`` and ``--data allnli`` (SNLI + MultiNLI), against
a small zip laid out like the official ``multinli_1.0.zip`` and served from a local HTTP
server (no test touches the internet)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from minisbert.cli import main
from minisbert.data import (
    CONTRADICTION,
    DATA_ENV,
    ENTAILMENT,
    MIRROR_ENV,
    NEUTRAL,
    DataError,
    fetch_datasets,
    load_dataset,
)

# (sentence1, sentence2, gold_label); "-" rows have no gold label and must be dropped.
MNLI = {
    "train": [
        ("Conceptually cream skimming has two basic dimensions.",
         "Product and geography are what make cream skimming work.", "neutral"),
        ("you know during the season and i guess at at your level",
         "You lose the things to the following level if the people recall.", "entailment"),
        ("One of our number will carry out your instructions minutely.",
         "A member of my team will execute your orders with immense precision.", "contradiction"),
    ],
    "dev_matched": [
        ("The new rights are nice enough", "Everyone really likes the newest benefits", "neutral"),
        ("This site includes a list of all award winners.", "The site has no list.", "-"),
    ],
    "dev_mismatched": [
        ("Your contribution helped make it possible.", "Your contributions were of no help.",
         "contradiction"),
    ],
}  # fmt: skip
SNLI_TRAIN = [("A man plays a guitar .", "A person makes music .", "entailment")]
SNLI_DEV = [("Two dogs run .", "Cats sleep .", "contradiction")]
LABELS = {"entailment": ENTAILMENT, "neutral": NEUTRAL, "contradiction": CONTRADICTION}


def jsonl(rows: list[tuple[str, str, str]], genre: str = "fiction") -> str:
    """Rows as MultiNLI writes them: SNLI's fields plus genre and ids."""
    return "".join(
        json.dumps({"annotator_labels": [label], "genre": genre, "gold_label": label,
                    "pairID": f"{i}n", "promptID": str(i), "sentence1": s1, "sentence2": s2,
                    "sentence1_parse": "( x )", "sentence2_parse": "( y )"}) + "\n"
        for i, (s1, s2, label) in enumerate(rows)
    )  # fmt: skip


def mnli_zip() -> bytes:
    """A small multinli_1.0.zip: the official layout (one folder, jsonl and txt copies, a
    README, a macOS resource fork) with our few rows."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for split, rows in MNLI.items():
            zf.writestr(f"multinli_1.0/multinli_1.0_{split}.jsonl", jsonl(rows))
            zf.writestr(f"multinli_1.0/multinli_1.0_{split}.txt", "not kept")
        zf.writestr("multinli_1.0/README.txt", "MultiNLI readme")
        zf.writestr("multinli_1.0/paper.pdf", "not kept")
        zf.writestr("__MACOSX/multinli_1.0/._multinli_1.0_train.jsonl", "resource fork")
    return buffer.getvalue()


def expected(rows: list[tuple[str, str, str]]) -> list[tuple[str, str, int]]:
    return [(s1, s2, LABELS[label]) for s1, s2, label in rows if label != "-"]


def triples(examples: list) -> list[tuple[str, str, int]]:
    return [(e.sentence1, e.sentence2, e.label) for e in examples]


@pytest.fixture
def mirror(tmp_path: Path, served_folder) -> str:
    """A local HTTP server serving multinli_1.0.zip: its base URL."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "multinli_1.0.zip").write_bytes(mnli_zip())
    return served_folder(folder)


def test_fetch_mnli_through_the_mirror_env(
    mirror: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIRROR_ENV, mirror)
    dest = tmp_path / "data"
    fetched = fetch_datasets(dest, names=["mnli"])
    assert [p.name for p in fetched["mnli"]] == [
        "multinli_1.0_train.jsonl",
        "multinli_1.0_dev_matched.jsonl",
        "multinli_1.0_dev_mismatched.jsonl",
    ]
    # Only the data files and the readme are kept; no temporary file is left.
    assert sorted(p.name for p in (dest / "multinli").iterdir()) == [
        "README.txt",
        *sorted(p.name for p in fetched["mnli"]),
    ]
    assert triples(load_dataset("mnli", "train", root=dest)) == expected(MNLI["train"])
    assert triples(load_dataset("mnli", "dev", root=dest)) == expected(MNLI["dev_matched"])
    assert len(load_dataset("mnli", "dev_matched", root=dest)) == 1  # the "-" row dropped
    assert triples(load_dataset("mnli", "dev_mismatched", root=dest)) == expected(
        MNLI["dev_mismatched"]
    )


def test_a_plain_fetch_does_not_download_mnli(tmp_path: Path) -> None:
    from minisbert.data.fetch import DEFAULT_NAMES, RELEASES

    assert "mnli" in RELEASES and "mnli" not in DEFAULT_NAMES


def test_cli_data_fetch_mnli(
    mirror: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(MIRROR_ENV, mirror)
    dest = tmp_path / "data"
    assert main(["data", "fetch", "--dest", str(dest), "--names", "mnli"]) == 0
    assert "multinli_1.0_train.jsonl" in capsys.readouterr().out
    assert (dest / "multinli" / "multinli_1.0_dev_mismatched.jsonl").is_file()


@pytest.mark.parametrize("snli_layout", ["jsonl", "line-aligned"])
def test_allnli_is_snli_then_mnli(
    mirror: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snli_layout: str
) -> None:
    dest = tmp_path / "data"
    fetch_datasets(dest, names=["mnli"], base_urls=mirror)
    snli = dest / "snli"
    snli.mkdir()
    for split, rows in (("train", SNLI_TRAIN), ("dev", SNLI_DEV)):
        if snli_layout == "jsonl":  # what `minisbert data fetch` writes
            (snli / f"snli_1.0_{split}.jsonl").write_text(jsonl(rows))
        else:  # the shared data's copy: s1.dev, s2.dev, labels.dev
            for column, name in enumerate(("s1", "s2", "labels")):
                (snli / f"{name}.{split}").write_text("".join(r[column] + "\n" for r in rows))
    monkeypatch.setenv(DATA_ENV, str(dest))
    assert triples(load_dataset("allnli", "train")) == expected(SNLI_TRAIN + MNLI["train"])
    assert triples(load_dataset("allnli", "dev")) == expected(SNLI_DEV + MNLI["dev_matched"])
    with pytest.raises(DataError, match=r"snli_1\.0_test\.jsonl: file not found"):
        load_dataset("allnli", "test")  # SNLI test is not there
    with pytest.raises(DataError, match="no split 'dev_matched'; use one of train, dev, test"):
        load_dataset("allnli", "dev_matched")


def test_allnli_without_mnli_says_how_to_fetch_it(tmp_path: Path) -> None:
    (tmp_path / "snli").mkdir()
    (tmp_path / "snli" / "snli_1.0_train.jsonl").write_text(jsonl(SNLI_TRAIN))
    hint = r"multinli_1\.0_train\.jsonl.*minisbert data fetch --names mnli"
    with pytest.raises(DataError, match=hint):
        load_dataset("allnli", "train", root=tmp_path)

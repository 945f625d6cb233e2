"""Datasets by name: where the data folder is, and which file each split lives in.

The data folder is ``$MINISBERT_DATA`` if set, else ``~/.cache/minisbert/data`` (``data`` in
``$MINISBERT_CACHE`` if that is set), where ``minisbert data fetch`` downloads to. It holds::

    stsbenchmark/sts-{train,dev,test}.csv
    sick/SICK_{train,trial,test_annotated}.txt
    snli/snli_1.0_{train,dev,test}.jsonl   (official release)
      or snli/s1.dev, s2.dev, labels.dev   (line-aligned copy)
    multinli/multinli_1.0_{train,dev_matched,dev_mismatched}.jsonl

``fetch_datasets(folder)`` downloads the official releases into exactly this layout.

``load_dataset(name, split)`` is what the CLI calls. Names:

============== ======================================= ==============================
name           examples                                splits
============== ======================================= ==============================
stsb           PairExample, score 0..5 (0..1 normal.)  train, dev, test
sick           PairExample, relatedness 1..5 (0..1)    train, trial (= dev), test
sick-nli       PairExample, entailment class 0/1/2     train, trial (= dev), test
snli           PairExample, entailment class 0/1/2     train, dev, test
snli-triplets  TripletExample (premise, ent., contr.)  train, dev, test
mnli           PairExample, entailment class 0/1/2     train, dev_matched (= dev),
                                                       dev_mismatched
allnli         PairExample, entailment class 0/1/2     train, dev, test
a file path    pairs or triplets (``read_examples``)   (ignored)
============== ======================================= ==============================

``allnli`` is SNLI and MultiNLI together, the paper's NLI training data: train is SNLI
train + MultiNLI train (about 942,000 pairs with a gold label); dev is SNLI dev + MultiNLI
dev_matched; test is SNLI test + MultiNLI dev_mismatched (MultiNLI's test labels are not
public). SNLI pairs come first, in file order; training shuffles them anyway.
"""

from __future__ import annotations

import os
from pathlib import Path

from minisbert.data.examples import PairExample, TripletExample
from minisbert.data.files import read_examples
from minisbert.data.lines import DataError
from minisbert.data.nli import nli_triplets, read_snli_jsonl, read_snli_lines
from minisbert.data.sts import read_sick, read_sick_entailment, read_stsb
from minisbert.io.cache import cache_dir

DATA_ENV = "MINISBERT_DATA"
DATASETS = ("stsb", "sick", "sick-nli", "snli", "snli-triplets", "mnli", "allnli")
SICK_FILES = {
    "train": "SICK_train.txt",
    "trial": "SICK_trial.txt",
    "dev": "SICK_trial.txt",
    "test": "SICK_test_annotated.txt",
}
MNLI_SPLITS = {"train": "train", "dev": "dev_matched", "dev_matched": "dev_matched",
               "dev_mismatched": "dev_mismatched"}  # fmt: skip
# allnli split -> (SNLI split, MultiNLI split)
ALLNLI_SPLITS = {"train": ("train", "train"), "dev": ("dev", "dev_matched"),
                 "test": ("test", "dev_mismatched")}  # fmt: skip


def data_folder() -> Path:
    """Where the datasets are: ``$MINISBERT_DATA`` if set, else ``cache_dir() / "data"``
    (``minisbert.io.cache``). The command line and the lessons read this; ``minisbert data
    fetch`` writes here."""
    root = os.environ.get(DATA_ENV)
    return Path(root).expanduser() if root else cache_dir() / "data"


def missing_hint(folder: Path) -> str:
    """What to do when a dataset is not in ``folder``: where it was looked for, and why there."""
    if folder != data_folder():  # a root= of one's own
        return f"fill {folder} with `minisbert data fetch --dest {folder}` (fetch_datasets)"
    root = os.environ.get(DATA_ENV)
    why = f"{DATA_ENV}={root}" if root else f"{DATA_ENV} is not set"
    return (
        f"the data folder is {folder} ({why}): fill it with `minisbert data fetch` "
        f"(minisbert.data.fetch_datasets), or set {DATA_ENV} to a folder holding "
        "stsbenchmark/, sick/, snli/ and multinli/"
    )


def data_dir() -> Path:
    """``data_folder()``; a ``DataError`` says how to fill it if it is not there."""
    folder = data_folder()
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; {missing_hint(folder)}")
    return folder


def load_dataset(
    name: str, split: str = "train", *, root: str | Path | None = None, normalize: bool = False
) -> list[PairExample] | list[TripletExample]:
    """The examples of dataset ``name`` (see the module docstring), from ``root`` or ``data_dir()``.

    ``normalize=True`` rescales stsb and sick scores to 0..1.
    """
    if name not in DATASETS:
        if Path(name).is_file() or Path(name).suffix.lower() in (".csv", ".tsv", ".jsonl"):
            return read_examples(name)
        raise DataError(
            f"unknown dataset {name!r}: use one of {', '.join(DATASETS)} or a file path"
        )
    folder = Path(root) if root is not None else data_dir()
    hint = missing_hint(folder)
    if name == "stsb":
        _check_split(name, split, ("train", "dev", "test"))
        return read_stsb(
            folder / "stsbenchmark" / f"sts-{split}.csv",
            normalize=normalize,
            missing_hint=hint,
        )
    if name in ("sick", "sick-nli"):
        _check_split(name, split, tuple(SICK_FILES))
        path = folder / "sick" / SICK_FILES[split]
        if name == "sick":
            return read_sick(path, normalize=normalize, missing_hint=hint)
        return read_sick_entailment(path, missing_hint=hint)
    if name == "mnli":
        _check_split(name, split, tuple(MNLI_SPLITS))
        return _read_mnli(folder / "multinli", MNLI_SPLITS[split], hint)
    if name == "allnli":
        _check_split(name, split, tuple(ALLNLI_SPLITS))
        snli_split, mnli_split = ALLNLI_SPLITS[split]
        return _read_snli(folder / "snli", snli_split, hint) + _read_mnli(
            folder / "multinli", mnli_split, hint
        )
    _check_split(name, split, ("train", "dev", "test"))
    pairs = _read_snli(folder / "snli", split, hint)
    return nli_triplets(pairs) if name == "snli-triplets" else pairs


def _read_snli(folder: Path, split: str, hint: str) -> list[PairExample]:
    """The official jsonl file if present, else the line-aligned copy."""
    jsonl = folder / f"snli_1.0_{split}.jsonl"
    if jsonl.is_file() or not (folder / f"s1.{split}").is_file():
        neither = f"neither it nor {folder / f's1.{split}'} exists; {hint}"
        return read_snli_jsonl(jsonl, missing_hint=neither)
    return read_snli_lines(
        folder / f"s1.{split}",
        folder / f"s2.{split}",
        folder / f"labels.{split}",
        missing_hint=hint,
    )


def _read_mnli(folder: Path, split: str, hint: str) -> list[PairExample]:
    """MultiNLI's official jsonl file: the same fields as SNLI's (``gold_label``, ...)."""
    mnli = f"fetch it with `minisbert data fetch --names mnli`; {hint}"
    return read_snli_jsonl(folder / f"multinli_1.0_{split}.jsonl", missing_hint=mnli)


def _check_split(name: str, split: str, splits: tuple[str, ...]) -> None:
    if split not in splits:
        raise DataError(f"dataset {name!r} has no split {split!r}; use one of {', '.join(splits)}")

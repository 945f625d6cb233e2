"""Sentence-pair data: examples, readers for STS Benchmark, SICK and SNLI, and a downloader.

The package, one concept per module:

- ``examples``: ``PairExample``, ``TripletExample``, the NLI label order, score rescaling;
- ``lines``: reading a UTF-8 file line by line; ``DataError`` names file and line;
- ``sts``: STS Benchmark and SICK readers;
- ``nli``: SNLI readers (jsonl and line-aligned) and NLI triplets;
- ``files``: your own CSV / TSV / JSONL pairs and triplets;
- ``loading``: the data folder (``data_folder()``: ``$MINISBERT_DATA``, else
  ``~/.cache/minisbert/data``) and ``load_dataset(name, split)``;
- ``fetch``: ``fetch_datasets(dest)`` from the official sources.

>>> from minisbert.data import load_dataset
>>> dev = load_dataset("stsb", split="dev", normalize=True)  # doctest: +SKIP
>>> dev[0].sentence1, dev[0].sentence2, dev[0].label  # doctest: +SKIP
('A man with a hard hat is dancing.', 'A man wearing a hard hat is dancing.', 1.0)
"""

from minisbert.data.examples import (
    CONTRADICTION,
    ENTAILMENT,
    NEUTRAL,
    NLI_LABELS,
    PairExample,
    TripletExample,
    rescale,
)
from minisbert.data.fetch import MIRROR_ENV, OFFICIAL_BASE_URLS, fetch_datasets
from minisbert.data.files import read_examples, read_pairs, read_triplets
from minisbert.data.lines import DataError
from minisbert.data.loading import DATA_ENV, DATASETS, data_dir, data_folder, load_dataset
from minisbert.data.nli import nli_triplets, read_snli_jsonl, read_snli_lines
from minisbert.data.sts import read_sick, read_sick_entailment, read_stsb

__all__ = [
    "CONTRADICTION",
    "DATASETS",
    "DATA_ENV",
    "DataError",
    "ENTAILMENT",
    "MIRROR_ENV",
    "NEUTRAL",
    "NLI_LABELS",
    "OFFICIAL_BASE_URLS",
    "PairExample",
    "TripletExample",
    "data_dir",
    "data_folder",
    "fetch_datasets",
    "load_dataset",
    "nli_triplets",
    "read_examples",
    "read_pairs",
    "read_sick",
    "read_sick_entailment",
    "read_snli_jsonl",
    "read_snli_lines",
    "read_stsb",
    "read_triplets",
    "rescale",
]

"""Tests for minisbert.data: every reader on its format's quirks, errors that name file and
line, dataset loading by name, the real shared data's row counts, and the downloader
against a local HTTP server (no test touches the internet)."""

from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from minisbert.data import (
    CONTRADICTION,
    DATA_ENV,
    ENTAILMENT,
    MIRROR_ENV,
    NEUTRAL,
    NLI_LABELS,
    DataError,
    PairExample,
    TripletExample,
    data_dir,
    fetch_datasets,
    load_dataset,
    nli_triplets,
    read_examples,
    read_pairs,
    read_sick,
    read_sick_entailment,
    read_snli_jsonl,
    read_snli_lines,
    read_stsb,
    read_triplets,
    rescale,
)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_bytes(text.encode("utf-8"))  # no newline translation: CRLF stays CRLF
    else:
        path.write_bytes(text)
    return path


def tsv(*rows: tuple[object, ...], newline: str = "\n") -> str:
    return "".join("\t".join(str(f) for f in row) + newline for row in rows)


def raises_at(path: Path, line: int | None, match: str = "") -> Any:
    """Expect a DataError whose message starts at ``path:line`` (or ``path``), then ``match``."""
    prefix = f"{path}:{line}" if line is not None else str(path)
    return pytest.raises(DataError, match=rf"^{re.escape(prefix)}\b.*{match}")


# ---------------------------------------------------------------- STS Benchmark

# genre, file, year, id, score, sentence1, sentence2 [, source1, source2]
STS_ROWS = [
    tuple("main-captions MSRvid 2012test 0001 5.000".split())
    + ("A plane is taking off.", "An air plane is taking off."),
    tuple("main-news headlines 2016 0012 4".split())
    + ('He said "no way.', "He refused.", "Europe Media Monitor", "Europe Media Monitor"),
    tuple("main-forums answers 2015 0003 0.25".split()) + ("It's 5' tall", '"Quoted" all the way"'),
]


def test_stsb_quotes_and_extra_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "sts-train.csv", tsv(*STS_ROWS))
    examples = read_stsb(path)
    assert examples == [
        PairExample("A plane is taking off.", "An air plane is taking off.", 5.0),
        PairExample('He said "no way.', "He refused.", 4.0),
        PairExample("It's 5' tall", '"Quoted" all the way"', 0.25),
    ]


def test_stsb_normalize(tmp_path: Path) -> None:
    path = write(tmp_path / "sts.csv", tsv(*STS_ROWS))
    assert [e.label for e in read_stsb(path, normalize=True)] == [1.0, 0.8, 0.05]
    assert rescale(3.0, 1.0, 5.0) == 0.5


def test_stsb_crlf(tmp_path: Path) -> None:
    path = write(tmp_path / "sts.csv", tsv(*STS_ROWS, newline="\r\n"))
    assert read_stsb(path)[0].sentence2 == "An air plane is taking off."
    assert read_stsb(path)[1].sentence2 == "He refused."


def test_stsb_score_out_of_range(tmp_path: Path) -> None:
    rows = [STS_ROWS[0], STS_ROWS[0][:4] + ("7",) + STS_ROWS[0][5:]]
    path = write(tmp_path / "sts.csv", tsv(*rows))
    with raises_at(path, 2, r"7 is outside \[0, 5\]"):
        read_stsb(path)


def test_stsb_score_not_a_number(tmp_path: Path) -> None:
    rows = [STS_ROWS[0], STS_ROWS[0][:4] + ("high",) + STS_ROWS[0][5:]]
    path = write(tmp_path / "sts.csv", tsv(*rows))
    with raises_at(path, 2, "not a number"):
        read_stsb(path)


def test_stsb_rejects_header(tmp_path: Path) -> None:
    header = ("genre", "file", "year", "id", "score", "sentence1", "sentence2")
    path = write(tmp_path / "sts.csv", tsv(header, STS_ROWS[0]))
    with raises_at(path, 1, "header"):
        read_stsb(path)


@pytest.mark.parametrize("n_columns", [6, 8, 10])
def test_stsb_wrong_column_count(tmp_path: Path, n_columns: int) -> None:
    bad = (STS_ROWS[1] * 2)[:n_columns]
    path = write(tmp_path / "sts.csv", tsv(STS_ROWS[0], STS_ROWS[2], bad))
    with raises_at(path, 3, f"expected 7 or 9 tab-separated columns, found {n_columns}"):
        read_stsb(path)


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "sts.csv", "")
    with raises_at(path, None, "empty"):
        read_stsb(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "sts.csv"
    with raises_at(path, None, "not found"):
        read_stsb(path)


def test_invalid_utf8_names_line(tmp_path: Path) -> None:
    good = tsv(STS_ROWS[0]).encode()
    bad = tsv(STS_ROWS[2]).encode().replace(b"tall", b"t\xe9ll")  # latin-1 e-acute
    path = write(tmp_path / "sts.csv", good + good + bad)
    with raises_at(path, 3, "invalid UTF-8"):
        read_stsb(path)


def test_utf8_bom_and_non_ascii(tmp_path: Path) -> None:
    row = STS_ROWS[0][:5] + ("Café crème.", "Kaffee.")
    path = write(tmp_path / "sts.csv", b"\xef\xbb\xbf" + tsv(row).encode())
    assert read_stsb(path) == [PairExample("Café crème.", "Kaffee.", 5.0)]


# ---------------------------------------------------------------- SICK

SICK_HEADER = ("pair_ID", "sentence_A", "sentence_B", "relatedness_score", "entailment_judgment")
SICK_ROWS = [
    (1, "A dog runs", "A dog is running", "4.9", "ENTAILMENT"),
    (2, "A man sings", "Nobody sings", "3", "CONTRADICTION"),
    (3, 'A "quoted" cat', "A cat", "1.0", "NEUTRAL"),
]


def test_sick_crlf_relatedness_and_entailment(tmp_path: Path) -> None:
    path = write(tmp_path / "SICK_train.txt", tsv(SICK_HEADER, *SICK_ROWS, newline="\r\n"))
    assert read_sick(path) == [
        PairExample("A dog runs", "A dog is running", 4.9),
        PairExample("A man sings", "Nobody sings", 3.0),
        PairExample('A "quoted" cat', "A cat", 1.0),
    ]
    assert [e.label for e in read_sick(path, normalize=True)] == pytest.approx([0.975, 0.5, 0.0])
    assert [e.label for e in read_sick_entailment(path)] == [ENTAILMENT, CONTRADICTION, NEUTRAL]


def test_sick_columns_found_by_name(tmp_path: Path) -> None:
    header = ("pair_ID", "entailment_judgment", "sentence_A", "relatedness_score", "sentence_B")
    header += ("x",)
    row = (1, "NEUTRAL", "first", "2.5", "second", "extra")
    path = write(tmp_path / "SICK.txt", tsv(header, row))
    assert read_sick(path) == [PairExample("first", "second", 2.5)]


def test_sick_missing_header(tmp_path: Path) -> None:
    path = write(tmp_path / "SICK_trial.txt", tsv(*SICK_ROWS))
    with raises_at(path, 1, "header lacks"):
        read_sick(path)


def test_sick_header_only(tmp_path: Path) -> None:
    path = write(tmp_path / "SICK_trial.txt", tsv(SICK_HEADER))
    with raises_at(path, None, "no rows"):
        read_sick(path)


def test_sick_bad_entailment_label(tmp_path: Path) -> None:
    rows = [SICK_ROWS[0], SICK_ROWS[1][:4] + ("MAYBE",)]
    path = write(tmp_path / "SICK_trial.txt", tsv(SICK_HEADER, *rows))
    with raises_at(path, 3, "'MAYBE' is not one of entailment, neutral, contradiction"):
        read_sick_entailment(path)


def test_sick_relatedness_out_of_range(tmp_path: Path) -> None:
    rows = [SICK_ROWS[0], SICK_ROWS[1][:3] + ("0.5", "NEUTRAL")]
    path = write(tmp_path / "SICK_trial.txt", tsv(SICK_HEADER, *rows))
    with raises_at(path, 3, r"0.5 is outside \[1, 5\]"):
        read_sick(path)


def test_sick_wrong_column_count(tmp_path: Path) -> None:
    path = write(tmp_path / "SICK_trial.txt", tsv(SICK_HEADER, SICK_ROWS[0], SICK_ROWS[1][:4]))
    with raises_at(path, 3, "expected 5 tab-separated columns, found 4"):
        read_sick(path)


# ---------------------------------------------------------------- SNLI

SNLI = [  # (premise, hypothesis, gold_label)
    ("Two dogs play .", "Animals play .", "entailment"),
    ("Two dogs play .", "Dogs sleep .", "contradiction"),
    ("Two dogs play .", "Dogs play fetch .", "neutral"),
    ("A man cooks .", "A chef cooks .", "-"),
    ("A man cooks .", "A man makes food .", "entailment"),
    ("A man cooks .", "Nobody cooks .", "contradiction"),
    ("A man cooks .", "A woman sleeps .", "contradiction"),
    ("A man cooks .", "A person cooks .", "entailment"),
    ("Kids run .", "Kids move .", "entailment"),
]
SNLI_EXPECTED = [PairExample(p, h, NLI_LABELS.index(y)) for p, h, y in SNLI if y != "-"]


def snli_jsonl(rows: list[tuple[str, str, str]]) -> str:
    return "".join(
        json.dumps({"sentence1": p, "sentence2": h, "gold_label": y, "pairID": str(i)}) + "\n"
        for i, (p, h, y) in enumerate(rows)
    )


def snli_lines(folder: Path, rows: list[tuple[str, str, str]], split: str = "dev") -> None:
    for name, column in (("s1", 0), ("s2", 1), ("labels", 2)):
        # The shared copy has a trailing space after each tokenized sentence.
        write(folder / f"{name}.{split}", "".join(r[column] + " \n" for r in rows))


def test_label_order_is_fixed() -> None:
    assert NLI_LABELS == ("entailment", "neutral", "contradiction")
    assert (ENTAILMENT, NEUTRAL, CONTRADICTION) == (0, 1, 2)


def test_snli_jsonl_drops_no_gold_label(tmp_path: Path) -> None:
    path = write(tmp_path / "snli_1.0_dev.jsonl", snli_jsonl(SNLI))
    assert read_snli_jsonl(path) == SNLI_EXPECTED
    assert len(SNLI_EXPECTED) == len(SNLI) - 1


def test_snli_line_aligned_equals_jsonl(tmp_path: Path) -> None:
    snli_lines(tmp_path, SNLI)
    pairs = read_snli_lines(tmp_path / "s1.dev", tmp_path / "s2.dev", tmp_path / "labels.dev")
    assert pairs == SNLI_EXPECTED


def test_snli_jsonl_bad_label(tmp_path: Path) -> None:
    path = write(tmp_path / "snli.jsonl", snli_jsonl([*SNLI[:2], ("a", "b", "maybe")]))
    with raises_at(path, 3, "'maybe' is not one of"):
        read_snli_jsonl(path)


def test_snli_jsonl_bad_json(tmp_path: Path) -> None:
    path = write(tmp_path / "snli.jsonl", snli_jsonl(SNLI[:1]) + '{"sentence1": "a",\n')
    with raises_at(path, 2, "not a JSON object"):
        read_snli_jsonl(path)


def test_snli_jsonl_missing_field(tmp_path: Path) -> None:
    path = write(tmp_path / "snli.jsonl", snli_jsonl(SNLI[:1]) + '{"sentence1": "a"}\n')
    with raises_at(path, 2, "missing field.*sentence2"):
        read_snli_jsonl(path)


def test_snli_lines_bad_label(tmp_path: Path) -> None:
    snli_lines(tmp_path, [*SNLI[:3], ("a", "b", "maybe")])
    with raises_at(tmp_path / "labels.dev", 4, "'maybe'"):
        read_snli_lines(tmp_path / "s1.dev", tmp_path / "s2.dev", tmp_path / "labels.dev")


def test_snli_lines_length_mismatch(tmp_path: Path) -> None:
    snli_lines(tmp_path, SNLI)
    write(tmp_path / "s2.dev", "only one line\n")
    with pytest.raises(DataError, match=r"s2\.dev: 1 lines"):
        read_snli_lines(tmp_path / "s1.dev", tmp_path / "s2.dev", tmp_path / "labels.dev")


def test_nli_triplets_first_candidate_in_file_order() -> None:
    triplets = nli_triplets(SNLI_EXPECTED)
    assert triplets == [
        TripletExample("Two dogs play .", "Animals play .", "Dogs sleep ."),
        TripletExample("A man cooks .", "A man makes food .", "Nobody cooks ."),
    ]  # "Kids run ." has no contradiction and gives none


# ---------------------------------------------------------------- generic files


def test_csv_pairs_with_quoting(tmp_path: Path) -> None:
    text = 'sentence1,sentence2,score\n"Hello, world",Hi,4.5\nA "b" c,d,5\n'
    path = write(tmp_path / "pairs.csv", text)
    assert read_pairs(path) == [
        PairExample("Hello, world", "Hi", 4.5),
        PairExample('A "b" c', "d", 5.0),  # "5" beside "4.5" is a float score
    ]


def test_csv_multiline_field_keeps_row_numbers(tmp_path: Path) -> None:
    text = 'sentence1,sentence2,label\n"two\nlines",x,1\ny,z,maybe\n'
    path = write(tmp_path / "pairs.csv", text)
    with raises_at(path, 4, "'maybe' is neither a number nor an NLI label"):
        read_pairs(path)


def test_tsv_pairs_aliases_nli_labels_and_no_gold(tmp_path: Path) -> None:
    rows = [
        ("Sentence_A", "Sentence_B", "gold_label"),
        ("p", "h", "ENTAILMENT"),
        ("p", "h2", "-"),
        ('q "x', "h3", "contradiction"),
    ]
    path = write(tmp_path / "pairs.tsv", tsv(*rows, newline="\r\n"))
    assert read_pairs(path) == [PairExample("p", "h", 0), PairExample('q "x', "h3", 2)]


def test_int_labels_stay_int(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.tsv", tsv(("s1", "s2", "label"), ("a", "b", 1), ("c", "d", 0)))
    labels = [e.label for e in read_pairs(path)]
    assert labels == [1, 0] and all(isinstance(y, int) for y in labels)


def test_unlabelled_pairs(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.tsv", tsv(("anchor_text", "other"), ("a", "b")))
    with pytest.raises(DataError, match=r"pairs\.tsv:1.*no sentence1, sentence2 column"):
        read_pairs(path)
    assert read_pairs(path, columns=("anchor_text", "other")) == [PairExample("a", "b", None)]


def test_columns_named_by_caller_and_headerless(tmp_path: Path) -> None:
    path = write(tmp_path / "qa.tsv", tsv(("id", "q", "a", "rel"), (7, "why", "because", 0.5)))
    assert read_pairs(path, columns=("q", "a", "rel")) == [PairExample("why", "because", 0.5)]
    with pytest.raises(DataError, match=r"no column\(s\) \['question'\]"):
        read_pairs(path, columns=("question", "a"))
    bare = write(tmp_path / "bare.tsv", tsv(("x", "y", "3"), ("u", "v", "2")))
    assert read_pairs(bare, header=False) == [PairExample("x", "y", 3), PairExample("u", "v", 2)]
    assert read_pairs(bare, header=False, columns=(1, 0)) == [
        PairExample("y", "x"),
        PairExample("v", "u"),
    ]


def test_generic_wrong_column_count(tmp_path: Path) -> None:
    rows = [("anchor", "positive", "negative"), ("a", "p", "n"), ("a", "p")]
    path = write(tmp_path / "t.tsv", tsv(*rows))
    with raises_at(path, 3, "expected 3 columns like the header, found 2"):
        read_triplets(path)


def test_generic_header_only(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "sentence1,sentence2\n\n")
    with raises_at(path, None, "no rows after the header"):
        read_pairs(path)


def test_jsonl_pairs_and_triplets(tmp_path: Path) -> None:
    pairs = write(
        tmp_path / "pairs.jsonl",
        '{"sentence1": "a", "sentence2": "b", "label": 0.5}\n\n'
        '{"sentence1": "c", "sentence2": "d", "label": 1}\n',
    )
    assert read_pairs(pairs) == [PairExample("a", "b", 0.5), PairExample("c", "d", 1.0)]
    triplets = write(
        tmp_path / "triplets.jsonl", '{"anchor": "a", "positive": "p", "negative": "n"}\n'
    )
    assert read_triplets(triplets) == [TripletExample("a", "p", "n")]
    assert read_examples(triplets) == [TripletExample("a", "p", "n")]
    assert read_examples(pairs) == read_pairs(pairs)


def test_jsonl_errors_name_line(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", '{"anchor": "a", "positive": "p", "negative": "n"}\n[1]\n')
    with raises_at(path, 2, "expected a JSON object"):
        read_triplets(path)
    path = write(
        tmp_path / "u.jsonl",
        '{"anchor": "a", "positive": "p", "negative": "n"}\n'
        '{"anchor": "a", "positive": 3, "negative": "n"}\n',
    )
    with raises_at(path, 2, "'positive' should be text"):
        read_triplets(path)
    path = write(
        tmp_path / "v.jsonl",
        '{"sentence1": "a", "sentence2": "b", "label": 1}\n{"sentence1": "a", "sentence2": "b"}\n',
    )
    with raises_at(path, 2, "missing field 'label'"):
        read_pairs(path)


# ---------------------------------------------------------------- data_dir and load_dataset


def test_data_dir_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path))  # no data in the cache's data/ either
    with pytest.raises(DataError, match="MINISBERT_DATA is not set.*minisbert data fetch"):
        data_dir()
    with pytest.raises(DataError, match="MINISBERT_DATA is not set"):
        load_dataset("stsb", split="dev")


def test_data_dir_not_a_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "missing"))
    with pytest.raises(DataError, match="is not a folder"):
        data_dir()
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_dir() == tmp_path


def make_data_folder(root: Path) -> Path:
    write(root / "stsbenchmark" / "sts-dev.csv", tsv(*STS_ROWS))
    write(root / "sick" / "SICK_trial.txt", tsv(SICK_HEADER, *SICK_ROWS, newline="\r\n"))
    snli_lines(root / "snli", SNLI)
    return root


def test_load_dataset_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_ENV, str(make_data_folder(tmp_path)))
    assert [e.label for e in load_dataset("stsb", split="dev", normalize=True)] == [1.0, 0.8, 0.05]
    assert len(load_dataset("sick", split="trial")) == 3
    assert load_dataset("sick", split="dev") == load_dataset("sick", split="trial")
    assert [e.label for e in load_dataset("sick-nli", split="dev")] == [0, 2, 1]
    assert load_dataset("snli", split="dev") == SNLI_EXPECTED
    assert len(load_dataset("snli-triplets", split="dev")) == 2
    # The official jsonl wins over the line-aligned copy when both are there.
    write(tmp_path / "snli" / "snli_1.0_dev.jsonl", snli_jsonl(SNLI[:1]))
    assert load_dataset("snli", split="dev") == SNLI_EXPECTED[:1]


def test_load_dataset_errors(tmp_path: Path) -> None:
    make_data_folder(tmp_path)
    with pytest.raises(DataError, match="unknown dataset 'xnli'"):
        load_dataset("xnli", root=tmp_path)
    with pytest.raises(DataError, match="has no split 'validation'"):
        load_dataset("stsb", split="validation", root=tmp_path)
    missing = tmp_path / "stsbenchmark" / "sts-train.csv"
    with raises_at(missing, None, "not found; fill .*minisbert data fetch --dest .*fetch_datasets"):
        load_dataset("stsb", split="train", root=tmp_path)
    with pytest.raises(DataError, match=r"snli_1\.0_test\.jsonl: file not found; neither"):
        load_dataset("snli", split="test", root=tmp_path)


def test_load_dataset_from_file(tmp_path: Path) -> None:
    path = write(tmp_path / "mine.csv", "anchor,positive,negative\na,p,n\n")
    assert load_dataset(str(path)) == [TripletExample("a", "p", "n")]


# ---------------------------------------------------------------- the real shared data


def test_real_stsb_row_counts(data_dir: Path) -> None:
    for split, rows in (("train", 5749), ("dev", 1500), ("test", 1379)):
        examples = load_dataset("stsb", split=split, root=data_dir)
        assert len(examples) == rows
        assert all(0.0 <= e.label <= 5.0 for e in examples)
        assert not any("Europe Media Monitor" in e.sentence2 for e in examples)  # source notes
    normalized = load_dataset("stsb", split="dev", root=data_dir, normalize=True)
    assert max(e.label for e in normalized) == 1.0


def test_real_sick_row_counts(data_dir: Path) -> None:
    assert len(load_dataset("sick", split="train", root=data_dir)) == 4500
    assert len(load_dataset("sick", split="trial", root=data_dir)) == 500
    labels = Counter(e.label for e in load_dataset("sick-nli", split="train", root=data_dir))
    assert labels == {NEUTRAL: 2536, ENTAILMENT: 1299, CONTRADICTION: 665}


def test_real_snli_dev(data_dir: Path) -> None:
    pairs = load_dataset("snli", split="dev", root=data_dir)
    assert len(pairs) == 9842
    assert Counter(e.label for e in pairs) == {ENTAILMENT: 3329, NEUTRAL: 3235, CONTRADICTION: 3278}
    assert not any(e.sentence1.endswith(" ") for e in pairs)
    triplets = load_dataset("snli-triplets", split="dev", root=data_dir)
    assert len({t.anchor for t in triplets}) == len(triplets) > 2900


# ---------------------------------------------------------------- the downloader


def tar_gz(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buffer.getvalue()


def build_mirror(root: Path) -> None:
    """Small archives laid out like the official ones, under root/{stsb,sick,snli}/."""
    sts = {f"stsbenchmark/sts-{s}.csv": tsv(*STS_ROWS) for s in ("train", "dev", "test")}
    sts["stsbenchmark/readme.txt"] = "readme"
    sts["stsbenchmark/correlation.pl"] = "not kept"
    write(root / "stsb" / "Stsbenchmark.tar.gz", tar_gz(sts))
    for split in ("train", "trial", "test_annotated"):
        files = {f"SICK_{split}.txt": tsv(SICK_HEADER, *SICK_ROWS, newline="\r\n")}
        write(root / "sick" / f"sick_{split}.zip", zip_bytes(files))
    snli = {f"snli_1.0/snli_1.0_{s}.jsonl": snli_jsonl(SNLI) for s in ("train", "dev", "test")}
    snli["__MACOSX/snli_1.0/snli_1.0_dev.jsonl"] = "resource fork, not JSON"
    snli["snli_1.0/snli_1.0_dev.txt"] = "not kept"
    write(root / "snli" / "snli_1.0.zip", zip_bytes(snli))


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served_folder) -> str:
    """A local HTTP server serving tmp_path/mirror: its base URL."""
    # Were any code path to fall back to the official URLs, send it to a closed local port.
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9/")
    mirror = tmp_path / "mirror"
    build_mirror(mirror)
    return served_folder(mirror)


def hidden_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


def test_fetch_all_then_read(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    base_urls = {name: f"{server}/{name}/" for name in ("stsb", "sick", "snli")}
    fetched = fetch_datasets(dest, base_urls=base_urls)
    assert sorted(fetched) == ["sick", "snli", "stsb"]
    assert all(p.is_file() for paths in fetched.values() for p in paths)
    assert sorted(p.name for p in (dest / "stsbenchmark").iterdir()) == [
        "readme.txt",
        "sts-dev.csv",
        "sts-test.csv",
        "sts-train.csv",
    ]
    assert sorted(p.name for p in (dest / "snli").iterdir()) == [
        "snli_1.0_dev.jsonl",
        "snli_1.0_test.jsonl",
        "snli_1.0_train.jsonl",
    ]
    assert hidden_files(dest) == []  # no temporary files left behind
    assert len(load_dataset("stsb", split="test", root=dest)) == 3
    assert load_dataset("sick", split="test", root=dest) == load_dataset("sick", root=dest)
    assert load_dataset("snli", split="dev", root=dest) == SNLI_EXPECTED


def test_fetch_with_mirror_env(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIRROR_ENV, f"{server}/sick")
    fetched = fetch_datasets(tmp_path / "data", names=["sick"])
    assert [p.name for p in fetched["sick"]] == [
        "SICK_train.txt",
        "SICK_trial.txt",
        "SICK_test_annotated.txt",
    ]
    assert not (tmp_path / "data" / "stsbenchmark").exists()


def test_fetch_skips_present_and_force_refetches(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    fetch_datasets(dest, names=["stsb"], base_urls=f"{server}/stsb")
    train = dest / "stsbenchmark" / "sts-train.csv"
    train.write_text("edited")
    fetch_datasets(dest, names=["stsb"], base_urls=f"{server}/nowhere")  # present: no download
    assert train.read_text() == "edited"
    fetch_datasets(dest, names=["stsb"], base_urls=f"{server}/stsb", force=True)
    assert len(read_stsb(train)) == 3


def test_fetch_http_error_names_url(server: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"could not download {server}/x/snli_1\.0\.zip.*MIRROR"):
        fetch_datasets(tmp_path / "data", names=["snli"], base_urls={"snli": f"{server}/x"})
    assert hidden_files(tmp_path / "data") == []


def test_fetch_archive_lacking_files(server: str, tmp_path: Path) -> None:
    write(tmp_path / "mirror" / "bad" / "Stsbenchmark.tar.gz", tar_gz({"readme.txt": "hi"}))
    with pytest.raises(DataError, match="did not contain sts-train.csv, sts-dev.csv, sts-test.csv"):
        fetch_datasets(tmp_path / "data", names=["stsb"], base_urls=f"{server}/bad")


def test_fetch_corrupt_archive(server: str, tmp_path: Path) -> None:
    write(tmp_path / "mirror" / "bad" / "snli_1.0.zip", b"this is not an archive")
    with pytest.raises(DataError, match=r"snli_1\.0\.zip: not a readable zip or tar archive"):
        fetch_datasets(tmp_path / "data", names=["snli"], base_urls=f"{server}/bad")
    assert hidden_files(tmp_path / "data") == []


def test_fetch_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot fetch \\['xnli'\\]"):
        fetch_datasets(tmp_path, names=["xnli"])

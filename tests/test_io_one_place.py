"""One place per I/O job: the atomic writer, the flat-parameter reader and writer, the
modules.json reader, the cache folder and the softmax classifier's files are each written
once, and every caller goes through them."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tiny import TINY_CONFIG, make_tiny_model_dir

from minisbert.cli import main
from minisbert.config import ConfigError, SentenceConfig
from minisbert.io import cache, hub, manifest
from minisbert.io.classifier import ClassifierError, load_classifier, save_classifier
from minisbert.io.convert import read_sentence_transformers_pipeline
from minisbert.io.hub import FetchError
from minisbert.io.manifest import atomic_file, write_atomic
from minisbert.io.modules_json import read_modules
from minisbert.io.weights import WeightsError, flat_params, load_params, save_params
from minisbert.losses import SoftmaxClassifier
from minisbert.optimizer import make_optimizer
from minisbert.sentence_encoder import SentenceModel

# ---------------------------------------------------------------- the atomic writer


def test_a_failed_atomic_file_leaves_the_old_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"), atomic_file(path) as f:
        f.write(b"half of the new")
        raise OSError("disk full")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # the temporary file went too


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGKILL on Windows")
def test_a_killed_atomic_file_leaves_the_old_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    code = (
        "import os, signal, sys\n"
        "from minisbert.io.manifest import atomic_file\n"
        "with atomic_file(sys.argv[1]) as f:\n"
        "    f.write(b'half of the new'); f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert path.read_bytes() == b"old"
    left = [p.name for p in tmp_path.iterdir() if p != path]
    assert len(left) == 1 and left[0].startswith(".out.bin.") and left[0].endswith(".tmp")


def test_a_finished_atomic_file_is_whole_and_readable(tmp_path):
    path = tmp_path / "sub" / "out.bin"  # the folder is made
    with atomic_file(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == 0o644  # an ordinary file, not mkstemp's 0600
    assert os.listdir(path.parent) == ["out.bin"]


@pytest.fixture
def opened(monkeypatch) -> list[Path]:
    """Every path given to ``atomic_file``, wherever it is called from; the real writer runs."""
    paths: list[Path] = []
    real = manifest.atomic_file

    @contextlib.contextmanager
    def spy(path):
        paths.append(Path(path))
        with real(path) as f:
            yield f

    monkeypatch.setattr(manifest, "atomic_file", spy)
    monkeypatch.setattr("minisbert.data.fetch.atomic_file", spy)
    return paths


def test_write_atomic_goes_through_atomic_file(tmp_path, opened):
    write_atomic(tmp_path / "a.json", "{}")
    assert opened == [tmp_path / "a.json"] and (tmp_path / "a.json").read_text() == "{}"


def test_dataset_files_go_through_atomic_file(tmp_path, opened):
    from minisbert.data import fetch_datasets, load_dataset

    served = tmp_path / "served"
    served.mkdir()
    rows = "main-captions\tMSRvid\t2012test\t0001\t5.000\tA plane takes off.\tA jet takes off.\n"
    with tarfile.open(served / "Stsbenchmark.tar.gz", "w:gz") as tf:
        for name in ("sts-train.csv", "sts-dev.csv", "sts-test.csv", "readme.txt"):
            data = rows.encode()
            info = tarfile.TarInfo(f"stsbenchmark/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    dest = tmp_path / "data"
    fetch_datasets(dest, names=["stsb"], base_urls=served.as_uri() + "/")
    folder = dest / "stsbenchmark"
    names = ("sts-train.csv", "sts-dev.csv", "sts-test.csv", "readme.txt")
    assert sorted(opened) == sorted(folder / name for name in names)
    assert load_dataset("stsb", "dev", root=dest)[0].label == 5.0
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


def test_encode_writes_its_array_through_atomic_file(tmp_path, opened, capsys):
    model = make_tiny_model_dir(tmp_path / "tiny")
    opened.clear()  # the model's own files
    lines = tmp_path / "lines.txt"
    lines.write_text("the cat\n\na dog\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    assert main(["encode", str(lines), "-o", str(out), "--model", str(model)]) == 0
    assert opened == [out]
    assert np.load(out).shape == (3, 36)


# ---------------------------------------------------------------- flat parameters


def tiny_model(seed: int) -> SentenceModel:
    return SentenceModel(TINY_CONFIG, SentenceConfig(32), rngs=nnx.Rngs(seed))


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].shape == b[name].shape and a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_flat_params_round_trip_a_model_and_its_optimizer(tmp_path):
    model = tiny_model(0)
    optimizer = nnx.Optimizer(model, make_optimizer(1e-3, 10), wrt=nnx.Param)
    grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
    update = nnx.jit(lambda optimizer, model, grads: optimizer.update(model, grads))
    update(optimizer, model, grads)  # Adam's moments and step counts are no longer zero
    save_params(model, tmp_path / "params.safetensors")
    save_params(optimizer, tmp_path / "optimizer.safetensors", ...)

    other = tiny_model(1)
    other_optimizer = nnx.Optimizer(other, make_optimizer(1e-3, 10), wrt=nnx.Param)
    load_params(other, tmp_path / "params.safetensors")
    load_params(other_optimizer, tmp_path / "optimizer.safetensors", ...)
    assert_same(flat_params(other), flat_params(model))
    saved = flat_params(optimizer, ...)
    assert_same(flat_params(other_optimizer, ...), saved)
    assert int(saved["step"]) == 1 and saved["step"].shape == ()  # a scalar comes back 0-d
    assert any(name.startswith("opt_state.") and ".mu." in name for name in saved)


def test_the_one_reader_refuses_a_file_of_another_shape_from_its_header(tmp_path):
    save_params(tiny_model(0).bert, tmp_path / "model.safetensors")
    classifier = SoftmaxClassifier(36, 3, rngs=nnx.Rngs(0))
    with pytest.raises(WeightsError, match="missing tensor 'linear.bias'"):
        load_params(classifier, tmp_path / "model.safetensors")
    optimizer = nnx.Optimizer(classifier, make_optimizer(1e-3, 10), wrt=nnx.Param)
    save_params(classifier, tmp_path / "head.safetensors")
    with pytest.raises(WeightsError, match="missing tensor 'opt_state"):
        load_params(optimizer, tmp_path / "head.safetensors", ...)


# ---------------------------------------------------------------- modules.json

UNSAFE_OR_DAMAGED = [
    ('[{"path": "../x", "type": "Pooling"}]', "names an unsafe folder in entry 0: '../x' climbs"),
    ('[{"path": "/x", "type": "Pooling"}]', "names an unsafe folder in entry 0: '/x' is an abs"),
    ('[{"path": "", "type": "T"}, {"path": "a/../../x", "type": "Pooling"}]', "entry 1: 'a/"),
    ('[{"path": 3, "type": "Pooling"}]', "unsafe folder in entry 0: 3 is not a folder name"),
    ('{"path": "", "type": "Transformer"}', "expected a list of modules"),
    ("[]", "expected a list of modules"),
    ('[{"path": ""}]', r"expected a list of modules, .*entry 0 is \{\"path\": \"\"\}"),
    ('[{"path": "", "type": 3}]', "expected a list of modules"),
    ("[{", "not valid JSON"),
]


@pytest.mark.parametrize(("content", "message"), UNSAFE_OR_DAMAGED)
def test_convert_reads_modules_json_through_the_one_reader(tmp_path, content, message):
    (tmp_path / "modules.json").write_text(content)
    with pytest.raises(ConfigError, match=message) as err:
        read_sentence_transformers_pipeline(tmp_path)
    assert str(err.value).startswith(str(tmp_path / "modules.json"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("content", "message"), UNSAFE_OR_DAMAGED)
def test_hub_reads_modules_json_through_the_one_reader(tmp_path, content, message):
    (tmp_path / "modules.json").write_text(content)
    with pytest.raises(FetchError, match=message) as err:
        hub.read_pipeline(tmp_path, "acme/tiny")
    assert str(err.value).startswith("acme/tiny: modules.json")  # not the temporary copy's path
    assert "\n" not in str(err.value)


def test_a_good_modules_json_reads_as_kinds_and_subfolders(tmp_path):
    st = "sentence_transformers.models."
    modules = [{"idx": 0, "path": "", "type": st + "Transformer"},
               {"idx": 1, "path": "1_Pooling", "type": st + "Pooling"}]  # fmt: skip
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    pipeline = [("Transformer", ""), ("Pooling", "1_Pooling")]
    assert hub.read_pipeline(tmp_path, "acme/tiny") == pipeline
    assert read_modules(tmp_path) == pipeline


# ---------------------------------------------------------------- the cache folder


def test_one_cache_folder_for_models_data_and_lessons(tmp_path, monkeypatch):
    import minisbert.data.loading
    import minisbert.io.fetch
    import minisbert.lesson

    for module in (minisbert.io.fetch, minisbert.data.loading, minisbert.lesson):
        assert module.cache_dir is cache.cache_dir, module.__name__
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path))
    monkeypatch.delenv("MINISBERT_DATA", raising=False)
    assert minisbert.data.loading.data_folder() == tmp_path / "data"
    monkeypatch.setenv("MINISBERT_CACHE", "")  # set but empty: the default, not the cwd
    assert cache.cache_dir() == Path.home() / ".cache" / "minisbert"


# ---------------------------------------------------------------- the softmax classifier


def test_a_classifier_round_trips(tmp_path):
    classifier = SoftmaxClassifier(36, 4, concat=("u", "v", "mul"), rngs=nnx.Rngs(3))
    assert save_classifier(tmp_path, classifier) == ["classifier.safetensors", "classifier.json"]
    loaded = load_classifier(tmp_path, 36)
    assert loaded.concat == ("u", "v", "mul") and loaded.linear.out_features == 4
    assert_same(flat_params(loaded), flat_params(classifier))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[3]", "a JSON list"),
        ('{"num_labels": "3", "concat": ["u", "v"]}', 'num_labels "3" is not a whole number >= 2'),
        ('{"num_labels": 1, "concat": ["u", "v"]}', "num_labels 1 is not"),
        ('{"num_labels": true, "concat": ["u", "v"]}', "num_labels true is not"),
        ('{"concat": ["u", "v"]}', "num_labels null is not"),
        ('{"num_labels": 3, "concat": "u"}', 'concat "u" is not a list of distinct names'),
        ('{"num_labels": 3, "concat": ["u", "w"]}', "concat .* from u, v, abs_diff, mul"),
        ('{"num_labels": 3, "concat": []}', "concat \\[\\] is not"),
        ('{"num_labels": 3, "concat": ["u", "u"]}', "not a list of distinct names"),
        ('{"num_labels": 3, "concat": [{"a": 1}]}', "not a list of distinct names"),
    ],
)
def test_a_damaged_classifier_json_is_one_line(tmp_path, content, message):
    save_classifier(tmp_path, SoftmaxClassifier(36, 3, rngs=nnx.Rngs(0)))
    (tmp_path / "classifier.json").write_text(content)
    with pytest.raises(ClassifierError, match=message) as err:
        load_classifier(tmp_path, 36)
    assert str(err.value).startswith(str(tmp_path / "classifier.json"))
    assert "\n" not in str(err.value)


def test_a_missing_or_unfitting_classifier_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="only a `minisbert train --loss softmax` run"):
        load_classifier(tmp_path, 36)
    save_classifier(tmp_path, SoftmaxClassifier(36, 3, rngs=nnx.Rngs(0)))
    with pytest.raises(WeightsError, match="classifier.safetensors: tensor 'linear.kernel'"):
        load_classifier(tmp_path, 24)  # another encoder's width
    (tmp_path / "classifier.json").unlink()
    os.mkfifo(tmp_path / "classifier.json")  # never waits for a writer
    with pytest.raises(ClassifierError, match="named pipe"):
        load_classifier(tmp_path, 36)


def test_eval_nli_says_what_is_wrong_with_classifier_json_in_one_line(tmp_path, capsys):
    model = make_tiny_model_dir(tmp_path / "tiny")
    save_classifier(model, SoftmaxClassifier(36, 3, rngs=nnx.Rngs(0)))
    (model / "classifier.json").write_text('{"num_labels": 3}')
    data = tmp_path / "nli.tsv"
    data.write_text("sentence1\tsentence2\tlabel\nthe cat\ta dog\t0\n", encoding="utf-8")
    assert main(["eval", "nli", "--model", str(model), "--data", str(data)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("minisbert eval: error: ") and "classifier.json" in err
    assert "concat null is not a list" in err and len(err.splitlines()) == 1

"""Conversion between sentence-transformers/HF BERT folders and minisbert's format."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tiny import make_tiny_model_dir

from minisbert import SentenceEncoder
from minisbert.config import ConfigError
from minisbert.io.convert import POOLER_FILE, convert, export_sentence_transformers
from minisbert.io.weights import WeightsError

SENTENCES = ["the cat sat on the mat", "a dog runs", "", "dogs running on mats!"]


@pytest.fixture
def tiny(tmp_path):
    return make_tiny_model_dir(tmp_path / "tiny", pooling="mean", normalize=True)


def test_round_trip_through_sentence_transformers_layout(tiny, tmp_path):
    st_dir = export_sentence_transformers(tiny, tmp_path / "st")
    assert json.loads((st_dir / "modules.json").read_text())[-1]["path"] == "2_Normalize"
    back = convert(st_dir, tmp_path / "back")
    a = load_file(str(tiny / "model.safetensors"))
    b = load_file(str(back / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(
        SentenceEncoder.from_pretrained(tiny).encode(SENTENCES),
        SentenceEncoder.from_pretrained(back).encode(SENTENCES),
    )


def test_linear_weights_are_transposed(tiny, tmp_path):
    st_dir = export_sentence_transformers(tiny, tmp_path / "st")
    ours = load_file(str(tiny / "model.safetensors"))
    theirs = load_file(str(st_dir / "model.safetensors"))
    kernel = ours["layers.0.intermediate.kernel"]  # (D, F) = (36, 50)
    weight = theirs["encoder.layer.0.intermediate.dense.weight"]  # (F, D) = (50, 36)
    assert kernel.shape == (36, 50) and weight.shape == (50, 36)
    np.testing.assert_array_equal(kernel.T, weight)


def _damage(st_dir, edit):
    tensors = load_file(str(st_dir / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(st_dir / "model.safetensors"))


def test_missing_tensor_is_named(tiny, tmp_path):
    st_dir = export_sentence_transformers(tiny, tmp_path / "st")
    _damage(st_dir, lambda t: t.pop("encoder.layer.1.output.dense.bias"))
    with pytest.raises(WeightsError, match=r"missing tensor 'encoder.layer.1.output.dense.bias'"):
        convert(st_dir, tmp_path / "out")


def test_wrong_shape_is_named(tiny, tmp_path):
    st_dir = export_sentence_transformers(tiny, tmp_path / "st")
    _damage(
        st_dir,
        lambda t: t.update(
            {"encoder.layer.0.attention.self.query.weight": np.zeros((36, 35), np.float32)}
        ),
    )
    with pytest.raises(WeightsError, match=r"layers.0.attention.query.kernel.*shape"):
        convert(st_dir, tmp_path / "out")


def test_unexpected_tensor_is_named(tiny, tmp_path):
    st_dir = export_sentence_transformers(tiny, tmp_path / "st")
    _damage(st_dir, lambda t: t.update({"classifier.weight": np.zeros((2, 36), np.float32)}))
    with pytest.raises(WeightsError, match=r"unexpected tensor 'classifier.weight'"):
        convert(st_dir, tmp_path / "out")


def test_position_ids_are_dropped_and_a_zero_pooler_is_none(tiny, tmp_path):
    st_dir = export_sentence_transformers(tiny, tmp_path / "st")
    _damage(
        st_dir,
        lambda t: t.update(
            {
                "pooler.dense.weight": np.zeros((36, 36), np.float32),
                "embeddings.position_ids": np.arange(64)[None],
            }
        ),
    )
    out = convert(st_dir, tmp_path / "out")  # no error: both are known
    assert not (out / POOLER_FILE).exists()  # all zeros: nothing trained to keep


def test_the_checkpoints_pooler_is_kept_apart_and_exported_back(tiny, tmp_path):
    st_dir = export_sentence_transformers(tiny, tmp_path / "st")
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(36, 36)).astype(np.float32)  # (out, in), as PyTorch keeps it
    bias = rng.normal(size=36).astype(np.float32)
    _damage(st_dir, lambda t: t.update({"pooler.dense.weight": weight, "pooler.dense.bias": bias}))
    out = convert(st_dir, tmp_path / "out")
    kept = load_file(str(out / POOLER_FILE))
    np.testing.assert_array_equal(kept["pooler.kernel"], weight.T)  # (in, out)
    np.testing.assert_array_equal(kept["pooler.bias"], bias)
    assert not any("pooler" in name for name in load_file(str(out / "model.safetensors")))
    again = load_file(
        str(export_sentence_transformers(out, tmp_path / "st2") / "model.safetensors")
    )
    np.testing.assert_array_equal(again["pooler.dense.weight"], weight)
    np.testing.assert_array_equal(again["pooler.dense.bias"], bias)


def test_a_kept_pooler_of_the_wrong_shape_is_refused(tiny, tmp_path):
    save_file({"pooler.kernel": np.ones((36, 35), np.float32),
               "pooler.bias": np.ones(36, np.float32)}, str(tiny / POOLER_FILE))  # fmt: skip
    with pytest.raises(WeightsError, match="pooler.kernel"):
        export_sentence_transformers(tiny, tmp_path / "st")


def test_pickle_only_folder_is_refused(tiny, tmp_path):
    st_dir = export_sentence_transformers(tiny, tmp_path / "st")
    (st_dir / "model.safetensors").rename(st_dir / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="pytorch_model.bin: only a pickled.*never unpickles"):
        convert(st_dir, tmp_path / "out")


def test_truncated_weights_fail_clearly(tiny):
    path = tiny / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="model.safetensors: not a readable safetensors"):
        SentenceEncoder.from_pretrained(tiny)


def test_config_that_disagrees_with_weights(tiny):
    config = json.loads((tiny / "config.json").read_text())
    config["intermediate_size"] = 64
    (tiny / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"layers.0.intermediate.(bias|kernel).* has shape"):
        SentenceEncoder.from_pretrained(tiny)


def test_wrong_dtype_is_named(tiny):
    path = tiny / "model.safetensors"
    tensors = load_file(str(path))
    tensors["layers.0.output.bias"] = tensors["layers.0.output.bias"].astype(np.float16)
    save_file(tensors, str(path))
    with pytest.raises(WeightsError, match=r"layers.0.output.bias.*dtype float16"):
        SentenceEncoder.from_pretrained(tiny)


def test_tokenizer_larger_than_embedding_matrix(tiny):
    config = json.loads((tiny / "config.json").read_text())
    config["vocab_size"] = 50
    (tiny / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"tokenizer has \d+ tokens.*only 50 rows"):
        SentenceEncoder.from_pretrained(tiny)


def test_missing_folder_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="minisbert fetch"):
        SentenceEncoder.from_pretrained(tmp_path / "nothing-here")

"""Offline: every sentence-transformers layout converts, and every refusal is one line.

``tests/fixtures/st_layouts/`` holds the config files of folders as releases 2.0 to 6.3
wrote them (the 6.x ones saved by the real library, ``scripts/make_st_layout_fixtures.py``;
the older ones transcribed), shrunk to the tiny shape of ``tiny.py``. Each test copies one,
adds the tiny tokenizer and random safetensors weights, converts it, and checks the
``sentence.json`` read from it against the fixture's ``expected.json``. Numerical parity
with the library itself is in ``test_convert_live.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tiny import tiny_tokenizer

from minisbert import SentenceEncoder
from minisbert.cli import main
from minisbert.config import BertConfig, ConfigError, SentenceConfig
from minisbert.io.convert import convert, expected_params, minisbert_to_checkpoint
from minisbert.io.weights import WeightsError

LAYOUTS = Path(__file__).resolve().parent / "fixtures" / "st_layouts"
SENTENCES = ["the cat sat on the mat", "a dog runs", ""]


def materialize(fixture: Path, folder: Path, seed: int = 0) -> Path:
    """The fixture's config files plus a tokenizer and random weights of the shapes they name."""
    shutil.copytree(fixture, folder)
    (folder / "expected.json").unlink()
    rng = np.random.default_rng(seed)
    modules = (
        json.loads((folder / "modules.json").read_text())
        if (folder / "modules.json").is_file() else [{"path": "", "type": "Transformer"}]
    )  # fmt: skip
    for module in modules:
        sub = folder / module["path"]
        sub.mkdir(exist_ok=True)
        if module["type"].endswith("Transformer"):
            config = BertConfig.from_json(sub / "config.json")
            params = {
                name: rng.normal(0, 0.2, shape.shape).astype(np.float32)
                for name, shape in expected_params(config).items()
            }
            save_file(minisbert_to_checkpoint(params, config), str(sub / "model.safetensors"))
            tiny_tokenizer().save(str(sub / "tokenizer.json"))
        elif module["type"].endswith("Dense"):
            dense = json.loads((sub / "config.json").read_text())
            weight = rng.normal(0, 0.2, (dense["out_features"], dense["in_features"]))
            tensors = {"linear.weight": weight.astype(np.float32)}
            if dense.get("bias", True):
                tensors["linear.bias"] = rng.normal(0, 0.2, dense["out_features"]).astype(
                    np.float32
                )
            save_file(tensors, str(sub / "model.safetensors"))
    return folder


@pytest.mark.parametrize("layout", sorted(p.name for p in LAYOUTS.iterdir()))
def test_every_layout_converts(layout, tmp_path):
    src = materialize(LAYOUTS / layout, tmp_path / "src")
    out = convert(src, tmp_path / "out")
    want = SentenceConfig(**json.loads((LAYOUTS / layout / "expected.json").read_text()))
    got = SentenceConfig.from_json(out / "sentence.json")
    assert got == want
    encoder = SentenceEncoder.from_pretrained(out)
    vectors = encoder.encode(SENTENCES)
    assert vectors.shape == (len(SENTENCES), want.embedding_dim(36))
    assert np.all(np.isfinite(vectors))
    if want.normalize:
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_layouts_of_old_and_new_releases_are_present():
    """The offline layouts span the releases the reader promises (a fixture lost is a failure)."""
    names = {p.name for p in LAYOUTS.iterdir()}
    for release in ("st-2.0", "st-2.2", "st-2.5", "st-3.0", "st-5.1", "st-6.2", "st-6.3"):
        assert any(name.startswith(release + "-") for name in names), release


def test_prompts_reach_encode(tmp_path):
    src = materialize(LAYOUTS / "st-2.5-two-modes-prompts", tmp_path / "src")
    encoder = SentenceEncoder.from_pretrained(convert(src, tmp_path / "out"))
    by_name = encoder.encode(SENTENCES, prompt_name="query")
    by_text = encoder.encode(["query: " + s for s in SENTENCES])
    np.testing.assert_allclose(by_name, by_text, atol=1e-6)
    np.testing.assert_allclose(encoder.encode(SENTENCES, prompt="query: "), by_text, atol=1e-6)
    assert not np.allclose(encoder.encode(SENTENCES), by_text, atol=1e-3)  # no default prompt
    with pytest.raises(ValueError, match=r"prompt_name 'question' is not one of.*passage"):
        encoder.encode(SENTENCES, prompt_name="question")


def test_default_prompt_applies_unless_overridden(tmp_path):
    src = materialize(LAYOUTS / "st-6.3-three-modes-dense-prompts", tmp_path / "src")
    encoder = SentenceEncoder.from_pretrained(convert(src, tmp_path / "out"))
    assert encoder.model.sentence_config.default_prompt_name == "query"
    default = encoder.encode(SENTENCES)
    np.testing.assert_allclose(default, encoder.encode(SENTENCES, prompt_name="query"), atol=1e-6)
    np.testing.assert_allclose(
        encoder.encode(SENTENCES, prompt=""), encoder.encode(SENTENCES, prompt_name="document"),
        atol=1e-6,
    )  # fmt: skip


def test_old_sentence_json_reads_unchanged(tmp_path):
    """sentence.json files written before multi-mode pooling, Dense and prompts still load."""
    path = tmp_path / "sentence.json"
    path.write_text('{"max_seq_length": 128, "pooling": "cls", "normalize": true}')
    config = SentenceConfig.from_json(path)
    assert config.poolings == ("cls",) and config.dense == () and config.prompts == ()
    assert config.to_dict() == {"max_seq_length": 128, "pooling": "cls", "normalize": True}


def test_tokenizer_limit_sentinel_means_the_position_embeddings(tmp_path):
    src = materialize(LAYOUTS / "hf-plain-bert", tmp_path / "src")
    tok = json.loads((src / "tokenizer_config.json").read_text())
    tok["model_max_length"] = 1000000000000000019884624838656  # int(1e30): "no limit"
    (src / "tokenizer_config.json").write_text(json.dumps(tok))
    out = convert(src, tmp_path / "out")
    assert SentenceConfig.from_json(out / "sentence.json").max_seq_length == 64


# ---------------------------------------------------------------- refusals, one line each


def refused(src: Path, tmp_path: Path, error: type[Exception], pattern: str) -> str:
    with pytest.raises(error, match=pattern) as info:
        convert(src, tmp_path / "out")
    message = str(info.value)
    assert "\n" not in message, message
    assert not (tmp_path / "out").exists(), "nothing is written when a folder is refused"
    return message


@pytest.fixture
def st_folder(tmp_path) -> Path:
    return materialize(LAYOUTS / "st-6.3-three-modes-dense-prompts", tmp_path / "src")


def edit_json(path: Path, change) -> None:
    values = json.loads(path.read_text())
    change(values)
    path.write_text(json.dumps(values))


def test_malformed_modules_json(st_folder, tmp_path):
    (st_folder / "modules.json").write_text('[{"idx": 0, "path": ""')
    refused(st_folder, tmp_path, ConfigError, r"modules.json: not valid JSON .*download or save")


@pytest.mark.parametrize("content", ['{"a": 1}', "[]", '[{"path": ""}]', '[{"type": 3}]'])
def test_modules_json_of_the_wrong_shape(st_folder, tmp_path, content):
    (st_folder / "modules.json").write_text(content)
    refused(st_folder, tmp_path, ConfigError, r"modules.json: expected a list of modules")


@pytest.mark.parametrize(
    "module", ["WeightedLayerPooling", "LSTM", "CNN", "LayerNorm", "Router", "StaticEmbedding"]
)
def test_unsupported_module_is_named(st_folder, tmp_path, module):
    edit_json(st_folder / "modules.json", lambda m: m.insert(2, {
        "idx": 9, "name": "9", "path": "9_X", "type": f"sentence_transformers.models.{module}"
    }))  # fmt: skip
    refused(st_folder, tmp_path, ConfigError, rf"module '{module}' .*minisbert implements BERT")


@pytest.mark.parametrize(
    ("model_type", "architecture"),
    [("mpnet", "MPNetModel"), ("roberta", "RobertaModel"), ("xlm-roberta", "XLMRobertaModel"),
     ("distilbert", "DistilBertModel"), ("modernbert", "ModernBertModel")],
)  # fmt: skip
def test_unsupported_architecture_is_named(st_folder, tmp_path, model_type, architecture):
    edit_json(st_folder / "config.json", lambda c: c.update(
        model_type=model_type, architectures=[architecture]))  # fmt: skip
    message = refused(st_folder, tmp_path, ConfigError, rf"config.json: model_type '{model_type}'")
    assert architecture in message and "minisbert implements BERT" in message


def test_pickle_only_folder_is_refused_without_unpickling(st_folder, tmp_path):
    (st_folder / "model.safetensors").unlink()
    # Not a pickle at all: were it ever unpickled, the test would fail with another error.
    (st_folder / "pytorch_model.bin").write_bytes(b"not a pickle")
    refused(st_folder, tmp_path, WeightsError,
            r"pytorch_model.bin: only a pickled .*never unpickles.*save_pretrained")  # fmt: skip


def test_pickle_only_dense_layer_is_refused(tmp_path):
    src = materialize(LAYOUTS / "st-3.0-dense-labse", tmp_path / "src")
    (src / "2_Dense" / "model.safetensors").rename(src / "2_Dense" / "pytorch_model.bin")
    refused(src, tmp_path, WeightsError, r"2_Dense/pytorch_model.bin: only a pickled")


def test_missing_weights_and_tokenizer(st_folder, tmp_path):
    (st_folder / "model.safetensors").unlink()
    refused(st_folder, tmp_path, WeightsError, r"model.safetensors: not found")
    (st_folder / "tokenizer.json").unlink()
    refused(st_folder, tmp_path, ConfigError, r"tokenizer.json: not found.*save_pretrained")


def test_missing_pooling_key_is_named(st_folder, tmp_path):
    edit_json(st_folder / "1_Pooling" / "config.json", lambda c: c.pop("pooling_mode"))
    refused(st_folder, tmp_path, ConfigError, r"1_Pooling/config.json: no 'pooling_mode'")


def test_unknown_pooling_mode_and_extra_keys(st_folder, tmp_path):
    edit_json(st_folder / "1_Pooling" / "config.json", lambda c: c.update(
        some_future_key={"x": 1}))  # fmt: skip
    convert(st_folder, tmp_path / "fine")  # an unknown extra key is ignored
    edit_json(st_folder / "1_Pooling" / "config.json", lambda c: c.update(pooling_mode="median"))
    refused(st_folder, tmp_path, ConfigError, r"pooling mode 'median' is not one minisbert knows")


def test_include_prompt_false_is_refused(st_folder, tmp_path):
    edit_json(st_folder / "1_Pooling" / "config.json", lambda c: c.update(include_prompt=False))
    refused(st_folder, tmp_path, ConfigError, r"include_prompt is false")


def test_pooling_size_that_disagrees(st_folder, tmp_path):
    edit_json(st_folder / "1_Pooling" / "config.json", lambda c: c.update(embedding_dimension=40))
    refused(st_folder, tmp_path, ConfigError, r"pools vectors of size 40.*hidden_size is 36")


def test_dense_that_does_not_fit(st_folder, tmp_path):
    edit_json(st_folder / "2_Dense" / "config.json", lambda c: c.update(in_features=36))
    refused(st_folder, tmp_path, ConfigError, r"2_Dense/config.json: in_features is 36.*108")


def test_tokenizer_larger_than_embeddings(st_folder, tmp_path):
    edit_json(st_folder / "config.json", lambda c: c.update(vocab_size=50))
    pattern = r"tokenizer.json: the tokenizer has \d+ tokens.*vocab_size.* is 50"
    refused(st_folder, tmp_path, ConfigError, pattern)


def test_cli_prints_one_line(st_folder, tmp_path, capsys):
    (st_folder / "modules.json").write_text("not json")
    assert main(["convert", str(st_folder), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert "modules.json: not valid JSON" in err and "Traceback" not in err


def test_saved_model_keeps_its_dense_layers(tmp_path):
    """A converted model with Dense layers, saved as training saves it, loads back the same."""
    from minisbert.io.checkpoint import save_model

    src = materialize(LAYOUTS / "st-3.0-dense-labse", tmp_path / "src")
    encoder = SentenceEncoder.from_pretrained(convert(src, tmp_path / "out"))
    (tmp_path / "saved").mkdir()
    save_model(tmp_path / "saved", encoder.model, tmp_path / "out")
    again = SentenceEncoder.from_pretrained(tmp_path / "saved")
    np.testing.assert_array_equal(again.encode(SENTENCES), encoder.encode(SENTENCES))


def test_plain_hf_checkpoint_with_pretraining_heads(tmp_path):
    """bert-base-uncased style: "bert."-prefixed encoder, pooler and masked-LM/NSP heads."""
    src = materialize(LAYOUTS / "hf-plain-bert", tmp_path / "src")
    plain = SentenceEncoder.from_pretrained(convert(src, tmp_path / "plain"))
    tensors = load_file(str(src / "model.safetensors"))
    tensors = {f"bert.{name}": value for name, value in tensors.items()}
    tensors["bert.pooler.dense.weight"] = np.zeros((36, 36), np.float32)
    tensors["cls.predictions.bias"] = np.zeros(99, np.float32)
    tensors["cls.predictions.transform.dense.weight"] = np.zeros((36, 36), np.float32)
    tensors["cls.seq_relationship.weight"] = np.zeros((2, 36), np.float32)
    save_file(tensors, str(src / "model.safetensors"))
    headed = SentenceEncoder.from_pretrained(convert(src, tmp_path / "headed"))
    np.testing.assert_array_equal(headed.encode(SENTENCES), plain.encode(SENTENCES))

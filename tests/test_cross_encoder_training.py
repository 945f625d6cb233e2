"""``minisbert train --cross-encoder`` on a tiny model: the two losses by formula, the batches
of pairs, a run that writes a cross-encoder folder (one label and three), --resume, and
the refusals. (The losses against sentence-transformers': tests/test_cross_encoder_live.py.)"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from runs import EVERY_STEP, Killed, config_for, kill_after, train_args
from tiny import write_training_files

from minisbert.cli import main
from minisbert.cross_encoder import CrossEncoder
from minisbert.cross_encoder_training import (
    PairSteps,
    binary_cross_entropy,
    cross_entropy,
    pair_data,
    pair_logits,
    read_pairs,
    start_model,
)
from minisbert.fast.pairs import PackedPairSteps, packed_pair_logits
from minisbert.io.weights import read_safetensors
from minisbert.train import Trainable, train


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_training_files(tmp_path_factory.mktemp("ce-train"))


def test_binary_cross_entropy_by_formula_and_its_gradient():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (7, 1)).astype(np.float32)  # (B, 1)
    y = rng.random(7).astype(np.float32)  # (B,)
    s = 1 / (1 + np.exp(-z[:, 0].astype(np.float64)))
    want = -np.mean(y * np.log(s) + (1 - y) * np.log(1 - s))
    assert float(binary_cross_entropy(jnp.asarray(z), jnp.asarray(y))) == pytest.approx(want, 1e-5)
    grad = jax.grad(binary_cross_entropy)(jnp.asarray(z), jnp.asarray(y))  # (B, 1)
    np.testing.assert_allclose(np.asarray(grad)[:, 0], (s - y) / 7, atol=1e-6)


def test_binary_cross_entropy_holds_at_large_logits():
    z, y = jnp.array([[200.0], [-200.0]]), jnp.array([1.0, 0.0])
    assert float(binary_cross_entropy(z, y)) == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(float(binary_cross_entropy(-z, y)))  # softplus, not log(sigmoid)


def test_cross_entropy_by_formula():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (5, 3))  # (B, C)
    c = np.array([0, 2, 1, 1, 0])
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    want = -np.mean(np.log(p[np.arange(5), c]))
    got = float(cross_entropy(jnp.asarray(z, jnp.float32), jnp.asarray(c)))
    assert got == pytest.approx(want, 1e-5)


def test_a_batch_is_the_pairs_as_predict_tokenizes_them(files, tmp_path):
    config = config_for(files, tmp_path / "out", cross_encoder=True)
    examples, labels, num_labels = read_pairs(config)
    assert num_labels == 1 and 0 <= labels.min() and labels.max() <= 1
    model = start_model(files["model"], num_labels, seed=0)
    data = pair_data(config, examples, labels, model)
    order = np.arange(len(data))
    (input_ids, segments), mask, batch_labels = PairSteps().batch(data, order, 1, 8)
    assert input_ids.shape == segments.shape == mask.shape and input_ids.shape[:2] == (1, 8)
    ids, types = model.tokenize_pairs([(e.sentence1, e.sentence2) for e in examples[8:16]])
    for row in range(8):
        n = len(ids[row])
        assert input_ids[0, row, :n].tolist() == ids[row]
        assert segments[0, row, :n].tolist() == types[row]
        assert mask[0, row].sum() == n and not segments[0, row, n:].any()
        assert types[row][0] == 0 and types[row][-1] == 1  # [CLS] in a, the last [SEP] in b
    np.testing.assert_array_equal(batch_labels, labels[8:16])


@pytest.mark.parametrize("data", [
    pytest.param("scores", marks=pytest.mark.slow),  # the long tier (12.2 s at load 7)
    "classes",
])  # fmt: skip
def test_packed_pairs_give_the_padded_logits(files, tmp_path, data):
    config = config_for(files, tmp_path / "out", data=str(files[data]), cross_encoder=True)
    examples, labels, num_labels = read_pairs(config)
    model = start_model(files["model"], num_labels, seed=0)
    pairs = pair_data(config, examples, labels, model)
    trainable = Trainable(model.model)
    optimizer = nnx.Optimizer(trainable, optax.sgd(0.1), wrt=nnx.Param)
    steps = PackedPairSteps()
    steps.prepare(pairs, config, 3, trainable, optimizer)
    trainable.eval()  # dropout off: the two layouts compute one function
    order = np.random.default_rng(0).permutation(len(pairs))
    for index in range(3):
        inputs, mask, _ = PairSteps().batch(pairs, order, index, 8)
        padded = pair_logits(trainable.model, inputs, mask)  # (1, B, C)
        packed_inputs, _ = steps.batch(pairs, order, index, 8)
        packed = packed_pair_logits(trainable.model, packed_inputs, None)
        assert packed.shape == padded.shape == (1, 8, num_labels)
        np.testing.assert_allclose(np.asarray(packed), np.asarray(padded), atol=1e-5)


@pytest.mark.slow  # a whole run through the command: compiling it takes most of a minute
@pytest.mark.parametrize("data, num_labels", [("scores", 1), ("classes", 3)])
def test_train_writes_a_cross_encoder_that_loads(files, tmp_path, data, num_labels, capsys):
    out = tmp_path / "ce"
    assert main([*train_args(files, out, data, "cosine"), "--cross-encoder"]) == 0
    del capsys  # the run's own lines
    head = json.loads((out / "cross_encoder.json").read_text())
    assert head["num_labels"] == num_labels
    assert head["activation"] == ("sigmoid" if num_labels == 1 else "identity")
    model = CrossEncoder.from_pretrained(out)
    scores = model.predict([("the cat sat", "a dog"), ("the mat", "")])
    assert scores.shape == ((2,) if num_labels == 1 else (2, num_labels))
    start = read_safetensors(files["model"] / "model.safetensors")
    trained = read_safetensors(out / "model.safetensors")
    name = "layers.0.attention.query.kernel"
    assert f"bert.{name}" in trained and "pooler.kernel" in trained
    assert not np.allclose(trained[f"bert.{name}"], start[name])  # BERT itself learned


@pytest.mark.slow
def test_resume_ends_on_the_weights_of_a_run_never_stopped(files, tmp_path):
    config = config_for(files, tmp_path / "whole", cross_encoder=True, **EVERY_STEP)
    train(config)
    stopped = dataclasses.replace(config, output=str(tmp_path / "stopped"))
    with pytest.raises(Killed):
        train(stopped, on_step=kill_after(3))
    train(dataclasses.replace(stopped, resume=True))
    whole = read_safetensors(tmp_path / "whole" / "model.safetensors")
    resumed = read_safetensors(tmp_path / "stopped" / "model.safetensors")
    assert whole.keys() == resumed.keys()
    for name in whole:
        np.testing.assert_array_equal(whole[name], resumed[name], err_msg=name)


def test_refusals_in_one_line(files, tmp_path, capsys):
    def refused(*extra: str, data: str = "scores") -> str:
        args = [*train_args(files, tmp_path / "x", data, "cosine"), "--cross-encoder", *extra]
        assert main(args) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    assert "scored pairs" in refused(data="triplets")
    assert "drop --loss" in refused("--loss", "mnrl")
    assert "--mini-batch-size" in refused("--mini-batch-size", "4")
    wide = tmp_path / "wide.tsv"
    wide.write_text("sentence1\tsentence2\tscore\nthe cat\ta dog\t3.5\nthe mat\ta cat\t0.5\n")
    assert "[0, 1]" in main_err(files, tmp_path, wide, capsys)


def main_err(files, tmp_path, data_file, capsys) -> str:
    args = train_args(files, tmp_path / "y", "scores", "cosine")
    args[args.index(str(files["scores"]))] = str(data_file)
    assert main([*args, "--cross-encoder", "--batch-size", "2"]) == 1
    return capsys.readouterr().err


def test_pair_order_both_trains_each_scored_pair_both_ways(files, tmp_path):
    given = config_for(files, tmp_path / "o", cross_encoder=True, pair_order="given")
    examples, labels, _ = read_pairs(given)
    both, both_labels, _ = read_pairs(dataclasses.replace(given, pair_order="auto"))
    n = len(examples)
    assert len(both) == 2 * n and both[:n] == examples
    assert [(e.sentence2, e.sentence1) for e in both[n:]] == [
        (e.sentence1, e.sentence2) for e in examples
    ]
    np.testing.assert_array_equal(both_labels, np.concatenate([labels, labels]))
    classes = dataclasses.replace(given, data=str(files["classes"]), pair_order="auto")
    assert len(read_pairs(classes)[0]) == 24  # NLI's premise and hypothesis keep their order


def test_a_bi_encoder_folder_gives_its_kept_pooler_and_a_seeded_head(files, tmp_path):
    import shutil

    from safetensors.numpy import save_file

    from minisbert.io.convert import POOLER_FILE

    fresh = [start_model(files["model"], 1, seed=s).model for s in (0, 1)]
    assert not np.allclose(fresh[0].pooler.kernel[...], fresh[1].pooler.kernel[...])  # new
    folder = shutil.copytree(files["model"], tmp_path / "with-pooler")
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(36, 36)).astype(np.float32)  # (in, out)
    bias = rng.normal(size=36).astype(np.float32)
    save_file({"pooler.kernel": kernel, "pooler.bias": bias}, str(folder / POOLER_FILE))
    kept = [start_model(folder, 1, seed=s).model for s in (0, 1)]
    for model in kept:  # the checkpoint's pooler, whatever the seed
        np.testing.assert_array_equal(model.pooler.kernel[...], kernel)
        np.testing.assert_array_equal(model.pooler.bias[...], bias)
    assert not np.allclose(kept[0].classifier.kernel[...], kept[1].classifier.kernel[...])


@pytest.mark.parametrize("data, flags, rate", [
    ("scores", {}, 0.0),  # a cross-encoder learning scores: CROSS_ENCODER_DROPOUT
    ("classes", {}, 0.1),  # class pairs: the tiny model's own (its config.json)
    ("scores", {"dropout": 0.25}, 0.25),  # --dropout wins
    ("classes", {"dropout": 0.0}, 0.0),
])  # fmt: skip
def test_the_dropout_each_run_trains_with(files, tmp_path, data, flags, rate):
    from minisbert.train import PaddedSteps, Run
    from minisbert.train_config import CROSS_ENCODER_DROPOUT

    def rates(config, steps) -> set[float]:  # of the model the run would train
        out = tmp_path / ("ce" if config.cross_encoder else "bi")
        out.mkdir()
        run = Run(config, out, files["model"], steps)
        return {node.rate for _, node in nnx.iter_graph(run.trainable)
                if isinstance(node, nnx.Dropout)}  # fmt: skip

    assert CROSS_ENCODER_DROPOUT == 0.0
    config = config_for(files, tmp_path / "ce", data=str(files[data]), cross_encoder=True,
                        **flags)  # fmt: skip
    assert rates(config, PairSteps()) == {rate}
    bi = dataclasses.replace(config, cross_encoder=False, data=str(files["scores"]))
    assert rates(bi, PaddedSteps()) == {flags.get("dropout", 0.1)}  # the model's own unless told

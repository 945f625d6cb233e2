"""The gradient cache computes the full batch's loss and gradient, M sentences at a time.

And in training (``minisbert train --mini-batch-size M``, ``CachedSteps``): a run equals the
same run without it (dropout off), resumes with the same M, and refuses what it cannot do.

With dropout off the cached step must equal the plain one (``nnx.value_and_grad`` through every
sentence at once); with dropout on it must equal the same chunks embedded with the graph kept,
from the same dropout keys: the proof that pass 3 replays pass 1's masks.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from runs import EVERY_STEP, Killed, config_for, kill_after, train_args
from safetensors.numpy import load_file
from tiny import ONE_LAYER, TINY_CONFIG, random_model_dir

from minisbert.cli import main
from minisbert.config import SentenceConfig
from minisbert.fast import PackedSteps
from minisbert.grad_cache import CachedSteps, cached_loss_and_grad
from minisbert.losses import SoftmaxClassifier, get_loss, make_loss
from minisbert.sentence_encoder import SentenceModel
from minisbert.train import (
    PaddedSteps,
    Trainable,
    TrainingError,
    _steps_for,
    compute_loss,
    seed_dropout,
    train,
)

CONFIG = dataclasses.replace(TINY_CONFIG, num_hidden_layers=1)
S, B, T = 2, 6, 8


@nnx.jit(static_argnames="classifier")
def build(classifier: bool) -> Trainable:
    model = SentenceModel(CONFIG, SentenceConfig(32), rngs=nnx.Rngs(0))
    return Trainable(model, SoftmaxClassifier(36, 3, rngs=nnx.Rngs(1)) if classifier else None)


def batch(sides: int = S) -> tuple[jax.Array, jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    input_ids = jnp.asarray(rng.integers(5, 99, size=(sides, B, T)))  # (S, B, T)
    lengths = rng.integers(3, T + 1, size=(sides, B))  # (S, B)
    mask = jnp.asarray(np.arange(T) < lengths[..., None], jnp.int32)  # (S, B, T)
    return input_ids, mask, jnp.asarray([0, 1, 2, 0, 1, 2])


def twins(classifier: bool) -> tuple[Trainable, Trainable]:
    """Two trainables with the same weights and the same dropout keys."""
    first = build(classifier)
    seed_dropout(first, 7)
    graphdef, state = nnx.split(first)
    return nnx.merge(graphdef, state), nnx.merge(graphdef, jax.tree.map(jnp.copy, state))


def assert_same(got: tuple[jax.Array, nnx.State], want: tuple[jax.Array, nnx.State]) -> None:
    np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=1e-5)
    flat_got, flat_want = jax.tree.leaves(got[1]), jax.tree.leaves(want[1])
    assert len(flat_got) == len(flat_want)
    for g, w in zip(flat_got, flat_want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)


# Compiled, as the train step is: eager JAX runs op by op, many times slower on these shapes.
cached_jit = nnx.jit(cached_loss_and_grad, static_argnames=("loss_fn", "mini_batch_size"))


@nnx.jit(static_argnames=("loss_fn", "embed"))
def plain_jit(t: Trainable, batch: tuple, loss_fn: object, embed: object = None) -> tuple:
    if embed is not None:
        return nnx.value_and_grad(lambda t: embed(t, batch, loss_fn))(t)
    return nnx.value_and_grad(lambda t: compute_loss(t, *batch, loss_fn))(t)


CASES = [  # the long tier (make test-slow): each compiles two programs (28.4 s at load 7)
    pytest.param("mnrl", False, 3, marks=pytest.mark.slow),
    pytest.param("mnrl_symmetric", False, 4, marks=pytest.mark.slow),  # chunks of 4 and 2
    pytest.param("softmax", True, 5, marks=pytest.mark.slow),  # the head's gradient too
]


@pytest.mark.parametrize("name, classifier, mini_batch", CASES)
def test_dropout_off_equals_the_full_batch(name: str, classifier: bool, mini_batch: int) -> None:
    loss_fn = make_loss(get_loss(name), name)
    plain, cached = twins(classifier)
    plain.eval()
    cached.eval()
    input_ids, mask, labels = batch()
    labels_or_none = labels if classifier else None
    want = plain_jit(plain, (input_ids, mask, labels_or_none), loss_fn)
    got = cached_jit(cached, (input_ids, mask, labels_or_none), loss_fn, mini_batch)
    assert_same(got, want)


@pytest.mark.slow  # the long tier: two more compiles
def test_dropout_on_replays_the_chunks_masks() -> None:
    loss_fn = make_loss(get_loss("mnrl_symmetric"), "mnrl_symmetric")
    plain, cached = twins(False)
    plain.train()
    cached.train()
    input_ids, mask, _ = batch()

    def chunked_with_graph(t: Trainable, batch: tuple, loss_fn: object) -> jax.Array:
        input_ids, mask, _ = batch  # the same chunks as the cache's, in the same order
        sides = [
            jnp.concatenate([t.model(input_ids[s, i : i + 4], mask[s, i : i + 4]) for i in (0, 4)])
            for s in range(S)
        ]
        return loss_fn(*sides)

    want = plain_jit(plain, (input_ids, mask, None), loss_fn, chunked_with_graph)
    got = cached_jit(cached, (input_ids, mask, None), loss_fn, 4)
    assert_same(got, want)
    # The streams moved on as the plain step's did, and dropout was on (else this is no test).
    keys = [jax.random.key_data(s.key[...]) for _, s in nnx.iter_graph(cached)
            if isinstance(s, nnx.RngStream)]  # fmt: skip
    counts = [int(s.count[...]) for _, s in nnx.iter_graph(cached) if isinstance(s, nnx.RngStream)]
    plain_counts = [
        int(s.count[...]) for _, s in nnx.iter_graph(plain) if isinstance(s, nnx.RngStream)
    ]
    assert keys and counts == plain_counts and max(counts) > 0
    plain.eval()
    off = compute_loss(plain, input_ids, mask, None, loss_fn)
    assert abs(float(off) - float(got[0])) > 1e-4


def test_mini_batch_must_be_positive() -> None:
    trainable = build(False)
    with pytest.raises(ValueError, match="mini_batch_size must be >= 1, not 0"):
        cached_loss_and_grad(trainable, batch(), get_loss("mnrl").function, 0)


# ---------------------------------------------------------------- in training: CachedSteps

QUIET = dataclasses.replace(ONE_LAYER, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def quiet_files(tiny_files, tmp_path_factory):
    """tiny_files with a model without dropout: the runs below share its compiled programs."""
    return {**tiny_files, "model": random_model_dir(tmp_path_factory.mktemp("quiet"), QUIET)}


def weights(folder: Path) -> dict[str, np.ndarray]:
    return load_file(folder / "model.safetensors")


def step_losses(run: Path) -> list[float]:
    """The loss of every step, from the run's checkpoints (one a step)."""
    states = sorted((run / "checkpoints").glob("step-*/state.json"))
    return [json.loads(path.read_text())["loss_value"] for path in states]


@pytest.mark.slow  # whole runs: the step-level equality above stays in make test
@pytest.mark.parametrize("data, loss", [
    ("triplets", "mnrl"),
    ("classes", "softmax"),  # the head's gradient too
])  # fmt: skip
def test_a_run_with_mini_batches_equals_the_run_without(quiet_files, tmp_path, data, loss):
    """Dropout off: `minisbert train --mini-batch-size 5` (24 or 16 sentences a batch: chunks
    of 5 and a filled-up short one) gives the plain run's losses and weights."""
    files = quiet_files
    plain = train(config_for(files, tmp_path / "plain", data=str(files[data]), loss=loss,
                             epochs=1, seed=0))  # fmt: skip
    every_step = ["--checkpoint-steps", "1", "--keep-checkpoints", "10"]
    args = train_args(files, tmp_path / "cached", data, loss, "--mini-batch-size", "5", *every_step)
    assert main(args) == 0
    np.testing.assert_allclose(step_losses(tmp_path / "cached"), plain.losses, rtol=1e-5)
    want, got = weights(tmp_path / "plain"), weights(tmp_path / "cached")
    moved = max(float(np.abs(want[k] - weights(files["model"])[k]).max()) for k in want)
    assert moved > 1e-4  # it trained: else equal weights prove nothing
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.slow  # three runs
def test_a_cached_run_resumes_where_it_stopped(quiet_files, tmp_path):
    """A cached run killed after step 1 and resumed with the same M ends on the weights of
    the run that was not stopped; another M is refused (with dropout on it would draw other
    masks). The quiet model's programs are the test above's: compiled once."""
    files = quiet_files
    config = config_for(files, tmp_path / "whole", data=str(files["triplets"]), loss="mnrl",
                        epochs=1, mini_batch_size=5, **EVERY_STEP)  # fmt: skip
    whole = train(config)
    stopped = dataclasses.replace(config, output=str(tmp_path / "stopped"))
    with pytest.raises(Killed):
        train(stopped, on_step=kill_after(1))
    other_m = dataclasses.replace(stopped, resume=True, mini_batch_size=4)
    with pytest.raises(TrainingError, match="mini_batch_size=5, this command has mini_batch_s"):
        train(other_m)
    resumed = train(dataclasses.replace(stopped, resume=True))
    np.testing.assert_allclose(resumed.losses, whole.losses[1:], rtol=1e-6)
    want, got = weights(tmp_path / "whole"), weights(tmp_path / "stopped")
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_mini_batch_size_below_one_is_one_line(tiny_files, tmp_path, capsys):
    args = train_args(tiny_files, tmp_path / "x", "triplets", "mnrl", "--mini-batch-size", "0")
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("mini_batch_size=0 (--mini-batch-size): must be an integer >= 1, or "
                        "None for the plain step")  # fmt: skip
    assert len(err.splitlines()) == 1


def test_a_mini_batch_as_large_as_the_batch_is_the_plain_step(tiny_files, tmp_path):
    config = config_for(tiny_files, tmp_path, batch_size=8, mini_batch_size=8)
    assert isinstance(_steps_for(config, None), PaddedSteps)
    assert isinstance(_steps_for(dataclasses.replace(config, mini_batch_size=7), None), CachedSteps)
    with pytest.raises(ValueError, match="trains with grad_cache.CachedSteps, not PackedSteps"):
        _steps_for(dataclasses.replace(config, mini_batch_size=7), PackedSteps())

"""Training: every loss trains, the optimiser is sentence-transformers', runs repeat exactly.

All on the tiny BERT (hidden 36, 3 heads, vocab 99) and tiny data files, so each test
costs a compile or two (a few seconds), not real training.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from runs import config_for
from tiny import TINY_CONFIG

from minisbert.config import SentenceConfig
from minisbert.io.weights import read_safetensors
from minisbert.losses import LOSSES, SoftmaxClassifier, cosine_similarity_loss, get_loss, make_loss
from minisbert.optimizer import make_optimizer, warmup_linear
from minisbert.sentence_encoder import SentenceModel
from minisbert.train import Trainable, TrainingError, train, train_step
from minisbert.training_data import TrainingData

# ---------------------------------------------------------------- the optimiser


def test_warmup_linear_schedule_climbs_then_falls_to_zero():
    schedule = warmup_linear(1.0, warmup_steps=2, total_steps=10)
    values = [float(schedule(t)) for t in range(11)]
    # t/W for t < W, then (N - t)/(N - W): the first update uses lr 0, as transformers' does.
    expected = [0.0, 0.5, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0.0]
    np.testing.assert_allclose(values, expected, atol=1e-7)
    assert float(warmup_linear(1.0, 0, 10)(0)) == 1.0  # no warm-up: full lr at once


def build(config=TINY_CONFIG, classifier: bool = False) -> Trainable:
    """A random tiny Trainable: built abstractly, its parameters then drawn in numpy as BERT
    initialises them (building it for real compiles every initialiser: seconds)."""

    def make() -> Trainable:
        model = SentenceModel(config, SentenceConfig(32), rngs=nnx.Rngs(0))
        head = SoftmaxClassifier(36, 3, rngs=nnx.Rngs(1)) if classifier else None
        return Trainable(model, head)

    trainable = nnx.eval_shape(make)
    rng = np.random.default_rng(0)
    state = nnx.state(trainable)
    for path, var in nnx.to_flat_state(state):
        shape, dtype = var.get_value().shape, var.get_value().dtype
        if not isinstance(var, nnx.Param):  # the dropout streams' keys and counts
            var.set_value(jnp.zeros(shape, dtype))
        elif path[-1] == "scale":  # LayerNorm
            var.set_value(jnp.asarray(np.ones(shape, dtype)))
        elif path[-1] == "bias":
            var.set_value(jnp.asarray(np.zeros(shape, dtype)))
        else:
            var.set_value(jnp.asarray(rng.normal(0.0, 0.02, shape).astype(dtype)))
    nnx.update(trainable, state)
    return trainable


def test_weight_decay_skips_biases_and_layer_norm():
    trainable = build()
    tx = make_optimizer(0.5, 10**6, warmup_ratio=0.0, weight_decay=0.1)
    optimizer = nnx.Optimizer(trainable, tx, wrt=nnx.Param)
    before = {k: np.asarray(v) for k, v in _flat(trainable).items()}

    @nnx.jit
    def update_with_zero_gradients(trainable, optimizer):
        zero = jax.tree.map(jnp.zeros_like, nnx.state(trainable, nnx.Param))
        optimizer.update(trainable, zero)  # Adam's step is 0 for 0 gradients: only decay acts

    update_with_zero_gradients(trainable, optimizer)
    after = _flat(trainable)
    shrink = 1 - 0.5 * 0.1  # theta <- theta - lr * wd * theta
    for name, value in before.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("kernel", "embedding"):
            np.testing.assert_allclose(after[name], value * shrink, rtol=1e-6, err_msg=name)
        else:
            assert leaf in ("bias", "scale"), name
            np.testing.assert_array_equal(after[name], value, err_msg=name)


def test_optimizer_matches_a_hand_written_clipped_adamw():
    """Clip at norm 1, AdamW (decay on the kernel only), warm-up-linear lr, in plain numpy."""
    lr, wd, b1, b2, eps, W, N = 0.1, 0.01, 0.9, 0.999, 1e-8, 1, 4
    tx = make_optimizer(lr, N, warmup_ratio=W / N, weight_decay=wd)
    params = {"kernel": jnp.array([1.0, -2.0, 3.0]), "bias": jnp.array([0.5, 0.5, -0.5])}
    state = tx.init(params)
    grads = [  # global norms 50, 0.5, 5: clipped, not clipped, clipped
        {"kernel": jnp.array([30.0, 0.0, 0.0]), "bias": jnp.array([0.0, 40.0, 0.0])},
        {"kernel": jnp.array([0.3, 0.0, 0.0]), "bias": jnp.array([0.0, 0.0, 0.4])},
        {"kernel": jnp.array([0.0, 3.0, 0.0]), "bias": jnp.array([4.0, 0.0, 0.0])},
    ]
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    m = {k: np.zeros(3) for k in p}
    v = {k: np.zeros(3) for k in p}
    for t, g in enumerate(grads):
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        g = {k: np.asarray(x, np.float64) for k, x in g.items()}
        norm = np.sqrt(sum(np.sum(x**2) for x in g.values()))
        g = {k: x * min(1.0, 1.0 / norm) for k, x in g.items()}
        rate = lr * max(0.0, min(t / W, (N - t) / (N - W)))
        for k in p:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            step = (m[k] / (1 - b1 ** (t + 1))) / (np.sqrt(v[k] / (1 - b2 ** (t + 1))) + eps)
            p[k] = p[k] - rate * (step + (wd * p[k] if k == "kernel" else 0.0))
        for k in p:
            # float32 against float64 arithmetic
            np.testing.assert_allclose(params[k], p[k], rtol=1e-5, atol=1e-6, err_msg=f"{t} {k}")


def _flat(module: nnx.Module) -> dict[str, np.ndarray]:
    state = nnx.state(module, nnx.Param)
    return {".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


# ---------------------------------------------------------------- every loss trains


SMOKE_CONFIG = dataclasses.replace(TINY_CONFIG, num_hidden_layers=1)  # one layer: faster compile
LOSS_BATCH = {  # sides, labels for a batch of B = 8
    "softmax": (2, np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)),
    "cosine": (2, np.linspace(0, 1, 8, dtype=np.float32)),
    "cosent": (2, np.linspace(0, 1, 8, dtype=np.float32)),
    "contrastive": (2, np.array([0, 1] * 4, np.int32)),
    "online_contrastive": (2, np.array([0, 1] * 4, np.int32)),
    "triplet": (3, None),
    "batch_hard_triplet": (3, None),
    "mnrl": (3, None),
    "mnrl_symmetric": (3, None),
}


def test_every_registered_loss_has_a_smoke_case():
    assert set(LOSS_BATCH) == set(LOSSES)


# Two losses in make test (one with a head, one without), every loss in make test-slow.
@pytest.mark.parametrize("name", [
    name if name == "softmax" else pytest.param(name, marks=pytest.mark.slow)
    for name in sorted(LOSS_BATCH)
])  # fmt: skip
def test_every_loss_trains_finite_and_falling(name):
    sides, labels = LOSS_BATCH[name]
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 9, size=(sides, 8))  # (S, B) tokens per sentence
    data = TrainingData(
        sides=[[list(rng.integers(5, 99, n)) for n in side] for side in lengths],
        labels=labels, max_length=8, pad_token_id=0,
    )  # fmt: skip
    input_ids, mask, labels = data.batch(np.arange(8), 0, 8)  # (S, 8, 8) each
    trainable = build(SMOKE_CONFIG, classifier=name == "softmax")
    trainable.eval()  # no dropout: the same batch must then give a falling loss
    tx = make_optimizer(3e-3, 10**6, warmup_ratio=0.0)
    optimizer = nnx.Optimizer(trainable, tx, wrt=nnx.Param)
    loss_fn = make_loss(get_loss(name), name)
    losses = [
        float(train_step(trainable, optimizer, input_ids, mask, labels, loss_fn)) for _ in range(6)
    ]
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0], losses


@pytest.mark.slow  # the long tier (make test-slow): keeps make test short
def test_softmax_classifier_is_trained_and_saved(tiny_files, tmp_path):
    classes = str(tiny_files["classes"])
    config = config_for(tiny_files, tmp_path / "run", data=classes, loss="softmax", epochs=1)
    train(config)
    saved = read_safetensors(tmp_path / "run" / "classifier.safetensors")
    assert saved["linear.kernel"].shape == (3 * 36, 3)  # [u; v; |u - v|] -> 3 classes
    fresh = SoftmaxClassifier(36, 3, rngs=nnx.Rngs(config.seed))
    assert not np.allclose(saved["linear.kernel"], np.asarray(fresh.linear.kernel.get_value()))
    last = tmp_path / "run" / "checkpoints" / "step-00000003"
    params = read_safetensors(last / "params.safetensors")
    np.testing.assert_array_equal(params["classifier.linear.kernel"], saved["linear.kernel"])


# ---------------------------------------------------------------- your own loss


@pytest.mark.slow  # the long tier (make test-slow): keeps make test short
def test_a_user_defined_loss_plugs_in(tiny_files, tmp_path):
    seen = []

    def half_mse(u, v, scores):  # the signature of cosine_similarity_loss
        seen.append((u.shape, v.shape, scores.shape))
        return 0.5 * cosine_similarity_loss(u, v, scores)

    result = train(config_for(tiny_files, tmp_path / "run"), loss_fn=half_mse)
    assert seen and seen[0] == ((8, 36), (8, 36), (8,))
    assert len(result.losses) == 6 and np.all(np.isfinite(result.losses))


# ---------------------------------------------------------------- repeatable runs


def test_same_seed_gives_bit_identical_weights(tiny_files, tmp_path):
    a = train(config_for(tiny_files, tmp_path / "a"))
    b = train(config_for(tiny_files, tmp_path / "b"))
    c = train(config_for(tiny_files, tmp_path / "c", seed=1))
    assert a.losses == b.losses
    wa, wb, wc = (read_safetensors(tmp_path / x / "model.safetensors") for x in "abc")
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)
    assert a.losses != c.losses
    assert any(not np.array_equal(wa[n], wc[n]) for n in wa)


@pytest.mark.slow  # the long tier (make test-slow): keeps make test short
def test_the_trained_folder_loads_as_a_model(tiny_files, tmp_path):
    from minisbert.sentence_encoder import SentenceEncoder

    train(config_for(tiny_files, tmp_path / "run", epochs=1))
    encoder = SentenceEncoder.from_pretrained(tmp_path / "run")
    assert encoder.encode(["the cat sat"]).shape == (1, 36)


# ---------------------------------------------------------------- clear failures


@pytest.mark.slow  # the long tier (make test-slow): keeps make test short
def test_nan_loss_stops_naming_step_batch_and_last_checkpoint(tiny_files, tmp_path):
    calls = []

    def on_step(step, loss):
        calls.append(step)

    # Poison the data instead: a loss that is NaN whenever the batch holds score 0.999.
    rows = tiny_files["scores"].read_text().splitlines()
    poisoned = tmp_path / "poisoned.tsv"
    rows[5] = rows[5].rsplit("\t", 1)[0] + "\t0.999"
    poisoned.write_text("\n".join(rows) + "\n")

    def nan_on_poison(u, v, scores):
        loss = cosine_similarity_loss(u, v, scores)
        return jnp.where(jnp.any(scores == jnp.float32(0.999)), jnp.nan, loss)

    config = config_for(tiny_files, tmp_path / "run", data=str(poisoned), checkpoint_steps=1)
    with pytest.raises(TrainingError) as info:
        train(config, loss_fn=nan_on_poison, on_step=on_step)
    message = str(info.value)
    step = int(re.search(r"at step (\d+)", message).group(1))
    assert step == len(calls) + 1  # it stopped at the first bad step
    assert re.search(r"batch index \d+ in the epoch", message)
    if calls:
        assert f"step-{len(calls):08d}" in message  # the checkpoint before it
    else:
        assert "Last good checkpoint: none" in message
    assert not (tmp_path / "run" / "model.safetensors").exists()  # nothing trained on NaN saved


def test_unwritable_output_fails_before_training(tiny_files, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(RuntimeError, match="not a writable folder"):
        train(config_for(tiny_files, blocker / "run"), on_step=lambda *_: pytest.fail("trained"))


@pytest.mark.parametrize(
    "loss, data, message",
    [
        ("triplet", "scores", r"--loss triplet needs triplets .*snli-triplets"),
        ("contrastive", "scores", r"needs 0/1 pairs.*use --loss cosine or cosent"),
        ("softmax", "triplets", r"needs class pairs .*--data snli"),
        ("cosine", "classes", r"needs scored pairs .*--data stsb"),
    ],
)
def test_a_loss_on_the_wrong_data_says_what_it_needs(tiny_files, tmp_path, loss, data, message):
    with pytest.raises(ValueError, match=message):
        train(config_for(tiny_files, tmp_path / "run", loss=loss, data=str(tiny_files[data])))


def test_an_option_the_loss_does_not_take_is_refused(tiny_files, tmp_path):
    with pytest.raises(ValueError, match="--margin does not apply to --loss cosine"):
        train(config_for(tiny_files, tmp_path / "run", margin=0.5))


@pytest.mark.slow  # the long tier (make test-slow): keeps make test short
def test_train_step_updates_in_place():
    """train_step donates the model and optimiser: their old arrays are consumed, the new
    ones are live, and the step still changes the weights."""
    data = TrainingData(
        sides=[[[5, 6, 7], [8, 9]], [[10, 11, 12, 13], [14]]], labels=np.array([0.2, 0.9]),
        max_length=8, pad_token_id=0,
    )  # fmt: skip
    input_ids, mask, labels = data.batch(np.arange(2), 0, 2)  # (2, 2, 8) each
    trainable = build(SMOKE_CONFIG)
    optimizer = nnx.Optimizer(trainable, make_optimizer(1e-2, 100, warmup_ratio=0.0), wrt=nnx.Param)
    kernel = trainable.model.bert.layers[0].intermediate.kernel
    old, copy = kernel.get_value(), np.array(kernel.get_value())
    train_step(trainable, optimizer, input_ids, mask, labels, cosine_similarity_loss)
    assert old.is_deleted()  # donated: XLA wrote the update over it
    new = kernel.get_value()
    assert not new.is_deleted()
    assert np.abs(np.asarray(new) - copy).max() > 0

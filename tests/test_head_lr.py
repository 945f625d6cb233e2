"""A loss's own parameters (the softmax head) get their own learning rate, and can be
trained alone first (a linear probe); a run with a head still resumes exactly.

On tiny parameter trees and the tiny BERT of tests/tiny.py: a compile or two each.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from runs import Killed, config_for, kill_after

from minisbert import cli
from minisbert.io.weights import read_safetensors
from minisbert.train import TrainConfig, make_optimizer, train
from minisbert.train_config import HEAD_LR


def tree() -> dict:
    """The Trainable's layout in miniature: the encoder under "model", the head under
    "classifier"."""
    return {
        "model": {"kernel": jnp.array([1.0, -2.0]), "bias": jnp.array([0.5, 0.5])},
        "classifier": {"kernel": jnp.array([0.3, 0.1]), "bias": jnp.array([0.0, 0.0])},
    }


GRADS = {
    "model": {"kernel": jnp.array([0.1, -0.2]), "bias": jnp.array([0.1, 0.1])},
    "classifier": {"kernel": jnp.array([-0.1, 0.2]), "bias": jnp.array([0.3, -0.1])},
}


def steps(tx: optax.GradientTransformation, n: int) -> list[dict]:
    """The parameters after each of n updates with GRADS."""
    params, state, seen = tree(), None, []
    state = tx.init(params)
    for _ in range(n):
        updates, state = tx.update(GRADS, state, params)
        params = optax.apply_updates(params, updates)
        seen.append(params)
    return seen


def test_the_head_learns_at_its_own_rate():
    # Adam's first step is lr * g / |g| = lr * sign(g) (eps aside): the step size is the rate.
    lr, head_lr = 1e-3, 0.5
    tx = make_optimizer(lr, 100, head_lr=head_lr, warmup_ratio=0.0, weight_decay=0.0)
    after = steps(tx, 1)[0]
    start = tree()
    for group, rate in (("model", lr), ("classifier", head_lr)):
        for leaf in ("kernel", "bias"):
            moved = np.asarray(after[group][leaf] - start[group][leaf])
            expected = -rate * np.sign(np.asarray(GRADS[group][leaf]))
            np.testing.assert_allclose(moved, expected, rtol=1e-4, err_msg=f"{group}.{leaf}")


def test_without_head_lr_every_parameter_shares_one_rate():
    tx = make_optimizer(1e-3, 100, warmup_ratio=0.0, weight_decay=0.0)
    after, start = steps(tx, 1)[0], tree()
    for group in ("model", "classifier"):
        moved = np.abs(np.asarray(after[group]["kernel"] - start[group]["kernel"]))
        np.testing.assert_allclose(moved, 1e-3, rtol=1e-4, err_msg=group)


def test_probe_steps_freeze_the_encoder_then_release_it():
    tx = make_optimizer(1e-3, 100, head_lr=1e-2, probe_steps=2, warmup_ratio=0.0)
    history = steps(tx, 3)
    start = tree()
    for t in (0, 1):  # the probe: the head moves, the encoder does not
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(history[t]["model"][leaf], start["model"][leaf])
        assert not np.allclose(history[t]["classifier"]["kernel"], start["classifier"]["kernel"])
    assert not np.allclose(history[2]["model"]["kernel"], start["model"]["kernel"])


def test_probe_steps_need_a_head(tiny_files, tmp_path):
    config = config_for(tiny_files, tmp_path / "run", probe_steps=1)  # cosine: no head
    with pytest.raises(ValueError, match="--probe-steps 1 needs a loss with its own parameters"):
        train(config)


def test_the_cli_default_is_the_trainers():
    assert TrainConfig().head_lr == HEAD_LR  # the one source: the field's default
    args = cli.build_parser().parse_args(["train", "--output", "x"])
    assert args.head_lr == HEAD_LR
    commands = cli.build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    help_text = " ".join(commands.choices["train"].format_help().split())
    assert f"(default {HEAD_LR:g}; 'same' for --lr)" in help_text
    args = cli.build_parser().parse_args(["train", "--output", "x", "--head-lr", "same"])
    assert args.head_lr is None and args.probe_steps is None  # None: PROBE_RATIO of the steps
    assert TrainConfig().probe_steps is None


@pytest.mark.slow  # the long tier (make test-slow): keeps make test short
def test_a_softmax_run_with_its_head_rate_and_probe_resumes_exactly(tiny_files, tmp_path):
    """The optimiser state now has two groups: checkpoints must restore both."""
    classes = str(tiny_files["classes"])
    config = config_for(tiny_files, tmp_path / "straight", data=classes, loss="softmax",
                        head_lr=1e-2, probe_steps=2, checkpoint_steps=3)  # fmt: skip
    train(config)
    interrupted = dataclasses.replace(config, output=str(tmp_path / "resumed"))
    with pytest.raises(Killed):
        train(interrupted, on_step=kill_after(4))  # the last checkpoint is step 3
    result = train(dataclasses.replace(interrupted, resume=True))
    assert len(result.losses) == 3  # steps 4, 5, 6
    for name in ("model.safetensors", "classifier.safetensors"):
        a = read_safetensors(tmp_path / "straight" / name)
        b = read_safetensors(tmp_path / "resumed" / name)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-6, err_msg=f"{name} {key}")


def test_by_default_a_head_learns_alone_for_a_fifth_of_the_steps(tiny_files, tmp_path):
    from pathlib import Path

    from minisbert.train import PaddedSteps, Run
    from minisbert.train_config import PROBE_RATIO

    for loss, data in (("softmax", "classes"), ("cosine", "scores")):
        config = config_for(tiny_files, tmp_path / loss, loss=loss, data=str(tiny_files[data]))
        (tmp_path / loss).mkdir()
        run = Run(config, tmp_path / loss, Path(config.model), PaddedSteps(), None)
        expected = round(PROBE_RATIO * run.total) if loss == "softmax" else 0
        assert run.probe_steps == expected and (loss == "cosine" or expected >= 1)

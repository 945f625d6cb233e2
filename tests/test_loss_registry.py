"""The loss registry is the one table of losses: the CLI, the data checks and training read it.

Adding a loss is one file and one line (a ``Loss`` in ``REGISTRY``); a learner's loss in a
file of their own trains with ``--loss FILE.py:FUNCTION``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runs import train_args

from minisbert.cli import build_parser, main
from minisbert.losses import DATA_KINDS, LOSSES, REGISTRY, Loss, LossError, get_loss
from minisbert.losses.registry import load_file_loss

MY_LOSS = '''
import jax.numpy as jnp

def my_loss(u, v, scores):
    """Squared error between the dot product and the score."""
    return jnp.mean((jnp.sum(u * v, axis=-1) - scores) ** 2)
'''


def test_every_entry_names_known_data_kinds():
    for name, loss in REGISTRY.items():
        assert loss.data and set(loss.data) <= set(DATA_KINDS), name
        assert LOSSES[name] is loss.function


def test_cli_choices_come_from_the_registry():
    train = build_parser()._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    help_text = next(a.help for a in train._actions if a.dest == "loss")
    assert all(name in help_text for name in REGISTRY)


def test_a_file_loss_reads_its_data_from_its_parameter_names(tmp_path: Path):
    (tmp_path / "mine.py").write_text(
        "def a(u, v, scores): ...\ndef b(anchor, positive, negative, margin=1.0): ...\n"
        "def c(classifier, u, v, labels): ...\ndef d(x, y): ...\n"
    )
    assert load_file_loss(f"{tmp_path}/mine.py:a").data == ("scored pairs",)
    assert load_file_loss(f"{tmp_path}/mine.py:b").data == ("triplets",)
    assert load_file_loss(f"{tmp_path}/mine.py:c").head
    with pytest.raises(LossError, match="cannot tell which data"):
        load_file_loss(f"{tmp_path}/mine.py:d")
    with pytest.raises(LossError, match="defines no function 'e'"):
        load_file_loss(f"{tmp_path}/mine.py:e")
    with pytest.raises(LossError, match="unknown loss 'nope'"):
        get_loss("nope")


def test_a_learners_loss_trains_from_the_command_line(tiny_files, tmp_path, capsys):
    (tmp_path / "my_losses.py").write_text(MY_LOSS)
    output = tmp_path / "run"
    args = train_args(tiny_files, output, "scores", f"{tmp_path}/my_losses.py:my_loss")
    assert main(args) == 0, capsys.readouterr().err
    assert f"wrote {output}: 3 steps" in capsys.readouterr().out


def test_a_learners_loss_on_the_wrong_data_says_which_data(tiny_files, tmp_path, capsys):
    (tmp_path / "my_losses.py").write_text(MY_LOSS)
    args = train_args(tiny_files, tmp_path / "run", "triplets", f"{tmp_path}/my_losses.py:my_loss")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "needs scored pairs" in err and len(err.strip().splitlines()) == 1


def test_one_registry_line_adds_a_loss_to_the_cli(tiny_files, tmp_path, capsys, monkeypatch):
    (tmp_path / "extra.py").write_text(MY_LOSS)
    function = load_file_loss(f"{tmp_path}/extra.py:my_loss").function
    monkeypatch.setitem(REGISTRY, "dot_mse", Loss(function, ("scored pairs",)))  # the one line
    output = tmp_path / "run"
    assert main(train_args(tiny_files, output, "scores", "dot_mse")) == 0, capsys.readouterr().err
    assert f"wrote {output}: 3 steps" in capsys.readouterr().out

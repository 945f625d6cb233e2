"""One table of settings (``minisbert.train_config``): the flags of ``minisbert train``, the
config made from them, the range checks and the ``--resume`` command all read it, so none
can drift from another. And a run resolves its loss once: a ``--loss FILE.py:FUNCTION``
file runs once per run.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path

import pytest
from runs import train_args

from minisbert.cli import build_parser, config_from_args, main
from minisbert.run_guard import resume_command
from minisbert.train_config import SETTINGS, TrainConfig, flag_words


def train_parser() -> argparse.ArgumentParser:
    commands = build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    return commands.choices["train"]


def parse(argv: list[str]) -> TrainConfig:
    return config_from_args(build_parser().parse_args(argv))


def test_every_field_is_a_row_and_a_flag_with_help():
    fields = dataclasses.fields(TrainConfig)
    assert list(SETTINGS) == [f.name for f in fields]  # a row per field, none besides
    actions = {a.dest: a for a in train_parser()._actions}
    for field in fields:
        action = actions.get(field.name)
        assert action is not None, f"{field.name}: no flag"
        assert action.option_strings == [SETTINGS[field.name].flag], field.name
        assert action.help and action.help.strip(), f"{field.name}: no help"
        assert action.default == field.default, field.name
    # Where the run's processes are (minisbert.fast.distributed) is not what it computes.
    processes = {"coordinator", "num_processes", "process_id", "distributed"}
    extra = set(actions) - {f.name for f in fields} - {"help"} - processes
    assert not extra, f"train flags that are no TrainConfig field: {extra}"


def test_the_flags_keep_their_names():
    flags = {name: row.flag for name, row in SETTINGS.items()}
    assert flags["batch_size"] == "--batch-size" and flags["head_lr"] == "--head-lr"
    assert flags["progress"] == "--no-progress"
    assert flags["allow_data_change"] == "--allow-data-change"


def test_train_with_only_output_gives_the_configs_defaults():
    assert parse(["train", "--output", "X"]) == TrainConfig(output="X")


def test_the_flags_parse_as_before():
    config = parse(["train", "--output", "X", "--head-lr", "same", "--concat", "u", "mul",
                    "--no-progress", "--resume", "--overwrite", "--allow-data-change",
                    "--dropout-bits", "16", "--probe-steps", "0"])  # fmt: skip
    assert config.head_lr is None and config.concat == ("u", "mul")
    assert not config.progress and config.resume and config.overwrite and config.allow_data_change
    assert config.dropout_bits == 16 and config.probe_steps == 0
    for bad in (["--output", "X", "--head-lr", "fast"], ["--output", "X", "--dropout-bits", "8"],
                []):  # fmt: skip
        with pytest.raises(SystemExit):  # argparse's usage error: --output is required too
            build_parser().parse_args(["train", *bad])


CONFIGS = [
    TrainConfig(output="runs/a"),
    TrainConfig(
        model="weights/my model",
        data="pairs.tsv",
        loss="my_losses.py:f",
        output="out dir",
        lr=1 / 3,
        head_lr=None,
        probe_steps=3,
        seed=2**32 - 1,
        max_steps=7,
        margin=0.5,
        distance="cosine",
        concat=("u", "mul"),
        dropout_bits=16,
        dropout=0.0,
        eval_data="none",
        progress=False,
    ),  # fmt: skip
    TrainConfig(
        loss="mnrl",
        split="dev",
        epochs=3,
        batch_size=8,
        head_lr=0.5,
        probe_steps=0,
        warmup_ratio=0.0,
        weight_decay=0.0,
        max_grad_norm=2.5,
        scale=20.0,
        eval_steps=10,
        checkpoint_steps=1,
        keep_checkpoints=5,
        mini_batch_size=4,
        allow_duplicates=True,
        dropout=0.25,
    ),  # fmt: skip
    TrainConfig(lr=1e-7, margin=0.0, concat=("abs_diff",), eval_data="sick"),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_the_resume_command_parses_back_to_the_config(config):
    command = resume_command(config)
    words = shlex.split(command)
    assert words[:2] == ["minisbert", "train"] and words[-1] == "--resume"
    assert parse(words[1:]) == dataclasses.replace(config, resume=True)


def test_flag_words_spell_what_the_parser_reads():
    assert flag_words("head_lr", None) == ["--head-lr", "same"]
    assert flag_words("progress", False) == ["--no-progress"]
    assert flag_words("concat", ("u", "v")) == ["--concat", "u", "v"]
    with pytest.raises(ValueError, match="--max-steps cannot be set to None"):
        flag_words("max_steps", None)  # None is its default: no flag says it


def test_every_range_names_the_tables_flag():
    bad = {
        "epochs": 0, "lr": 2.0, "head_lr": 0.0, "probe_steps": -1, "seed": 2**32, "max_steps": 0,
        "margin": -1.0, "scale": 0.0, "concat": (), "dropout_bits": 8, "eval_steps": -1,
        "checkpoint_steps": 0, "keep_checkpoints": 0, "model": " ", "mini_batch_size": 0,
        "dropout": 1.0,
    }  # fmt: skip
    for name, value in bad.items():
        row = SETTINGS[name]
        assert row.must is not None, name
        with pytest.raises(ValueError) as info:
            TrainConfig(**{name: value})  # check_settings, in __post_init__
        assert str(info.value) == f"{name}={value!r} ({row.flag}): must be {row.must[0]}"
    for name in ("head_lr", "probe_steps", "max_steps", "margin", "scale", "distance",
                 "mini_batch_size", "dropout"):  # fmt: skip
        TrainConfig(**{name: None})  # None: "the default's meaning", where the row allows it


FILE_LOSS = """
import jax.numpy as jnp
from pathlib import Path

with open(Path(__file__).with_name("runs.txt"), "a") as f:  # one line each time this file runs
    f.write("ran\\n")


def my_loss(u, v, scores):
    return jnp.mean((jnp.sum(u * v, axis=-1) - scores) ** 2)
"""


def test_a_file_loss_runs_once_per_run(tiny_files, tmp_path, capsys):
    (tmp_path / "my_losses.py").write_text(FILE_LOSS)
    output = tmp_path / "run"
    args = train_args(tiny_files, output, "scores", f"{tmp_path}/my_losses.py:my_loss")
    assert main(args) == 0, capsys.readouterr().err
    assert f"wrote {output}: 3 steps" in capsys.readouterr().out
    assert Path(tmp_path / "runs.txt").read_text().splitlines() == ["ran"]


def test_the_peak_rate_defaults_by_the_kind_of_model_and_an_explicit_one_wins():
    from minisbert.train_config import CROSS_ENCODER_LR, LR

    assert TrainConfig().peak_lr() == LR == 2e-5, "the paper's rate for a bi-encoder"
    assert TrainConfig(cross_encoder=True).peak_lr() == CROSS_ENCODER_LR != LR
    assert TrainConfig(cross_encoder=True, lr=LR).peak_lr() == LR, "--lr 2e-5 is kept as asked"
    assert TrainConfig(lr=1e-4).peak_lr() == 1e-4

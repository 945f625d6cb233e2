"""The precision policy (minisbert/precision.py): comparisons at full float32 on every backend."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minisbert import lesson, precision

LESSONS = sorted((Path(__file__).resolve().parent.parent / "lessons").glob("[0-9][0-9]_*.py"))


def test_the_test_session_compares_at_highest():
    assert precision.current() == "highest"
    assert jax.config.jax_default_matmul_precision == "highest"


def test_use_and_exactly_set_and_restore_the_one_knob():
    try:
        precision.use("default")
        assert precision.current() == "default"
        with precision.exactly():
            assert precision.current() == "highest"
            x = jnp.ones((4, 4)) @ jnp.ones((4, 4))
        assert precision.current() == "default"
        np.testing.assert_array_equal(x, 4 * np.ones((4, 4)))
    finally:
        precision.use("highest")


def test_an_unknown_precision_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"precision 'tf32' is not one of default, high, highest"):
        precision.use("tf32")


def test_lesson_setup_pins_highest(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(lesson, "find_weights", lambda *a, **k: tmp_path)
    monkeypatch.setattr(lesson, "find_data", lambda *a, **k: tmp_path)
    try:
        precision.use("default")
        lesson.setup()
        assert precision.current() == "highest"
        assert "precision: float32 products at 'highest'" in capsys.readouterr().out
    finally:
        precision.use("highest")


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_every_lesson_sets_up_before_it_computes(path):
    """Each lesson's first code cell is ``lesson.setup()``, which pins the precision before
    any of its checks compare two computations."""
    parts = re.split(r"^(# %%.*)$", path.read_text(encoding="utf-8"), flags=re.M)
    code = [body for marker, body in zip(parts[1::2], parts[2::2], strict=True)
            if "[markdown]" not in marker]  # fmt: skip
    assert "lesson.setup(" in code[0], f"{path.name}: the first code cell does not call setup"
    assert "import jax" not in code[0], f"{path.name}: computes before setup"


def test_the_command_takes_a_precision(monkeypatch):
    from minisbert import cli

    seen = []
    monkeypatch.setattr(precision, "use", seen.append)
    monkeypatch.setattr(cli, "cmd_demo", lambda args: None)
    parser_args = cli.build_parser().parse_args(["--precision", "highest", "demo"])
    assert parser_args.precision == "highest"
    assert cli.main(["--precision", "highest", "demo"]) == 0 and seen == ["highest"]
    assert cli.build_parser().parse_args(["demo"]).precision == "default"
    assert set(cli.build_parser()._option_string_actions["--precision"].choices) == set(
        precision.PRECISIONS
    )

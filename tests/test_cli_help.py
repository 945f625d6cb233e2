"""The command line as a newcomer meets it: help that is quick (no JAX), says what minisbert
is, and explains every argument; the data folder found as the lessons find it; the final
evaluation of a training run as a table."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minisbert.cli import build_parser, main

HEAVY = ("jax", "flax", "optax", "tokenizers")


def run_python(*codes: str) -> list[str]:
    """Each of ``codes`` in a fresh interpreter (this one has imported JAX already), all started
    at once; their stdouts."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for code in codes
    ]
    outs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outs.append(out)
    return outs


def listing_heavy_modules(code: str) -> str:
    """``code``, then a line that prints which heavy modules it imported."""
    listing = f"sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})"
    return f"import sys\n{code}\nprint({listing})"


def heavy_modules_after(code: str) -> str:
    (out,) = run_python(listing_heavy_modules(code))
    return out.strip()


# ---------------------------------------------------------------- help without JAX


def test_building_the_parser_imports_no_jax():
    assert heavy_modules_after("import minisbert.cli; minisbert.cli.build_parser()") == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "sts", "--help"]])
def test_help_imports_no_jax(argv):
    code = (
        "import contextlib, minisbert.cli\n"
        f"with contextlib.suppress(SystemExit):\n    minisbert.cli.main({argv!r})"
    )
    assert heavy_modules_after(code).splitlines()[-1] == "[]"


def test_the_minisbert_command_helps():
    script = shutil.which("minisbert", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "minisbert.cli"]
    done = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Sentence-BERT in JAX/Flax" in done.stdout


def test_the_package_is_lazy_and_importing_the_core_loads_no_speed_path():
    package, core = run_python(
        listing_heavy_modules("import minisbert"),
        "import sys\n"
        "import minisbert.bert, minisbert.train, minisbert.losses, minisbert.sentence_encoder\n"
        "import minisbert\n"
        "for name in minisbert.__all__:\n"
        "    if name != 'FastEncoder':\n"
        "        getattr(minisbert, name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('minisbert.fast')))\n"
        "from minisbert.sentence_encoder import SentenceEncoder\n"
        "print(SentenceEncoder.default_batcher.__name__,\n"
        "      minisbert.SentenceEncoder is SentenceEncoder,\n"
        "      minisbert.FastEncoder.default_batcher.__name__)",
    )
    assert package.strip() == "[]"
    assert core.splitlines() == ["[]", "SmartBatcher True PackedBatcher"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import minisbert

        minisbert.nope  # noqa: B018


def test_the_loss_names_need_no_jax_and_are_the_registrys():
    assert heavy_modules_after("from minisbert.losses.registry import TABLE") == "[]"
    from minisbert.losses import REGISTRY
    from minisbert.losses.registry import TABLE

    assert list(TABLE) == list(REGISTRY)


# ---------------------------------------------------------------- help on everything


def walk(parser: argparse.ArgumentParser, path: str = "minisbert"):
    """Every (command path, parser, action) below ``parser``."""
    for action in parser._actions:
        yield path, parser, action
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from walk(child, f"{path} {name}")


def test_the_description_says_what_minisbert_is():
    description = build_parser().description or ""
    assert description.splitlines()[0] == (
        "Sentence-BERT in JAX/Flax: embed, compare, search, train and evaluate sentence embeddings."
    )


def test_every_argument_and_command_has_help():
    seen = 0
    for path, _, action in walk(build_parser()):
        if isinstance(action, argparse._HelpAction):
            continue
        seen += 1
        assert action.help and action.help.strip(), f"{path}: {action.dest} has no help"
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: c.help for c in action._choices_actions}
            for name, child in action.choices.items():
                assert child.description or helps.get(name), f"{path} {name}: no description"
    assert seen > 50  # the walk reached train's and eval's options


def test_every_help_formats():
    for path, parser, _ in walk(build_parser()):
        assert parser.format_help(), path  # a stray % in a help string raises here


def test_eval_descriptions_say_what_they_print():
    parsers = {path: parser for path, parser, _ in walk(build_parser())}
    for kind in ("sts", "triplets", "nli"):
        description = " ".join((parsers[f"minisbert eval {kind}"].description or "").split())
        assert "the last line is" in description, kind


# ---------------------------------------------------------------- the data folder


def test_the_data_folder_is_the_env_else_the_cache(monkeypatch, tmp_path):
    from minisbert import lesson
    from minisbert.data import data_folder

    monkeypatch.delenv("MINISBERT_DATA", raising=False)
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path / "cache"))
    assert data_folder() == tmp_path / "cache" / "data"
    assert lesson.data_candidates()[0] == data_folder()  # the lessons look there first too
    monkeypatch.delenv("MINISBERT_CACHE")
    assert data_folder() == Path.home() / ".cache" / "minisbert" / "data"
    monkeypatch.setenv("MINISBERT_DATA", str(tmp_path / "mine"))
    assert data_folder() == tmp_path / "mine"


def test_a_missing_dataset_names_the_folder_and_the_command(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("MINISBERT_DATA", raising=False)
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path))
    assert main(["eval", "sts"]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "data") in err and "`minisbert data fetch`" in err
    assert len(err.strip().splitlines()) == 1

    (tmp_path / "data").mkdir()  # the folder, but no STS Benchmark in it
    assert main(["eval", "sts"]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "data" / "stsbenchmark" / "sts-test.csv") in err
    assert "`minisbert data fetch`" in err and "MINISBERT_DATA is not set" in err


def test_data_fetch_fills_the_data_folder(monkeypatch, tmp_path, capsys):
    import minisbert.data

    calls = []
    monkeypatch.setattr(
        minisbert.data, "fetch_datasets", lambda dest, **kw: calls.append(Path(dest)) or {}
    )
    monkeypatch.delenv("MINISBERT_DATA", raising=False)
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path))
    assert main(["data", "fetch"]) == 0
    assert calls == [tmp_path / "data"]
    assert "export" not in capsys.readouterr().out  # already where train and eval look
    assert main(["data", "fetch", "--dest", str(tmp_path / "elsewhere")]) == 0
    assert f"export MINISBERT_DATA={tmp_path / 'elsewhere'}" in capsys.readouterr().out


# ---------------------------------------------------------------- train's output


def test_the_final_evaluation_is_a_table():
    from minisbert.train import metrics_table

    table = metrics_table(
        {"sts_spearman_cosine": 84.1234, "pairs_f1": 0.8125, "pairs_f1_threshold": 0.70711}
    )
    rows = [line.split() for line in table.splitlines()[2:]]
    assert rows[0] == ["sts_spearman_cosine", "84.12"]  # x100 already
    assert rows[1] == ["pairs_f1", "81.25"]  # a fraction, shown x100
    assert rows[2][:2] == ["pairs_f1_threshold", "0.7071"]  # a cosine, as it is


@pytest.mark.slow  # a whole run (9.4 s at load 7)
def test_train_says_it_compiles_once(tiny_files, tmp_path, capsys):
    from runs import train_args

    args = [a for a in train_args(tiny_files, tmp_path / "run", "scores", "cosine")
            if a != "--no-progress"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert err.count("compiling the training step") == 1
    assert os.path.isdir(tmp_path / "run")

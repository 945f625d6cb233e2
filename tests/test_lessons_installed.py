"""The lessons without a clone: what `pip install` of the wheel gives a student.

- The wheel built from the checkout carries every lesson's notebook, source and solution
  (``minisbert/_lessons``, read from ``lessons/``), and every subpackage of minisbert.
- ``minisbert lessons DIR`` writes the notebooks, and refuses to overwrite them.
- Slow tier: the wheel installed alone into a fresh venv (its dependencies from the package
  registry, as a student gets them), ``minisbert lessons DIR``, then lessons 04 and 06 run top
  to bottom in fast mode from DIR with their exercises unsolved: the reference solutions come
  from the installed package, not from this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from minisbert import cli, lesson

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"
RUN_INSTALLED = ("04_pooling", "06_regression_objective")
# What the fresh venv needs besides the wheel to run a notebook as Jupyter does.
NOTEBOOK_TOOLS = ["ipykernel>=6.29", "nbclient>=0.10", "nbformat>=5.10", "matplotlib>=3.8"]


def test_every_subpackage_is_listed_for_the_wheel():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "minisbert").rglob("__init__.py")
    }
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"


def test_lessons_command_writes_the_notebooks_and_refuses_to_overwrite(tmp_path, capsys):
    folder = tmp_path / "course"
    assert cli.main(["lessons", str(folder)]) == 0
    expected = sorted(p.name for p in LESSONS.glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.name for p in folder.iterdir()) == expected  # and nothing half-written
    source = (LESSONS / expected[0]).read_bytes()
    assert (folder / expected[0]).read_bytes() == lesson.with_address(
        source, lesson.installed_address()
    )  # the lesson, with the address this minisbert came from where it has one
    assert "jupyter lab" in capsys.readouterr().out

    (folder / expected[0]).write_text("my answers")
    assert cli.main(["lessons", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert (folder / expected[0]).read_text() == "my answers", "refused, yet written"
    assert cli.main(["lessons", str(folder), "--overwrite"]) == 0
    assert (folder / expected[0]).read_bytes() == lesson.with_address(
        source, lesson.installed_address()
    )


def first_cell(notebook: dict) -> str:
    return "".join(next(c for c in notebook["cells"] if c["cell_type"] == "code")["source"])


@pytest.mark.parametrize(
    "record, address",
    [
        (None, None),  # from a package index: nothing to write
        ('{"url": "https://github.com/ada/minisbert", "vcs_info": {"vcs": "git", '
         '"requested_revision": "main", "commit_id": "0123abc"}}',
         "git+https://github.com/ada/minisbert@0123abc"),  # the same commit
        ('{"url": "file:///home/ada/minisbert", "dir_info": {"editable": true}}',
         "/home/ada/minisbert"),  # a clone
        ('{"url": "file:///home/ada/my%20course/minisbert", "dir_info": {}}',
         "/home/ada/my course/minisbert"),  # a space in the path, as pip records it
        ('{"url": "file:///tmp/w/minisbert-0.1.0-py3-none-any.whl", "archive_info": {}}',
         "file:///tmp/w/minisbert-0.1.0-py3-none-any.whl"),  # a wheel
        ("not json", None),
        ('{"url": "https://x/m", "vcs_info": {"vcs": "git"}}', None),  # no commit recorded
    ],
)  # fmt: skip
def test_the_install_address_comes_from_pips_record(record, address):
    assert lesson.install_address(record) == address


def test_written_notebooks_install_what_wrote_them(tmp_path, monkeypatch):
    address = 'C:\\Users\\ada "course"\\minisbert'  # a backslash and quotes: JSON escapes both
    monkeypatch.setattr(lesson, "installed_address", lambda: address)
    written = lesson.write_notebooks(tmp_path)
    for path in written:
        cell = first_cell(json.loads(path.read_text()))  # still a valid notebook
        assert f"MINISBERT = {json.dumps(address)}" in cell, path.name
        assert lesson.PLACEHOLDER_ADDRESS not in cell


def test_the_placeholder_stops_the_first_cell_with_a_message(monkeypatch):
    """Where minisbert is missing and MINISBERT is still the placeholder, the set-up cell
    says what to do instead of running pip on an address that does not exist."""
    import importlib.util
    import subprocess as real_subprocess

    notebook = json.loads((LESSONS / "04_pooling.ipynb").read_text())
    cell = first_cell(notebook)
    install = cell[: cell.index("from minisbert import lesson")]  # the install part only
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # as on Colab
    ran = []
    monkeypatch.setattr(real_subprocess, "run", lambda *a, **k: ran.append(a))
    with pytest.raises(SystemExit) as stopped:
        exec(compile(install, "04_pooling.ipynb", "exec"), {})
    assert "set MINISBERT above" in str(stopped.value) and not ran


def test_solutions_come_from_the_checkout_when_the_package_has_none(monkeypatch, tmp_path):
    monkeypatch.setattr(lesson, "lessons_dir", lambda: None)
    assert lesson.solutions_dir() == LESSONS / "solutions"
    monkeypatch.setattr(lesson, "REPO", tmp_path / "no-repo")
    monkeypatch.delenv(lesson.LESSONS_ENV, raising=False)
    assert lesson.solutions_dir() is None
    (tmp_path / "elsewhere" / "solutions").mkdir(parents=True)
    monkeypatch.setenv(lesson.LESSONS_ENV, str(tmp_path / "elsewhere"))
    assert lesson.solutions_dir() == tmp_path / "elsewhere" / "solutions"


# ---------------------------------------------------------------- the wheel, installed alone


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
    )
    (built,) = out.glob("minisbert-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_carries_the_lessons_and_their_solutions(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for source in sorted(LESSONS.glob("[0-9][0-9]_*.py")):
        assert f"minisbert/_lessons/{source.name}" in names
        assert f"minisbert/_lessons/solutions/{source.name}" in names
        if source.with_suffix(".ipynb").is_file():
            assert f"minisbert/_lessons/{source.stem}.ipynb" in names


RUN_NOTEBOOK = """
import sys, nbformat
from nbclient import NotebookClient
path = sys.argv[1]
notebook = nbformat.read(path, as_version=4)
NotebookClient(notebook, timeout=900, kernel_name="python3",
               resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(notebook, path)
"""


@pytest.mark.slow
def test_lessons_run_from_a_folder_with_only_the_wheel_installed(
    wheel, tmp_path, pretrained_dir, data_dir
):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # A real install: the wheel's dependencies from the registry (pip's cache makes it quick).
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel), *NOTEBOOK_TOOLS], check=True
    )
    course = tmp_path / "course"
    subprocess.run([str(venv / "bin" / "minisbert"), "lessons", str(course)], check=True)
    cell = first_cell(json.loads((course / f"{RUN_INSTALLED[0]}.ipynb").read_text()))
    assert f'MINISBERT = "{wheel.resolve().as_uri()}"' in cell  # where Colab would install from

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MINISBERT_", "PYTHON", "VIRTUAL_ENV", "JUPYTER"))
    }
    env.update(
        MINISBERT_FAST="1",
        MINISBERT_DATA=str(data_dir),
        MINISBERT_WEIGHTS=str(pretrained_dir.parent),
        MINISBERT_CACHE=str(tmp_path / "cache"),
        MPLBACKEND="Agg",
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
    )
    installed = subprocess.run(
        [str(python), "-c", "import minisbert; print(minisbert.__file__)"],
        env=env, cwd=course, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert str(venv) in installed and str(ROOT) not in installed, installed
    for name in RUN_INSTALLED:
        notebook = course / f"{name}.ipynb"
        subprocess.run(
            [str(python), "-c", RUN_NOTEBOOK, str(notebook), str(course)],
            env=env, cwd=course, check=True,
        )  # fmt: skip
        printed = "".join(
            "".join(output.get("text", ""))
            for cell in json.loads(notebook.read_text())["cells"]
            for output in cell.get("outputs", [])
        )
        assert f"solutions: {venv}" in printed, "the solutions were not the installed package's"
        assert "Exercise not solved yet" in printed
        assert "reference solution" in printed and "passes the check" in printed

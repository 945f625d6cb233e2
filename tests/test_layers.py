"""The teaching core never imports the speed path (``minisbert.fast``).

A student reads ``bert.py``, ``sentence_encoder.py``, ``losses/`` and ``train.py`` and sees
the paper's method; packing, shape buckets, 16-bit dropout and sharding live in
``minisbert/fast/`` and are plugged in from outside: by ``minisbert/__init__.py`` (encode's
default batcher) and ``cli.py`` (``minisbert train``). This test reads every module's imports
(its source, not a run, so an import inside a function counts too).

The same reading keeps the tests in layers: a test file imports the helper modules (tiny.py,
runs.py, served.py, loss_parity.py) and conftest's fixtures, never another test file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "minisbert"
PLUGS = {"__init__.py", "cli.py"}  # the two places that choose the fast path for a user
CORE = sorted(
    p
    for p in PACKAGE.rglob("*.py")
    if "fast" not in p.relative_to(PACKAGE).parts[:1]
    and p.relative_to(PACKAGE).as_posix() not in PLUGS
)


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_core_is_most_of_the_package():
    names = {p.relative_to(PACKAGE).as_posix() for p in CORE}
    assert {"bert.py", "sentence_encoder.py", "train.py", "losses/softmax.py"} <= names
    assert len(CORE) >= 30


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_core_module_does_not_import_the_fast_path(path):
    fast = sorted(n for n in imported_modules(path) if n.startswith("minisbert.fast"))
    assert not fast, f"{path.relative_to(PACKAGE)} imports {fast}: plug the fast path in instead"


def test_the_check_sees_an_import_of_the_fast_path(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from minisbert.fast.packing import pack\n")
    assert "minisbert.fast.packing" in imported_modules(module)


# ---------------------------------------------------------------- the tests' own layers

TEST_FILES = sorted(TESTS.glob("test_*.py"))


def imported_test_files(path: Path) -> list[str]:
    """The test modules that ``path`` imports: ``test_x`` or ``tests.test_x``."""
    found = set()
    for name in imported_modules(path):
        parts = name.split(".")
        if parts[0].startswith("test_"):
            found.add(parts[0])
        elif parts[0] == "tests" and len(parts) > 1 and parts[1].startswith("test_"):
            found.add(f"tests.{parts[1]}")
    return sorted(found)


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_a_test_file_imports_no_other_test_file(path):
    others = imported_test_files(path)
    assert not others, (
        f"{path.name} imports {others}: move what it shares to a helper module (tiny.py, "
        "runs.py, served.py, loss_parity.py) or a fixture in conftest.py"
    )


def test_the_check_sees_a_test_file_imported_anywhere(tmp_path):
    module = tmp_path / "test_m.py"
    module.write_text(
        "import tiny\nfrom tests.tiny import TINY_CONFIG\n"
        "def f():\n    from test_train import write_pairs\n    import tests.test_cli\n"
    )
    assert imported_test_files(module) == ["test_train", "tests.test_cli"]

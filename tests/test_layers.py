"""The teaching core never imports the speed path (``minisbert.fast``).

A student reads ``bert.py``, ``sentence_encoder.py``, ``losses/`` and ``train.py`` and sees
the paper's method; packing, shape buckets, 16-bit dropout and sharding live in
``minisbert/fast/`` and are plugged in from outside: by ``minisbert/__init__.py`` (encode's
default batcher) and ``cli.py`` (``minisbert train``). This test reads every module's imports
(its source, not a run, so an import inside a function counts too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "minisbert"
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

"""Execute the lessons: jupytext sources -> executed notebooks (and HTML) in a build folder.

    python lessons/run.py --out build/lessons            # every lesson, real data
    MINISBERT_FAST=1 python lessons/run.py 02 03         # fast mode, two lessons
    python lessons/run.py --sync                         # rewrite each .ipynb from its .py

Each lesson's source of truth is ``lessons/NN_topic.py`` (jupytext percent format);
``NN_topic.ipynb`` is the same cells without outputs, for Jupyter and Colab.
Lessons run as a student runs them: exercises unsolved, so each check cell says so and
goes on with the reference solution (``lessons/solutions/``); the working directory is
``lessons/`` unless ``--cwd`` names another (a lesson finds its weights, data and solutions
through ``minisbert.lesson.setup()``, wherever it runs).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

LESSONS = Path(__file__).resolve().parent
ROOT = LESSONS.parent


def lesson_sources(selected: list[str] | None = None) -> list[Path]:
    sources = sorted(p for p in LESSONS.glob("[0-9][0-9]_*.py"))
    if selected:
        sources = [p for p in sources if any(p.name.startswith(s) for s in selected)]
    return sources


def as_notebook(source: Path) -> nbformat.NotebookNode:
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    seen: dict[str, int] = {}
    for cell in notebook.cells:
        cell.id = cell_id(cell, seen)
    return notebook


def cell_id(cell: nbformat.NotebookNode, seen: dict[str, int]) -> str:
    """A cell id made from the cell's own text (nbformat's would be random): writing a lesson
    again gives the same notebook, and editing a cell changes only that cell's id. ``seen``
    counts the ids given so far, so that a repeated cell gets ``-2``, ``-3``, ..."""
    digest = hashlib.sha256(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:12]
    seen[digest] = seen.get(digest, 0) + 1
    return digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"


def sync(source: Path) -> Path | None:
    """Write the output-free .ipynb twin of a lesson source; None when it is already
    exactly that (its file is left alone)."""
    target = source.with_suffix(".ipynb")
    text = jupytext.writes(as_notebook(source), fmt="ipynb").rstrip("\n") + "\n"
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        return None
    target.write_text(text, encoding="utf-8")
    return target


def in_sync(source: Path) -> bool:
    """True when the .ipynb has the same cells as the .py and carries no outputs."""
    twin = source.with_suffix(".ipynb")
    if not twin.is_file():
        return False
    ours, theirs = as_notebook(source), nbformat.read(twin, as_version=4)
    same_cells = [(c.cell_type, c.source) for c in ours.cells] == [
        (c.cell_type, c.source) for c in theirs.cells
    ]
    no_outputs = all(not c.get("outputs") for c in theirs.cells if c.cell_type == "code")
    return same_cells and no_outputs


def execute(
    source: Path, out_dir: Path | None = None, timeout: int = 3600, cwd: Path = LESSONS
) -> float:
    """Run a lesson top to bottom in ``cwd``; return seconds taken. Raises on the first
    failing cell."""
    notebook = as_notebook(source)
    os.environ.setdefault("MPLBACKEND", "Agg")
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    seconds = time.perf_counter() - start
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, out_dir / source.with_suffix(".ipynb").name)
        try:
            from nbconvert import HTMLExporter

            html, _ = HTMLExporter().from_notebook_node(notebook)
            (out_dir / source.with_suffix(".html").name).write_text(html, encoding="utf-8")
        except ImportError:
            pass
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson number prefixes, e.g. 01 04")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "lessons")
    parser.add_argument("--sync", action="store_true", help="rewrite the .ipynb twins and stop")
    parser.add_argument("--cwd", type=Path, default=LESSONS, help="working directory of the kernel")
    parser.add_argument(
        "--timeout",
        type=int,
        default=3 * 3600,
        help="seconds one cell may take (full mode trains three seeds in one cell; lesson 13's "
        "three cross-encoders of four epochs on STS-b take the longest)",
    )
    args = parser.parse_args()
    sources = lesson_sources(args.lessons)
    if args.sync:
        for source in sources:
            if written := sync(source):
                print("wrote", written)
        return 0
    mode = "fast" if os.environ.get("MINISBERT_FAST") == "1" else "full"
    for source in sources:
        seconds = execute(source, args.out, timeout=args.timeout, cwd=args.cwd)
        print(f"{source.name}: {seconds:6.1f} s ({mode} mode) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

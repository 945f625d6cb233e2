"""Training runs for the tests, on the files of ``tiny.write_training_files``: a ``TrainConfig``
and the ``minisbert train`` arguments of a short run, a crash after step N, and a Python
script run in a subprocess (to be killed for real).

A helper module, not a test file (see tiny.py).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from minisbert.train import TrainConfig

# A checkpoint after every step, all of them kept: the runs that are killed and resumed.
EVERY_STEP = {"checkpoint_steps": 1, "keep_checkpoints": 10}


def config_for(files: dict[str, Path], output: Path, **changes) -> TrainConfig:
    """2 epochs of the 24 scored pairs in batches of 8: 6 steps, cosine loss, no evaluation."""
    base = TrainConfig(
        model=str(files["model"]), data=str(files["scores"]), loss="cosine", output=str(output),
        batch_size=8, epochs=2, lr=1e-3, eval_data="none", checkpoint_steps=100, progress=False,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def train_args(
    files: dict[str, Path], output: Path, data: str, loss: str, *extra: str
) -> list[str]:
    """`minisbert train` for 1 epoch of ``files[data]`` (3 steps of 8); ``extra`` comes last,
    so a flag given there again wins (argparse keeps the last)."""
    return [
        "train", "--model", str(files["model"]), "--data", str(files[data]), "--loss", loss,
        "--epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--seed", "0",
        "--output", str(output), "--eval-data", "none", "--no-progress", *extra,
    ]  # fmt: skip


class Killed(Exception):
    """Stands in for a crash or ctrl-C in the middle of a run."""


def kill_after(step: int) -> Callable[[int, float], None]:
    """An ``on_step`` callback that crashes the run once step ``step`` is done."""

    def on_step(done: int, loss: float) -> None:
        if done == step:
            raise Killed(f"killed after step {done}")

    return on_step


def start_script(
    code: str, folder: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``code`` (written to ``folder/driver.py``) as a Python script with ``args``, on
    the CPU, its output captured as text. For a process to be signalled or killed: the
    drivers of test_kill_and_resume.py, test_run_safety.py and test_whole_writes.py wrap
    ``minisbert.cli.main`` with a hook that kills the process at a chosen moment."""
    driver = folder / "driver.py"
    driver.write_text(code)
    return subprocess.Popen(
        [sys.executable, str(driver), *args],
        env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_script(
    code: str, folder: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``start_script``, waited for: the return code (-9 for SIGKILL), stdout and stderr."""
    process = start_script(code, folder, *args, env=env)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)

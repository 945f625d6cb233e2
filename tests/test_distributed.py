"""Training in two real processes (jax.distributed, gloo collectives on the CPU) gives the run
of one process with two devices; a process that dies stops the other.

Two ``minisbert train`` processes, one CPU device each (``JAX_NUM_CPU_DEVICES=1``), joined
through a coordinator on 127.0.0.1, against one process with two devices
(``JAX_NUM_CPU_DEVICES=2``): the same mesh of two devices, the same global batches, seed and
dropout keys, the same jitted program. What may differ is the order of float32 sums in the
collectives (gloo's all-reduce against XLA's in-process one), so the trained models agree to
rounding, far inside 1% of how far training moved them. Tiny model, short sentences: each
collective carries a few kilobytes (large CPU collectives have had bugs in JAX).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny import make_tiny_model_dir

from minisbert import SentenceEncoder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="gloo collectives: Linux and macOS"),
]
WORDS = ["the", "cat", "dog", "sat", "on", "a", "mat", "is", "run", "runs"]
SENTENCES = ["the cat sat on the mat", "a dog runs", "is the cat a dog", "mat", ""]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distributed")
    rng = np.random.default_rng(0)
    lines = ["sentence1\tsentence2\tscore"]
    for _ in range(32):  # 4 global batches of 8
        a, b = (" ".join(rng.choice(WORDS, rng.integers(1, 5))) for _ in range(2))
        lines.append(f"{a}\t{b}\t{rng.random():.3f}")
    (root / "pairs.tsv").write_text("\n".join(lines) + "\n")
    return {"root": root, "model": make_tiny_model_dir(root / "tiny"),
            "data": root / "pairs.tsv", "cache": root / "jax-cache"}  # fmt: skip


def train(files, output: Path, devices: int, *extra: str) -> subprocess.Popen:
    args = ["train", "--model", str(files["model"]), "--data", str(files["data"]),
            "--loss", "cosine", "--epochs", "1", "--batch-size", "8", "--lr", "1e-3",
            "--eval-data", "none", "--no-progress", "--checkpoint-steps", "2",
            "--output", str(output), *extra]  # fmt: skip
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices))
    return subprocess.Popen([sys.executable, "-m", "minisbert.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def two_processes(files, output: Path, *extra: str) -> list[subprocess.Popen]:
    port = free_port()
    return [train(files, output, 1, "--coordinator", f"127.0.0.1:{port}", "--num-processes",
                  "2", "--process-id", str(i), *extra) for i in (0, 1)]  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def test_two_processes_train_the_model_of_one_process_with_two_devices(files):
    one = files["root"] / "one"
    code, out, err = finish(train(files, one, 2))
    assert code == 0, err[-3000:]

    both = files["root"] / "both"
    results = [finish(p) for p in two_processes(files, both)]
    for i, (code, _, err) in enumerate(results):
        assert code == 0, f"process {i}: {err[-3000:]}"
    assert "wrote" in results[0][1] and "wrote" not in results[1][1]  # process 0 writes
    assert (both / "manifest.json").is_file() and len(list((both / "checkpoints").iterdir())) == 2

    start = SentenceEncoder.from_pretrained(files["model"]).encode(SENTENCES)
    single = SentenceEncoder.from_pretrained(one).encode(SENTENCES)
    multi = SentenceEncoder.from_pretrained(both).encode(SENTENCES)
    moved = float(np.abs(single - start).max())
    assert moved > 1e-3  # training did move the vectors
    assert float(np.abs(multi - single).max()) <= 0.01 * moved


def test_settings_for_several_processes_are_checked_in_one_line(files):
    code, _, err = finish(train(files, files["root"] / "bad", 1, "--num-processes", "2"))
    assert code == 1 and err.count("\n") == 1
    assert "need all three of --coordinator HOST:PORT, --num-processes N and --process-id" in err


@pytest.mark.parametrize("killed", [1, 0], ids=["a worker", "the coordinator"])
def test_a_dead_process_stops_the_other_with_one_line(files, killed):
    output = files["root"] / f"killed-{killed}"
    processes = two_processes(files, output, "--epochs", "1000")  # checkpoints every 2 steps
    deadline = time.monotonic() + 300
    while not list(output.glob("checkpoints/step-*")) and time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            break
        time.sleep(0.5)
    assert all(p.poll() is None for p in processes), "both should be training"
    time.sleep(2)  # well into the steps
    processes[killed].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    survivor = 1 - killed
    code, _, err = finish(processes[survivor], timeout=180)
    assert time.monotonic() - killed_at < 180
    # One line: no shutdown barrier waited on, no C++ stack trace. A dead worker breaks the
    # coordinator's next collective (a Python error: exit status 1); a dead coordinator is
    # noticed first by the worker's C++ coordination client, which aborts the process
    # (fast/fatal_log.py turns its log into the line).
    assert code != 0 and err.count("\n") == 1, err[-3000:]
    assert f"process {survivor} of 2: " in err and "--resume" in err
    if killed == 1:
        assert code == 1 and "another process of the run stopped" in err
    else:
        assert "JAX's coordination service stopped this process" in err
        log = Path(err.rsplit("JAX's log: ", 1)[1].strip().rstrip(")"))
        assert "Terminating process" in log.read_text()  # the C++ log, kept whole
        log.unlink()
    finish(processes[killed])

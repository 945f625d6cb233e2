"""Killing a training run: a kill at any moment loses at most the steps since the last complete
checkpoint, --resume then ends exactly where an uninterrupted run ends, and bad runs stop early.

Covered elsewhere, not repeated here:

- a NaN loss stops naming the step, batch index and last checkpoint (test_train.py);
- a crash (an exception) between steps, or between a checkpoint's files, then --resume
  equals the uninterrupted run (test_checkpoint.py);
- an --output under a file fails before training (test_train.py);
- the same seed gives bit-identical losses and weights within one process (test_train.py);
- STS scores out of range and NLI labels such as "maybe" in the readers (test_data.py).

Here a *real* SIGKILL hits a training subprocess in the middle of writing a checkpoint: the
process dies at once, leaving half-written temporary files, as a power cut or the OOM killer
would. The subprocesses share a JAX compilation cache, so only the first one compiles.
All on a one-layer tiny BERT (hidden 36, 3 heads, vocab 99) to keep compiles short.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import runs
from runs import EVERY_STEP, run_script
from tiny import ONE_LAYER, random_model_dir, write_pairs

from minisbert import SentenceEncoder
from minisbert.cli import main
from minisbert.data import DataError
from minisbert.io import checkpoint
from minisbert.io.manifest import ManifestError
from minisbert.io.weights import read_safetensors
from minisbert.losses import cosine_similarity_loss
from minisbert.train import TrainConfig, TrainingError, epoch_order, train


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hardening-train")
    return {
        "root": root,
        "model": random_model_dir(root / "tiny1", ONE_LAYER),
        "scores": write_pairs(root / "scores.tsv"),  # 24 pairs: 3 batches of 8 per epoch
        "jax_cache": root / "jax-cache",
    }


def config_for(files: dict[str, Path], output: Path, **changes) -> TrainConfig:
    """runs.config_for's 6 steps, with a checkpoint after each."""
    return runs.config_for(files, output, **{**EVERY_STEP, **changes})


# ---------------------------------------------------------------- SIGKILL of a subprocess

# Runs `minisbert ...` and, if KILL names a file of the run (relative to --output), sends
# itself SIGKILL halfway through writing that file, inside minisbert's own writers: half the
# bytes are on disk, and nothing after that point runs (no rename, no clean-up).
DRIVER = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    from minisbert.cli import main

    argv = sys.argv[1:]
    output = Path(argv[argv.index("--output") + 1])
    target = output / os.environ["KILL"] if os.environ.get("KILL") else None

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    import minisbert.io.checkpoint as checkpoint
    import minisbert.io.manifest as manifest
    real_write_atomic = manifest.write_atomic
    def is_target(path):  # the file itself, or its copy in the folder built beside it
        path = Path(path)
        if path == target:
            return True
        built = path.parent.parent  # OUTPUT/checkpoints/.step-N.partial-PID-X/new/FILE
        return (path.name == target.name and path.parent.name == "new"
                and built.parent == target.parent.parent
                and built.name.startswith(f".{target.parent.name}.partial-"))
    def write_atomic(path, data):  # every file a run writes goes through here
        if target and is_target(path):
            data = data.encode() if isinstance(data, str) else data
            (Path(path).parent / f".{target.name}.killed.tmp").write_bytes(data[: len(data) // 2])
            die()
        real_write_atomic(path, data)
    checkpoint.write_atomic = manifest.write_atomic = write_atomic

    sys.exit(main(argv))
    """
)


def run_cli(files: dict[str, Path], output: Path, *extra: str, kill: str | None = None):
    args = [
        "train", "--model", str(files["model"]), "--data", str(files["scores"]),
        "--loss", "cosine", "--epochs", "2", "--batch-size", "8", "--lr", "1e-3",
        "--checkpoint-steps", "1", "--keep-checkpoints", "10", "--eval-data", "none",
        "--no-progress", "--output", str(output), *extra,
    ]  # fmt: skip
    env = {
        "KILL": kill or "",
        "JAX_COMPILATION_CACHE_DIR": str(files["jax_cache"]),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    return run_script(DRIVER, files["root"], *args, env=env)


def step_dir(output: Path, step: int) -> Path:
    return output / "checkpoints" / f"step-{step:08d}"


def partials(output: Path, step: int) -> list[Path]:
    """The hidden folders that checkpoint ``step`` is built in before it is swapped in."""
    return sorted((output / "checkpoints").glob(f".step-{step:08d}.partial-*"))


def latest_step(output: Path) -> int:
    latest = checkpoint.latest_checkpoint(output / "checkpoints")
    return int(latest.name.split("-")[1]) if latest else 0


def assert_checkpoint_equals(output: Path, reference: Path, step: int, atol: float = 1e-6):
    """Checkpoint ``step`` is complete, loads, and holds the reference run's numbers."""
    ours, theirs = step_dir(output, step), step_dir(reference, step)
    state = json.loads((ours / checkpoint.STATE).read_text())
    assert state["step"] == step
    loss = json.loads((theirs / checkpoint.STATE).read_text())["loss_value"]
    np.testing.assert_allclose(state["loss_value"], loss, rtol=0, atol=atol)
    for name in ("params.safetensors", "optimizer.safetensors"):
        a, b = read_safetensors(ours / name), read_safetensors(theirs / name)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=0, atol=atol, err_msg=f"{name} {key}")


@pytest.fixture(scope="module")
def straight(files) -> Path:
    """6 steps (2 epochs of 3 batches) in a subprocess, never interrupted; a checkpoint per step."""
    output = files["root"] / "straight"
    result = run_cli(files, output)
    assert result.returncode == 0, result.stderr[-3000:]
    return output


@pytest.mark.slow  # the long tier: make test-slow
@pytest.mark.skipif(sys.platform == "win32", reason="no SIGKILL on Windows")
def test_sigkill_during_checkpoint_writes_then_resume_equals_uninterrupted(files, straight):
    output = files["root"] / "killed"

    # 1. Killed while writing step 2's optimizer state (its parameters are already on disk,
    # in the folder built beside step-00000002, which never appears under its name).
    result = run_cli(files, output, kill="checkpoints/step-00000002/optimizer.safetensors")
    assert result.returncode == -9, result.stderr[-3000:]  # died of SIGKILL, nothing cleaned up
    assert not step_dir(output, 2).exists()
    assert len(partials(output, 2)) == 1  # the half-built folder of the killed process
    assert latest_step(output) == 1
    assert_checkpoint_equals(output, straight, 1)

    # 2. Resumed from step 1, killed halfway through step 4's state.json.
    result = run_cli(files, output, "--resume", kill="checkpoints/step-00000004/state.json")
    assert result.returncode == -9, result.stderr[-3000:]
    assert not step_dir(output, 4).exists()
    assert latest_step(output) == 3
    assert partials(output, 2) == []  # the dead process's folder was removed
    for step in (2, 3):
        assert_checkpoint_equals(output, straight, step)

    # 3. Resumed from step 3, killed halfway through step 5's manifest, written last: all of
    # step 5's files are whole, but the folder is not swapped in without its manifest.
    result = run_cli(files, output, "--resume", kill="checkpoints/step-00000005/manifest.json")
    assert result.returncode == -9, result.stderr[-3000:]
    assert not step_dir(output, 5).exists()
    assert latest_step(output) == 4

    # 4. Resumed from step 4, ran to the end, killed while writing the final model: the
    # folder has no manifest yet, so loading it is refused rather than read half-written.
    result = run_cli(files, output, "--resume", kill="model.safetensors")
    assert result.returncode == -9, result.stderr[-3000:]
    assert not (output / "model.safetensors").exists()
    assert latest_step(output) == 6
    with pytest.raises(ManifestError, match="never finished writing the model"):
        SentenceEncoder.from_pretrained(output)

    # 5. Resumed once more: nothing left to train, the model is written.
    result = run_cli(files, output, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "6 steps" in result.stdout
    for step in range(1, 7):
        assert_checkpoint_equals(output, straight, step)
    final, expected = (read_safetensors(o / "model.safetensors") for o in (output, straight))
    assert final.keys() == expected.keys()
    for name in final:
        np.testing.assert_allclose(final[name], expected[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.slow  # the long tier: make test-slow
def test_same_seed_in_another_process_is_bit_identical(files, straight):
    """Nothing (hash seeds, dict order, thread timing) leaks into the numbers between processes."""
    output = files["root"] / "again"
    result = run_cli(files, output)
    assert result.returncode == 0, result.stderr[-3000:]
    for step in range(1, 7):
        assert_checkpoint_equals(output, straight, step, atol=0)
    a, b = (read_safetensors(o / "model.safetensors") for o in (output, straight))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# ---------------------------------------------------------------- in-process: bad steps, full disks

MARKER = 0.999  # a score that makes inf_on_marker return inf


def inf_on_marker(u, v, scores):
    """The cosine loss, but +inf for a batch holding the marker score. One function for every
    test below, so that the train step compiles once."""
    loss = cosine_similarity_loss(u, v, scores)
    return jnp.where(jnp.any(scores == jnp.float32(MARKER)), jnp.inf, loss)


@pytest.mark.slow  # a whole run to the inf loss (21.0 s at load 7)
def test_inf_loss_stops_naming_step_batch_and_a_loadable_checkpoint(files, tmp_path):
    # 25 rows make 3 batches of 8: one row sits out each epoch. The marker goes on the row
    # that sits out epoch 1, so the loss turns inf in epoch 2, after a few good checkpoints.
    rows = write_pairs(tmp_path / "poisoned.tsv", n=25).read_text().splitlines()
    poisoned_row = epoch_order(0, 0, 25)[24]
    batch = int(np.flatnonzero(epoch_order(0, 1, 25) == poisoned_row)[0]) // 8
    assert batch < 3, "the row sits out epoch 2 as well: pick another seed"
    rows[1 + poisoned_row] = rows[1 + poisoned_row].rsplit("\t", 1)[0] + f"\t{MARKER}"
    (tmp_path / "poisoned.tsv").write_text("\n".join(rows) + "\n")

    steps = []
    with pytest.raises(TrainingError) as info:
        train(config_for(files, tmp_path / "run", data=str(tmp_path / "poisoned.tsv")),
              loss_fn=inf_on_marker, on_step=lambda step, loss: steps.append(step))  # fmt: skip
    message = str(info.value)
    bad_step = 3 + batch + 1
    assert f"the loss is inf at step {bad_step} (epoch 2, batch index {batch} in the" in message
    assert steps == list(range(1, bad_step))  # stopped at once: the bad step never completed
    last_good = step_dir(tmp_path / "run", bad_step - 1)
    assert f"Last good checkpoint: {last_good}" in message
    assert checkpoint.latest_checkpoint(tmp_path / "run" / "checkpoints") == last_good
    assert read_safetensors(last_good / "params.safetensors")  # complete and readable
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_full_disk_mid_run_names_the_last_checkpoint_and_resume_recovers(
    files, tmp_path, monkeypatch
):
    reference = train(config_for(files, tmp_path / "reference"), loss_fn=inf_on_marker)
    real_fsync = os.fsync

    def full_disk_at_step_4(fd: int) -> None:  # the written bytes reach the disk: it is full
        if "step-00000004" in os.readlink(f"/proc/self/fd/{fd}"):  # the file being written
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk_at_step_4)  # under every atomic write
    config = config_for(files, tmp_path / "run")
    with pytest.raises(checkpoint.OutputError) as info:
        train(config, loss_fn=inf_on_marker)
    message = str(info.value)
    assert "could not write the checkpoint of step 4" in message
    assert "No space left on device" in message
    assert f"Last complete checkpoint: {step_dir(tmp_path / 'run', 3)}" in message
    assert "--resume" in message
    assert not list((tmp_path / "run").rglob("*.tmp"))  # no half-written file left behind

    monkeypatch.setattr(os, "fsync", real_fsync)
    resumed = train(dataclasses.replace(config, resume=True), loss_fn=inf_on_marker)
    np.testing.assert_allclose(resumed.losses, reference.losses[3:], rtol=0, atol=1e-6)
    a, b = (read_safetensors(tmp_path / o / "model.safetensors") for o in ("run", "reference"))
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-6, err_msg=name)


def test_a_disk_too_full_for_the_checkpoints_fails_before_training(files, tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=100_000))
    with pytest.raises(checkpoint.OutputError, match=r"needs about [\d.]+ MB .* 0\.1 MB free"):
        train(config_for(files, tmp_path / "run"), on_step=lambda *_: pytest.fail("trained"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_unwritable_output_is_one_line_from_the_cli(files, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = ["train", "--model", str(files["model"]), "--data", str(files["scores"]),
            "--output", str(blocker / "run"), "--no-progress"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"minisbert train: error: --output {blocker / 'run'} is not a writable folder" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------- labels out of range


def write_rows(path: Path, header: str, labels: list[object]) -> Path:
    lines = [header] + [f"the cat sat\ta dog runs\t{label}" for label in labels]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "loss, labels, message",
    [
        ("cosine", [0.2, 0.5, 7, 0.1], r", line 4: score 7 is outside \[0, 1\]"),
        ("cosine", [0.2, -0.5, 1.0], r", line 3: score -0.5 is outside \[0, 1\]"),
        ("softmax", [0, 1, 2, -1, 1], r", line 5: label -1 is negative"),
        (
            "softmax",
            [0, 1, 2, 11, 1],
            r", line 5: label 11 is the largest class id, but no "
            r"example has class 3, 4, 5, 6, 7",
        ),
    ],
)
def test_labels_out_of_range_are_refused_with_the_row(files, tmp_path, loss, labels, message):
    data = write_rows(tmp_path / "data.tsv", "sentence1\tsentence2\tlabel", labels * 4)
    with pytest.raises(DataError, match=message):
        train(config_for(files, tmp_path / "run", data=str(data), loss=loss),
              on_step=lambda *_: pytest.fail("trained"))  # fmt: skip


STS_ROW = "main-captions\tMSRvid\t2012test\t{id:04d}\t{score}\tA man eats.\tA man is eating."


def test_an_sts_score_of_7_and_an_nli_label_maybe_stop_the_cli(
    files, tmp_path, monkeypatch, capsys
):
    """Through `minisbert train --data stsb` / `--data snli`, as a student would meet them."""
    data = tmp_path / "data"
    rows = [STS_ROW.format(id=i, score=score) for i, score in enumerate([4.2, 1, 7, 3])]
    (data / "stsbenchmark").mkdir(parents=True)
    (data / "stsbenchmark" / "sts-train.csv").write_text("\n".join(rows) + "\n")
    (data / "snli").mkdir()
    snli = {
        "s1": ["A dog runs ."] * 3,
        "s2": ["A dog moves .", "It sleeps .", "A cat ."],
        "labels": ["entailment", "contradiction", "maybe"],
    }
    for name, lines in snli.items():
        (data / "snli" / f"{name}.train").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("MINISBERT_DATA", str(data))

    base = ["train", "--model", str(files["model"]), "--output", str(tmp_path / "run"),
            "--eval-data", "none", "--no-progress"]  # fmt: skip
    assert main([*base, "--data", "stsb", "--loss", "cosine"]) == 1
    err = capsys.readouterr().err
    assert f"{data / 'stsbenchmark' / 'sts-train.csv'}:3: score 7 is outside [0, 5]" in err
    assert main([*base, "--data", "snli", "--loss", "softmax"]) == 1
    err = capsys.readouterr().err
    assert f"{data / 'snli' / 'labels.train'}:3: NLI label 'maybe' is not one of" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()

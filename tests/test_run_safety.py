"""Run safety of training: --output is never someone else's folder, one run per folder,
settings checked before any work, Ctrl-C / SIGTERM end cleanly, and --resume trusts only
whole checkpoints of the same data.

In process
where possible, on the session's tiny BERT (hidden 36, 3 heads, vocab 99; conftest.py's
tiny_files), whose runs of the same shapes in test_checkpoint.py and test_cli_help.py
compiled the same programs already; the signal tests run `minisbert train` in a subprocess.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import runs
from flax import nnx
from runs import EVERY_STEP, Killed, kill_after, start_script
from tiny import ONE_LAYER, TINY_CONFIG, random_model_dir

from minisbert import run_guard
from minisbert.cli import main
from minisbert.config import SentenceConfig
from minisbert.data import PairExample
from minisbert.io import checkpoint
from minisbert.io.manifest import read_manifest, verify_manifest
from minisbert.io.weights import read_safetensors
from minisbert.losses import cosine_similarity_loss
from minisbert.sentence_encoder import SentenceModel
from minisbert.train import TrainConfig, TrainingError, train


def config_for(files: dict[str, Path], output: Path, **changes) -> TrainConfig:
    """runs.config_for's 6 steps, with a checkpoint after each."""
    return runs.config_for(files, output, **{**EVERY_STEP, **changes})


def cli_args(files: dict[str, Path], output: Path, *extra: str, model: Path | None = None):
    """runs.train_args's `minisbert train` of the scored pairs (3 steps)."""
    files = {**files, "model": model or files["model"]}
    return runs.train_args(files, output, "scores", "cosine", *extra)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


# ---------------------------------------------------------------- 4. --output is the run's own


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("how", ["same path", "symlink", "inside"])
def test_the_model_folder_is_never_the_output(tiny_files, tmp_path, capsys, how, overwrite):
    model = random_model_dir(tmp_path / "base", ONE_LAYER)
    before = snapshot(model)
    output = {"same path": model, "symlink": tmp_path / "link", "inside": model / "run"}[how]
    if how == "symlink":
        output.symlink_to(model)
    extra = ["--overwrite"] if overwrite else []
    assert main(cli_args(tiny_files, output, *extra, model=model)) == 1
    err = capsys.readouterr().err
    assert f"minisbert train: error: --output {output} is the --model folder" in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(model) == before  # not one file written, changed or removed


def test_a_folder_holding_other_files_needs_overwrite(tiny_files, tmp_path, capsys):
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"mine": true}')
    assert main(cli_args(tiny_files, project)) == 1
    err = capsys.readouterr().err
    assert (
        f"--output {project} already holds files (config.json) and is not a minisbert "
        "training folder; choose an empty or new --output, or pass --overwrite" in err
    )
    assert snapshot(project) == {"config.json": b'{"mine": true}'}

    assert main(cli_args(tiny_files, project, "--overwrite")) == 0  # asked for: it is replaced
    assert json.loads((project / "config.json").read_text())["hidden_size"] == 36
    assert (project / run_guard.MARKER).is_file()


def test_a_runs_own_folder_and_an_empty_one_are_accepted(tiny_files, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    train(config_for(tiny_files, empty, checkpoint_steps=3))
    assert (empty / run_guard.MARKER).is_file()
    # Its own folder: --resume goes on without --overwrite (here: nothing left to train).
    assert train(config_for(tiny_files, empty, checkpoint_steps=3, resume=True)).losses == []


def test_the_trained_model_has_a_manifest_of_its_files(tiny_files, tmp_path):
    output = tmp_path / "run"
    train(config_for(tiny_files, output, checkpoint_steps=3))
    verify_manifest(output)
    assert sorted(read_manifest(output)) == [
        "config.json", "model.safetensors", "sentence.json", "tokenizer.json",
    ]  # fmt: skip
    step = output / "checkpoints" / "step-00000003"
    verify_manifest(step)
    assert sorted(read_manifest(step)) == [
        "optimizer.safetensors",
        "params.safetensors",
        "state.json",
    ]


# ---------------------------------------------------------------- 5. one run per folder

HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from minisbert.run_guard import lock_output
    lock_output(Path(sys.argv[1]))
    print("locked", flush=True)
    time.sleep(120)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")
def test_a_second_run_into_a_locked_folder_names_the_first(tiny_files, tmp_path, capsys):
    output = tmp_path / "run"
    output.mkdir()
    command = [sys.executable, "-c", HOLD_LOCK, str(output)]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(cli_args(tiny_files, output)) == 1
        err = capsys.readouterr().err
        assert f"--output {output} is in use by another training (pid {holder.pid} on " in err
        assert ", started 20" in err  # the holder's start time
        assert len(err.strip().splitlines()) == 1
        assert not (output / "checkpoints").exists()
    finally:
        holder.kill()  # SIGKILL: no clean-up, as a crash; the kernel drops the lock
        holder.wait()
    assert main(cli_args(tiny_files, output)) == 0  # no stale lock


# ---------------------------------------------------------------- 6. settings


@pytest.mark.parametrize(
    "flag, value, shown, allowed",
    [
        ("--batch-size", "0", "0", "an integer >= 1"),
        ("--batch-size", "-1", "-1", "an integer >= 1"),
        ("--checkpoint-steps", "0", "0", "an integer >= 1"),
        ("--lr", "nan", "nan", "a number in (0, 1]"),
        ("--lr", "-0.00002", "-2e-05", "a number in (0, 1]"),
        ("--warmup-ratio", "-0.1", "-0.1", "a number in [0, 1]"),
        ("--weight-decay", "1e9", "1000000000.0", "a number in [0, 1]"),
        ("--max-steps", "0", "0", "an integer >= 1, or None for all epochs"),
        ("--epochs", "0", "0", "an integer >= 1"),
        ("--max-grad-norm", "inf", "inf", "a number > 0"),
        ("--seed", "-1", "-1", "an integer in [0, 2**32)"),
        ("--keep-checkpoints", "0", "0", "an integer >= 1"),
    ],
)
def test_a_setting_out_of_range_is_one_line_before_any_work(
    tiny_files, tmp_path, capsys, flag, value, shown, allowed
):
    assert main([*cli_args(tiny_files, tmp_path / "run"), flag, value]) == 1
    err = capsys.readouterr().err
    name = flag[2:].replace("-", "_")
    assert err == f"minisbert train: error: {name}={shown} ({flag}): must be {allowed}\n"
    assert not (tmp_path / "run").exists()  # refused before the output folder was made


def test_train_config_checks_its_settings():
    with pytest.raises(ValueError, match=r"^batch_size=0 \(--batch-size\): must be an integer"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"^batch_size=8.0 .* an integer"):
        TrainConfig(batch_size=8.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^lr='1e-3' \(--lr\)"):
        TrainConfig(lr="1e-3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^head_lr=inf"):
        TrainConfig(head_lr=float("inf"))
    with pytest.raises(ValueError, match=r"^output='' \(--output\): must be a non-empty string"):
        TrainConfig(output="")
    TrainConfig(head_lr=None, max_steps=None, margin=0.0, eval_steps=0, warmup_ratio=0)  # all fine


def nan_gradient_loss(u, v, scores):
    """The cosine loss plus sqrt(0 * sum(u)): its value is the cosine loss, but the gradient
    of sqrt at 0 is infinite, and inf * 0 is NaN, so every weight turns NaN."""
    return cosine_similarity_loss(u, v, scores) + jnp.sqrt(0.0 * jnp.sum(u))


@pytest.mark.slow  # the long tier (make test-slow): keeps make test short
def test_weights_gone_nan_are_never_written(tiny_files, tmp_path):
    output = tmp_path / "run"
    losses = []
    with pytest.raises(TrainingError) as info:
        train(config_for(tiny_files, output), loss_fn=nan_gradient_loss,
              on_step=lambda step, loss: losses.append(loss))  # fmt: skip
    message = str(info.value)
    assert message.startswith("the weights after step 1: ")
    assert "holds NaN or inf: training diverged; stopped without saving" in message
    assert "Last good checkpoint: none" in message
    assert losses == []  # the step's own loss was finite, but no step completed
    assert not list((output / "checkpoints").glob("step-*"))
    assert not (output / "model.safetensors").exists()


def test_save_model_refuses_nan_weights(tiny_files, tmp_path):
    model = SentenceModel(TINY_CONFIG, SentenceConfig(max_seq_length=32), rngs=nnx.Rngs(0))
    kernel = model.bert.layers[0].intermediate.kernel
    kernel.set_value(kernel.get_value().at[0, 0].set(jnp.nan))
    (tmp_path / "out").mkdir()
    with pytest.raises(
        checkpoint.NonFiniteWeights, match=r"layers.0.intermediate.kernel holds NaN"
    ):
        checkpoint.save_model(tmp_path / "out", model, tiny_files["model"])
    assert list((tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------------- 9. resume


@pytest.fixture(scope="module")
def straight(tiny_files, tmp_path_factory) -> Path:
    """6 steps (2 epochs of 3 batches) without interruption, a checkpoint per step."""
    output = tmp_path_factory.mktemp("straight") / "run"
    train(config_for(tiny_files, output))
    return output


def assert_same_model(a: Path, b: Path) -> None:
    wa, wb = read_safetensors(a / "model.safetensors"), read_safetensors(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_allclose(wa[name], wb[name], rtol=0, atol=1e-6, err_msg=name)


def test_resume_skips_damaged_checkpoints_for_the_newest_whole_one(
    tiny_files, straight, tmp_path, capsys
):
    output = tmp_path / "run"
    config = config_for(tiny_files, output)
    with pytest.raises(Killed):
        train(config, on_step=kill_after(4))
    steps = output / "checkpoints"
    params = steps / "step-00000004" / "params.safetensors"
    data = bytearray(params.read_bytes())
    data[-5] ^= 0x01  # one flipped bit in a weight: the size is unchanged
    params.write_bytes(bytes(data))
    optimizer = steps / "step-00000003" / "optimizer.safetensors"
    os.truncate(optimizer, optimizer.stat().st_size // 2)
    capsys.readouterr()

    result = train(dataclasses.replace(config, resume=True))
    out = [line for line in capsys.readouterr().out.splitlines() if line.startswith("--resume")]
    assert out[0] == (
        f"--resume: skipping checkpoint step-00000004: {params}: sha256 differs from "
        "manifest.json (damaged or edited)"
    )
    assert out[1].startswith(f"--resume: skipping checkpoint step-00000003: {optimizer}: ")
    assert len(result.losses) == 4  # steps 3..6, from step 2
    assert_same_model(output, straight)


def test_resume_refuses_changed_data_unless_allowed(tiny_files, straight, tmp_path):
    data = tmp_path / "scores.tsv"
    data.write_text(tiny_files["scores"].read_text())
    config = config_for(tiny_files, tmp_path / "run", data=str(data))
    with pytest.raises(Killed):
        train(config, on_step=kill_after(2))
    lines = data.read_text().splitlines()
    lines[5] = lines[5].rsplit("\t", 1)[0] + "\t0.123"  # one score edited
    data.write_text("\n".join(lines) + "\n")

    with pytest.raises(TrainingError, match=r"--resume: the training data --data .* changed since"):
        train(dataclasses.replace(config, resume=True))
    result = train(dataclasses.replace(config, resume=True, allow_data_change=True))
    assert len(result.losses) == 4


def test_the_data_fingerprint_is_of_texts_and_labels_not_line_numbers():
    a = [PairExample("a cat", "a dog", 0.5, line=2), PairExample("the mat", "a mat", 1.0, line=3)]
    moved = [dataclasses.replace(e, line=e.line + 1) for e in a]
    assert checkpoint.data_fingerprint(moved) == checkpoint.data_fingerprint(a)
    for changed in ([a[0], dataclasses.replace(a[1], label=0.9)], a[::-1], a[:1]):
        assert checkpoint.data_fingerprint(changed) != checkpoint.data_fingerprint(a)


# ---------------------------------------------------------------- 7. SIGINT and SIGTERM

# `minisbert train` as a shell runs it (SIGINT at its default), with two test hooks around
# the train step: SIGNAL_IN_FIRST_STEP sends SIGINT from a thread 0.1 s into the first call
# (which compiles for seconds), and STEP_DELAY slows every later step down.
DRIVER = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import minisbert.fast.training as train
    from minisbert.cli import main

    real_step, calls, sent = train.packed_train_step, [], []

    def send():
        sent.append(True)
        os.kill(os.getpid(), signal.SIGINT)

    def train_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1 and os.environ.get("SIGNAL_IN_FIRST_STEP"):
            threading.Timer(0.1, send).start()
            loss = real_step(*args, **kwargs)
            print(f"SIGINT sent during the first step: {bool(sent)}", file=sys.stderr)
            return loss
        time.sleep(float(os.environ.get("STEP_DELAY", "0")))
        return real_step(*args, **kwargs)

    train.packed_train_step = train_step
    sys.exit(main(sys.argv[1:]))
    """
)


def start(tiny_files, output: Path, *extra: str, **env: str) -> subprocess.Popen:
    args = cli_args(tiny_files, output, "--epochs", "20", "--checkpoint-steps", "5", *extra)
    return start_script(DRIVER, output.parent, *args, env=env)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def wait_for(path: Path, process: subprocess.Popen) -> None:
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.05)


def resume_line(err: str) -> list[str]:
    """The printed `minisbert train ... --resume` command, as arguments for main()."""
    command = err.strip().splitlines()[-1].strip()
    assert command.startswith("minisbert train ") and command.endswith(" --resume"), err
    return shlex.split(command)[1:]


@pytest.mark.slow  # the long tier: a subprocess that compiles a train step
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_while_the_first_step_compiles_ends_cleanly(tiny_files, tmp_path):
    process = start(tiny_files, tmp_path / "run", SIGNAL_IN_FIRST_STEP="1")
    rc, out, err = finish(process)
    assert "SIGINT sent during the first step: True" in err  # the compile outlasted 0.1 s
    assert rc == 130, err[-3000:]  # not -11 (a segfault)
    assert "Traceback" not in err
    assert "minisbert train: interrupted by SIGINT after step 1 of 60; no checkpoint was" in err
    assert resume_line(err)[-1] == "--resume"


@pytest.mark.slow  # the long tier: make test-slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_one_second_into_the_run_ends_cleanly(tiny_files, tmp_path):
    """One second after the run claims its folder, it is loading data or compiling its first
    step; wherever Ctrl-C lands there, the run ends with 130 and the resume command.
    (Before that, while Python imports JAX, Ctrl-C is Python's own KeyboardInterrupt.)"""
    output = tmp_path / "run"
    process = start(tiny_files, output)
    wait_for(output / run_guard.MARKER, process)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    rc, out, err = finish(process)
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err
    assert "minisbert train: interrupted by SIGINT after step " in err
    assert resume_line(err)[-1] == "--resume"


@pytest.mark.slow  # the long tier: make test-slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum, rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_run_keeps_the_checkpoint_and_prints_the_resume_command(
    tiny_files, tmp_path, capsys, signum, rc
):
    output = tmp_path / "run"
    process = start(tiny_files, output, STEP_DELAY="0.05")
    first = output / "checkpoints" / "step-00000005" / "manifest.json"
    wait_for(first, process)
    process.send_signal(signum)
    code, out, err = finish(process)
    assert code == rc, err[-3000:]
    assert "Traceback" not in err
    name = signal.Signals(signum).name
    stopped = err.split(f"minisbert train: interrupted by {name} after step ")[1]
    step = int(stopped.split()[0])
    last = checkpoint.latest_checkpoint(output / "checkpoints")
    assert f"the last complete checkpoint is {last}. To continue:" in err
    assert 5 <= int(last.name.split("-")[1]) <= step < 60
    verify_manifest(last)
    assert not (output / "model.safetensors").exists()

    assert main(resume_line(err)) == 0  # the command, as printed, resumes and finishes the run
    assert "wrote" in capsys.readouterr().out
    verify_manifest(output)

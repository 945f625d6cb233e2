"""Checkpoints: an interrupted, resumed run ends with the weights of an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from runs import Killed, config_for, kill_after

from minisbert.io import checkpoint
from minisbert.io.weights import read_safetensors
from minisbert.train import TrainingError, train


def weights(folder: Path) -> dict[str, np.ndarray]:
    return read_safetensors(folder / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_allclose(wa[name], wb[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def straight(tiny_files, tmp_path_factory) -> Path:
    """6 steps (2 epochs of 3 batches) without interruption."""
    output = tmp_path_factory.mktemp("straight") / "run"
    train(config_for(tiny_files, output, checkpoint_steps=3))
    return output


def test_resume_after_a_kill_equals_the_uninterrupted_run(tiny_files, straight, tmp_path):
    output = tmp_path / "run"
    config = config_for(tiny_files, output, checkpoint_steps=3)
    with pytest.raises(Killed):
        train(config, on_step=kill_after(4))  # step 4 is lost: the last checkpoint is step 3
    assert checkpoint.latest_checkpoint(output / "checkpoints").name == "step-00000003"
    assert not (output / "model.safetensors").exists()
    result = train(config.__class__(**{**config.__dict__, "resume": True}))
    assert len(result.losses) == 3  # steps 4, 5, 6
    assert_same_weights(output, straight)
    # Across an epoch boundary too: the shuffle of epoch 2 and the dropout keys carried over.
    state = json.loads((output / "checkpoints" / "step-00000006" / "state.json").read_text())
    assert (state["epoch"], state["batch_in_epoch"]) == (2, 0)


def test_a_checkpoint_without_its_json_is_ignored(tiny_files, straight, tmp_path, monkeypatch):
    """Crash between files: step 4's tensors are written, its state.json is not."""
    output = tmp_path / "run"
    config = config_for(tiny_files, output, checkpoint_steps=2)
    real_write = checkpoint._write_json_atomic

    def crash_at_step_4(values, path):
        if path.name == checkpoint.STATE and values["step"] == 4:
            raise Killed("crashed before state.json")
        real_write(values, path)

    monkeypatch.setattr(checkpoint, "_write_json_atomic", crash_at_step_4)
    with pytest.raises(Killed):
        train(config)
    monkeypatch.setattr(checkpoint, "_write_json_atomic", real_write)
    # Built beside and swapped in whole: the unfinished step 4 never appears under its name,
    # and its temporary folder went with the crash.
    assert not (output / "checkpoints" / "step-00000004").exists()
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["step-00000002"]
    assert checkpoint.latest_checkpoint(output / "checkpoints").name == "step-00000002"

    result = train(config.__class__(**{**config.__dict__, "resume": True}))
    assert len(result.losses) == 4  # steps 3..6, from the complete step-2 checkpoint
    assert_same_weights(output, straight)


def test_checkpoint_files_and_state(tiny_files, straight):
    folder = straight / "checkpoints" / "step-00000006"
    state = json.loads((folder / checkpoint.STATE).read_text())
    assert state["step"] == 6 and state["total_steps"] == 6 and state["steps_per_epoch"] == 3
    assert state["config"]["lr"] == 1e-3 and state["shuffle"]["seed"] == 0
    rng = state["dropout_rng"]
    assert len(rng) == 4  # embeddings + 3 per layer, 1 layer
    # 6 steps of the padded PaddedSteps, one forward per side (2): 12 draws per dropout layer
    assert all(entry["count"] == 12 for entry in rng.values())
    assert len({tuple(entry["key"]) for entry in rng.values()}) == 4  # each layer its own key
    optimizer = read_safetensors(folder / "optimizer.safetensors")
    assert "step" in optimizer and optimizer["step"].item() == 6
    assert "opt_state.1.0.mu.model.bert.embeddings.word_embeddings.embedding" in optimizer
    params = read_safetensors(folder / "params.safetensors")
    # The last checkpoint holds the final weights, under the Trainable's names.
    final = weights(straight)
    for name, value in final.items():
        np.testing.assert_array_equal(params[f"model.bert.{name}"], value)


def test_only_the_last_k_checkpoints_are_kept(tiny_files, tmp_path):
    output = tmp_path / "run"
    train(config_for(tiny_files, output, checkpoint_steps=1, keep_checkpoints=2))
    names = sorted(p.name for p in (output / "checkpoints").iterdir())
    assert names == ["step-00000005", "step-00000006"]


def test_a_second_run_into_the_same_folder_needs_resume(tiny_files, straight):
    with pytest.raises(TrainingError, match="pass --resume"):
        train(config_for(tiny_files, straight, checkpoint_steps=3))


def test_resume_refuses_changed_settings(tiny_files, straight):
    config = config_for(tiny_files, straight, checkpoint_steps=3, lr=5e-4, resume=True)
    with pytest.raises(TrainingError, match=r"trained with lr=0.001, this command has lr=0.0005"):
        train(config)


def test_resume_of_a_finished_run_changes_nothing(tiny_files, straight):
    before = weights(straight)
    result = train(config_for(tiny_files, straight, checkpoint_steps=3, resume=True))
    assert result.losses == []
    for name, value in weights(straight).items():
        np.testing.assert_array_equal(value, before[name])

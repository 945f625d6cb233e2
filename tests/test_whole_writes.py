"""Every folder minisbert writes is whole (minisbert.io.folders): convert, export and fetch
never destroy their source, never replace a user's folder unasked, and a kill -9 at any moment
leaves the destination absent or as it was, never a mix that loads silently and wrong."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from runs import run_script
from tiny import make_tiny_model_dir

from minisbert.io.convert import convert, export_sentence_transformers
from minisbert.io.folders import FolderError, write_folder
from minisbert.sentence_encoder import SentenceEncoder

# The long tier (make test-slow) for most cases that start a subprocess (a second or two each):
# make test keeps one of each kind.
SLOW = pytest.mark.slow


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) -> its sha256: byte-identity in one value."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Two different tiny minisbert folders, and each exported to sentence-transformers."""
    root = tmp_path_factory.mktemp("whole")
    a = make_tiny_model_dir(root / "a", seed=0, normalize=True)
    b = make_tiny_model_dir(root / "b", seed=1, normalize=True, pooling="cls")
    return {
        "root": root, "a": a, "b": b,
        "st_a": export_sentence_transformers(a, root / "st-a"),
        "st_b": export_sentence_transformers(b, root / "st-b"),
    }  # fmt: skip


# ---------------------------------------------------------------- the source is never the target


@pytest.mark.parametrize("command", ["convert", "export"])
@pytest.mark.parametrize("where", ["itself", "inside", "holds"])
def test_a_destination_that_is_in_or_holds_the_source_is_refused(models, tmp_path, command, where):
    src = tmp_path / "src"
    original = models["st_a"] if command == "convert" else models["a"]
    subprocess.run(["cp", "-r", str(original), str(src)], check=True)
    before = tree_digest(tmp_path)
    dst = {"itself": src, "inside": src / "out", "holds": tmp_path}[where]  # holds: dst/src
    write = convert if command == "convert" else export_sentence_transformers
    with pytest.raises(FolderError, match="would destroy what is being read"):
        write(src, dst, overwrite=True)  # not even --overwrite
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("command", ["convert", pytest.param("export", marks=SLOW)])
def test_the_command_refuses_a_b_a_in_one_line_and_leaves_a_byte_identical(models, tmp_path,
                                                                           command):  # fmt: skip
    src = tmp_path / "A"
    subprocess.run(["cp", "-r", str(models["st_a" if command == "convert" else "a"]), str(src)],
                   check=True)  # fmt: skip
    before = tree_digest(src)
    cli = Path(sys.executable).parent / "minisbert"
    result = subprocess.run([str(cli), command, str(src), str(src)], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "is the source folder itself" in result.stderr
    assert tree_digest(src) == before


# ---------------------------------------------------------------- a user's folder is theirs


@pytest.mark.parametrize("command", ["convert", "export"])
def test_a_folder_minisbert_did_not_write_is_kept_unless_overwrite(models, tmp_path, command):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own work\n")
    src = models["st_a"] if command == "convert" else models["a"]
    write = convert if command == "convert" else export_sentence_transformers
    with pytest.raises(FolderError, match=r"notes\.txt.*--overwrite"):
        write(src, mine)
    assert (mine / "notes.txt").read_text() == "my own work\n"
    write(src, mine, overwrite=True)
    assert not (mine / "notes.txt").exists() and (mine / "manifest.json").is_file()


def test_a_folder_minisbert_wrote_is_replaced_whole(models, tmp_path):
    out = convert(models["st_a"], tmp_path / "out")
    (out / "stale.txt").write_text("from an older conversion")
    convert(models["st_b"], out)  # no --overwrite needed: minisbert wrote it
    assert not (out / "stale.txt").exists()
    assert SentenceEncoder.from_pretrained(out).model.sentence_config.poolings == ("cls",)


# ---------------------------------------------------------------- kill -9 at any moment

# Runs `minisbert convert|export SRC DST` and sends itself SIGKILL the moment a file named
# KILL_AT appears under DST's parent (in the folder built beside DST): no clean-up runs.
DRIVER = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from pathlib import Path
    from minisbert.cli import main

    parent, name = Path(sys.argv[-1]).parent, os.environ["KILL_AT"]

    def watch():
        while True:
            if any(p.name == name for p in parent.rglob("*") if ".partial-" in str(p)):
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.0005)

    threading.Thread(target=watch, daemon=True).start()
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize(
    ("command", "kill_at"),
    [
        pytest.param("convert", "model.safetensors", marks=SLOW),
        pytest.param("convert", "sentence.json", marks=SLOW),
        pytest.param("convert", "tokenizer.json", marks=SLOW),
        ("convert", "manifest.json"),  # written last: every other file is whole
        ("export", "model.safetensors"),  # the largest file
        pytest.param("export", "tokenizer_config.json", marks=SLOW),
        pytest.param("export", "config.json", marks=SLOW),
        pytest.param("export", "modules.json", marks=SLOW),
        pytest.param("export", "manifest.json", marks=SLOW),
    ],
)
def test_killed_the_moment_a_file_appears_the_destination_is_the_old_one(
    models, tmp_path, command, kill_at
):
    """The destination held model A; writing model B into it is killed part-way: A is still
    there, byte for byte, and loads; a later write replaces it and cleans up."""
    src_a, src_b = (models["st_a"], models["st_b"]) if command == "convert" else (
        models["a"], models["b"])  # fmt: skip
    write = convert if command == "convert" else export_sentence_transformers
    dst = write(src_a, tmp_path / "dst")
    before = tree_digest(dst)
    result = run_script(DRIVER, tmp_path, command, str(src_b), str(dst), env={"KILL_AT": kill_at})
    assert result.returncode == -9, result.stderr[-2000:]
    assert tree_digest(dst) == before  # the old folder, whole
    assert list(tmp_path.glob(".dst.partial-*"))  # what the killed process was building
    if command == "convert":
        SentenceEncoder.from_pretrained(dst).encode("a cat")
    write(src_b, dst)  # the next write removes the dead process's folder
    assert not list(tmp_path.glob(".dst.partial-*"))


def test_killed_before_the_swap_a_new_destination_does_not_exist(models, tmp_path):
    dst = tmp_path / "new"
    result = run_script(
        DRIVER, tmp_path, "convert", str(models["st_a"]), str(dst), env={"KILL_AT": "config.json"}
    )
    assert result.returncode == -9
    assert not dst.exists()


def test_an_exception_while_filling_leaves_nothing(tmp_path):
    def fill(folder: Path) -> None:
        (folder / "a.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_folder(tmp_path / "out", fill)
    assert list(tmp_path.iterdir()) == []


def test_a_written_folder_lists_every_file_in_its_manifest(models, tmp_path):
    import json

    out = export_sentence_transformers(models["a"], tmp_path / "st")
    listed = json.loads((out / "manifest.json").read_text())["files"]
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(listed) == on_disk - {"manifest.json"}


def test_export_writes_a_zero_pooler_so_transformers_finds_every_weight(models, tmp_path):
    from minisbert.io.weights import read_safetensors

    out = export_sentence_transformers(models["a"], tmp_path / "st")
    tensors = read_safetensors(out / "model.safetensors")
    assert tensors["pooler.dense.weight"].shape == (36, 36)
    assert not np.any(tensors["pooler.dense.weight"]) and not np.any(tensors["pooler.dense.bias"])
    # and converting it back drops it again: the same vectors as the source
    back = SentenceEncoder.from_pretrained(convert(out, tmp_path / "back")).encode("a cat")
    np.testing.assert_allclose(back, SentenceEncoder.from_pretrained(models["a"]).encode("a cat"),
                               atol=1e-6)  # fmt: skip


def test_a_config_that_does_not_fit_the_weights_is_refused_from_the_header(models, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    """config.json says 4x the vocabulary: refused from the file's header, before any tensor
    of the checkpoint is read."""
    import json
    import shutil

    import minisbert.io.convert as convert_module

    src = tmp_path / "st"
    shutil.copytree(models["st_a"], src)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "vocab_size": 4 * 99}))

    def no_reading(path):
        raise AssertionError(f"{path} was read before the header check")

    monkeypatch.setattr(convert_module, "read_weights", no_reading)
    with pytest.raises(ValueError, match=r"word_embeddings.embedding\) has shape \(99, 36\), but "
                                         r"config.json needs \(396, 36\)"):  # fmt: skip
        convert(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()

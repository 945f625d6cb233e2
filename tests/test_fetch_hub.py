"""Fetching any BERT repo of the hub by its id (``minisbert fetch OWNER/NAME``).

The "hub" is an http.server thread on 127.0.0.1 that serves a folder in the hub's URL
layout, ``/OWNER/NAME/resolve/REVISION/FILE``, and records every path asked for.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from served import QuietHandler, serving
from tiny import make_tiny_model_dir

from minisbert import SentenceEncoder
from minisbert.cli import main
from minisbert.io.convert import export_sentence_transformers
from minisbert.io.fetch import FetchError, fetch, fetch_hub_repo

SENTENCES = ["the cat sat on the mat", "a dog runs"]


def QUIET(message: str) -> None:  # noqa: N802 (a constant-like sink for log lines)
    pass


class Hub:
    """A folder served in the hub's layout; ``asked`` lists the paths requested."""

    def __init__(self, root: Path) -> None:
        self.root, self.asked = root, []
        hub = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                hub.asked.append(self.path)
                if self.path.startswith("/private/"):  # what the hub says of hidden repos
                    self.send_error(401, "Repository Not Found")
                    return
                super().do_GET()

        self.handler = Handler

    def repo(self, repo: str, revision: str = "main") -> Path:
        return self.root / repo / "resolve" / revision


@pytest.fixture
def tiny(tmp_path) -> Path:
    return make_tiny_model_dir(tmp_path / "tiny", normalize=True)


@pytest.fixture
def hub(tmp_path, monkeypatch, tiny):
    """acme/tiny-st: a sentence-transformers repo (Transformer, Pooling, Normalize);
    acme/tiny-hf: a plain Hugging Face BERT repo (config, weights, tokenizer)."""
    hub = Hub(tmp_path / "hub")
    export_sentence_transformers(tiny, hub.repo("acme/tiny-st"))
    hub.repo("acme/tiny-hf").mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copyfile(hub.repo("acme/tiny-st") / name, hub.repo("acme/tiny-hf") / name)
    with serving(hub.handler, hub.root) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield hub


def test_fetch_a_sentence_transformers_repo(tmp_path, hub, tiny):
    out = fetch("acme/tiny-st", tmp_path / "weights", log=QUIET)
    assert out == tmp_path / "weights" / "tiny-st"
    np.testing.assert_array_equal(
        SentenceEncoder.from_pretrained(out).encode(SENTENCES),
        SentenceEncoder.from_pretrained(tiny).encode(SENTENCES),
    )
    entry = tmp_path / "cache" / "hub" / "acme--tiny-st"
    assert (entry / "manifest.json").is_file() and (entry / "1_Pooling" / "config.json").is_file()
    prefix = "/acme/tiny-st/resolve/main/"
    assert {
        prefix + "modules.json",
        prefix + "config_sentence_transformers.json",
        prefix + "vocab.txt",
    } <= set(hub.asked)  # asked for, 404 here, and that is fine
    assert not any("pytorch_model" in path for path in hub.asked)


def test_fetch_a_plain_bert_repo(tmp_path, hub):
    out = fetch("acme/tiny-hf", tmp_path / "weights", log=QUIET)
    embeddings = SentenceEncoder.from_pretrained(out).encode(SENTENCES)  # (2, 36)
    assert embeddings.shape == (2, 36) and np.isfinite(embeddings).all()
    assert json.loads((out / "sentence.json").read_text())["pooling"] == "mean"


def test_fetch_a_revision(tmp_path, hub):
    shutil.copytree(hub.repo("acme/tiny-st"), hub.repo("acme/tiny-st", "v1"))
    fetch("acme/tiny-st@v1", tmp_path / "weights", log=QUIET)
    assert "/acme/tiny-st/resolve/v1/model.safetensors" in hub.asked
    assert (tmp_path / "cache" / "hub" / "acme--tiny-st@v1" / "manifest.json").is_file()


def test_module_folders_are_fetched(tmp_path, hub):
    """A Dense module's config and weights come along with the pipeline's other folders."""
    served = hub.repo("acme/tiny-st")
    modules = json.loads((served / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense",
                       "type": "sentence_transformers.models.Dense"})  # fmt: skip
    (served / "modules.json").write_text(json.dumps(modules))
    (served / "2_Dense").mkdir()
    (served / "2_Dense" / "config.json").write_text('{"in_features": 36, "out_features": 4}')
    (served / "2_Dense" / "model.safetensors").write_bytes(b"not looked at here")
    entry = fetch_hub_repo("acme/tiny-st", "main", "auto", QUIET)
    assert (entry / "2_Dense" / "config.json").is_file()
    assert (entry / "2_Dense" / "model.safetensors").read_bytes() == b"not looked at here"
    assert "/acme/tiny-st/resolve/main/2_Normalize/config.json" not in hub.asked


def test_sharded_safetensors_are_fetched(tmp_path, hub):
    served = hub.repo("acme/tiny-hf")
    (served / "model.safetensors").rename(served / "model-00001-of-00001.safetensors")
    shard = "model-00001-of-00001.safetensors"
    index = {"weight_map": {"embeddings.word_embeddings.weight": shard}}
    (served / "model.safetensors.index.json").write_text(json.dumps(index))
    entry = fetch_hub_repo("acme/tiny-hf", "main", "auto", QUIET)
    assert (entry / "model-00001-of-00001.safetensors").is_file()


def test_a_repo_with_only_pytorch_model_bin_is_refused(tmp_path, hub):
    served = hub.repo("acme/tiny-hf")
    (served / "model.safetensors").rename(served / "pytorch_model.bin")
    with pytest.raises(FetchError) as err:
        fetch("acme/tiny-hf", tmp_path / "weights", log=QUIET)
    message = str(err.value)
    assert "never downloads or unpickles pytorch_model.bin" in message
    assert "safe_serialization=True" in message and "\n" not in message
    assert not any("pytorch_model" in path for path in hub.asked)  # not even downloaded
    assert not (tmp_path / "cache" / "hub" / "acme--tiny-hf").exists()
    assert not (tmp_path / "weights" / "tiny-hf").exists()
    assert list((tmp_path / "cache" / "hub").iterdir()) == []  # no partial folder left


def test_a_module_folder_outside_the_repo_is_refused(tmp_path, hub):
    served = hub.repo("acme/tiny-st")
    modules = json.loads((served / "modules.json").read_text())
    modules[1]["path"] = "../../../../escaped"
    (served / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(FetchError, match="modules.json names an unsafe folder"):
        fetch("acme/tiny-st", tmp_path / "weights", log=QUIET)
    assert not (tmp_path / "escaped").exists()
    assert not any("escaped" in path for path in hub.asked)


def test_damaged_cache_of_a_repo_is_fetched_again(tmp_path, hub):
    fetch("acme/tiny-st", tmp_path / "weights", log=QUIET)
    cached = tmp_path / "cache" / "hub" / "acme--tiny-st" / "model.safetensors"
    cached.write_bytes(cached.read_bytes()[:100])  # truncated on disk
    messages: list[str] = []
    out = fetch("acme/tiny-st", tmp_path / "weights", log=messages.append)
    assert any("damaged or incomplete" in m for m in messages)
    assert SentenceEncoder.from_pretrained(out).encode("a cat").shape == (36,)


def test_offline_uses_the_cache_or_says_why_not(tmp_path, hub, monkeypatch):
    fetch("acme/tiny-st", tmp_path / "weights", log=QUIET)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    messages: list[str] = []
    fetch("acme/tiny-st", tmp_path / "weights", log=messages.append)
    assert messages[0].startswith("using cached")
    with pytest.raises(FetchError, match="HF_HUB_OFFLINE=1 forbids the hub"):
        fetch("acme/tiny-hf", tmp_path / "weights", log=QUIET)


@pytest.mark.parametrize(("repo", "expected"), [
    ("acme/missing", "no config.json at http"),
    ("private/model", "HTTP 401 .*private or gated"),
    ("acme/../../etc", "not a hub repo id"),
])  # fmt: skip
def test_errors_are_one_line_and_say_what_to_do(tmp_path, hub, repo, expected):
    with pytest.raises(FetchError, match=expected) as err:
        fetch(repo, tmp_path / "weights", log=QUIET)
    assert "--from PATH" in str(err.value) and "\n" not in str(err.value)


def test_cli_fetches_a_repo_and_errors_in_one_line(tmp_path, hub, capsys):
    assert main(["fetch", "acme/tiny-st", "--weights-dir", str(tmp_path / "weights")]) == 0
    assert (tmp_path / "weights" / "tiny-st" / "model.safetensors").is_file()
    capsys.readouterr()
    assert main(["fetch", "acme/missing", "--weights-dir", str(tmp_path / "weights")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minisbert fetch: error: could not fetch 'acme/missing'")
    assert err.count("\n") == 1 and "Traceback" not in err

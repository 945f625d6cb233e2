"""make paper, offline: a tiny random plain BERT in Hugging Face's layout served from a local
HTTP server in the hub's URL layout (``/<owner>/<name>/resolve/main/<file>``), and small
SNLI and MultiNLI zips served the same way as a data mirror. ``bench.paper --tiny`` fetches
and converts the model, scores it on STS-b test (the real shared data), trains a few steps
on AllNLI and scores it again.

The live test checks the conversion itself: the fetched model's mean-pooled embeddings
against transformers' ``BertModel`` on the same folder, to 1e-5.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bench.paper import model_name, seconds_per_step
from tests.hf_bert import MAX_LENGTH, write_plain_bert

ROOT = Path(__file__).resolve().parent.parent
REPO = "tiny-org/bert-plain-uncased"
SNLI_PAIRS = 40  # per split; with MultiNLI's 40, AllNLI train has 80 pairs: 5 steps of 16
MNLI_PAIRS = 40


def nli_rows(data_dir: Path, start: int, count: int) -> list[dict[str, str]]:
    """Real NLI pairs (the shared SNLI dev copy) as official jsonl rows."""
    columns = [(data_dir / "snli" / f"{name}.dev").read_text().splitlines()
               for name in ("s1", "s2", "labels")]  # fmt: skip
    rows = zip(*(column[start : start + count] for column in columns), strict=True)
    return [{"gold_label": label, "sentence1": s1, "sentence2": s2} for s1, s2, label in rows]


def zip_of(files: dict[str, list[dict[str, str]]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, rows in files.items():
            zf.writestr(name, "".join(json.dumps(row) + "\n" for row in rows))
    return buffer.getvalue()


@pytest.fixture
def served(tmp_path: Path, data_dir: Path, served_folder) -> str:
    """A local server: the model under /hub/<repo>/resolve/main/, the zips under /data/."""
    root = tmp_path / "served"
    write_plain_bert(root / "hub" / REPO / "resolve" / "main")
    (root / "data").mkdir()
    (root / "data" / "snli_1.0.zip").write_bytes(zip_of({
        f"snli_1.0/snli_1.0_{split}.jsonl": nli_rows(data_dir, 0, SNLI_PAIRS)
        for split in ("train", "dev", "test")
    }))  # fmt: skip
    (root / "data" / "multinli_1.0.zip").write_bytes(zip_of({
        f"multinli_1.0/multinli_1.0_{split}.jsonl": nli_rows(data_dir, 100, MNLI_PAIRS)
        for split in ("train", "dev_matched", "dev_mismatched")
    }))  # fmt: skip
    return served_folder(root)


def offline_env(tmp_path: Path, served: str, data_dir: Path) -> dict[str, str]:
    """The environment of the run: hub and data mirror on the local server, a fresh cache,
    a data folder whose STS-b is the shared one and whose SNLI and MultiNLI get fetched."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    if not (data / "stsbenchmark").exists():
        (data / "stsbenchmark").symlink_to(data_dir / "stsbenchmark")
    return {
        **os.environ,
        "HF_ENDPOINT": f"{served}/hub",
        "HF_HUB_OFFLINE": "0",
        "MINISBERT_DATA_MIRROR": f"{served}/data",
        "MINISBERT_DATA": str(data),
        "MINISBERT_CACHE": str(tmp_path / "cache"),
    }


def test_model_name_is_the_folder_fetch_converts_into() -> None:
    assert model_name("bert-base-uncased") == "bert-base-uncased"
    assert model_name("nreimers/MiniLM-L6-H384-uncased@main") == "MiniLM-L6-H384-uncased"
    assert seconds_per_step("wrote runs/x: 5 steps, 0.250 s/step, last loss 1.0") == 0.25


@pytest.mark.slow  # the long tier: make test-slow
def test_make_paper_tiny_end_to_end(tmp_path: Path, served: str, data_dir: Path) -> None:
    env = offline_env(tmp_path, served, data_dir)
    command = [sys.executable, "-m", "bench.paper", "--model", REPO, "--tiny", "--weights-dir",
               str(tmp_path / "weights"), "--runs", str(tmp_path / "runs")]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout

    # Fetched through the hub layout and converted as a plain BERT: mean pooling, no
    # normalisation, the tokenizer's max length.
    model = tmp_path / "weights" / "bert-plain-uncased"
    assert json.loads((model / "sentence.json").read_text()) == {
        "max_seq_length": MAX_LENGTH, "pooling": "mean", "normalize": False,
    }  # fmt: skip
    assert f"bert-plain-uncased: pooling mean, normalize False, max length {MAX_LENGTH}" in out
    # SNLI and MultiNLI came from the mirror; AllNLI is both.
    assert (tmp_path / "data" / "multinli" / "multinli_1.0_train.jsonl").is_file()
    assert (tmp_path / "data" / "snli" / "snli_1.0_train.jsonl").is_file()
    assert f"The epoch: {SNLI_PAIRS + MNLI_PAIRS} pairs, 4 steps of 16" in out
    # The paper's recipe, as one command.
    trains = [line for line in out.splitlines() if line.startswith("$ minisbert train")]
    assert len(trains) == 1  # --tiny skips the timed run
    train = trains[0]
    for flag in ("--data allnli", "--loss softmax", "--epochs 1", "--batch-size 16",
                 "--lr 2e-5", "--head-lr same", "--probe-steps 0", "--warmup-ratio 0.1",
                 "--max-steps 4", "--resume"):  # fmt: skip
        assert flag in train
    assert (tmp_path / "runs" / "paper-bert-plain-uncased" / "model.safetensors").is_file()
    assert "a GPU: not measured" in out

    # The table: the paper's figures beside ours, and ours are the eval commands' figures.
    plain = re.search(r"plain BERT, mean pooling\s+46\.35\s+(-?\d+\.\d\d)", out)
    tuned = re.search(r"1 epoch softmax on AllNLI\s+77\.03\s+(-?\d+\.\d\d)", out)
    assert plain and tuned, out[-2000:]
    from minisbert.data import load_dataset
    from minisbert.evaluate import evaluate_sts
    from minisbert.sentence_encoder import SentenceEncoder

    test = load_dataset("stsb", "test", root=data_dir)
    score = evaluate_sts(SentenceEncoder.from_pretrained(model), test)["spearman_cosine"]
    assert f"{score:.2f}" == plain[1]
    assert plain[1] != tuned[1]  # four steps moved the encoder


@pytest.mark.live
def test_fetched_plain_bert_matches_transformers(
    tmp_path: Path, served: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mean pooling of the converted model against transformers' BertModel, to 1e-5."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from minisbert.io.fetch import fetch
    from minisbert.sentence_encoder import SentenceEncoder

    for key, value in offline_env(tmp_path, served, data_dir).items():
        monkeypatch.setenv(key, value)
    folder = fetch(REPO, tmp_path / "weights", log=lambda _: None)
    encoder = SentenceEncoder.from_pretrained(folder)
    sentences = ["the cat sat on the mat.", "a dog is running!", "cats", "the " * 40]
    ours = np.asarray(encoder.encode(sentences, batch_size=4))  # (4, D)

    source = tmp_path / "served" / "hub" / REPO / "resolve" / "main"
    reference = transformers.BertModel.from_pretrained(source, attn_implementation="eager").eval()
    tokenizer = transformers.BertTokenizerFast.from_pretrained(source)
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=MAX_LENGTH,
                      return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        tokens = reference(**batch).last_hidden_state  # (4, L, D)
    mask = batch["attention_mask"].unsqueeze(-1).float()  # (4, L, 1)
    theirs = ((tokens * mask).sum(1) / mask.sum(1)).numpy()  # (4, D)
    assert ours.shape == theirs.shape == (4, 32)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)

"""`minisbert train`, `eval` and `data fetch` end to end on the tiny model, through cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runs import train_args

from minisbert.cli import main


def test_train_then_eval_sts(tiny_files, tmp_path, capsys):
    output = tmp_path / "run"
    scores = str(tiny_files["scores"])
    args = train_args(tiny_files, output, "scores", "cosine", "--eval-data", scores,
                      "--eval-steps", "2")  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "step 2: {'scores_pearson_cosine'" in out  # evaluated every 2 steps, and at the end
    assert f"wrote {output}: 3 steps" in out
    assert "final evaluation" in out and "scores_spearman_cosine" in out
    assert (output / "checkpoints" / "step-00000003" / "state.json").is_file()

    assert main(["eval", "sts", "--model", str(output), "--data", scores]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].split() == ["pearson", "spearman"]
    assert [line.split()[0] for line in lines[2:6]] == ["cosine", "euclidean", "manhattan", "dot"]
    assert float(lines[-1]) == float(lines[2].split()[2])  # last line: Spearman x100, cosine


def test_train_softmax_then_eval_nli(softmax_run, tiny_files, capsys):
    """softmax_run (conftest.py) is `minisbert train --loss softmax --concat u v abs_diff mul`."""
    spec = json.loads((softmax_run / "classifier.json").read_text())
    assert spec == {"concat": ["u", "v", "abs_diff", "mul"], "num_labels": 3}
    classes = str(tiny_files["classes"])
    assert main(["eval", "nli", "--model", str(softmax_run), "--data", classes]) == 0
    accuracy = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= accuracy <= 100


@pytest.mark.slow  # a whole run (11.1 s at load 7)
def test_train_triplets_then_eval_triplets(tiny_files, tmp_path, capsys):
    output = tmp_path / "triplets"
    assert main(train_args(tiny_files, output, "triplets", "triplet", "--margin", "0.5")) == 0
    capsys.readouterr()
    triplets = str(tiny_files["triplets"])
    assert main(["eval", "triplets", "--model", str(output), "--data", triplets]) == 0
    assert 0 <= float(capsys.readouterr().out.strip().splitlines()[-1]) <= 100


def test_a_mismatched_loss_and_data_is_one_clear_line(tiny_files, tmp_path, capsys):
    assert main(train_args(tiny_files, tmp_path / "x", "scores", "triplet")) == 1
    err = capsys.readouterr().err
    assert "minisbert train: error: --loss triplet needs triplets" in err
    assert "Traceback" not in err


def test_eval_nli_without_a_classifier_says_so(tiny_files, capsys):
    model, classes = str(tiny_files["model"]), str(tiny_files["classes"])
    args = ["eval", "nli", "--model", model, "--data", classes]
    assert main(args) == 1
    assert "only a `minisbert train --loss softmax` run saves one" in capsys.readouterr().err


def test_data_fetch_calls_fetch_datasets(tmp_path, monkeypatch, capsys):
    import minisbert.data

    calls = []

    def fake_fetch(dest, *, names=None, force=False):
        calls.append((Path(dest), names, force))
        return {"stsb": [Path(dest) / "stsbenchmark" / "sts-train.csv"]}

    monkeypatch.setattr(minisbert.data, "fetch_datasets", fake_fetch)
    assert main(["data", "fetch", "--dest", str(tmp_path), "--names", "stsb"]) == 0
    assert calls == [(tmp_path, ["stsb"], False)]
    assert f"MINISBERT_DATA={tmp_path.resolve()}" in capsys.readouterr().out

"""The cross-encoder on tiny random models: shapes, activations, ranking, pair tokenization,
the forward pass by hand, and its folders converted both ways. (Parity with the real
sentence-transformers: tests/test_cross_encoder_live.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tiny import TINY_CONFIG, tiny_tokenizer

import minisbert
from minisbert.cli import main
from minisbert.config import ConfigError
from minisbert.cross_encoder import CrossEncoder, CrossEncoderConfig, CrossEncoderModel
from minisbert.io.convert import convert
from minisbert.io.cross_encoder_convert import export_cross_encoder, is_cross_encoder_folder
from minisbert.io.weights import WeightsError, save_params

MAX_LENGTH = 16
PAIRS = [
    ("the cat sat on the mat", "a dog runs"),
    ("", "the dog sat"),  # an empty side
    ("a dog is on the mat", ""),
    ("the cat", "the cat"),
    (" ".join(["the dog sat on a mat"] * 5), "a cat runs"),  # longer than 16 tokens
]


def make_cross_encoder_dir(path: Path, num_labels: int = 1, seed: int = 0) -> Path:
    """A random minisbert cross-encoder folder (hidden 36, 3 heads, vocab 99)."""
    path.mkdir(parents=True, exist_ok=True)
    model = CrossEncoderModel(TINY_CONFIG, num_labels, rngs=nnx.Rngs(seed))
    # nnx's default init gives the pooler and head tiny outputs; scale them so scores differ
    for layer in (model.pooler, model.classifier):
        layer.kernel.set_value(layer.kernel.get_value() * 4.0)
        layer.bias.set_value(jnp.linspace(-0.5, 0.5, layer.bias.get_value().shape[0]))
    save_params(model, path / "model.safetensors")
    (path / "config.json").write_text(json.dumps(TINY_CONFIG.to_dict()))
    head = CrossEncoderConfig(
        num_labels=num_labels,
        activation="sigmoid" if num_labels == 1 else "identity",
        max_length=MAX_LENGTH,
        labels=tuple(f"LABEL_{i}" for i in range(num_labels)),
    )
    (path / "cross_encoder.json").write_text(json.dumps(head.to_dict()))
    tiny_tokenizer().save(str(path / "tokenizer.json"))
    return path


@pytest.fixture(scope="module")
def one_label(tmp_path_factory) -> CrossEncoder:
    return CrossEncoder.from_pretrained(make_cross_encoder_dir(tmp_path_factory.mktemp("ce1")))


@pytest.fixture(scope="module")
def three_labels(tmp_path_factory) -> CrossEncoder:
    folder = make_cross_encoder_dir(tmp_path_factory.mktemp("ce3"), num_labels=3)
    return CrossEncoder.from_pretrained(folder)


def test_exported_lazily_from_the_package():
    assert minisbert.CrossEncoder is CrossEncoder
    assert "CrossEncoder" in minisbert.__all__


def test_predict_shapes(one_label, three_labels):
    assert one_label.predict(PAIRS).shape == (5,)
    assert np.ndim(one_label.predict(("the cat", "a dog"))) == 0  # one pair: one number
    assert one_label.predict([]).shape == (0,)
    assert three_labels.predict(PAIRS).shape == (5, 3)
    assert three_labels.predict(["the cat", "a dog"]).shape == (3,)
    assert three_labels.predict([]).shape == (0, 3)


def test_sigmoid_for_one_label_logits_for_several(one_label, three_labels):
    logits = one_label.predict(PAIRS, activation="identity")
    assert np.ptp(logits) > 1e-3, "scores too alike to tell the pairs apart"
    np.testing.assert_allclose(one_label.predict(PAIRS), 1 / (1 + np.exp(-logits)), rtol=1e-6)
    assert np.all((one_label.predict(PAIRS) > 0) & (one_label.predict(PAIRS) < 1))
    logits3 = three_labels.predict(PAIRS, activation="identity")
    np.testing.assert_array_equal(three_labels.predict(PAIRS), logits3)  # saved: identity
    probs = three_labels.predict(PAIRS, activation="softmax")
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(probs.argmax(axis=1), logits3.argmax(axis=1))
    with pytest.raises(ValueError, match="activation must be one of"):
        one_label.predict(PAIRS, activation="tanh")


def test_forward_by_hand(three_labels):
    """logits = tanh(h[CLS] W_p + b_p) W_c + b_c, with segment ids 0 for a and 1 for b."""
    model = three_labels.model
    ids, types = three_labels.tokenize_pairs([("the cat sat", "a dog")])
    assert types[0] == [0, 0, 0, 0, 0, 1, 1, 1]  # [CLS] the cat sat [SEP] | a dog [SEP]
    input_ids, type_ids = jnp.array(ids), jnp.array(types)  # (1, 8)
    mask = jnp.ones_like(input_ids)
    h = np.asarray(model.bert(input_ids, mask, type_ids))  # (1, 8, D)
    p, c = model.pooler, model.classifier
    pooled = np.tanh(h[:, 0] @ np.asarray(p.kernel.get_value()) + np.asarray(p.bias.get_value()))
    expected = pooled @ np.asarray(c.kernel.get_value()) + np.asarray(c.bias.get_value())  # (1, C)
    got = three_labels.predict([("the cat sat", "a dog")], activation="identity")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # the segment ids matter: all-zero ones give other logits
    zeros = np.asarray(model(input_ids, mask, jnp.zeros_like(type_ids)))
    assert np.max(np.abs(zeros - expected)) > 1e-4


def test_batching_does_not_change_a_score(one_label):
    together = one_label.predict(PAIRS, batch_size=32)
    one_by_one = one_label.predict(PAIRS, batch_size=1)
    np.testing.assert_allclose(together, one_by_one, rtol=1e-5, atol=1e-6)
    assert one_label.predict(PAIRS[1]) == pytest.approx(together[1], rel=1e-5)


def test_an_empty_side(one_label):
    ids, types = one_label.tokenize_pairs([("", "the cat"), ("the cat", "")])
    assert ids[0] == [2, 3, *ids[0][2:4], 3] and types[0] == [0, 0, 1, 1, 1]
    assert ids[1][-2:] == [3, 3] and types[1] == [0, 0, 0, 0, 1]
    assert np.all(np.isfinite(one_label.predict([("", ""), ("", "the cat")])))


def test_a_pair_longer_than_max_length_loses_from_its_longer_side(one_label):
    """transformers' 'longest_first': a token at a time from whichever side is longer."""
    long_a = " ".join(["dog"] * 40)
    ids, types = one_label.tokenize_pairs([(long_a, "the cat sat"), (long_a, long_a)])
    assert len(ids[0]) == MAX_LENGTH
    assert types[0].count(1) == 4  # "the cat sat [SEP]" kept whole
    assert len(ids[1]) == MAX_LENGTH and types[1].count(0) - types[1].count(1) in (0, 1)
    scores = one_label.predict([(long_a, "the cat sat"), (long_a + " mat", "the cat sat")])
    assert scores[0] == pytest.approx(scores[1], rel=1e-6)  # the cut tail is not seen


def test_rank_orders_by_score(one_label, three_labels):
    docs = [b for _, b in PAIRS] + ["the mat"]
    scores = one_label.predict([("the cat sat", d) for d in docs])
    ranked = one_label.rank("the cat sat", docs)
    assert [r["corpus_id"] for r in ranked] == list(np.argsort(-scores, kind="stable"))
    assert [r["score"] for r in ranked] == sorted(scores.tolist(), reverse=True)
    assert len(one_label.rank("the cat sat", docs, top_k=2)) == 2
    assert one_label.rank("the cat sat", []) == []
    with pytest.raises(ValueError, match="one label"):
        three_labels.rank("the cat", docs)


def test_bad_pairs_named(one_label):
    with pytest.raises(TypeError, match=r"pairs\[1\]"):
        one_label.predict([("a", "b"), ("a", "b", "c")])
    with pytest.raises(TypeError, match=r"pairs\[0\]"):
        one_label.predict([("a", 3)])


@pytest.mark.parametrize("num_labels", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_export_convert_round_trip(num_labels, tmp_path):
    """minisbert -> HF/sentence-transformers layout -> minisbert: the same weights, bit for bit."""
    ours = make_cross_encoder_dir(tmp_path / "ours", num_labels=num_labels, seed=1)
    exported = export_cross_encoder(ours, tmp_path / "exported")
    hf_config = json.loads((exported / "config.json").read_text())
    assert hf_config["architectures"] == ["BertForSequenceClassification"]
    assert len(hf_config["id2label"]) == num_labels
    assert is_cross_encoder_folder(exported)
    back = convert(exported, tmp_path / "back", log=lambda _: None)
    assert json.loads((back / "cross_encoder.json").read_text()) == json.loads(
        (ours / "cross_encoder.json").read_text()
    )
    pairs = PAIRS[:3]
    first = CrossEncoder.from_pretrained(ours).predict(pairs)
    np.testing.assert_array_equal(CrossEncoder.from_pretrained(back).predict(pairs), first)
    # and through the command: export detects cross_encoder.json, convert the HF layout
    assert main(["export", str(back), str(tmp_path / "exported2")]) == 0
    assert main(["convert", str(tmp_path / "exported2"), str(tmp_path / "back2")]) == 0
    again = CrossEncoder.from_pretrained(tmp_path / "back2").predict(pairs)
    np.testing.assert_array_equal(again, first)


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_bad_folders_fail_in_one_line(tmp_path):
    ours = make_cross_encoder_dir(tmp_path / "ours")
    exported = export_cross_encoder(ours, tmp_path / "exported")

    (tmp_path / "no_head").mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (tmp_path / "no_head" / name).write_bytes((ours / name).read_bytes())
    with pytest.raises(FileNotFoundError) as excinfo:
        CrossEncoder.from_pretrained(tmp_path / "no_head")
    assert "cross_encoder.json" in one_line_error(excinfo)

    (ours / "manifest.json").unlink(missing_ok=True)
    head = json.loads((ours / "cross_encoder.json").read_text())
    (ours / "cross_encoder.json").write_text(json.dumps({**head, "activation": "tanh"}))
    with pytest.raises(ConfigError) as excinfo:
        CrossEncoder.from_pretrained(ours)
    assert "activation 'tanh'" in one_line_error(excinfo)
    (ours / "cross_encoder.json").write_text(
        json.dumps({**head, "num_labels": 2, "labels": ["a", "b"]})
    )
    with pytest.raises(WeightsError) as excinfo:
        CrossEncoder.from_pretrained(ours)
    assert "classifier" in one_line_error(excinfo)

    # an HF folder whose classifier is missing, or whose activation minisbert lacks
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(exported / "model.safetensors"))
    del tensors["classifier.weight"]
    save_file(tensors, str(exported / "model.safetensors"))
    with pytest.raises(WeightsError) as excinfo:
        convert(exported, tmp_path / "x", log=lambda _: None)
    assert "'classifier.weight'" in one_line_error(excinfo)
    st_config = exported / "config_sentence_transformers.json"
    tanh = "torch.nn.modules.activation.Tanh"
    st_config.write_text(json.dumps({"model_type": "CrossEncoder", "activation_fn": tanh}))
    with pytest.raises(ConfigError) as excinfo:
        convert(exported, tmp_path / "x", log=lambda _: None)
    assert "Tanh" in one_line_error(excinfo)
    assert not (tmp_path / "x").exists()


def test_rerank_command(one_label, tmp_path, capsys):
    """The bi-encoder keeps --candidates lines, the cross-encoder orders those."""
    from tiny import make_tiny_model_dir

    from minisbert import SentenceEncoder
    from minisbert.similarity import semantic_search

    retriever = make_tiny_model_dir(tmp_path / "bi")
    reranker = make_cross_encoder_dir(tmp_path / "ce")
    corpus = ["the cat sat on the mat", "a dog runs", "the dog sat", "a cat", "is the mat on"]
    (tmp_path / "corpus.txt").write_text("\n".join(corpus) + "\n\n", encoding="utf-8")
    query = "the cat sat"
    argv = ["rerank", query, str(tmp_path / "corpus.txt"), "--retriever", str(retriever),
            "--reranker", str(reranker), "--candidates", "3", "--top-k", "2"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "3 candidates of 5" in lines[0] and len(lines) == 3

    encoder = SentenceEncoder.from_pretrained(retriever)
    hits = semantic_search(encoder.encode(query), encoder.encode(corpus), top_k=3)[0]
    candidates = [corpus[int(h["corpus_id"])] for h in hits]
    best = one_label.rank(query, candidates, top_k=2)  # the same weights (seed 0)
    assert [line.split(None, 2)[2] for line in lines[1:]] == [
        candidates[r["corpus_id"]] for r in best
    ]
    assert [float(line.split()[0]) for line in lines[1:]] == [
        pytest.approx(r["score"], abs=1e-3) for r in best
    ]
    assert main([*argv[:5], "--reranker", str(tmp_path / "no-such")]) == 1


def test_eval_sts_scores_a_cross_encoder_by_its_pair_scores(one_label, tmp_path, capsys):
    reranker = make_cross_encoder_dir(tmp_path / "ce")
    pairs = [(a, b) for a, b in PAIRS[:4]] + [("a dog", "a cat"), ("the mat", "on the mat")]
    scores = one_label.predict(pairs)  # the same weights (seed 0)
    for sign, expected in ((1, "100.00"), (-1, "-100.00")):
        data = tmp_path / f"sts{sign}.tsv"
        rows = [f"{a}\t{b}\t{sign * s:.9f}" for (a, b), s in zip(pairs, scores, strict=True)]
        data.write_text("sentence1\tsentence2\tscore\n" + "\n".join(rows) + "\n")
        assert main(["eval", "sts", "--model", str(reranker), "--data", str(data)]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert "cross-encoder" in lines[0] and lines[-1] == expected

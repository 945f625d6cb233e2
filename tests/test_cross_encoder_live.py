"""Cross-encoders saved by the real sentence-transformers convert and score as the library does.

Every model is a random-weight ``BertForSequenceClassification`` (the tiny WordPiece tokenizer
of ``tiny.py``), wrapped and saved by sentence-transformers' own ``CrossEncoder``: no download.
Tolerance: max |ours - theirs| <= 1e-5 * max |theirs|, on the logits and on the scores.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from st_models import Shape
from tiny import tiny_tokenizer

from minisbert.cross_encoder import CrossEncoder
from minisbert.io.convert import convert
from minisbert.io.cross_encoder_convert import export_cross_encoder

pytestmark = pytest.mark.live
st = pytest.importorskip("sentence_transformers")

RTOL = 1e-5
MAX_LENGTH = 32
PAIRS = [
    ("the cat sat on the mat", "a dog runs"),
    ("", "dogs running on mats!"),  # an empty side
    ("is the cat a dog? 42, 7.", ""),
    ("a dog", "the dog"),
    (" ".join(["the dog sat on a mat"] * 12), "the cat is on the mat " * 3),  # over 32 tokens
    ("a", " ".join(["running dogs"] * 30)),  # over 32 tokens, the second side the longer
]
SHAPES = {
    "36x2, 1 label": (Shape(hidden_size=36, num_attention_heads=3, num_hidden_layers=2), 1),
    "48x3, 3 labels": (
        Shape(hidden_size=48, num_attention_heads=4, num_hidden_layers=3, intermediate_size=64),
        3,
    ),
}


def build_hf_classifier(path: Path, shape: Shape, num_labels: int, seed: int = 0) -> Path:
    """A random BertForSequenceClassification and a BERT tokenizer, saved by transformers."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(seed)
    config = BertConfig(**dataclasses.asdict(shape), hidden_act="gelu", num_labels=num_labels)
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # larger than the default std 0.02, so that scores differ
        for name, param in model.named_parameters():
            if "LayerNorm" not in name:
                param.normal_(0.0, shape.hidden_size**-0.5)
    model.save_pretrained(path, safe_serialization=True)
    # A BERT tokenizer class, as real cross-encoders have: it returns token_type_ids.
    tokenizer = BertTokenizerFast(tokenizer_object=tiny_tokenizer(), model_max_length=MAX_LENGTH)
    tokenizer.save_pretrained(path)
    return path


def build_st_cross_encoder(path: Path, shape: Shape, num_labels: int):
    """The library's CrossEncoder over a random classifier, saved with ``save``."""
    hf_dir = build_hf_classifier(path.parent / f"{path.name}-hf", shape, num_labels)
    model = st.CrossEncoder(str(hf_dir), max_length=MAX_LENGTH, device="cpu")
    model.save(str(path))
    return model


def assert_close(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs {theirs.shape}"
    scale = float(np.max(np.abs(theirs)))
    err = float(np.max(np.abs(ours - theirs)))
    assert err <= RTOL * scale, f"{what}: max difference {err:.2e} of max |value| {scale:.2e}"


def identity():
    import torch

    return torch.nn.Identity()


@pytest.mark.parametrize("name", list(SHAPES))
def test_convert_predict_rank_and_export(name, tmp_path):
    shape, num_labels = SHAPES[name]
    model = build_st_cross_encoder(tmp_path / "st", shape, num_labels)
    ours = CrossEncoder.from_pretrained(convert(tmp_path / "st", tmp_path / "ours"))
    assert ours.num_labels == num_labels and ours.max_length == MAX_LENGTH
    assert ours.config.activation == ("sigmoid" if num_labels == 1 else "identity")

    theirs = model.predict(PAIRS, convert_to_numpy=True)  # the saved activation
    assert_close(ours.predict(PAIRS), theirs, f"{name}: scores")
    logits = model.predict(PAIRS, activation_fn=identity(), convert_to_numpy=True)
    assert_close(ours.predict(PAIRS, activation="identity"), logits, f"{name}: logits")
    assert np.ptp(logits) > 1e-2, "random scores too alike to catch a wrong model"
    if num_labels == 1:
        docs = [b for _, b in PAIRS]
        ranked = ours.rank("the cat sat on the mat", docs)
        expected = model.rank("the cat sat on the mat", docs)
        assert [r["corpus_id"] for r in ranked] == [r["corpus_id"] for r in expected]

    exported = export_cross_encoder(tmp_path / "ours", tmp_path / "exported")
    again = st.CrossEncoder(str(exported), device="cpu")
    assert getattr(again, "max_seq_length", None) == MAX_LENGTH  # 6.x's name for max_length
    assert type(again.activation_fn) is type(model.activation_fn)
    assert_close(again.predict(PAIRS, convert_to_numpy=True), theirs, f"{name}: exported")
    # and back again: the same scores
    back = CrossEncoder.from_pretrained(convert(exported, tmp_path / "back"))
    assert_close(back.predict(PAIRS), theirs, f"{name}: exported, converted again")


def test_plain_hf_folder(tmp_path):
    """Older releases and the hub: a plain BertForSequenceClassification folder, no
    sentence-transformers files; the library's default activation (sigmoid, one label)."""
    shape, _ = SHAPES["36x2, 1 label"]
    hf_dir = build_hf_classifier(tmp_path / "hf", shape, 1, seed=3)
    assert not (hf_dir / "modules.json").exists()
    assert (
        "BertForSequenceClassification"
        in json.loads((hf_dir / "config.json").read_text())["architectures"]
    )
    model = st.CrossEncoder(str(hf_dir), device="cpu")
    ours = CrossEncoder.from_pretrained(convert(hf_dir, tmp_path / "ours"))
    assert ours.config.activation == "sigmoid"
    assert_close(ours.predict(PAIRS), model.predict(PAIRS, convert_to_numpy=True), "plain HF")


# The gradients of the training loss, compared where the two libraries lay a tensor out alike
# (the word embeddings, which the gradient reaches through every layer) or transposed (the
# pooler and the head: torch's (out, in) is minisbert's (in, out)).
GRADIENTS = {
    "bert.embeddings.word_embeddings.embedding": ("embeddings.word_embeddings.weight", False),
    "pooler.kernel": ("pooler.dense.weight", True),
    "classifier.kernel": ("classifier.weight", True),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_training_loss_and_its_gradient(name, tmp_path):
    """``minisbert train --cross-encoder``'s loss against the library's for the same data:
    BinaryCrossEntropyLoss on scores in [0, 1] for one label, CrossEntropyLoss on classes for
    three; dropout off on both sides. Tolerance: 1e-5 of the largest |value|."""
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx
    from sentence_transformers.cross_encoder import losses

    from minisbert.cross_encoder_training import binary_cross_entropy, cross_entropy, pair_logits
    from minisbert.io.weights import dotted_name
    from minisbert.tokenizer import pad_batch

    shape, num_labels = SHAPES[name]
    model = build_st_cross_encoder(tmp_path / "st", shape, num_labels)
    ours = CrossEncoder.from_pretrained(convert(tmp_path / "st", tmp_path / "ours"))
    rng = np.random.default_rng(0)
    if num_labels == 1:
        labels = rng.random(len(PAIRS)).astype(np.float32)  # (B,) scores in [0, 1]
        their_loss, our_loss = losses.BinaryCrossEntropyLoss(model), binary_cross_entropy
    else:
        labels = rng.integers(0, num_labels, len(PAIRS))  # (B,) class ids
        their_loss, our_loss = losses.CrossEntropyLoss(model), cross_entropy

    model.eval()
    model.zero_grad()
    columns = [[a for a, _ in PAIRS], [b for _, b in PAIRS]]
    theirs = their_loss(columns, torch.tensor(labels))
    theirs.backward()
    their_grads = {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}

    ids, types = ours.tokenize_pairs(PAIRS)
    T = max(map(len, ids))
    input_ids, mask = pad_batch(ids, T, ours.tokenizer.pad_token_id)  # (B, T) each
    segments, _ = pad_batch(types, T, 0)  # (B, T)
    ours.model.eval()

    def loss_of(m):
        logits = pair_logits(m, (input_ids[None], segments[None]), mask[None])  # (1, B, C)
        return our_loss(logits[0], jnp.asarray(labels))

    value, grads = nnx.value_and_grad(loss_of)(ours.model)
    assert float(value) == pytest.approx(theirs.item(), rel=1e-5, abs=1e-6)
    flat = {dotted_name(path): np.asarray(g.get_value()) for path, g in nnx.to_flat_state(grads)}
    for mine, (their_suffix, transpose) in GRADIENTS.items():
        (match,) = [g for n, g in their_grads.items() if n.endswith(their_suffix)]
        assert_close(flat[mine], match.T if transpose else match, f"{name}: d loss / d {mine}")
    assert jax.tree.leaves(grads)  # a gradient for the parameters, not an empty tree


def test_training_starts_under_the_checkpoints_pooler_as_transformers_does(tmp_path):
    """A cross-encoder run from a bi-encoder folder starts as transformers'
    ``BertForSequenceClassification.from_pretrained`` of the same checkpoint: BERT and its
    pooler from the checkpoint (kept apart by ``minisbert convert``), only the head new."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    from minisbert.cross_encoder_training import start_model

    torch.manual_seed(0)
    hf_dir = tmp_path / "hf"
    shape, _ = SHAPES["36x2, 1 label"]
    BertModel(BertConfig(**dataclasses.asdict(shape)), add_pooling_layer=True).save_pretrained(
        hf_dir, safe_serialization=True
    )
    BertTokenizerFast(
        tokenizer_object=tiny_tokenizer(), model_max_length=MAX_LENGTH
    ).save_pretrained(hf_dir)
    transformer = models.Transformer(str(hf_dir))
    bi_encoder = SentenceTransformer(
        modules=[transformer, models.Pooling(shape.hidden_size, pooling_mode="mean")], device="cpu"
    )
    bi_encoder.save(str(tmp_path / "st"))
    ours = start_model(convert(tmp_path / "st", tmp_path / "ours"), num_labels=1, seed=0).model
    theirs = BertForSequenceClassification.from_pretrained(tmp_path / "st", num_labels=1)
    pooler = theirs.bert.pooler.dense
    np.testing.assert_array_equal(
        np.asarray(ours.pooler.kernel[...]), pooler.weight.detach().numpy().T
    )
    np.testing.assert_array_equal(np.asarray(ours.pooler.bias[...]), pooler.bias.detach().numpy())

"""Matryoshka training and truncated embeddings; the symmetric MNRL's golden.

Parity with sentence-transformers' MatryoshkaLoss and MultipleNegativesSymmetricRankingLoss, in
value and gradient, is in tests/test_losses_symmetric_live.py (and tests/reference/losses.npz for
the symmetric loss); here: hand-computed goldens and the properties that need no torch.
"""

from __future__ import annotations

import argparse
import math
import shlex
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import random_model_dir

from minisbert.cli import build_parser, config_from_args
from minisbert.losses import get_loss, make_loss, multiple_negatives_ranking_loss
from minisbert.losses.matryoshka import matryoshka, truncate
from minisbert.losses.ranking import symmetric_multiple_negatives_ranking_loss
from minisbert.losses.triplet import triplet_loss
from minisbert.run_guard import resume_command
from minisbert.sentence_encoder import SentenceEncoder
from minisbert.train_config import TrainConfig

RNG = np.random.default_rng(0)
A, P, N = (jnp.asarray(RNG.standard_normal((5, 12)), jnp.float32) for _ in range(3))


# --- symmetric MNRL -------------------------------------------------------------------------------


def test_symmetric_mnrl_golden_on_paper() -> None:
    # a = (1,0), (0,1); p = (1,0), (1,1); scale 1. Rows: log(1+e^(c-1)), log(1+e^-c);
    # columns (p_j against both anchors): log(1+e^-1), and a tie, log 2. c = 1/sqrt 2.
    c = 1 / math.sqrt(2)
    rows = (math.log(1 + math.exp(c - 1)) + math.log(1 + math.exp(-c))) / 2
    columns = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    anchors = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    positives = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    value = symmetric_multiple_negatives_ranking_loss(anchors, positives, scale=1.0)
    assert abs(float(value) - (rows + columns) / 2) < 1e-6


def test_symmetric_mnrl_is_the_mean_of_both_directions_negatives_in_rows_only() -> None:
    rows = multiple_negatives_ranking_loss(A, P, N)
    columns = multiple_negatives_ranking_loss(P, A)  # no negatives: they have no anchor
    value = symmetric_multiple_negatives_ranking_loss(A, P, N)
    np.testing.assert_allclose(float(value), float(rows + columns) / 2, rtol=1e-6)


# --- the Matryoshka loss --------------------------------------------------------------------------


def unit(x: jax.Array) -> jax.Array:
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def test_truncate_cuts_and_renormalises() -> None:
    cut = truncate(A, 4)
    assert cut.shape == (5, 4)
    np.testing.assert_allclose(np.asarray(cut), np.asarray(unit(A[:, :4])), rtol=1e-6)
    assert float(jnp.abs(truncate(jnp.zeros((2, 8)), 3)).sum()) == 0.0  # zero stays zero


def test_matryoshka_is_the_weighted_sum_over_widths() -> None:
    wrapped = matryoshka(triplet_loss, dims=(12, 6, 2), weights=(1.0, 0.5, 2.0))
    expected = sum(
        w * triplet_loss(unit(A[:, :d]), unit(P[:, :d]), unit(N[:, :d]))
        for d, w in ((12, 1.0), (6, 0.5), (2, 2.0))
    )
    np.testing.assert_allclose(float(wrapped(A, P, N)), float(expected), rtol=1e-6)
    unweighted = matryoshka(triplet_loss, dims=(12, 6, 2))(A, P, N)
    ones = sum(triplet_loss(unit(A[:, :d]), unit(P[:, :d]), unit(N[:, :d])) for d in (12, 6, 2))
    np.testing.assert_allclose(float(unweighted), float(ones), rtol=1e-6)


def test_labels_and_options_pass_through_uncut() -> None:
    from minisbert.losses import cosine_similarity_loss

    scores = jnp.linspace(0.0, 1.0, 5)  # (B,) stays (B,)
    wrapped = matryoshka(cosine_similarity_loss, dims=(3,))
    expected = cosine_similarity_loss(unit(A[:, :3]), unit(P[:, :3]), scores)
    np.testing.assert_allclose(float(wrapped(A, P, scores)), float(expected), rtol=1e-6)
    scaled = matryoshka(multiple_negatives_ranking_loss, dims=(4,))(A, P, scale=5.0)
    np.testing.assert_allclose(
        float(scaled), float(multiple_negatives_ranking_loss(A[:, :4], P[:, :4], scale=5.0)),
        rtol=1e-6,
    )  # fmt: skip


def test_every_width_sends_gradient_into_its_own_columns() -> None:
    dims = (12, 6, 2)

    def term(d: int) -> np.ndarray:  # (B, 12): one width's gradient, zero beyond column d
        loss = jax.jit(lambda a: multiple_negatives_ranking_loss(truncate(a, d), P[:, :d]))
        return np.asarray(jax.jit(jax.grad(loss))(A))

    grad = jax.jit(jax.grad(lambda a: matryoshka(multiple_negatives_ranking_loss, dims)(a, P)))(A)
    terms = {d: term(d) for d in dims}
    np.testing.assert_allclose(np.asarray(grad), sum(terms.values()), atol=1e-6)
    for d, g in terms.items():
        assert np.abs(g[:, :d]).sum() > 0 and np.abs(g[:, d:]).sum() == 0


def test_a_width_beyond_the_embedding_is_refused_in_one_line() -> None:
    with pytest.raises(
        ValueError, match=r"^matryoshka width 13 is larger than the embeddings' 12$"
    ):
        matryoshka(triplet_loss, dims=(13, 4))(A, P, N)
    with pytest.raises(ValueError) as info:
        make_loss(get_loss("mnrl"), "mnrl", matryoshka_dims=(512, 64), embedding_dim=384)
    assert str(info.value) == (
        "--matryoshka-dims 512 is larger than the model's embeddings (384 dimensions)"
    )
    for bad, words in [((), "at least one"), ((0,), "positive"), ((4, 2), "pair with")]:
        with pytest.raises(ValueError, match=words):
            matryoshka(triplet_loss, dims=bad, weights=(1.0,) if words == "pair with" else None)


def test_make_loss_wraps_when_asked_and_refuses_a_head() -> None:
    plain = make_loss(get_loss("mnrl_symmetric"), "mnrl_symmetric", scale=10.0)
    wrapped = make_loss(
        get_loss("mnrl_symmetric"),
        "mnrl_symmetric",
        scale=10.0,
        matryoshka_dims=(12, 4),
        matryoshka_weights=(1.0, 3.0),
        embedding_dim=12,
    )
    expected = plain(unit(A), unit(P), unit(N)) + 3.0 * plain(
        truncate(A, 4), truncate(P, 4), truncate(N, 4)
    )
    np.testing.assert_allclose(float(wrapped(A, P, N)), float(expected), rtol=1e-6)
    with pytest.raises(ValueError, match="does not apply to --loss softmax"):
        make_loss(get_loss("softmax"), "softmax", matryoshka_dims=(4,))
    with pytest.raises(ValueError, match="needs --matryoshka-dims"):
        make_loss(get_loss("mnrl"), "mnrl", matryoshka_weights=(1.0,))


# --- the train flags ------------------------------------------------------------------------------


def parse(argv: list[str]) -> TrainConfig:
    return config_from_args(build_parser().parse_args(argv))


def test_train_flags_round_trip_through_the_resume_command() -> None:
    config = parse(
        [
            "train",
            "--output",
            "X",
            "--loss",
            "mnrl_symmetric",
            "--matryoshka-dims",
            "384,128,64",
            "--matryoshka-weights",
            "1,0.5,0.25",
        ]
    )
    assert config.matryoshka_dims == (384, 128, 64)
    assert config.matryoshka_weights == (1.0, 0.5, 0.25)
    words = shlex.split(resume_command(config))
    assert parse(words[1:]) == TrainConfig(**{**config.__dict__, "resume": True})
    assert config.to_dict()["matryoshka_dims"] == [384, 128, 64]  # as state.json reads it back
    assert parse(["train", "--output", "X"]).matryoshka_dims is None
    for bad in (["--matryoshka-dims", "384,x"], ["--matryoshka-weights", "1,,2"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", "--output", "X", *bad])
    with pytest.raises(ValueError, match=r"matryoshka_dims=\(0,\) \(--matryoshka-dims\)"):
        TrainConfig(matryoshka_dims=(0,))
    with pytest.raises(ValueError, match="matryoshka_weights"):
        TrainConfig(matryoshka_weights=(-1.0,))


# --- encode(truncate_dim=...) and eval sts --truncate-dim -----------------------------------------


@pytest.mark.parametrize("normalize", [False, True])
def test_encode_truncates_without_renormalising(tmp_path: Path, normalize: bool) -> None:
    encoder = SentenceEncoder.from_pretrained(random_model_dir(tmp_path, normalize=normalize))
    sentences = ["the cat sat", "a dog is running on the mat"]
    full = encoder.encode(sentences)  # (2, 36)
    cut = encoder.encode(sentences, truncate_dim=8)  # (2, 8)
    np.testing.assert_allclose(cut, full[:, :8], rtol=1e-6)
    assert np.all(np.linalg.norm(cut, axis=1) < 1.0 - 1e-3) or not normalize  # a cut, not a unit
    unit_cut = encoder.encode(sentences, truncate_dim=8, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(unit_cut, axis=1), 1.0, rtol=1e-5)
    for bad in (0, 37, 2.5):
        with pytest.raises(ValueError, match="truncate_dim must be an integer in 1..36"):
            encoder.encode(sentences, truncate_dim=bad)  # type: ignore[arg-type]


def test_eval_sts_has_truncate_dim() -> None:
    args = build_parser().parse_args(["eval", "sts", "--truncate-dim", "64"])
    assert isinstance(args, argparse.Namespace) and args.truncate_dim == 64
    assert build_parser().parse_args(["eval", "sts"]).truncate_dim is None

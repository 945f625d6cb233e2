"""Folders saved by the real sentence-transformers convert and encode as the library does.

Run under each reference environment (``make test-live`` runs both): .venv-ref holds the
pinned sentence-transformers, .venv-ref-new the newest the registry offers, so a change
in how a release writes its folders shows up here. Every model is random-weight, built
and saved by the library itself (``st_models.build_st_model``): no download.

Tolerance: max |ours - theirs| <= 1e-5 * max |theirs|, for sentence vectors and for
every token vector (relative to the largest value, since single entries can be ~0).
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from st_models import Shape, build_st_model

from minisbert import SentenceEncoder
from minisbert.io.convert import convert, export_sentence_transformers

pytestmark = pytest.mark.live
st = pytest.importorskip("sentence_transformers")

RTOL = 1e-5
SENTENCES = [
    "the cat sat on the mat",
    "a dog runs",
    "",
    "dogs running on mats!",
    "is the cat a dog? 42, 7.",
    " ".join(["the dog sat on a mat"] * 40),  # longer than max_seq_length 32: truncated
]
ALL_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


def assert_close(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    scale = float(np.max(np.abs(theirs)))
    err = float(np.max(np.abs(ours - theirs)))
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs {theirs.shape}"
    assert err <= RTOL * scale, f"{what}: max difference {err:.2e} of max |value| {scale:.2e}"


def convert_and_compare(model, saved, tmp_path, prompt_name=None, tokens=True) -> SentenceEncoder:
    encoder = SentenceEncoder.from_pretrained(convert(saved, tmp_path / "minisbert"))
    assert encoder.max_seq_length == model.max_seq_length
    theirs = model.encode(SENTENCES, prompt_name=prompt_name, convert_to_numpy=True)
    ours = encoder.encode(SENTENCES, prompt_name=prompt_name)
    assert_close(ours, theirs, f"sentence vectors of {saved.name}")
    if tokens:
        their_tokens = model.encode(SENTENCES, output_value="token_embeddings")
        our_tokens = encoder.encode(SENTENCES, output_value="token_embeddings")
        for i, (a, b) in enumerate(zip(our_tokens, their_tokens, strict=True)):
            assert_close(a, b.float().numpy(), f"token vectors of sentence {i}")
    return encoder


@pytest.mark.parametrize(
    "pooling", [*ALL_MODES, ("cls", "mean"), ("max", "mean_sqrt_len_tokens", "lasttoken")]
)
def test_every_pooling_mode(pooling, tmp_path):
    saved = tmp_path / "st"
    model = build_st_model(saved, pooling=pooling)
    convert_and_compare(model, saved, tmp_path, tokens=pooling == "mean")


def test_dense_layers_and_normalize(tmp_path):
    saved = tmp_path / "st"
    model = build_st_model(
        saved, pooling=("cls", "mean"), dense=((40, "Tanh"), (20, "Identity")), normalize=True
    )
    encoder = convert_and_compare(model, saved, tmp_path, tokens=False)
    assert encoder.dim == 20


# Shapes of popular BERT-architecture embedders (their config.json and modules.json),
# random weights and the tiny vocabulary in place of theirs.
POPULAR = {
    "all-MiniLM-L12-v2": (Shape(384, 12, 12, 1536, 512), "mean", True, 128, None),
    "paraphrase-MiniLM-L6-v2": (Shape(384, 12, 6, 1536, 512), "mean", False, 128, None),
    "multi-qa-MiniLM-L6-cos-v1": (Shape(384, 12, 6, 1536, 512), "mean", True, 512, None),
    "bge-small-en-v1.5": (Shape(384, 12, 12, 1536, 512), "cls", True, 512, None),
    "e5-small-v2": (Shape(384, 12, 12, 1536, 512), "mean", True, 512,
                    {"query": "query: ", "passage": "passage: "}),
    "gte-small": (Shape(384, 12, 12, 1536, 512), "mean", True, 512, None),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(POPULAR))
def test_popular_model_shapes(name, tmp_path):
    shape, pooling, normalize, max_len, prompts = POPULAR[name]
    saved = tmp_path / name
    model = build_st_model(
        saved, shape=shape, pooling=pooling, normalize=normalize, prompts=prompts,
        max_seq_length=max_len,
    )  # fmt: skip
    encoder = convert_and_compare(model, saved, tmp_path, tokens=False)
    for prompt_name in prompts or {}:
        theirs = model.encode(SENTENCES, prompt_name=prompt_name)
        assert_close(encoder.encode(SENTENCES, prompt_name=prompt_name), theirs, prompt_name)
        assert not np.allclose(encoder.encode(SENTENCES[:2]), theirs[:2], atol=1e-3)


def test_default_prompt_is_used(tmp_path):
    saved = tmp_path / "st"
    prompts = {"query": "query: ", "passage": "passage: "}
    model = build_st_model(saved, prompts=prompts, default_prompt_name="query")
    encoder = convert_and_compare(model, saved, tmp_path, tokens=False)
    assert_close(encoder.encode(SENTENCES, prompt_name="passage"),
                 model.encode(SENTENCES, prompt_name="passage"), "passage")  # fmt: skip
    assert_close(encoder.encode(SENTENCES, prompt="a dog "),
                 model.encode(SENTENCES, prompt="a dog "), "a prompt of one's own")  # fmt: skip


def random_case(seed: int) -> dict:
    """A shape and pipeline the tests never fixed: sizes 32 to 512 positions, any modes."""
    rng = random.Random(seed)
    heads = rng.choice([1, 2, 3, 4, 6, 8])
    shape = Shape(
        hidden_size=heads * rng.choice([4, 8, 12, 16, 20]),
        num_attention_heads=heads,
        num_hidden_layers=rng.randint(1, 4),
        intermediate_size=rng.randint(8, 160),
        max_position_embeddings=rng.choice([32, 48, 64, 128, 256, 512]),
        vocab_size=rng.choice([99, 100, 128]),
    )
    k = rng.randint(1, 3)
    pooling = tuple(rng.sample(ALL_MODES, k))
    dense = tuple(
        (rng.randint(4, 64), rng.choice(["Tanh", "Identity", "ReLU", "GELU", "Sigmoid"]))
        for _ in range(rng.choice([0, 0, 1, 2]))
    )
    return dict(shape=shape, pooling=pooling if k > 1 else pooling[0], dense=dense,
                normalize=rng.random() < 0.5, seed=seed)  # fmt: skip


# MINISBERT_CONVERT_SEED adds a case of the caller's choosing (CI: a new one each run).
SEEDS = [11, 12, 13, 14] + (
    [int(os.environ["MINISBERT_CONVERT_SEED"])] if "MINISBERT_CONVERT_SEED" in os.environ else []
)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_shapes_and_pipelines(seed, tmp_path):
    case = random_case(seed)
    saved = tmp_path / "st"
    model = build_st_model(saved, **case)
    try:
        convert_and_compare(model, saved, tmp_path)
    except AssertionError as err:
        raise AssertionError(f"seed {seed}, {case}: {err}") from None


def test_export_round_trip(tmp_path):
    """minisbert -> folder -> SentenceTransformer(folder): the same vectors, in this release."""
    saved = tmp_path / "st"
    build_st_model(
        saved, pooling=("mean", "weightedmean"), dense=((24, "Tanh"),), normalize=True,
        prompts={"query": "query: "}, default_prompt_name="query",
    )  # fmt: skip
    ours = SentenceEncoder.from_pretrained(convert(saved, tmp_path / "minisbert"))
    exported = export_sentence_transformers(tmp_path / "minisbert", tmp_path / "exported")
    model = st.SentenceTransformer(str(exported), device="cpu")
    assert model.max_seq_length == ours.max_seq_length
    assert_close(ours.encode(SENTENCES), model.encode(SENTENCES), "exported")
    assert_close(ours.encode(SENTENCES, prompt_name="query"),
                 model.encode(SENTENCES, prompt_name="query"), "exported, prompt")  # fmt: skip
    again = SentenceEncoder.from_pretrained(convert(exported, tmp_path / "again"))
    np.testing.assert_array_equal(again.encode(SENTENCES), ours.encode(SENTENCES))


def test_loading_an_export_reports_no_missing_weights(tmp_path):
    """transformers lists every weight it had to initialise ("MISSING", "newly initialized"):
    an export carries BERT's pooler (the kept one, or zeros; Sentence-BERT never runs it), so it
    lists none."""
    import subprocess
    import sys

    from tiny import make_tiny_model_dir

    exported = export_sentence_transformers(make_tiny_model_dir(tmp_path / "tiny"),
                                            tmp_path / "exported")  # fmt: skip
    load = f"from sentence_transformers import SentenceTransformer as S; S({str(exported)!r})"
    result = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    said = result.stdout + result.stderr
    assert "MISSING" not in said and "newly initialized" not in said, said[-2000:]

"""The lessons: they run as a student runs them, their checks refuse wrong answers.

- Each .ipynb twin matches its .py source.
- A lesson runs top to bottom in fast mode with every exercise unsolved (the check cells go
  on with the reference solution), from ``lessons/`` and from an empty folder, with
  ``MINISBERT_DATA`` unset and the data in the cache folder that ``lesson.setup()`` searches.
  One cheap lesson in the default suite; every lesson in the slow tier.
- Each exercise check, taken out of its lesson and run on small made-up inputs, passes the
  reference solution and fails (AssertionError) for the wrong answers a student might give:
  a dot product where a cosine is asked, a call to the library function to be written, a
  train step that never updates the weights or climbs the gradient.
- ``lesson.finetune`` builds the config, hands back the trained model and deletes the
  run's folder.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jupytext
import nbformat
import numpy as np
import optax
import pytest
from flax import nnx
from lesson_checks import (
    check_from,
    padding_efficiency_check,
    solution,
    train_step_check,
    unit_rows,
)
from tiny import ONE_LAYER, TINY_CONFIG, make_tiny_model_dir, tiny_tokenizer

import minisbert.pooling
import minisbert.train
from minisbert import grad_cache, lesson
from minisbert.batching import batch_rows, bucket_length
from minisbert.config import SentenceConfig
from minisbert.cross_encoder import CrossEncoder, CrossEncoderConfig, CrossEncoderModel
from minisbert.data import DataError, PairExample, TripletExample, read_examples
from minisbert.distances import cos_sim_matrix
from minisbert.loss_check import check_loss, random_inputs
from minisbert.losses import (
    cosent_loss,
    cosine_similarity_loss,
    multiple_negatives_ranking_loss,
    symmetric_multiple_negatives_ranking_loss,
    triplet_loss,
)
from minisbert.pooling import max_pooling, pool
from minisbert.sentence_encoder import SentenceEncoder, SentenceModel
from minisbert.similarity import paraphrase_mining_embeddings, semantic_search
from minisbert.tokenizer import Tokenizer, pad_batch
from minisbert.train import Trainable, TrainResult, compute_loss, train_step

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
sys.path.insert(0, str(LESSONS))

from run import execute, in_sync, lesson_sources, sync  # noqa: E402

SOURCES = lesson_sources()
CHEAP_LESSON = "02_tokenization"  # the quickest to run, about half a minute in fast mode


def test_there_are_lessons():
    assert SOURCES, "no lessons/NN_topic.py found"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_in_sync(source: Path):
    assert in_sync(source), (
        f"{source.with_suffix('.ipynb').name} differs from {source.name} or has outputs; "
        "run `python lessons/run.py --sync`"
    )


def test_sync_writes_the_same_notebook_again(tmp_path):
    """Cell ids come from each cell's text, not at random: syncing an unchanged lesson changes
    nothing, editing a cell changes that cell's id only, a repeated cell gets its own id."""
    cells = ["# %% [markdown]\n# A lesson\n", "# %%\nx = 1\n", "# %%\nx = 1\n", "# %%\ny = 2\n"]
    source = tmp_path / "99_ids.py"
    source.write_text("\n".join(cells), encoding="utf-8")
    assert sync(source) == source.with_suffix(".ipynb")
    assert sync(source) is None  # already that notebook: left alone
    notebook = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    nbformat.validate(notebook)  # ids of 1-64 letters, digits, - and _
    ids = [cell.id for cell in notebook.cells]
    assert len(set(ids)) == 4 and ids[2] == f"{ids[1]}-2"
    source.write_text("\n".join([*cells[:3], "# %%\ny = 3\n"]), encoding="utf-8")
    assert sync(source) is not None
    again = [cell.id for cell in nbformat.read(source.with_suffix(".ipynb"), as_version=4).cells]
    assert again[:3] == ids[:3] and again[3] != ids[3]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_lesson_starts_with_the_set_up_cell(source: Path):
    first = next(c for c in jupytext.read(source).cells if c.cell_type == "code")
    assert "lesson.setup()" in first.source, f"{source.name}: the first code cell is not set-up"
    # jupytext turns a comment line starting with ! or % into a magic: it must stay Python.
    twin = jupytext.read(source.with_suffix(".ipynb"))
    compile(next(c for c in twin.cells if c.cell_type == "code").source, source.name, "exec")


# ---------------------------------------------------------------- running whole lessons


def run_as_a_student(
    source: Path, cwd: Path, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fast mode, exercises unsolved, MINISBERT_DATA unset: the data sits in the cache."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "data").symlink_to(data_dir)
    monkeypatch.setenv("MINISBERT_CACHE", str(cache))
    monkeypatch.delenv("MINISBERT_DATA", raising=False)
    monkeypatch.delenv("MINISBERT_SOLUTIONS", raising=False)
    monkeypatch.setenv("MINISBERT_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    execute(source, out_dir=None, timeout=900, cwd=cwd)


@pytest.mark.parametrize(
    "where", ["lessons", pytest.param("empty folder", marks=pytest.mark.slow)]
)  # the empty folder in the long tier (make test-slow), with the full lesson runs
def test_a_cheap_lesson_runs_from_anywhere(where, tmp_path, pretrained_dir, data_dir, monkeypatch):
    (source,) = lesson_sources([CHEAP_LESSON])
    cwd = LESSONS if where == "lessons" else tmp_path / "empty"
    cwd.mkdir(exist_ok=True)
    run_as_a_student(source, cwd, tmp_path, data_dir, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_lesson_runs_from_an_empty_folder(
    source: Path, tmp_path, pretrained_dir, data_dir, monkeypatch
):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    run_as_a_student(source, cwd, tmp_path, data_dir, monkeypatch)


# ---------------------------------------------------------------- minisbert.lesson


def test_setup_finds_the_data_in_the_cache(tmp_path, monkeypatch, data_dir, pretrained_dir):
    (tmp_path / "data").symlink_to(data_dir)
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path))
    monkeypatch.delenv("MINISBERT_DATA", raising=False)
    paths = lesson.setup()
    assert paths.data == tmp_path / "data"
    assert os.environ["MINISBERT_DATA"] == str(tmp_path / "data"), "load_dataset must find it"
    assert paths.solutions == LESSONS / "solutions"
    assert (paths.weights / "tokenizer.json").is_file()


def test_weights_in_the_cache_are_found_and_named_for_from_pretrained(tmp_path, monkeypatch):
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MINISBERT_WEIGHTS", str(tmp_path / "elsewhere"))  # restored afterwards
    with pytest.raises(FileNotFoundError, match="minisbert fetch no-such-model"):
        lesson.find_weights("no-such-model", download=False)
    (tmp_path / "cache" / "weights" / "no-such-model").mkdir(parents=True)
    assert lesson.find_weights("no-such-model") == tmp_path / "cache" / "weights" / "no-such-model"
    assert os.environ["MINISBERT_WEIGHTS"] == str(tmp_path / "cache" / "weights")


def test_missing_data_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path))
    monkeypatch.delenv("MINISBERT_DATA", raising=False)
    monkeypatch.setattr(lesson, "REPO", tmp_path / "no-repo")  # no ../shared/data either
    with pytest.raises(DataError, match="minisbert data fetch --dest"):
        lesson.find_data(download=False)
    monkeypatch.setenv("MINISBERT_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="MINISBERT_DATA="):
        lesson.find_data(download=False)


def test_exercise_goes_on_with_the_solution_and_refuses_a_wrong_answer(capsys):
    def most_similar_pair(embeddings):
        raise NotImplementedError("your code here")

    def check(fn):
        assert tuple(fn(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]]))) == (0, 2), "wrong pair"

    got = lesson.exercise(check, most_similar_pair, lesson="01_why_sentence_embeddings")
    assert got is not most_similar_pair and got.__name__ == "most_similar_pair"
    assert "not solved yet" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="wrong pair"):
        lesson.exercise(check, lambda e: (0, 1), lesson="01_why_sentence_embeddings")

    def calls_something_unfinished(embeddings):  # solved, but what it calls is not
        return most_similar_pair(embeddings)

    with pytest.raises(NotImplementedError):
        lesson.exercise(check, calls_something_unfinished, lesson="01_why_sentence_embeddings")


def test_an_unsolved_jitted_exercise_goes_on_with_the_solution(capsys):
    @nnx.jit
    def my_train_step(*args):
        raise NotImplementedError("your code here")

    def check(fn):
        if fn is my_train_step:
            fn(jnp.zeros(2))  # raises while nnx.jit traces the stub

    got = lesson.exercise(check, my_train_step, lesson="06_regression_objective")
    assert got is not my_train_step and got.__name__ == "my_train_step"
    assert "not solved yet" in capsys.readouterr().out


def test_by_hand_catches_the_library_however_it_is_called():
    x, mask = jnp.ones((1, 2, 3)), jnp.array([[1, 0]])
    with pytest.raises(AssertionError, match="itself"):
        lesson.by_hand(max_pooling, max_pooling)
    calls = [lambda x, m: max_pooling(x, m), lambda x, m: minisbert.pooling.max_pooling(x, m)]
    for fn in calls:
        with pytest.raises(AssertionError, match="calls minisbert.pooling.max_pooling"):
            lesson.by_hand(fn, max_pooling)(x, mask)
    assert lesson.by_hand(lambda x, m: x.max(axis=1), max_pooling)(x, mask).shape == (1, 3)
    assert float(max_pooling(x, mask).sum()) == 3.0, "the library is restored afterwards"


def test_by_hand_catches_the_library_through_a_registry():
    """An answer that looks its function up in a dictionary (``POOLINGS["max"]``) or a record of
    one (``REGISTRY["triplet"].function``), is refused too, and both are whole again afterwards."""
    from minisbert.losses import LOSSES, REGISTRY, triplet_loss
    from minisbert.pooling import POOLINGS

    x, mask = jnp.ones((1, 2, 3)), jnp.array([[1, 0]])
    with pytest.raises(AssertionError, match="calls minisbert.pooling.max_pooling"):
        lesson.by_hand(lambda x, m: POOLINGS["max"](x, m), max_pooling)(x, mask)
    a = jnp.ones((2, 3))
    for answer in (
        lambda a, p, n: LOSSES["triplet"](a, p, n),
        lambda a, p, n: REGISTRY["triplet"].function(a, p, n),
    ):
        with pytest.raises(AssertionError, match="triplet_loss"):
            lesson.by_hand(answer, triplet_loss)(a, a, a)
    assert POOLINGS["max"] is max_pooling and LOSSES["triplet"] is triplet_loss
    assert REGISTRY["triplet"].function is triplet_loss, "the records are restored afterwards"


def test_by_hand_catches_a_method_called_on_any_instance():
    model = CrossEncoder(None, Tokenizer(tiny_tokenizer(), 16), CrossEncoderConfig())

    def calls_it(a, b):
        return model.tokenize_pairs([(a, b)])[0][0]  # [CLS] a [SEP] b [SEP]

    with pytest.raises(AssertionError, match=r"calls minisbert\.cross_encoder\.CrossEncoder\."):
        lesson.by_hand(calls_it, CrossEncoder.tokenize_pairs)("the cat", "a dog")
    assert calls_it("the cat", "a dog")[0] == 2, "the method is restored afterwards: [CLS] = 2"


def test_finetune_trains_in_a_temporary_folder_and_loads_the_result(tmp_path, monkeypatch, capsys):
    """``train`` itself (tests/test_train.py) is replaced by a stand-in that writes a model
    folder: what is checked is the config finetune builds, the model it loads back, and
    that the run's folder is gone afterwards."""
    start_dir = make_tiny_model_dir(tmp_path / "start", seed=0)
    trained_dir = make_tiny_model_dir(tmp_path / "trained", seed=1)  # what "training" gives
    seen = {}

    def fake_train(config, *, loss_fn=None):
        seen.update(config=config, loss_fn=loss_fn)
        shutil.copytree(trained_dir, config.output)
        return TrainResult(Path(config.output), 2, [0.5, 0.25], {}, 0.1)

    monkeypatch.setattr(minisbert.train, "train", fake_train)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the run goes
    trained, result = lesson.finetune(
        model=str(start_dir),
        data="pairs.tsv",
        loss="cosine",
        batch_size=4,
        loss_fn=cosine_similarity_loss,
    )
    config = seen["config"]
    assert (config.model, config.data, config.loss, config.batch_size) == (
        str(start_dir),
        "pairs.tsv",
        "cosine",
        4,
    )
    assert config.eval_data == "none" and seen["loss_fn"] is cosine_similarity_loss
    assert Path(config.output).parent.parent == tmp_path / "tmp"
    assert not any((tmp_path / "tmp").iterdir()), "the run's folder is deleted"
    assert result.losses == [0.5, 0.25] and "0.5000 -> 0.2500" in capsys.readouterr().out
    expected = SentenceEncoder.from_pretrained(trained_dir).encode(["the cat sat"])  # (1, 36)
    np.testing.assert_array_equal(trained.encode(["the cat sat"]), expected)


def test_within_tokens_keeps_examples_whose_every_sentence_fits_and_write_examples_round_trips(
    tmp_path,
):
    """A stand-in tokenizer gives each sentence its words + 2 ([CLS], [SEP]) tokens."""
    words = types.SimpleNamespace(
        tokenize=lambda texts: [[0] * (len(t.split()) + 2) for t in texts]
    )
    pairs = [
        PairExample("a b", "c d e", 0.25),  # 4 and 5 tokens
        PairExample("a", "b c d e f", 1),  # the second sentence has 7
        PairExample("a b c", "d", None),  # 5 and 3
    ]
    assert lesson.within_tokens(pairs, words, 5) == [pairs[0], pairs[2]]
    assert lesson.within_tokens(pairs, words, 5, limit=1) == [pairs[0]]
    assert lesson.within_tokens(pairs, words, 7) == pairs
    triplets = [TripletExample("a", "b", "c d e f g"), TripletExample("a", "b c", "d")]
    assert lesson.within_tokens(triplets, words, 4) == [triplets[1]]  # the negative counts too
    assert lesson.within_tokens([], words, 4) == []

    scored = [PairExample("a\tb", 'say "hi"', 0.5), PairExample("c", "d", 1.0)]  # 1.0 stays a score
    classes = [PairExample("p", "h", 2), PairExample("q", "i", 0)]
    for examples in (scored, classes, pairs[2:], triplets):
        path = lesson.write_examples(tmp_path / "train.jsonl", examples)
        back = read_examples(path)
        assert back == examples
        assert [type(getattr(e, "label", None)) for e in back] == [
            type(getattr(e, "label", None)) for e in examples
        ]
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"], "no part file left behind"


def test_over_seeds_stacks_each_figure_and_beyond_noise_asks_for_more_than_the_spread(capsys):
    after = lesson.over_seeds(lambda seed: {"acc": 0.50 + 0.01 * seed, "sts": 80.0}, [0, 1, 2])
    assert set(after) == {"acc", "sts"}
    np.testing.assert_allclose(after["acc"], [0.50, 0.51, 0.52])
    assert lesson.beyond_noise(0.40, after["acc"]), "+0.11 with a spread of 0.01"
    assert not lesson.beyond_noise(0.505, after["acc"]), "seed 0 did not improve"
    assert not lesson.beyond_noise(0.40, [0.41, 0.60, 0.42]), "mean gain 0.14 < 2 x 0.11"
    assert not lesson.beyond_noise(80.0, after["sts"]), "no change is not a gain"
    assert lesson.beyond_noise(0.5, [0.3, 0.31, 0.29], lower_is_better=True)
    assert lesson.beyond_noise(0.4, [0.5]), "one seed (fast mode): it improved"
    lesson.seed_table({"acc": 0.4, "sts": 81.0}, after)
    out = capsys.readouterr().out
    assert "after (3 seeds)" in out and "0.51 ± 0.01" in out and "-1.00" in out


def test_read_through_gives_the_same_weights_another_sentence_vector(tmp_path):
    mean_dir = make_tiny_model_dir(tmp_path / "mean")
    cls_dir = lesson.read_through(mean_dir, "cls", tmp_path / "cls")
    mean_model = SentenceEncoder.from_pretrained(mean_dir)
    cls_model = SentenceEncoder.from_pretrained(cls_dir)
    assert cls_model.model.sentence_config.pooling == "cls"
    assert mean_model.model.sentence_config.pooling == "mean", "the source is left as it was"
    sentences = ["the cat sat on a mat", "a dog"]
    tokens = mean_model.encode(sentences, output_value="token_embeddings")  # [(L_i, D)]
    np.testing.assert_allclose(cls_model.encode(sentences), [t[0] for t in tokens], atol=1e-6)
    np.testing.assert_allclose(mean_model.encode(sentences), [t.mean(0) for t in tokens], atol=1e-6)


# ---------------------------------------------------------------- exercise checks


def test_01_check_refuses_a_dot_product():
    stem = "01_why_sentence_embeddings"
    check = check_from(
        stem,
        "check_most_similar_pair",
        embeddings=unit_rows(np.random.default_rng(0), 500, 16),
        paraphrase_mining_embeddings=paraphrase_mining_embeddings,
        semantic_search=semantic_search,
    )

    def by_dot_product(embeddings):
        S = embeddings @ embeddings.T  # (n, n) dot products, lengths not divided out
        S[np.tril_indices(len(S))] = -np.inf
        return tuple(int(k) for k in np.unravel_index(np.argmax(S), S.shape))

    check(solution(stem, "most_similar_pair"))
    with pytest.raises(AssertionError, match="cosine"):
        check(by_dot_product)


def test_06_check_refuses_a_dot_product():
    stem = "06_regression_objective"
    rng = np.random.default_rng(0)
    check = check_from(
        stem,
        "check_cosent",
        u=unit_rows(rng, 8, 16),
        v=unit_rows(rng, 8, 16),
        s=rng.uniform(size=8).astype(np.float32),
        cosent_loss=cosent_loss,
    )
    reference = solution(stem, "cosent")

    def by_dot_product(u, v, scores, scale=20.0):
        dots = np.sum(u * v, axis=1)  # (B,) the cosines only when |u_i| = |v_i| = 1
        diff = scale * (dots[None, :] - dots[:, None])  # (B, B) scale (dot_j - dot_i)
        terms = np.concatenate([[0.0], diff[scores[:, None] > scores[None, :]]])
        return float(terms.max() + np.log(np.sum(np.exp(terms - terms.max()))))

    check(reference)
    with pytest.raises(AssertionError, match="stretched vectors"):
        check(by_dot_product)


@pytest.mark.slow  # the long tier (make test-slow): keeps make test short
def test_06_train_step_check_refuses_wrong_steps():
    """A tiny random model stands in for all-MiniLM-L6-v2; each step that gets past the
    first assert compiles (a few seconds each)."""
    stem = "06_regression_objective"
    check = train_step_check(TINY_CONFIG)
    check(solution(stem, "my_train_step"))

    def loss_and_grads(trainable, input_ids, attention_mask, labels):
        def loss_of(t):
            return compute_loss(t, input_ids, attention_mask, labels, cosine_similarity_loss)

        return nnx.value_and_grad(loss_of)(trainable)

    @nnx.jit
    def no_update(trainable, optimizer, input_ids, attention_mask, labels):
        loss, _ = loss_and_grads(trainable, input_ids, attention_mask, labels)
        return loss

    @nnx.jit
    def uphill(trainable, optimizer, input_ids, attention_mask, labels):
        loss, grads = loss_and_grads(trainable, input_ids, attention_mask, labels)
        optimizer.update(trainable, jax.tree.map(jnp.negative, grads))
        return loss

    @nnx.jit
    def plain_sgd(trainable, optimizer, input_ids, attention_mask, labels):
        loss, grads = loss_and_grads(trainable, input_ids, attention_mask, labels)
        params = nnx.state(trainable, nnx.Param)
        nnx.update(trainable, jax.tree.map(lambda p, g: p - 2e-5 * g, params, grads))
        return loss

    @nnx.jit
    def calls_the_library(trainable, optimizer, input_ids, attention_mask, labels):
        return train_step(
            trainable, optimizer, input_ids, attention_mask, labels, cosine_similarity_loss
        )

    def not_compiled(trainable, optimizer, input_ids, attention_mask, labels):
        loss, grads = loss_and_grads(trainable, input_ids, attention_mask, labels)
        optimizer.update(trainable, grads)
        return loss

    wrong = [
        (no_update, "no weight changed"),
        (uphill, "up the gradient, not down"),
        (plain_sgd, "let the optimiser make the step"),
        (calls_the_library, "calls minisbert.train.train_step"),
        (not_compiled, "decorate it with @nnx.jit"),
    ]
    for fn, message in wrong:
        with pytest.raises(AssertionError, match=re.escape(message)):
            check(fn)


def test_04_check_refuses_the_library():
    stem = "04_pooling"
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    check = check_from(
        stem,
        "check_masked_max_pooling",
        X=rng.normal(size=(2, 4, 8)),
        attention_mask=mask,
        max_pooling=max_pooling,
        pool=pool,
    )
    check(solution(stem, "masked_max_pooling"))
    wrong = [
        max_pooling,
        lambda x, m: np.asarray(max_pooling(jnp.asarray(x), jnp.asarray(m))),
        lambda x, m: np.asarray(minisbert.pooling.pool(jnp.asarray(x), jnp.asarray(m), "max")),
    ]
    for fn in wrong:
        with pytest.raises(AssertionError):
            check(fn)


def test_09_check_refuses_autodiff():
    stem = "09_in_batch_negatives"
    check = check_from(
        stem,
        "check_logit_gradient",
        S_hard=20 * np.random.default_rng(0).uniform(-1, 1, size=(8, 16)),
        multiple_negatives_ranking_loss=multiple_negatives_ranking_loss,
    )
    check(solution(stem, "logit_gradient"))

    def by_autodiff(logits):
        def loss(z):
            return jnp.mean(
                optax.softmax_cross_entropy_with_integer_labels(z, jnp.arange(z.shape[0]))
            )

        return np.asarray(jax.grad(loss)(jnp.asarray(logits, jnp.float32)))

    with pytest.raises(AssertionError, match="jax"):
        check(by_autodiff)


def test_10_check_refuses_semantic_search():
    stem = "10_evaluation_and_applications"
    rng = np.random.default_rng(0)
    check = check_from(
        stem,
        "check_top_k_search",
        queries=["a", "b"],
        query_embeddings=unit_rows(rng, 2, 16),
        corpus_embeddings=rng.normal(size=(50, 16)).astype(np.float32),
        semantic_search=semantic_search,
    )
    check(solution(stem, "top_k_search"))

    def by_library(query_vec, corpus, k):
        hits = semantic_search(query_vec, corpus, top_k=k)[0]
        return [(h["corpus_id"], h["score"]) for h in hits]

    with pytest.raises(AssertionError, match="semantic_search"):
        check(by_library)


def test_11_check_refuses_rows_per_batch():
    stem = "11_speed"
    check = padding_efficiency_check()
    check(solution(stem, "padding_efficiency"))

    def rows_of_each_batch(lengths, batch_size, sort, max_length=256):
        lengths = sorted(lengths, reverse=True) if sort else list(lengths)
        batches = [lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)]
        slots = sum(
            batch_rows(len(b), batch_size) * bucket_length(max(b), max_length) for b in batches
        )  # the misreading: n = the batch's own size
        return sum(lengths) / slots

    with pytest.raises(AssertionError, match="by hand"):
        check(rows_of_each_batch)


def test_12_checks_refuse_the_library():
    stem = "12_modify_a_loss"
    common = {
        "check_loss": check_loss,
        "random_inputs": random_inputs,
        "cos_sim_matrix": cos_sim_matrix,
        "LossFn": Any,
    }
    check_triplet = check_from(stem, "check_cosine_triplet", triplet_loss=triplet_loss, **common)
    check_triplet(solution(stem, "cosine_triplet_loss"))
    with pytest.raises(AssertionError, match="triplet_loss"):
        check_triplet(
            lambda a, p, n, margin=0.5: triplet_loss(a, p, n, margin=margin, distance="cosine")
        )
    check_symmetric = check_from(
        stem,
        "check_symmetric_mnrl",
        **common,
        multiple_negatives_ranking_loss=multiple_negatives_ranking_loss,
        symmetric_multiple_negatives_ranking_loss=symmetric_multiple_negatives_ranking_loss,
    )
    check_symmetric(solution(stem, "symmetric_mnrl_loss"))

    def by_library(anchors, positives, negatives=None, *, scale=20.0):
        return 0.5 * (
            multiple_negatives_ranking_loss(anchors, positives, negatives, scale=scale)
            + multiple_negatives_ranking_loss(positives, anchors, scale=scale)
        )

    with pytest.raises(AssertionError, match="multiple_negatives_ranking_loss"):
        check_symmetric(by_library)


def test_13_check_refuses_the_library():
    """A tiny random cross-encoder (hidden 36, vocab 99) stands in for the lesson's."""
    stem = "13_cross_encoders"
    model = nnx.eval_shape(lambda: CrossEncoderModel(TINY_CONFIG, 1, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    state = nnx.state(model)
    for path, var in nnx.to_flat_state(state):  # drawn in numpy: no initialiser to compile
        shape, dtype = var.get_value().shape, var.get_value().dtype
        scale = 0.5 if path[0] in ("pooler", "classifier") else 0.02  # a head far from linear
        if not isinstance(var, nnx.Param):  # the dropout streams' keys and counts
            var.set_value(jnp.zeros(shape, dtype))
        elif path[-1] == "scale":  # LayerNorm
            var.set_value(jnp.ones(shape, dtype))
        else:
            var.set_value(jnp.asarray(rng.normal(0.0, scale, shape).astype(dtype)))
    nnx.update(model, state)
    model.eval()
    cross_encoder = CrossEncoder(model, Tokenizer(tiny_tokenizer(), 32), CrossEncoderConfig())
    check = check_from(
        stem,
        "check_cross_encoder_by_hand",
        cross_encoder=cross_encoder,
        check_pairs=[("the cat sat on the mat", "a dog runs"), ("a dog", "the cat is running")],
        CrossEncoder=CrossEncoder,
        CrossEncoderModel=CrossEncoderModel,
        pad_batch=pad_batch,
        nnx=nnx,
    )
    pair_input, pair_head = solution(stem, "pair_input"), solution(stem, "pair_head")
    check(pair_input, pair_head)
    decode = cross_encoder.tokenizer.backend.decode

    def by_library(a_ids, b_ids, vocab):
        (ids,), (types,) = cross_encoder.tokenize_pairs([(decode(a_ids), decode(b_ids))])
        return ids, types

    def typed_ids(a_ids, b_ids, vocab):  # [CLS] = 2, [SEP] = 3 in the tiny vocabulary only
        return [2, *a_ids, 3, *b_ids, 3], [0] * (len(a_ids) + 2) + [1] * (len(b_ids) + 1)

    def one_segment(a_ids, b_ids, vocab):
        ids, _ = pair_input(a_ids, b_ids, vocab)
        return ids, [0] * len(ids)

    def head_by_library(cls, *weights):
        return np.asarray(cross_encoder.model.classify(jnp.asarray(cls)))

    def no_tanh(cls, pooler_kernel, pooler_bias, classifier_kernel, classifier_bias):
        return (cls @ pooler_kernel + pooler_bias) @ classifier_kernel + classifier_bias

    def own_weights(cls, *weights):  # the lesson's model's head, not the one it is given
        layers = (cross_encoder.model.pooler, cross_encoder.model.classifier)
        mine = [np.asarray(p.get_value()) for layer in layers for p in (layer.kernel, layer.bias)]
        return pair_head(cls, *mine)

    wrong = [
        ((by_library, pair_head), "calls minisbert.cross_encoder.CrossEncoder.tokenize_pairs"),
        ((typed_ids, pair_head), "with {'[PAD]': 0"),
        ((one_segment, pair_head), "segment ids"),
        ((pair_input, head_by_library), "calls minisbert.cross_encoder.CrossEncoderModel.classify"),
        ((pair_input, no_tanh), "differ from CrossEncoderModel's"),
        ((pair_input, own_weights), "three labels"),
    ]
    for answers, message in wrong:
        with pytest.raises(AssertionError, match=re.escape(message)):
            check(*answers)


def cached_step_check() -> tuple[Any, Any, Any]:
    """Lesson 14's check on a tiny random SentenceModel (one layer, hidden 36, vocab 99) in
    place of all-MiniLM-L6-v2, 4 triplets in chunks of 3 (a short last chunk); the model and
    the reference solution."""
    stem = "14_in_batch_negatives_at_scale"
    rng = np.random.default_rng(0)
    S, B, T = 3, 4, 8
    mask = (np.arange(T) < rng.integers(3, T + 1, size=(S, B, 1))).astype(np.int32)  # (S, B, T)
    ids = np.where(mask == 1, rng.integers(5, TINY_CONFIG.vocab_size, size=(S, B, T)), 0)
    model = nnx.eval_shape(
        lambda: SentenceModel(ONE_LAYER, SentenceConfig(max_seq_length=T), rngs=nnx.Rngs(0))
    )
    state = nnx.state(model)
    for path, var in nnx.to_flat_state(state):  # drawn in numpy: no initialiser to compile
        shape, dtype = var.get_value().shape, var.get_value().dtype
        if not isinstance(var, nnx.Param):  # the dropout streams' keys and counts
            var.set_value(jnp.zeros(shape, dtype))
        elif path[-1] == "scale":  # LayerNorm
            var.set_value(jnp.ones(shape, dtype))
        else:
            var.set_value(jnp.asarray(rng.normal(0.0, 0.1, shape).astype(dtype)))
    nnx.update(model, state)
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit  # one program per chunk shape, and its vjp: eager op by op is slower here
    def embed(params, input_ids, attention_mask):  # (m, T) -> (m, D)
        return nnx.merge(graphdef, params, rest)(input_ids, attention_mask)

    check = check_from(
        stem,
        "check_cached_step",
        embed=embed,
        params=params,
        check_ids=jnp.asarray(ids),
        check_mask=jnp.asarray(mask),
        CHECK_M=3,
        nnx=nnx,
        multiple_negatives_ranking_loss=multiple_negatives_ranking_loss,
        cached_loss_and_grad=grad_cache.cached_loss_and_grad,
        cached_grads=grad_cache.cached_grads,
        chunk_grads=grad_cache.chunk_grads,
        embed_chunk=grad_cache.embed_chunk,
        loss_and_cache=grad_cache.loss_and_cache,
    )
    return check, model, solution(stem, "cached_loss_and_grads")


def test_14_check_refuses_the_library():
    check, model, _ = cached_step_check()

    def by_library(embed, params, input_ids, attention_mask, loss_fn, M):
        batch = (input_ids, attention_mask, None)
        loss, grads = grad_cache.cached_loss_and_grad(Trainable(model), batch, loss_fn, M)
        return loss, grads["model"]

    with pytest.raises(AssertionError, match=r"calls minisbert\.grad_cache\.cached_loss_and_grad"):
        check(by_library)


@pytest.mark.slow  # each answer compiles the chunks' programs: about 15 s in all
def test_14_check_passes_the_solution_and_refuses_a_whole_batch_graph():
    check, _, solved = cached_step_check()
    S, B = 3, 4  # as cached_step_check's batch
    check(solved)

    def chunks(input_ids, attention_mask, M):  # (S, B, T) -> [(ids, mask)] of (m, T), side by side
        return [[(input_ids[s, i : i + M], attention_mask[s, i : i + M]) for i in range(0, B, M)]
                for s in range(S)]  # fmt: skip

    def whole_batch(embed, params, input_ids, attention_mask, loss_fn, M):  # no cache at all
        def loss_of(p):
            return loss_fn(*[embed(p, input_ids[s], attention_mask[s]) for s in range(S)])

        return jax.value_and_grad(loss_of)(params)

    def one_graph(embed, params, input_ids, attention_mask, loss_fn, M):  # chunks, one grad
        def loss_of(p):
            sides = chunks(input_ids, attention_mask, M)
            return loss_fn(*[jnp.concatenate([embed(p, *c) for c in side]) for side in sides])

        embed(params, input_ids[0, :M], attention_mask[0, :M])  # a pass 1 for show
        return jax.value_and_grad(loss_of)(params)

    def pull_backs_kept(embed, params, input_ids, attention_mask, loss_fn, M):  # no pass 1
        sides = chunks(input_ids, attention_mask, M)
        runs = [[jax.vjp(lambda p, c=c: embed(p, *c), params) for c in side] for side in sides]
        e = jnp.stack([jnp.concatenate([v for v, _ in side]) for side in runs])  # (S, B, D)
        loss, cache = jax.value_and_grad(lambda e: loss_fn(*e))(e)
        grads = jax.tree.map(jnp.zeros_like, params)
        for s, side in enumerate(runs):
            for k, (_, pull_back) in enumerate(side):
                (g,) = pull_back(cache[s, k * M : (k + 1) * M])
                grads = jax.tree.map(jnp.add, grads, g)
        return loss, grads

    def averaged_chunks(*args):  # the chunks' gradients averaged, not added
        loss, grads = solved(*args)
        return loss, jax.tree.map(lambda g: g / 6, grads)  # 2 chunks a side, 3 sides

    wrong = [
        (whole_batch, "embed ran on 4 sentences at once"),
        (one_graph, "one differentiation saw several chunks"),
        (pull_backs_kept, "pass 1 must embed the chunks without differentiating"),
        (averaged_chunks, "the gradient differs from the whole batch's"),
    ]
    for answer, message in wrong:
        with pytest.raises(AssertionError, match=re.escape(message)):
            check(answer)

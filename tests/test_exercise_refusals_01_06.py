"""Lessons 01-06: each exercise check refuses the library call that would answer it.

Each check is taken out of its lesson (``lesson_checks.check_from``: the cell that defines it,
run alone) with small made-up inputs in place of the lesson's variables. For every
library call below, the test first shows that the wrong answer gives the right numbers when
nothing guards it (so only the refusal can fail it), then that the check fails it with an
AssertionError naming the call, and that the reference solution passes the same check.
"""

from __future__ import annotations

import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tokenizers
from flax import nnx
from lesson_checks import check_from, solution, train_step_check, unit_rows
from tiny import ONE_LAYER, tiny_tokenizer

import minisbert.pooling
import minisbert.similarity
from minisbert.bert import BertEncoder
from minisbert.losses import SoftmaxClassifier, cosent_loss, cosine_similarity_loss, softmax_loss
from minisbert.pooling import POOLINGS, max_pooling, pool
from minisbert.similarity import paraphrase_mining_embeddings, semantic_search
from minisbert.tokenizer import Tokenizer, pad_batch
from minisbert.train import compute_loss


def refused(check, *answers, calls: str) -> None:
    with pytest.raises(AssertionError, match=rf"calls {re.escape(calls)}\b"):
        check(*answers)


# ---------------------------------------------------------------- 01 most_similar_pair


def test_01_refuses_paraphrase_mining_and_semantic_search():
    stem = "01_why_sentence_embeddings"
    embeddings = unit_rows(np.random.default_rng(0), 100, 16)
    check = check_from(
        stem,
        "check_most_similar_pair",
        embeddings=embeddings,
        paraphrase_mining_embeddings=paraphrase_mining_embeddings,
        semantic_search=semantic_search,
    )
    solved = solution(stem, "most_similar_pair")
    check(solved)

    def by_mining(E):
        _, i, j = paraphrase_mining_embeddings(E, top_k=1)[0]
        return i, j

    def through_the_module(E):
        _, i, j = minisbert.similarity.paraphrase_mining_embeddings(E, top_k=1)[0]
        return i, j

    def by_search(E):  # each row's nearest other row, then the best of those
        best = [
            (hits[1]["score"], i, hits[1]["corpus_id"])
            for i, hits in enumerate(semantic_search(E, E, top_k=2))
        ]
        _, i, j = max(best)
        return min(i, j), max(i, j)

    for answer in (by_mining, through_the_module, by_search):
        assert tuple(answer(embeddings)) == solved(embeddings), "a right answer, unguarded"
    refused(check, by_mining, calls="minisbert.similarity.paraphrase_mining_embeddings")
    refused(check, through_the_module, calls="minisbert.similarity.paraphrase_mining_embeddings")
    refused(check, by_search, calls="minisbert.similarity.semantic_search")


# ---------------------------------------------------------------- 02 wordpiece


def test_02_refuses_the_tokenizers_wordpiece_and_minisberts_tokenizer():
    """The tiny vocabulary (letters, ##letters, a few words) stands in for the model's."""
    stem = "02_tokenization"
    tokenizer = Tokenizer(tiny_tokenizer(), 32)
    backend = tokenizer.backend
    vocab = backend.get_vocab()
    check = check_from(
        stem,
        "check_wordpiece",
        backend=backend,
        vocab=vocab,
        tokenizers=tokenizers,
        Tokenizer=Tokenizer,
    )
    solved = solution(stem, "wordpiece")
    check(solved)

    def by_the_model(word, vocab):
        return [token.value for token in backend.model.tokenize(word)]

    def by_a_model_of_its_own(word, vocab):
        model = tokenizers.models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100)
        return [token.value for token in model.tokenize(word)]

    def by_the_tokenizer(word, vocab):  # right where the normalizer changes nothing
        return backend.encode(word, add_special_tokens=False).tokens

    def by_minisbert(word, vocab):
        return tokenizer.tokens(word)[1:-1]  # less [CLS] and [SEP]

    for answer in (by_the_model, by_a_model_of_its_own, by_the_tokenizer, by_minisbert):
        assert answer("playing", vocab) == solved("playing", vocab), "a right answer, unguarded"
    assert by_a_model_of_its_own("x" * 101, vocab) == solved("x" * 101, vocab) == ["[UNK]"]
    refused(check, by_the_model, calls="tokenizers.models.Model.tokenize")
    refused(check, by_a_model_of_its_own, calls="tokenizers.models.Model.tokenize")
    refused(check, by_the_tokenizer, calls="tokenizers.Tokenizer.encode")
    refused(check, by_minisbert, calls="minisbert.tokenizer.Tokenizer.tokens")
    assert by_the_model("cat", vocab) == ["cat"], "the Rust method is restored afterwards"


# ---------------------------------------------------------------- 03 masked_attention


def random_bert(config) -> BertEncoder:
    """A BERT with its weights drawn in numpy (normal, SD 0.1; LayerNorm scale 1): no
    initialiser to compile, so it is ready in milliseconds."""
    bert = nnx.eval_shape(lambda: BertEncoder(config, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    state = nnx.state(bert)
    for path, var in nnx.to_flat_state(state):
        shape, dtype = var.get_value().shape, var.get_value().dtype
        if not isinstance(var, nnx.Param):  # the dropout streams' keys and counts
            var.set_value(jnp.zeros(shape, dtype))
        elif path[-1] == "scale":  # LayerNorm
            var.set_value(jnp.ones(shape, dtype))
        else:
            var.set_value(jnp.asarray(rng.normal(0.0, 0.1, shape).astype(dtype)))
    nnx.update(bert, state)
    bert.eval()
    return bert


def attention_check():
    """Lesson 03's check on a random one-layer tiny BERT (hidden 36, 3 heads, vocab 99) in
    place of all-MiniLM-L6-v2."""
    bert = random_bert(ONE_LAYER)
    return check_from(
        "03_bert_encoder",
        "check_masked_attention",
        encoder=types.SimpleNamespace(tokenizer=Tokenizer(tiny_tokenizer(), 64)),
        pad_batch=pad_batch,
        embeddings=bert.embeddings,
        attention=bert.layers[0].attention,
        layer_norm=lambda x, norm: norm(x),  # the lesson's by hand; nnx.LayerNorm itself here
        N=ONE_LAYER.num_attention_heads,
        H=ONE_LAYER.head_size,
        D=ONE_LAYER.hidden_size,
    )


def attention_by_jax(q, k, v, mask):  # (B, T, N, H) x 3, (B, T) -> (B, T, N, H)
    return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :])


def attention_by_flax(q, k, v, mask):
    return nnx.dot_product_attention(q, k, v, mask=mask[:, None, None, :])


def test_03_refuses_the_libraries_attention():
    check = attention_check()
    refused(check, attention_by_jax, calls="jax._src.nn.functions.dot_product_attention")
    refused(check, attention_by_flax, calls="flax.nnx.nn.attention.dot_product_attention")


@pytest.mark.slow  # each eager op compiles once: about 5 s on the shared 2-core CPU
def test_03_passes_the_solution_and_the_refused_calls_are_right_otherwise():
    check, solved = attention_check(), solution("03_bert_encoder", "masked_attention")
    check(solved)
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 5, 3, 4)), jnp.float32) for _ in range(3))
    mask = jnp.array([[True, True, True, False, False], [True] * 5])
    for answer in (attention_by_jax, attention_by_flax):
        np.testing.assert_allclose(answer(q, k, v, mask), solved(q, k, v, mask), atol=1e-5)


# ---------------------------------------------------------------- 04 masked_max_pooling


def test_04_refuses_max_pooling_through_the_poolings_table():
    stem = "04_pooling"
    rng = np.random.default_rng(0)
    X, mask = rng.normal(size=(2, 4, 8)), np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    check = check_from(
        stem,
        "check_masked_max_pooling",
        X=X,
        attention_mask=mask,
        max_pooling=max_pooling,
        pool=pool,
    )
    solved = solution(stem, "masked_max_pooling")
    check(solved)

    def by_the_table(x, m):
        return np.asarray(POOLINGS["max"](jnp.asarray(x), jnp.asarray(m)))

    def by_the_modules_table(x, m):
        return np.asarray(minisbert.pooling.POOLINGS["max"](jnp.asarray(x), jnp.asarray(m)))

    for answer in (by_the_table, by_the_modules_table):
        np.testing.assert_allclose(answer(X, mask), solved(X, mask), atol=1e-6)
        refused(check, answer, calls="minisbert.pooling.max_pooling")
    assert POOLINGS["max"] is max_pooling, "the table is restored afterwards"


# ---------------------------------------------------------------- 05 nli_features, cross_entropy


def nli_check():
    """Lesson 05's check on three made-up pairs of 8-dimensional unit vectors."""
    rng = np.random.default_rng(0)
    u, v, labels = unit_rows(rng, 3, 8), unit_rows(rng, 3, 8), np.array([0, 1, 2])
    return check_from(
        "05_classification_objective",
        "check_exercise",
        D=8,
        u=u,
        v=v,
        uj=jnp.asarray(u),
        vj=jnp.asarray(v),
        labels=labels,
        labels_j=jnp.asarray(labels),
        SoftmaxClassifier=SoftmaxClassifier,
        softmax_loss=softmax_loss,
    )


def features_by_the_classifier(u, v, concat):
    classifier = SoftmaxClassifier(u.shape[1], 3, concat=concat, rngs=nnx.Rngs(0))
    return np.asarray(classifier.features(jnp.asarray(u), jnp.asarray(v)))


def cross_entropy_by_optax(logits, labels):
    z = jnp.asarray(logits, jnp.float32)
    return float(jnp.mean(optax.softmax_cross_entropy_with_integer_labels(z, labels)))


def cross_entropy_by_log_softmax(logits, labels):
    log_probs = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32))  # (B, C)
    return float(-jnp.mean(log_probs[jnp.arange(len(labels)), labels]))


def test_05_refuses_the_classifiers_features_and_library_cross_entropies():
    stem = "05_classification_objective"
    check = nli_check()
    features, cross_entropy = solution(stem, "nli_features"), solution(stem, "cross_entropy")
    refused(
        check,
        features_by_the_classifier,
        cross_entropy,
        calls="minisbert.losses.softmax.SoftmaxClassifier.features",
    )
    refused(check, features, cross_entropy_by_optax, calls="optax")
    refused(
        check, features, cross_entropy_by_log_softmax, calls="jax._src.nn.functions.log_softmax"
    )


@pytest.mark.slow  # each eager op compiles once: about 4 s on the shared 2-core CPU
def test_05_passes_the_solution_and_the_refused_calls_are_right_otherwise():
    stem = "05_classification_objective"
    features, cross_entropy = solution(stem, "nli_features"), solution(stem, "cross_entropy")
    nli_check()(features, cross_entropy)
    rng = np.random.default_rng(1)
    u, v, concat = unit_rows(rng, 3, 8), unit_rows(rng, 3, 8), ("mul", "abs_diff")
    np.testing.assert_allclose(
        features_by_the_classifier(u, v, concat), features(u, v, concat), atol=1e-6
    )
    huge = np.array([[1000.0, 0.0, -1000.0], [1000.0, 0.0, -1000.0]])
    for answer in (cross_entropy_by_optax, cross_entropy_by_log_softmax):
        assert abs(answer(huge, np.array([0, 2])) - 1000.0) < 1e-6, "a right answer, unguarded"


# ---------------------------------------------------------------- 06 cosent, my_train_step


def test_06_refuses_cosent_loss():
    stem = "06_regression_objective"
    rng = np.random.default_rng(0)
    u, v, s = unit_rows(rng, 8, 16), unit_rows(rng, 8, 16), rng.uniform(size=8).astype(np.float32)
    check = check_from(stem, "check_cosent", u=u, v=v, s=s, cosent_loss=cosent_loss)
    solved = solution(stem, "cosent")
    check(solved)

    def by_library(u, v, scores, scale=20.0):
        a, b = jnp.asarray(u, jnp.float32), jnp.asarray(v, jnp.float32)
        return float(cosent_loss(a, b, jnp.asarray(scores, jnp.float32), scale=scale))

    assert abs(by_library(u, v, s) - solved(u, v, s)) < 1e-4, "a right answer, unguarded"
    refused(check, by_library, calls="minisbert.losses.regression.cosent_loss")


@pytest.mark.slow  # each step that runs compiles on a tiny model: a few seconds each
def test_06_train_step_check_compares_gradient_values_and_names_jax_jit():
    """A gradient of the right sign but twice the size passes a comparison after one AdamW
    step (Adam's first move is about the learning rate times the gradient's sign), so the
    check's plain gradient descent must catch it; and a step under @jax.jit, which runs but
    changes nothing outside, is told to use @nnx.jit."""
    stem = "06_regression_objective"
    check = train_step_check(ONE_LAYER)
    check(solution(stem, "my_train_step"))

    def twice_the_gradient(trainable, optimizer, input_ids, attention_mask, labels):
        def loss_of(t):
            return compute_loss(t, input_ids, attention_mask, labels, cosine_similarity_loss)

        loss, grads = nnx.value_and_grad(loss_of)(trainable)
        optimizer.update(trainable, jax.tree.map(lambda g: 2 * g, grads))
        return loss

    with pytest.raises(AssertionError, match="away from the library's step"):
        check(nnx.jit(twice_the_gradient))
    with pytest.raises(AssertionError, match=re.escape("under @jax.jit the step works on copies")):
        check(jax.jit(twice_the_gradient))

"""Odd and bad inputs to ``encode`` and the CLI: every bad input is a clear error raised
before any computation, and every odd but valid input gives a finite vector.

Covered in test_encoder.py (pretrained model), not repeated here: an empty list gives
(0, D); a non-string item names its index and type (``sentences[2] is int``); None, and
bytes items with a hint to decode; generators and numpy arrays of strings; long text
truncated with one warning. test_cli.py covers invalid UTF-8 in an input file (file and
line) and a missing model (one line, no traceback).

Most tests use the tiny BERT (hidden 36, vocab 99): fast, and its 99-token vocabulary sends
almost every non-ASCII character to [UNK], the path odd text takes in any WordPiece model.
The property tests also run the pretrained model, whose vocabulary covers many scripts.
"""

from __future__ import annotations

import errno
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny import random_model_dir

from minisbert import sentence_encoder
from minisbert.cli import main
from minisbert.sentence_encoder import CHUNK_SIZE, SentenceEncoder

pytestmark = pytest.mark.filterwarnings("ignore:some sentences are longer than max_seq_length")

MIXED_SCRIPTS = [
    "日本語の文です。中文句子。한국어 문장입니다.",  # CJK
    "هذه جملة عربية مع أرقام ١٢٣",  # Arabic, right to left, Arabic-Indic digits
    "שלום עולם",  # Hebrew
    "Привет, мир! Ελληνικά κείμενα.",  # Cyrillic, Greek
    "emoji 😀👍🏽🇫🇷 and 👨‍👩‍👧 families",  # skin tones, flags, ZWJ sequences
    "cafe\u0301 na\u0308ive Z\u0335\u0321a\u0334l\u0337g\u0336o",  # combining accents, zalgo
    "zero\u200bwidth\u200c\u200djoiners\ufeff and \u2066bidi\u2069 \u202emarks",
    "control \x00\x01\x07\x1b[31m chars\x7f \x85 \t tabs \r\n newlines",
    "\U0001d573\U0001d58a\U0001d59a math letters, \uff26\uff55\uff4c\uff4c width",  # ùïû, Ｆｕｌｌ
    "\ue000 private use \U000f0000 and unassigned \U000e0fff code points",
]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> SentenceEncoder:
    return SentenceEncoder.from_pretrained(random_model_dir(tmp_path_factory.mktemp("tiny")))


@pytest.fixture
def no_computation(monkeypatch):
    """Fail the test if encode reaches the model: errors must come before any computation."""

    def boom(*args, **kwargs):
        raise AssertionError("encode ran the model before refusing its input")

    monkeypatch.setattr(sentence_encoder, "_sentence_embeddings", boom)
    monkeypatch.setattr(sentence_encoder, "_token_embeddings", boom)


# ---------------------------------------------------------------- odd but valid text


@pytest.mark.parametrize("text", ["", " ", "   \t\n  ", "\u3000\u00a0", "\x00", "\u200b"])
def test_empty_and_whitespace_only_text_gives_a_finite_vector(tiny_encoder, text):
    single = tiny_encoder.encode(text, normalize_embeddings=True)
    assert single.shape == (36,) and np.all(np.isfinite(single))
    np.testing.assert_allclose(np.linalg.norm(single), 1.0, atol=1e-5)
    tokens = tiny_encoder.encode([text], output_value="token_embeddings")
    assert tokens[0].shape == (2, 36)  # [CLS] [SEP]: nothing is left of the text


def test_mixed_scripts_control_and_zero_width_characters(tiny_encoder):
    E = tiny_encoder.encode(MIXED_SCRIPTS, normalize_embeddings=True)
    assert E.shape == (len(MIXED_SCRIPTS), 36) and np.all(np.isfinite(E))
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    alone = np.stack([tiny_encoder.encode(s, normalize_embeddings=True) for s in MIXED_SCRIPTS])
    np.testing.assert_allclose(E, alone, atol=1e-5)  # batching them changes nothing


def test_mixed_scripts_on_the_pretrained_model(encoder):
    E = encoder.encode(MIXED_SCRIPTS)
    assert np.all(np.isfinite(E))
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    # BERT's normaliser strips accents after decomposing: "é" and "e" + U+0301 are one word.
    composed, decomposed = "caf\u00e9 na\u00efve", "cafe\u0301 nai\u0308ve"
    assert unicodedata.normalize("NFC", decomposed) == composed
    np.testing.assert_allclose(encoder.encode(composed), encoder.encode(decomposed), atol=1e-6)


def test_numpy_and_other_integer_batch_sizes(tiny_encoder):
    expected = tiny_encoder.encode(MIXED_SCRIPTS[:3], batch_size=2)
    got = tiny_encoder.encode(MIXED_SCRIPTS[:3], batch_size=np.int64(2))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.slow  # the long tier: make test-slow
def test_100000_sentences_in_order(tiny_encoder):
    """Several chunks of CHUNK_SIZE sentences; every row lands where its sentence was."""
    words = "the cat dog sat on mat a is run".split()
    sentences = [" ".join(words[i % 7 : i % 9]) + f" {i}" for i in range(100_000)]
    assert len(sentences) > 6 * CHUNK_SIZE
    E = tiny_encoder.encode(sentences, batch_size=512)
    assert E.shape == (100_000, 36) and E.dtype == np.float32 and np.all(np.isfinite(E))
    for i in (0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, 54_321, 99_999):
        np.testing.assert_allclose(E[i], tiny_encoder.encode(sentences[i]), atol=1e-5)


def test_one_megabyte_string_is_truncated_with_one_warning(tmp_path):
    encoder = SentenceEncoder.from_pretrained(random_model_dir(tmp_path / "tiny"))
    word = "a" * 1000  # over WordPiece's 100 characters: one [UNK] per word, fast to tokenize
    megabyte = " ".join([word] * 1000)
    assert len(megabyte) >= 1_000_000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        big = encoder.encode(megabyte)
        encoder.encode([megabyte, "the cat"])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "truncated" in messages[0], messages  # once, not per call
    assert np.all(np.isfinite(big))
    first_tokens = " ".join([word] * 40)  # 40 words > max_seq_length 32: cut at the same token
    np.testing.assert_allclose(big, encoder.encode(first_tokens), atol=1e-6)


# ---------------------------------------------------------------- bad input, named


@pytest.mark.parametrize(
    "sentences, error, message",
    [
        (b"bytes", TypeError, r"sentences is bytes; decode it first"),
        (bytearray(b"bytes"), TypeError, r"sentences is bytes; decode it first"),
        (42, TypeError, r"must be a string or an iterable of strings, not int"),
        (3.5, TypeError, r"not float"),
        (np.array("one sentence"), TypeError, r"0-d numpy array"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, r"2-d numpy array"),
        (np.array(["a", None], dtype=object), TypeError, r"sentences\[1\] is NoneType"),
        (np.array([b"a", b"b"]), TypeError, r"sentences\[0\] is bytes.*decode"),
        (["a", float("nan")], TypeError, r"sentences\[1\] is float"),  # a pandas missing value
        (["a", ["nested"]], TypeError, r"sentences\[1\] is list"),
        (["a", {"text": "b"}], TypeError, r"sentences\[1\] is dict"),
        (("a", "b", 7), TypeError, r"sentences\[2\] is int"),
        (
            "lone \ud800 surrogate",
            ValueError,
            r"the sentence holds a lone surrogate '\\ud800' "
            r"at character 5.*encode\('utf-8', 'replace'\)",
        ),
        (
            ["ok", "broken emoji \ud83d!"],
            ValueError,
            r"sentences\[1\] holds a lone surrogate "
            r"'\\ud83d' at character 13",
        ),
    ],
)
def test_bad_input_is_named_before_any_computation(
    tiny_encoder, no_computation, sentences, error, message
):
    with pytest.raises(error, match=message):
        tiny_encoder.encode(sentences)


def test_a_bad_item_past_the_first_chunk_is_found_before_any_computation(
    tiny_encoder, no_computation
):
    def sentences():
        yield from ["the cat sat"] * (CHUNK_SIZE + 10)
        yield 3

    with pytest.raises(TypeError, match=rf"sentences\[{CHUNK_SIZE + 10}\] is int"):
        tiny_encoder.encode(sentences())
    with pytest.raises(ValueError, match=rf"sentences\[{CHUNK_SIZE}\] holds a lone surrogate"):
        tiny_encoder.encode(["the cat sat"] * CHUNK_SIZE + ["\udfff"])


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, "32", None])
def test_bad_batch_size(tiny_encoder, no_computation, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        tiny_encoder.encode(["a"], batch_size=batch_size)


# ---------------------------------------------------------------- property tests

# Any code point but lone surrogates (not text: they have no UTF-8 form), with a bias
# towards the categories that break tokenizers: marks, format and control characters.
# (.map(str) keeps hypothesis from merging the two character sets into one, which would
# weigh them by their sizes and lose the bias.)
CHARACTER = st.one_of(
    st.characters(exclude_categories=["Cs"]),
    st.characters(categories=["Mn", "Me", "Cf", "Cc", "Zs", "Zl", "Zp", "Co"]).map(str),
    st.sampled_from("\u200b\u200c\u200d\ufeff\u0301\x00\n\t 😀中ا"),
)
TEXT = st.text(CHARACTER) | st.text(CHARACTER, min_size=100, max_size=3000)  # short, and long
SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


def assert_finite_unit_norm(E: np.ndarray) -> None:
    assert np.all(np.isfinite(E)), E
    np.testing.assert_allclose(np.linalg.norm(E, axis=-1), 1.0, atol=1e-5)


@PROPERTY
@given(text=TEXT)
def test_random_unicode_never_crashes_and_normalises_to_unit_norm(tiny_encoder, text):
    assert_finite_unit_norm(tiny_encoder.encode(text, normalize_embeddings=True))


@pytest.mark.slow  # the long tier: make test-slow
@settings(PROPERTY, max_examples=60)
@given(texts=st.lists(TEXT, min_size=2, max_size=5))
def test_random_lists_never_crash(tiny_encoder, texts):
    # Batches of 2 rows (one compiled shape per bucket): texts padded beside each other.
    E = tiny_encoder.encode(texts, normalize_embeddings=True, batch_size=2)
    assert E.shape == (len(texts), 36)
    assert_finite_unit_norm(E)


@settings(max_examples=30, deadline=None)
@given(text=st.text(CHARACTER, max_size=20))  # short: a few compiled shapes (scripts/fuzz_encode.py
def test_random_unicode_on_the_pretrained_model(encoder, text):  # runs long text on it)
    assert_finite_unit_norm(encoder.encode(text))  # the model's own pipeline normalises


@PROPERTY
@given(text=st.text(CHARACTER | SURROGATE, max_size=50))
def test_text_with_surrogates_is_refused_clearly_or_encoded(tiny_encoder, text):
    has_surrogate = any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    if has_surrogate:
        with pytest.raises(ValueError, match="lone surrogate"):
            tiny_encoder.encode([text])
    else:
        assert_finite_unit_norm(tiny_encoder.encode([text], normalize_embeddings=True))


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    return str(random_model_dir(tmp_path_factory.mktemp("cli") / "tiny"))


@pytest.fixture
def lines(tmp_path) -> Path:
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(s.replace("\n", " ").replace("\r", " ").replace("\x85", " ")
                              for s in MIXED_SCRIPTS) + "\n", encoding="utf-8")  # fmt: skip
    return path


def test_cli_encodes_mixed_scripts(tiny_dir, lines, tmp_path, capsys):
    out = tmp_path / "out.npy"
    assert main(["encode", str(lines), "-o", str(out), "--model", tiny_dir]) == 0
    E = np.load(out)
    assert E.shape == (len(MIXED_SCRIPTS), 36) and np.all(np.isfinite(E))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file


@pytest.mark.parametrize("text, rows", [(b"", 0), (b"\n  \n\t\n", 3)])
def test_cli_empty_input_file(tiny_dir, tmp_path, capsys, text, rows):
    path = tmp_path / "empty.txt"
    path.write_bytes(text)
    out = tmp_path / "out.npy"
    assert main(["encode", str(path), "-o", str(out), "--model", tiny_dir]) == 0
    assert np.load(out).shape == (rows, 36)  # row i is line i, blank lines included
    assert main(["search", "a query", str(path), "--model", tiny_dir]) == 1
    err = capsys.readouterr().err
    assert f"minisbert search: error: {path}: no non-empty lines to search" in err


def test_cli_a_surrogate_in_a_file_is_invalid_utf8_with_its_line(tiny_dir, tmp_path, capsys):
    path = tmp_path / "surrogate.txt"
    path.write_bytes(b"fine\nalso fine\nbad \xed\xa0\x80 surrogate\n")  # U+D800, CESU style
    assert main(["encode", str(path), "-o", str(tmp_path / "o.npy"), "--model", tiny_dir]) == 1
    err = capsys.readouterr().err
    assert "surrogate.txt:3: invalid UTF-8" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "output, message",
    [
        ("{tmp}", "is a folder; give a file name"),
        ("{tmp}/a-file/out.npy", "is not an existing folder"),
        ("{tmp}/missing/out.npy", "is not an existing folder"),
    ],
)
def test_cli_bad_output_fails_before_encoding(
    tiny_dir, lines, tmp_path, capsys, monkeypatch, output, message
):
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setattr("minisbert.cli._encoder", lambda name: pytest.fail("encoded first"))
    assert main(["encode", str(lines), "-o", output.format(tmp=tmp_path), "--model", tiny_dir]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_a_full_disk_keeps_the_previous_output(tiny_dir, lines, tmp_path, capsys,
                                                    monkeypatch):  # fmt: skip
    out = tmp_path / "out.npy"
    np.save(out, np.arange(3))

    def full_disk(file, array):
        file.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("numpy.save", full_disk)
    assert main(["encode", str(lines), "-o", str(out), "--model", tiny_dir]) == 1
    err = capsys.readouterr().err
    assert "minisbert encode: error: [Errno 28] No space left on device" in err
    assert "Traceback" not in err
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(out), np.arange(3))  # the old file, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lines.txt", "out.npy"]


@pytest.mark.parametrize(
    "args",
    [
        ["search", "q", "FILE", "--top-k", "0"],
        ["search", "q", "FILE", "--top-k", "-3"],
        ["encode", "FILE", "-o", "o.npy", "--batch-size", "0"],
    ],
)
def test_cli_non_positive_counts_are_usage_errors(tiny_dir, lines, capsys, args):
    args = [str(lines) if a == "FILE" else a for a in args]
    with pytest.raises(SystemExit) as info:
        main([*args, "--model", tiny_dir])
    assert info.value.code == 2
    assert "is not a positive integer" in capsys.readouterr().err


def test_cli_similarity_of_empty_and_control_text(tiny_dir, capsys):
    assert main(["similarity", "", "\x00\u200b", "日本語", "--model", tiny_dir]) == 0
    rows = capsys.readouterr().out.strip("\n").splitlines()
    assert len(rows) == 3
    assert all(np.isfinite(float(x)) for row in rows for x in row.split()[:3])


def test_cli_arguments_that_are_not_utf8(tiny_dir, capsys):
    """Python turns bytes of argv that are not UTF-8 into lone surrogates (surrogateescape):
    `minisbert similarity $'\\xff'` must say so, not crash inside the tokenizer."""
    assert main(["similarity", "fine", "bad \udcff byte", "--model", tiny_dir]) == 1
    err = capsys.readouterr().err
    assert "minisbert similarity: error: sentences[1] holds a lone surrogate '\\udcff'" in err
    assert "Traceback" not in err

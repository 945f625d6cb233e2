"""make cross-encoder: the paper's Table 2 trade, measured with the `minisbert` command.

    python -m bench.cross_encoder [--seeds 0 1 2] [--epochs 4] [--max-steps N]
                                  [--skip-bi] [--skip-time] [--augmented]

1. **Accuracy.** From all-MiniLM-L6-v2, STS-b train, ``--epochs`` (4) epochs, batch 16, for
   each seed: a cross-encoder (``minisbert train --cross-encoder``) and a bi-encoder (the
   cosine objective, the paper's STS recipe), each scored on STS-b test by ``minisbert eval
   sts`` (Spearman x100), as mean +- sample SD over the seeds, beside the paper's Table 2.
2. **Time** to find the most similar pair among 10,000 sentences (STS-b's, all splits): the
   bi-encoder encodes 10,000 sentences and takes the best pair of one cosine matrix,
   measured whole; the cross-encoder needs a pass per pair, n (n - 1) / 2 = 49,995,000: its
   pairs per second are measured on 2,000 pairs of those sentences, and the total is that
   rate extrapolated (said so in the table).
3. ``--augmented`` (Augmented SBERT, Thakur et al. 2021): the seed's trained cross-encoder
   labels silver pairs, each STS-b train sentence with its 3 nearest train sentences under
   the pretrained bi-encoder; a bi-encoder then trains on gold + silver, the same epochs,
   and is scored beside gold alone.

Each command is exactly what a user would type, in a fresh process; the table and the
commands are appended to bench/results/cross-encoder-<machine>.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import machine
from bench.recipes import ROOT, run

N_SENTENCES = 10_000
TIMED_PAIRS = 2_000
# The SBERT paper's Table 2 (STS benchmark test, Spearman x100, mean +- SD over 10 seeds).
PAPER = [
    ("paper: BERT-STSb-base cross-encoder (STS-b train only)", "84.30 +- 0.76"),
    ("paper: SBERT-STSb-base bi-encoder (STS-b train only)", "84.67 +- 0.19"),
    ("paper: BERT-NLI-STSb-base cross-encoder (NLI, then STS-b)", "88.33 +- 0.27"),
    ("paper: SBERT-NLI-STSb-base bi-encoder (NLI, then STS-b)", "85.35 +- 0.17"),
]


def flags(seed: int, epochs: int, max_steps: int | None, data: str = "stsb") -> list[str]:
    words = (
        f"--model all-MiniLM-L6-v2 --data {data} --epochs {epochs} --batch-size 16 "
        f"--seed {seed} --no-progress"
    ).split()
    return words + (["--max-steps", str(max_steps)] if max_steps else [])


def spearman_test(model: Path, log: list[str]) -> float:
    return float(run(["eval", "sts", "--model", str(model), "--split", "test"], log))


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f} ({len(values)} seeds)"


def sentences() -> list[str]:
    """STS-b's distinct sentences, all splits, in file order: the first 10,000."""
    from minisbert.data import load_dataset

    seen: dict[str, None] = {}
    for split in ("train", "dev", "test"):
        for e in load_dataset("stsb", split):
            seen.setdefault(e.sentence1)
            seen.setdefault(e.sentence2)
    if len(seen) < N_SENTENCES:
        raise SystemExit(f"STS-b has {len(seen)} distinct sentences, fewer than {N_SENTENCES}")
    return list(seen)[:N_SENTENCES]


def time_search(cross_dir: Path) -> list[tuple[str, str]]:
    """Seconds to the most similar pair among 10,000 sentences, each way."""
    from minisbert import FastEncoder
    from minisbert.cross_encoder import CrossEncoder
    from minisbert.distances import cos_sim_matrix

    texts = sentences()
    bi = FastEncoder.from_pretrained("all-MiniLM-L6-v2")
    bi.encode(texts[:64])  # compile outside the clock
    start = time.perf_counter()
    e = bi.encode(texts)  # (n, D)
    scores = np.array(cos_sim_matrix(e, e))  # (n, n), a writable copy
    np.fill_diagonal(scores, -np.inf)
    best = np.unravel_index(np.argmax(scores), scores.shape)
    bi_seconds = time.perf_counter() - start

    cross = CrossEncoder.from_pretrained(cross_dir)
    rng = np.random.default_rng(0)
    pairs = [tuple(texts[i] for i in rng.choice(N_SENTENCES, 2, replace=False))
             for _ in range(TIMED_PAIRS)]  # fmt: skip
    cross.predict(pairs[:256])  # compile the common shapes outside the clock
    start = time.perf_counter()
    cross.predict(pairs)
    rate = TIMED_PAIRS / (time.perf_counter() - start)  # pairs per second
    all_pairs = N_SENTENCES * (N_SENTENCES - 1) // 2
    return [
        (f"bi-encoder: most similar of {N_SENTENCES:,} sentences (encode + one matrix), s",
         f"{bi_seconds:.1f} (measured; pair {best[0]}, {best[1]})"),
        ("cross-encoder: pairs per second (measured on 2,000 pairs)", f"{rate:.0f}"),
        (f"cross-encoder: all {all_pairs:,} pairs, hours",
         f"{all_pairs / rate / 3600:.1f} (extrapolated from the measured rate)"),
    ]  # fmt: skip


def silver_pairs(cross_dir: Path, out: Path, per_sentence: int = 3) -> Path:
    """Gold STS-b train pairs plus silver ones: each train sentence with its nearest train
    sentences under the pretrained bi-encoder, scored by the cross-encoder. Scores in 0..1
    (the gold ones rescaled from 0..5), as the cosine objective reads a file's."""
    from minisbert import FastEncoder
    from minisbert.cross_encoder import CrossEncoder
    from minisbert.data import load_dataset
    from minisbert.distances import cos_sim_matrix

    gold = load_dataset("stsb", "train")
    texts = list(dict.fromkeys([e.sentence1 for e in gold] + [e.sentence2 for e in gold]))
    e = FastEncoder.from_pretrained("all-MiniLM-L6-v2").encode(texts)  # (n, D)
    scores = np.array(cos_sim_matrix(e, e))  # (n, n), a writable copy
    np.fill_diagonal(scores, -np.inf)
    known = {(x.sentence1, x.sentence2) for x in gold} | {(x.sentence2, x.sentence1) for x in gold}
    pairs: dict[tuple[str, str], None] = {}
    for i, row in enumerate(np.argsort(-scores, axis=1)[:, :per_sentence]):
        for j in row:
            a, b = sorted((texts[i], texts[int(j)]))
            if (a, b) not in known:
                pairs.setdefault((a, b))
    silver = list(pairs)
    labels = CrossEncoder.from_pretrained(cross_dir).predict(silver)  # (N,) in 0..1
    lines = ["sentence1\tsentence2\tscore"]
    lines += [f"{x.sentence1}\t{x.sentence2}\t{x.label / 5:.4f}" for x in gold]
    lines += [f"{a}\t{b}\t{s:.4f}" for (a, b), s in zip(silver, labels, strict=True)]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"  {len(gold)} gold + {len(silver)} silver pairs -> {out}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=None, help="a quick check of the bench")
    parser.add_argument("--skip-bi", action="store_true", help="no bi-encoder runs")
    parser.add_argument("--skip-time", action="store_true", help="no 10,000-sentence timing")
    parser.add_argument("--augmented", action="store_true", help="Augmented SBERT, per seed")
    args = parser.parse_args()
    log: list[str] = []
    cross, bi, augmented = [], [], []
    with tempfile.TemporaryDirectory(prefix="minisbert-cross-") as tmp:
        work = Path(tmp)
        for seed in args.seeds:
            ce = work / f"cross-{seed}"
            run(["train", "--cross-encoder", *flags(seed, args.epochs, args.max_steps),
                 "--output", str(ce)], log)  # fmt: skip
            cross.append(spearman_test(ce, log))
            if not args.skip_bi:
                out = work / f"bi-{seed}"
                run(["train", "--loss", "cosine", *flags(seed, args.epochs, args.max_steps),
                     "--output", str(out)], log)  # fmt: skip
                bi.append(spearman_test(out, log))
            if args.augmented:
                data = silver_pairs(ce, work / f"gold-silver-{seed}.tsv")
                log.append(f"(bench.cross_encoder.silver_pairs: {data.name} from {ce.name})")
                out = work / f"augmented-{seed}"
                run(["train", "--loss", "cosine",
                     *flags(seed, args.epochs, args.max_steps, data=str(data)),
                     "--output", str(out)], log)  # fmt: skip
                augmented.append(spearman_test(out, log))
        rows = [(f"minisbert cross-encoder, STS-b train, {args.epochs} epochs", mean_sd(cross))]
        if bi:
            rows.append(("minisbert bi-encoder (cosine), the same data and epochs", mean_sd(bi)))
        if augmented:
            rows.append(("minisbert bi-encoder on gold + silver (Augmented SBERT)",
                         mean_sd(augmented)))  # fmt: skip
        rows += PAPER
        if not args.skip_time:
            rows += time_search(work / f"cross-{args.seeds[0]}")
    write(rows, log, args)


def write(rows: list[tuple[str, str]], log: list[str], args: argparse.Namespace) -> None:
    info = machine.describe()
    width = max(len(name) for name, _ in rows)
    table = [f"| {'STS-b test Spearman x100 / time':<{width}} | value |",
             f"|{'-' * (width + 2)}|-------|"]  # fmt: skip
    table += [f"| {name:<{width}} | {value} |" for name, value in rows]
    print("\n".join(table))
    path = ROOT / "bench" / "results" / f"cross-encoder-{machine.slug(info)}.md"
    title = "# Cross-encoder against bi-encoder (bench/cross_encoder.py)\n"
    header = "" if path.exists() else title
    section = [
        header,
        f"## {time.strftime('%Y-%m-%d')}: seeds {' '.join(map(str, args.seeds))}, "
        f"{args.epochs} epochs" + (f", max {args.max_steps} steps" if args.max_steps else ""),
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        *table,
        "",
        "Commands:",
        "",
        *[f"    {line}" for line in log],
        "",
    ]
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(section))
    print(f"appended to {path}")


if __name__ == "__main__":
    main()

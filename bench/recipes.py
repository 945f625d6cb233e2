"""make recipes: the paper's training results, reproduced with the `minisbert` command.

    python -m bench.recipes [stsb] [nli] [ablation] [triplets] [--epochs N] [--max-steps N]

Each recipe runs exactly the commands a user would type (``minisbert train`` then
``minisbert eval``), in fresh processes, and the table of figures is printed and written to
bench/results/recipes-<machine>.md (appended, one section per run, with the commands).

    stsb       all-MiniLM-L6-v2 fine-tuned on STS-b train, cosine regression objective,
               batch 16, lr 2e-5, warm-up 10%, clip 1.0, 4 epochs: STS-b test Spearman
               before and after; seconds per step against a sentence-transformers loop on
               the same batches (when sentence-transformers is importable: .venv-ref).
    nli        the classification objective on SNLI dev, 3-way softmax over (u, v, |u-v|),
               1 epoch, the default head learning rate: NLI accuracy on SICK trial (held
               out: SNLI dev is our only SNLI split) and the STS-b test Spearman after.
    ablation   how the random softmax head is trained, then the paper's Table 6 (which
               features it sees), each over --seeds (default 0 1 2) as mean +- std. It
               trains on 80% of SNLI dev (whole premises, a fixed split) and measures NLI
               accuracy on the other 20% and on SICK trial, and STS-b test Spearman:
                 single lr      --head-lr same: the head learns at the encoder's 2e-5
                 head lr        the default --head-lr (train.HEAD_LR)
                 probe          --probe-steps PROBE_STEPS, then fine-tuning, head lr too
                 Table 6        (u,v), (|u-v|), (u*v), (u,v,|u-v|), (u,v,u*v,|u-v|)
               --rows picks rows by name (e.g. --rows "single lr" "head lr"); the table
               goes to bench/results/nli-ablation-<machine>.md.
    triplets   triplet loss with the paper's margin (1) and the library's (5), and in-batch
               negatives (MNRL), on SNLI dev triplets: STS-b test Spearman for each.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import machine

ROOT = Path(__file__).resolve().parent.parent
MINISBERT = [sys.executable, "-m", "minisbert.cli"]

# The paper's Table 6 rows (u * v is "mul", |u - v| is "abs_diff").
TABLE_6 = [
    ("u", "v"),
    ("abs_diff",),
    ("mul",),
    ("u", "v", "abs_diff"),
    ("u", "v", "abs_diff", "mul"),
]
DEFAULT_CONCAT = ("u", "v", "abs_diff")
PROBE_STEPS = 100  # of the 492 steps of 80% of SNLI dev in batches of 16


def concat_label(concat: tuple[str, ...]) -> str:
    return "(" + ", ".join({"abs_diff": "|u-v|", "mul": "u*v"}.get(c, c) for c in concat) + ")"


# name -> (extra train flags, features). The default head lr is train.HEAD_LR (no flag);
# the probe length is always given, so a row means the same whatever the defaults become.
ABLATION: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "single lr": (["--head-lr", "same"], DEFAULT_CONCAT),
    "head lr": (["--probe-steps", "0"], DEFAULT_CONCAT),
    "probe": (["--probe-steps", str(PROBE_STEPS)], DEFAULT_CONCAT),
    **{
        f"head lr {concat_label(c)}": (["--probe-steps", "0"], c)
        for c in TABLE_6
        if c != DEFAULT_CONCAT
    },
}


def run(args: list[str], log: list[str]) -> str:
    """Run ``minisbert ARGS``; return its last output line (the figure the command prints)."""
    log.append("minisbert " + " ".join(args))
    print(f"$ {log[-1]}", flush=True)
    done = subprocess.run(MINISBERT + args, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"`{log[-1]}` failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    print("  " + "\n  ".join(lines[-3:]), flush=True)
    return lines[-1]


def recipe_flags(data: str, split: str, loss: str, *, epochs: int = 1, seed: int = 0) -> list[str]:
    """The settings every recipe shares: the pretrained model, batch 16, lr 2e-5, seed 0."""
    return (
        f"--model all-MiniLM-L6-v2 --data {data} --split {split} --loss {loss} "
        f"--epochs {epochs} --batch-size 16 --lr 2e-5 --seed {seed}"
    ).split()


def train(out: Path, flags: list[str], log: list[str], extra: list[str]) -> float:
    """Train into ``out``; return the median seconds per step the command printed."""
    start = time.perf_counter()
    line = run(["train", *flags, "--output", str(out), "--no-progress", *extra], log)
    print(f"  ({time.perf_counter() - start:.0f} s in all)", flush=True)
    return float(line.split(" s/step")[0].rsplit(" ", 1)[-1])


def sts(model: str, log: list[str]) -> float:
    return float(run(["eval", "sts", "--model", model, "--split", "test"], log))


def recipe_stsb(work: Path, rows: list, log: list[str], args: argparse.Namespace) -> None:
    rows.append(
        ("all-MiniLM-L6-v2 pretrained, STS-b test Spearman", f"{sts('all-MiniLM-L6-v2', log):.2f}")
    )
    flags = recipe_flags("stsb", "train", "cosine", epochs=args.epochs)
    seconds = train(work / "stsb", flags, log, args.extra)
    name = f"cosine, STS-b train, {args.epochs} epochs" + (
        f" (max {args.max_steps} steps)" if args.max_steps else ""
    )
    rows.append((f"{name}: STS-b test Spearman", f"{sts(str(work / 'stsb'), log):.2f}"))
    rows.append(("minisbert train step, batch 16 (s/step, median)", f"{seconds:.3f}"))
    try:
        from bench.training import _batches, reference_pairs_per_second
        from minisbert.io.convert import export_sentence_transformers
        from minisbert.sentence_encoder import resolve_model_dir
    except ImportError:
        return
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        rows.append(
            (
                "sentence-transformers train step",
                "not importable here (make recipes uses .venv-ref)",
            )
        )
        return
    st_dir = export_sentence_transformers(resolve_model_dir("all-MiniLM-L6-v2"), work / "st")
    batches, _ = _batches(30, 16)
    theirs = 16 / reference_pairs_per_second(st_dir, batches, 16)
    rows.append(("sentence-transformers train step, same batches (s/step)", f"{theirs:.3f}"))
    rows.append(
        ("speed-up per step (sentence-transformers / minisbert)", f"{theirs / seconds:.2f}x")
    )


def recipe_nli(work: Path, rows: list, log: list[str], args: argparse.Namespace) -> None:
    """The command of the README, with its defaults: SICK trial accuracy, STS-b test after."""
    out = work / "nli"
    train(out, recipe_flags("snli", "dev", "softmax"), log, args.extra)
    accuracy = nli(out, "sick-nli", "trial", log)
    rows.append(
        (
            "softmax (u, v, |u-v|), default head lr, SNLI dev 1 epoch: "
            "SICK trial NLI accuracy / STS-b test Spearman",
            f"{accuracy:.2f} / {sts(str(out), log):.2f}",
        )
    )


def nli(model: Path, data: str, split: str, log: list[str]) -> float:
    return float(run(["eval", "nli", "--model", str(model), "--data", data, "--split", split], log))


def snli_dev_holdout(folder: Path) -> tuple[Path, Path]:
    """80% of SNLI dev to train on and the other 20% to measure, split by premise (a premise's
    three hypotheses stay on one side) with a fixed seed: ``(train.tsv, held.tsv)``."""
    import numpy as np

    from minisbert.data import NLI_LABELS, load_dataset

    pairs = load_dataset("snli", "dev")
    premises = sorted({p.sentence1 for p in pairs})
    rng = np.random.default_rng(1234)
    held = set(rng.choice(premises, size=len(premises) // 5, replace=False).tolist())
    paths = folder / "snli-dev-train.tsv", folder / "snli-dev-held.tsv"
    for path, keep in zip(paths, (False, True), strict=True):
        lines = ["sentence1\tsentence2\tlabel"] + [
            f"{p.sentence1}\t{p.sentence2}\t{NLI_LABELS[p.label]}"
            for p in pairs
            if (p.sentence1 in held) == keep
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def mean_std(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}{spread}"


def recipe_ablation(work: Path, log: list[str], args: argparse.Namespace) -> list[str]:
    """The ablation's table rows (markdown), one per row name, over ``args.seeds``."""
    train_file, held_file = snli_dev_holdout(work)
    table = [
        "| recipe | features | seeds | SNLI dev held-out 20% acc | SICK trial acc | "
        "STS-b test Spearman |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.rows:
        flags, concat = ABLATION[name]
        held, trial, stsb = [], [], []
        for seed in args.seeds:
            out = work / f"{name.replace(' ', '-')}-{seed}"
            extra = ["--concat", *concat, *flags, *args.extra]
            train(out, recipe_flags(str(train_file), "train", "softmax", seed=seed), log, extra)
            held.append(nli(out, str(held_file), "dev", log))
            trial.append(nli(out, "sick-nli", "trial", log))
            stsb.append(sts(str(out), log))
        row = f"| {name} | {concat_label(concat)} | {' '.join(map(str, args.seeds))} | "
        row += f"{mean_std(held)} | {mean_std(trial)} | {mean_std(stsb)} |"
        table.append(row)
        print(row, flush=True)
    return table


def recipe_triplets(work: Path, rows: list, log: list[str], args: argparse.Namespace) -> None:
    for loss, margin in (("triplet", "1"), ("triplet", "5"), ("mnrl", None)):
        out = work / f"{loss}-{margin or 'default'}"
        flags = recipe_flags("snli-triplets", "dev", loss)
        if margin:
            flags += ["--margin", margin]
        train(out, flags, log, args.extra)
        name = f"{loss}" + (f" margin {margin}" if margin else " (in-batch negatives, scale 20)")
        rows.append(
            (f"{name}, SNLI dev triplets 1 epoch: STS-b test Spearman", f"{sts(str(out), log):.2f}")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "recipes",
        nargs="*",
        default=["stsb", "nli", "triplets"],
        choices=["stsb", "nli", "ablation", "triplets"],
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="ablation seeds")
    parser.add_argument(
        "--rows", nargs="+", default=list(ABLATION), choices=list(ABLATION), help="ablation rows"
    )
    parser.add_argument("--epochs", type=int, default=4, help="stsb recipe epochs (paper: 4)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap every run (a quick look)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the trained models here")
    args = parser.parse_args()
    args.extra = ["--eval-data", "none"] + (
        ["--max-steps", str(args.max_steps)] if args.max_steps else []
    )

    work = args.keep or Path(tempfile.mkdtemp(prefix="minisbert-recipes-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []
    log: list[str] = []
    info = machine.describe()
    for recipe in args.recipes:
        if recipe == "stsb":
            recipe_stsb(work, rows, log, args)
        elif recipe == "nli":
            recipe_nli(work, rows, log, args)
        elif recipe == "ablation":
            ablation_log: list[str] = []
            table = recipe_ablation(work, ablation_log, args)
            write_ablation(table, ablation_log, info, args)
        else:
            recipe_triplets(work, rows, log, args)
    if not rows:
        return

    out = ROOT / "bench" / "results" / f"recipes-{machine.slug(info)}.md"
    lines = [f"\n## {' '.join(args.recipes)}: {time.strftime('%Y-%m-%d %H:%M')}", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", "| result | figure |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    lines += ["", "Commands:", ""] + [f"    {c}" for c in log]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nappended to {out}")


def write_ablation(
    table: list[str], log: list[str], info: dict[str, str], args: argparse.Namespace
) -> None:
    """Append the ablation's table, machine, commit and commands to its own results page."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    out = ROOT / "bench" / "results" / f"nli-ablation-{machine.slug(info)}.md"
    lines = [f"\n## make recipes RECIPES=ablation: {time.strftime('%Y-%m-%d %H:%M')}", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()] + [f"- commit: {commit or 'unknown'}"]
    lines += [f"- command: python -m bench.recipes ablation --seeds "
              f"{' '.join(map(str, args.seeds))}" + "".join(f' --rows "{r}"' for r in args.rows),
              "", *table, "", "Commands:", ""] + [f"    {c}" for c in log]  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[: -len(log)] if log else lines))
    print(f"\nappended to {out}")


if __name__ == "__main__":
    main()

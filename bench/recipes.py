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
               1 epoch: NLI accuracy on SICK trial (held out: SNLI dev is our only SNLI
               split) and the STS-b test Spearman that follows.
    ablation   the paper's Table 6, the concatenation ablation, on the same data.
    triplets   triplet loss with the paper's margin (1) and the library's (5), and in-batch
               negatives (MNRL), on SNLI dev triplets: STS-b test Spearman for each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import machine

ROOT = Path(__file__).resolve().parent.parent
MINISBERT = [sys.executable, "-m", "minisbert.cli"]

# The paper's Table 6 rows (u * v is "mul", |u - v| is "abs_diff").
ABLATION = [
    ("u", "v"),
    ("abs_diff",),
    ("mul",),
    ("abs_diff", "mul"),
    ("u", "v", "mul"),
    ("u", "v", "abs_diff"),
    ("u", "v", "abs_diff", "mul"),
]


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


def recipe_flags(data: str, split: str, loss: str, *, epochs: int = 1) -> list[str]:
    """The settings every recipe shares: the pretrained model, batch 16, lr 2e-5, seed 0."""
    return (
        f"--model all-MiniLM-L6-v2 --data {data} --split {split} --loss {loss} "
        f"--epochs {epochs} --batch-size 16 --lr 2e-5 --seed 0"
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
        from minisbert.convert import export_sentence_transformers
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


def recipe_nli(
    work: Path,
    rows: list,
    log: list[str],
    args: argparse.Namespace,
    variants: list[tuple[str, ...]],
) -> None:
    for concat in variants:
        out = work / ("nli-" + "-".join(concat))
        flags = recipe_flags("snli", "dev", "softmax") + ["--concat", *concat]
        train(out, flags, log, args.extra)
        accuracy = float(
            run(["eval", "nli", "--model", str(out), "--data", "sick-nli", "--split", "trial"], log)
        )
        label = "(" + ", ".join({"abs_diff": "|u-v|", "mul": "u*v"}.get(c, c) for c in concat) + ")"
        rows.append(
            (
                f"softmax {label}, SNLI dev 1 epoch: SICK trial NLI accuracy / STS-b test Spearman",
                f"{accuracy:.2f} / {sts(str(out), log):.2f}",
            )
        )


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
    parser.add_argument("--epochs", type=int, default=4, help="stsb recipe epochs (paper: 4)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap every run (a quick look)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the trained models here")
    args = parser.parse_args()
    args.extra = ["--eval-data", "none"] + (
        ["--max-steps", str(args.max_steps)] if args.max_steps else []
    )

    work = args.keep or Path(tempfile.mkdtemp(prefix="minisbert-recipes-"))
    rows: list[tuple[str, str]] = []
    log: list[str] = []
    for recipe in args.recipes:
        if recipe == "stsb":
            recipe_stsb(work, rows, log, args)
        elif recipe == "nli":
            recipe_nli(work, rows, log, args, [("u", "v", "abs_diff")])
        elif recipe == "ablation":
            recipe_nli(work, rows, log, args, ABLATION)
        else:
            recipe_triplets(work, rows, log, args)

    info = machine.describe()
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


if __name__ == "__main__":
    main()

"""The Matryoshka experiment of bench/results/matryoshka-*.md, run by sentence-transformers.

Fine-tunes all-MiniLM-L6-v2 with MultipleNegativesRankingLoss on SNLI dev triplets (1 epoch,
batch 32, seed 0, batches without repeated texts), with and without MatryoshkaLoss over the
widths 384, 128 and 64, then prints STS-b test Spearman x100 of the first D dimensions. It
answers one question: does the reference library, on the data and schedule of minisbert's
measurement, gain at 64 dimensions from the Matryoshka loss?

The triplets and the STS-b pairs are read by minisbert (``MINISBERT_DATA``), so both
libraries train and score on the same examples. Runs in the reference environment, which
needs accelerate for the library's trainer:

    .venv-ref/bin/python -m bench.matryoshka_reference --lr 5e-5 --warmup-ratio 0   # its defaults
    .venv-ref/bin/python -m bench.matryoshka_reference --lr 2e-5 --warmup-ratio 0.1 # minisbert's
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from minisbert.data import load_dataset
from minisbert.evaluate import spearman
from minisbert.io.cache import cache_dir

WIDTHS = (384, 128, 64)


def sts_by_width(model: object, pairs: list) -> dict[int, float]:
    """STS-b Spearman x100 of the cosine of the first D dimensions, for each D in WIDTHS."""
    u = model.encode([p.sentence1 for p in pairs], convert_to_numpy=True)  # (N, 384)
    v = model.encode([p.sentence2 for p in pairs], convert_to_numpy=True)  # (N, 384)
    gold = np.array([p.label for p in pairs], dtype=np.float64)
    scores = {}
    for d in WIDTHS:
        a, b = u[:, :d], v[:, :d]
        cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        scores[d] = 100 * spearman(cos, gold)
    return scores


def run(matryoshka: bool, lr: float, warmup_ratio: float, seed: int, model_dir: str) -> dict:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from sentence_transformers.training_args import BatchSamplers

    triplets = load_dataset("snli-triplets", "dev")
    data = Dataset.from_dict({
        "anchor": [t.anchor for t in triplets],
        "positive": [t.positive for t in triplets],
        "negative": [t.negative for t in triplets],
    })  # fmt: skip
    model = SentenceTransformer(model_dir, device="cpu")
    loss = losses.MultipleNegativesRankingLoss(model)
    if matryoshka:
        loss = losses.MatryoshkaLoss(model, loss, list(WIDTHS))
    with tempfile.TemporaryDirectory() as output:
        args = SentenceTransformerTrainingArguments(
            output_dir=output, num_train_epochs=1, per_device_train_batch_size=32,
            learning_rate=lr, warmup_ratio=warmup_ratio, seed=seed,
            batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", report_to=[],
        )  # fmt: skip
        SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss).train()
    return sts_by_width(model, load_dataset("stsb", "test", normalize=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--warmup-ratio", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model", default=str(cache_dir() / "pypi" / "all-MiniLM-L6-v2"),
        help="a sentence-transformers folder of all-MiniLM-L6-v2 (minisbert fetch caches one)",
    )  # fmt: skip
    args = parser.parse_args()
    print("| sentence-transformers run | D = 384 | D = 128 | D = 64 |")
    print("|---|---|---|---|")
    for matryoshka in (False, True):
        scores = run(matryoshka, args.lr, args.warmup_ratio, args.seed, args.model)
        name = "MNRL + MatryoshkaLoss(384, 128, 64)" if matryoshka else "MNRL"
        name += f", lr {args.lr:g}, warm-up {args.warmup_ratio:g}, seed {args.seed}"
        print(f"| {name} | " + " | ".join(f"{scores[d]:.2f}" for d in WIDTHS) + " |", flush=True)


if __name__ == "__main__":
    main()

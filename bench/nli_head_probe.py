"""How fast a random softmax head learns on its own: the head alone, on frozen embeddings.

    python -m bench.nli_head_probe [--steps 100 200 492] [--head-lrs 2e-5 2e-3 3e-2 ...]

all-MiniLM-L6-v2's embeddings of the ablation's 80% of SNLI dev (bench.recipes's split, by
premise) are computed once; then only the head W [u; v; |u-v|] + b is trained, exactly as
``minisbert train`` would train it (batch 16, clip 1, AdamW with weight decay 0.01 on W,
warm-up-linear over the steps), and its accuracy on the held-out 20% is printed for each
head learning rate and number of steps. The encoder never moves, so this is the best a
head-only phase (``--probe-steps``) can do, and it costs seconds instead of a training run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.recipes import snli_dev_holdout
from minisbert.data import load_dataset
from minisbert.evaluate import encode_unique
from minisbert.optimizer import decays, warmup_linear
from minisbert.sentence_encoder import SentenceEncoder


def features(encoder: SentenceEncoder, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """[u; v; |u - v|] (N, 3D) and the labels (N,) of a pairs file."""
    pairs = load_dataset(str(path))
    u, v = encode_unique(encoder, [p.sentence1 for p in pairs], [p.sentence2 for p in pairs])
    return np.concatenate([u, v, np.abs(u - v)], axis=1), np.array([p.label for p in pairs])


def probe(x, y, held_x, held_y, head_lr: float, steps: int, seed: int = 0) -> float:
    """Held-out accuracy (%) of a head trained alone for ``steps`` batches of 16."""
    K, C = x.shape[1], int(y.max()) + 1
    params = {
        "kernel": jax.random.normal(jax.random.key(seed), (K, C)) / np.sqrt(K),  # lecun normal
        "bias": jnp.zeros(C),
    }
    schedule = warmup_linear(head_lr, int(np.ceil(0.1 * steps)), steps)
    tx = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.01, mask=decays)
    )
    state = tx.init(params)

    @jax.jit
    def step(params, state, xb, yb):
        def loss(p):
            logits = xb @ p["kernel"] + p["bias"]  # (16, C)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    order = np.random.default_rng(seed).permutation(len(y))
    for i in range(steps):
        batch = np.take(order, range(i * 16, (i + 1) * 16), mode="wrap")
        params, state = step(params, state, x[batch], y[batch])
    logits = held_x @ np.asarray(params["kernel"]) + np.asarray(params["bias"])
    return 100 * float((logits.argmax(1) == held_y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 200, 492])
    parser.add_argument(
        "--head-lrs", type=float, nargs="+",
        default=[2e-5, 2e-4, 1e-3, 2e-3, 5e-3, 1e-2, 3e-2, 5e-2, 1e-1, 5e-1],
    )  # fmt: skip
    args = parser.parse_args()
    train_file, held_file = snli_dev_holdout(Path(tempfile.mkdtemp(prefix="minisbert-probe-")))
    encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
    x, y = features(encoder, train_file)
    held_x, held_y = features(encoder, held_file)
    print("head alone on frozen all-MiniLM-L6-v2 (u, v, |u-v|): held-out 20% SNLI dev accuracy")
    print(f"{'steps':>6} " + " ".join(f"{lr:>7g}" for lr in args.head_lrs))
    for steps in args.steps:
        accs = [probe(x, y, held_x, held_y, lr, steps) for lr in args.head_lrs]
        print(f"{steps:>6} " + " ".join(f"{a:7.1f}" for a in accs), flush=True)


if __name__ == "__main__":
    main()

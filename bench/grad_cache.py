"""Peak memory of a training step with and without the gradient cache (``--mini-batch-size``).

    python -m bench.grad_cache [--batch-sizes 32,256,1024] [--mini-batch-size 16] [--steps 2]

``minisbert train --loss mnrl --data snli-triplets --split dev`` (all-MiniLM-L6-v2, no
evaluation) for ``--steps`` steps at each batch size, each run alone in a fresh process whose
peak resident memory (the kernel's ru_maxrss for that child) is the figure, three ways:

    plain          the command without --mini-batch-size: minisbert.fast.PackedSteps
    cached         --mini-batch-size M: minisbert.grad_cache.CachedSteps, each pass's
                   function jitted alone, the loop over the chunks in Python
    cached-scan    the same passes as one jitted program per batch shape, the chunks looped
                   by lax.scan (ScanSteps below): the other place a jit boundary could go

A child that would not fit this machine's free memory is stopped by a limit on its heap
(RLIMIT_DATA) before it can push other processes out, and its row says so. The table is
printed and written to bench/results/grad-cache-<machine>.md. ``make bench-grad-cache`` runs
it in .venv (minisbert alone: no reference library).
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("plain", "cached", "cached-scan")


# ---------------------------------------------------------------- the lax.scan variant


def scan_step_program() -> Any:
    """The three passes of ``grad_cache.cached_grads`` as one jitted function of the chunks
    stacked (K, M, T): pass 1 and pass 3 each a ``lax.scan`` over the K chunks."""
    import jax
    import jax.numpy as jnp

    from minisbert.grad_cache import chunk_grads, embed_chunk, loss_and_cache

    @functools.partial(jax.jit, static_argnums=(0, 7, 8))
    def step(graphdef, params, rest, input_ids, attention_mask, where, labels, sides, loss_fn):
        K, M, _ = input_ids.shape  # (K, M, T)

        def embed(rest, chunk):
            vectors, after = embed_chunk(graphdef, params, rest, *chunk)  # (M, D)
            return after, (vectors, rest)  # the state before the chunk, for pass 3

        rest_end, (vectors, before) = jax.lax.scan(embed, rest, (input_ids, attention_mask))
        D = vectors.shape[-1]
        embeddings = vectors.reshape(K * M, D)[where].reshape(sides, -1, D)  # (S, B, D)
        loss, grads, cache = loss_and_cache(graphdef, params, rest_end, embeddings, labels,
                                            loss_fn)  # fmt: skip
        cache = jnp.zeros((K * M, D)).at[where].set(cache.reshape(-1, D)).reshape(K, M, D)

        def backward(grads, chunk):
            ids, mask, rng_state, chunk_cache = chunk
            more = chunk_grads(graphdef, params, rng_state, ids, mask, chunk_cache)
            return jax.tree.map(jnp.add, grads, more), None

        grads, _ = jax.lax.scan(backward, grads, (input_ids, attention_mask, before, cache))
        return loss, grads, rest_end

    return step


def scan_steps() -> Any:
    """``CachedSteps`` whose step is ``scan_step_program``: the chunks padded to the batch's
    longest chunk (one shape for all K of them)."""
    import numpy as np
    from flax import nnx

    from minisbert.grad_cache import CachedSteps, apply_gradients

    program = scan_step_program()

    class ScanSteps(CachedSteps):
        def step(self, trainable, optimizer, batch, loss_fn):  # noqa: ANN001
            T = max(chunk.input_ids.shape[1] for chunk in batch.chunks)

            def widen(x: np.ndarray) -> np.ndarray:  # (M, t) -> (M, T)
                return np.pad(x, ((0, 0), (0, T - x.shape[1])))

            input_ids = np.stack([widen(c.input_ids) for c in batch.chunks])  # (K, M, T)
            mask = np.stack([widen(c.attention_mask) for c in batch.chunks])  # (K, M, T)
            M = input_ids.shape[1]
            # Where each of the S B sentences sits among the K M rows of the stacked chunks.
            slots = np.concatenate([k * M + np.arange(len(c.rows))
                                    for k, c in enumerate(batch.chunks)])  # fmt: skip
            rows = np.concatenate([c.rows for c in batch.chunks])
            where = slots[np.argsort(rows)]  # (S B,)
            graphdef, params, rest = nnx.split(trainable, nnx.Param, ...)
            loss, grads, rest = program(graphdef, params, rest, input_ids, mask, where,
                                        batch.labels, batch.sides, loss_fn)  # fmt: skip
            nnx.update(trainable, rest)
            apply_gradients(trainable, optimizer, grads)
            return loss

    return ScanSteps()


# ---------------------------------------------------------------- one run, in a child


def child(variant: str, batch_size: int, mini_batch_size: int, steps: int, output: str) -> None:
    """One training run as ``minisbert train`` runs it; prints its peak RSS and its fastest
    step (a step that compiles a new shape takes longer) as JSON."""
    from minisbert.fast.host_memory import keep_freed_memory

    keep_freed_memory(thresholds=variant == "plain")  # as cmd_train does
    from minisbert.fast import PackedSteps
    from minisbert.grad_cache import CachedSteps
    from minisbert.train import TrainConfig, train

    config = TrainConfig(
        loss="mnrl", data="snli-triplets", split="dev", batch_size=batch_size,
        mini_batch_size=None if variant == "plain" else mini_batch_size, max_steps=steps,
        output=output, eval_data="none", progress=False,
    )  # fmt: skip
    runner = {"plain": PackedSteps, "cached": CachedSteps, "cached-scan": scan_steps}[variant]
    ends = [time.perf_counter()]
    train(config, steps=runner(), on_step=lambda step, loss: ends.append(time.perf_counter()))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    fastest = min(b - a for a, b in zip(ends[1:], ends[2:], strict=False)) if steps > 1 else None
    print(json.dumps({"peak_mib": peak_mib, "fastest_step": fastest}))


def available_bytes() -> int:
    """MemAvailable of /proc/meminfo: what a new process can take without pushing others out."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(variant: str, batch_size: int, mini_batch_size: int, steps: int) -> dict:
    """Run ``child`` in a fresh process: its figures, or why it failed."""
    limit = max(available_bytes() - (2 << 30), 1 << 30)  # 2 GiB left to everyone else

    def cap_heap() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    with tempfile.TemporaryDirectory() as folder:
        args = [sys.executable, "-m", "bench.grad_cache", "--child", variant, str(batch_size),
                str(mini_batch_size), str(steps), str(Path(folder) / "run")]  # fmt: skip
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, preexec_fn=cap_heap)
    if done.returncode != 0:
        memory = "memory" in done.stderr.lower() or "alloc" in done.stderr.lower()
        why = f"over the {limit / 2**30:.1f} GiB free" if memory else done.stderr[-400:]
        return {"failed": why}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", default="32,256,1024")
    parser.add_argument("--mini-batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="some of " + ", ".join(VARIANTS)
    )
    parser.add_argument("--child", nargs=5, metavar=("VARIANT", "B", "M", "STEPS", "OUTPUT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.child:
        variant, batch_size, mini_batch_size, steps, output = args.child
        child(variant, int(batch_size), int(mini_batch_size), int(steps), output)
        return
    M, variants = args.mini_batch_size, [v.strip() for v in args.variants.split(",")]
    print(f"mnrl on SNLI dev triplets, {args.steps} steps, M = {M}")
    print(
        "  "
        + "  ".join(f"{h:>10s}" for h in ("batch", "step", "peak MiB", "of plain", "fastest s"))
    )
    rows = []
    for batch_size in map(int, args.batch_sizes.split(",")):
        plain = None
        for variant in variants:
            figures = measure(variant, batch_size, M, args.steps)
            peak, seconds = figures.get("peak_mib"), figures.get("fastest_step")
            plain = peak if variant == "plain" else plain
            rows.append((
                str(batch_size), variant, figures["failed"] if peak is None else f"{peak:,.0f}",
                f"{peak / plain:.2f}x" if peak and plain else "",
                "" if seconds is None else f"{seconds:.1f}",
            ))  # fmt: skip
            print("  " + "  ".join(f"{cell:>10s}" for cell in rows[-1]), flush=True)
    from bench import machine  # JAX, and its threads, only after the children are forked

    write_results(machine.describe(), rows, args)


def write_results(info: dict[str, str], rows: list[tuple], args: argparse.Namespace) -> None:
    from bench import machine

    out = ROOT / "bench" / "results" / f"grad-cache-{machine.slug(info)}.md"
    lines = [
        f"# Peak memory with and without the gradient cache, {info['cpu']} "
        f"({info['cores']} cores, {info['backend']})", "",
        *[f"- {k}: {v}" for k, v in info.items()], "",
        f"`python -m bench.grad_cache --batch-sizes {args.batch_sizes} --mini-batch-size "
        f"{args.mini_batch_size} --steps {args.steps}`: `minisbert train --loss mnrl --data "
        "snli-triplets --split dev --batch-size B [--mini-batch-size M]` (all-MiniLM-L6-v2, "
        f"`--eval-data none`), {args.steps} steps, each run alone in a fresh process. Peak RSS "
        "is the process's ru_maxrss; the ratio is to the plain step's at the same batch size; "
        "the fastest step is the quickest of the run's steps (the first compiles, and a later "
        "one compiles again when its batch has a new shape). Written "
        f"{time.strftime('%Y-%m-%d %H:%M')}.", "",
        "| batch | step | peak RSS (MiB) | of plain | fastest step (s) |", "|---|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in rows],
    ]  # fmt: skip
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

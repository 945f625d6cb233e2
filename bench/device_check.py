"""``make device-check``: what minisbert computes on the device JAX sees, in one table.

    python -m bench.device_check                      # whatever backend JAX finds
    python -m bench.device_check --lessons none       # skip the lessons (CI: test-slow runs them)
    JAX_PLATFORMS=cpu python -m bench.device_check    # force the CPU

On a CPU, a CUDA GPU or a TPU, the same rows:

1. **parity**: all-MiniLM-L6-v2's vectors for the 64 reference sentences (written by
   sentence-transformers, ``tests/reference/``) against ours, at precision "highest" (must
   stay within the tests' 1e-5) and at the backend's "default" (TF32 on recent NVIDIA GPUs,
   bfloat16 passes on TPUs: the difference shows what that default costs);
2. **one training step** on this device against the same step on the CPU (same weights,
   batch and dropout off, both at "highest"): the loss and the largest weight difference;
3. **throughput**: encode (sentences/s, ``FastEncoder``) and training (pairs/s, padded
   ``train_step``), at "default" and at "highest";
4. **the device's matmul peak**, measured with one large float32 product, and the share of
   it that encoding uses (model FLOPs per second / peak);
5. **each lesson in fast mode** (its check cells and closing asserts), run as a student runs
   it: passed, or the first error line.

It writes the table to ``bench/results/device-check-BACKEND-DEVICE.md`` and prints it. A
row marked FAIL makes the command exit 1 (parity over 1e-5 at "highest", a training step
off the CPU's by more than 1e-4 relative, a lesson that failed); figures are never asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "tests" / "reference"
PARITY_ATOL = 1e-5  # the tests' tolerance, at "highest"
STEP_RTOL = 1e-4  # a training step on the device against the CPU's, at "highest"


def timed(fn, repeats: int) -> float:
    """Seconds per call of ``fn`` (whose result is blocked on), after one warm-up call."""
    import jax

    jax.block_until_ready(fn())
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn())
    return (time.perf_counter() - start) / repeats


def matmul_peak(n: int, precision: str) -> float:
    """FLOP/s of one n x n by n x n float32 product (2 n^3 FLOPs) on the default device."""
    import jax
    import jax.numpy as jnp

    from minisbert.precision import exactly

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    with exactly(precision):
        product = jax.jit(lambda x: x @ x)
        seconds = timed(lambda: product(a), repeats=5)
    return 2 * n**3 / seconds


def parity_rows(model_dir: Path) -> list[tuple[str, str, bool]]:
    import numpy as np

    from minisbert import SentenceEncoder
    from minisbert.precision import exactly

    sentences = json.loads((REFERENCE / "sentences.json").read_text(encoding="utf-8"))
    expected = np.load(REFERENCE / "embeddings.npz")["sentence_embeddings"]
    rows = []
    for precision in ("highest", "default"):
        encoder = SentenceEncoder.from_pretrained(model_dir)  # a fresh compile per precision
        with exactly(precision):
            ours = encoder.encode(sentences, batch_size=16)
        diff = float(np.abs(ours - expected).max())
        ok = diff <= PARITY_ATOL if precision == "highest" else True  # default: reported
        rows.append((f"embeddings vs sentence-transformers, max abs diff ({precision})",
                     f"{diff:.1e}", ok))  # fmt: skip
    return rows


def _stsb_pairs(n: int) -> list[tuple[str, str, float]]:
    """n STS-b train pairs when the data is present, else pairs of the reference sentences."""
    try:
        from minisbert.data import load_dataset

        examples = load_dataset("stsb", "train")[:n]
        return [(e.sentence1, e.sentence2, float(e.label)) for e in examples]
    except Exception:  # no data here: the check still runs, on the reference sentences
        sentences = json.loads((REFERENCE / "sentences.json").read_text(encoding="utf-8"))
        return [(sentences[i], sentences[-1 - i], 0.5) for i in range(n)]


def _step_batch(encoder, pairs):  # noqa: ANN001, ANN202
    import numpy as np

    from minisbert.tokenizer import pad_batch

    sides = [[encoder.tokenizer.tokenize([p[s]])[0] for p in pairs] for s in (0, 1)]
    T = max(len(ids) for side in sides for ids in side)
    padded = [pad_batch(side, T, encoder.tokenizer.pad_token_id) for side in sides]
    input_ids = np.stack([ids for ids, _ in padded])  # (2, B, T)
    mask = np.stack([m for _, m in padded])
    labels = np.array([p[2] / 5.0 for p in pairs], np.float32)
    return input_ids, mask, labels


def training_rows(model_dir: Path, batch_size: int) -> list[tuple[str, str, bool]]:
    """One step here against the same step on the CPU, then training throughput."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from minisbert import SentenceEncoder
    from minisbert.io.weights import flat_params
    from minisbert.losses import cosine_similarity_loss
    from minisbert.optimizer import make_optimizer
    from minisbert.precision import exactly
    from minisbert.train import Trainable, train_step

    pairs = _stsb_pairs(batch_size)

    def one_step(device):  # noqa: ANN001, ANN202
        with jax.default_device(device), exactly("highest"):
            encoder = SentenceEncoder.from_pretrained(model_dir)
            trainable = Trainable(encoder.model)
            trainable.eval()  # dropout off: the two devices must take the same step
            optimizer = nnx.Optimizer(trainable, make_optimizer(2e-5, 100, warmup_ratio=0.0),
                                      wrt=nnx.Param)  # fmt: skip
            ids, mask, labels = (jnp.asarray(x) for x in _step_batch(encoder, pairs))
            loss = float(train_step(trainable, optimizer, ids, mask, labels,
                                    cosine_similarity_loss))  # fmt: skip
            return loss, flat_params(trainable.model.bert)

    here_loss, here = one_step(jax.devices()[0])
    cpu_loss, cpu = one_step(jax.devices("cpu")[0])
    loss_diff = abs(here_loss - cpu_loss) / max(abs(cpu_loss), 1e-12)
    weight_diff = max(float(np.abs(here[k] - cpu[k]).max()) for k in cpu)
    rows = [
        (f"one training step vs the CPU's: loss {here_loss:.6f}, relative diff",
         f"{loss_diff:.1e}", loss_diff <= STEP_RTOL),
        ("one training step vs the CPU's: max weight diff", f"{weight_diff:.1e}",
         weight_diff <= STEP_RTOL * 1e-2),  # a step moves weights by ~lr = 2e-5
    ]  # fmt: skip

    encoder = SentenceEncoder.from_pretrained(model_dir)
    trainable = Trainable(encoder.model)
    trainable.train()
    optimizer = nnx.Optimizer(trainable, make_optimizer(2e-5, 10_000), wrt=nnx.Param)
    ids, mask, labels = (jnp.asarray(x) for x in _step_batch(encoder, pairs))
    for precision in ("default", "highest"):
        with exactly(precision):
            seconds = timed(lambda: train_step(trainable, optimizer, ids, mask, labels,
                                               cosine_similarity_loss), repeats=5)  # fmt: skip
        rows.append((f"training throughput, batch {batch_size}, padded ({precision})",
                     f"{batch_size / seconds:,.1f} pairs/s", True))  # fmt: skip
    return rows


def encode_rows(model_dir: Path, n_sentences: int, peak: float) -> list[tuple[str, str, bool]]:
    import numpy as np

    from minisbert import FastEncoder
    from minisbert.precision import exactly

    pairs = _stsb_pairs(max(1, n_sentences // 2))
    sentences = [s for p in pairs for s in p[:2]][:n_sentences]
    rows = []
    encoder = FastEncoder.from_pretrained(model_dir)
    config = encoder.model.config
    D, F, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    tokens = sum(len(ids) for ids in encoder.tokenizer.tokenize(sentences))
    mean_T = tokens / len(sentences)
    # FLOPs per token: projections (4 D^2) and feed-forward (2 D F), 2 FLOPs per
    # multiply-add, plus attention scores and mixing (2 x 2 T D) over the sentence's T tokens.
    flops = tokens * layers * (2 * (4 * D * D + 2 * D * F) + 4 * mean_T * D)
    for precision in ("default", "highest"):
        with exactly(precision):
            encoder.encode(sentences, batch_size=64)  # compile
            start = time.perf_counter()
            out = encoder.encode(sentences, batch_size=64)
            seconds = time.perf_counter() - start
        assert np.isfinite(out).all()
        share = flops / seconds / peak
        rows.append((f"encode throughput, {len(sentences)} sentences ({precision})",
                     f"{len(sentences) / seconds:,.0f} sentences/s, {share:.0%} of the "
                     "matmul peak", True))  # fmt: skip
    return rows


def lesson_rows(which: str, timeout: int) -> list[tuple[str, str, bool]]:
    if which == "none":
        return [("lessons (fast mode)", "skipped (--lessons none)", True)]
    rows = []
    for source in sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py")):
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, str(ROOT / "lessons" / "run.py"), source.name[:2],
             "--out", str(ROOT / "build" / "device-check-lessons")],
            env={**__import__("os").environ, "MINISBERT_FAST": "1"},
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        ok = result.returncode == 0
        last = (result.stderr.strip().splitlines() or ["?"])[-1][:80]
        rows.append((f"lesson {source.stem} (fast mode)",
                     f"passed in {seconds:.0f} s" if ok else f"FAILED: {last}", ok))  # fmt: skip
    return rows


def device_name() -> tuple[str, str]:
    import jax

    device = jax.devices()[0]
    kind = device.device_kind if device.platform != "cpu" else (platform.processor() or "cpu")
    if device.platform == "cpu":
        kind = _cpu_model() or kind
    return jax.default_backend(), f"{kind}, {len(jax.devices())} device(s)"


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        cores = len(re.findall(r"^processor\s*:", text, re.M))
        return f"{model[1].strip()}, {cores} cores" if model else ""
    except OSError:
        return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--lessons", choices=["fast", "none"], default="fast")
    parser.add_argument("--sentences", type=int, default=2048, help="for the encode rows")
    parser.add_argument("--batch-size", type=int, default=16, help="for the training rows")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    import jax

    from minisbert.sentence_encoder import resolve_model_dir

    model_dir = resolve_model_dir(args.model)
    backend, device = device_name()
    n = 2048 if backend == "cpu" else 8192
    peak = matmul_peak(n, "default")
    rows = [("backend, device", f"{backend}: {device}", True),
            ("jax, jaxlib", jax.__version__, True),
            (f"matmul peak, {n}x{n} float32 (default)", f"{peak / 1e12:.2f} TFLOP/s", True),
            (f"matmul peak, {n}x{n} float32 (highest)",
             f"{matmul_peak(n, 'highest') / 1e12:.2f} TFLOP/s", True)]  # fmt: skip
    rows += parity_rows(model_dir)
    rows += training_rows(model_dir, args.batch_size)
    rows += encode_rows(model_dir, args.sentences, peak)
    rows += lesson_rows(args.lessons, timeout=3600)

    table = ["| check | result | |", "|---|---|---|"]
    table += [f"| {name} | {value} | {'ok' if ok else 'FAIL'} |" for name, value, ok in rows]
    text = (f"# make device-check: {backend}, {device}\n\n"
            f"`{' '.join(['python -m bench.device_check', *sys.argv[1:]])}`, "
            f"{time.strftime('%Y-%m-%d')}\n\n" + "\n".join(table) + "\n")  # fmt: skip
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", f"{backend}-{device}".lower()).strip("-")[:80]
    (args.out / f"device-check-{slug}.md").write_text(text, encoding="utf-8")
    print(f"wrote {args.out / f'device-check-{slug}.md'}")
    return 0 if all(ok for _, _, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

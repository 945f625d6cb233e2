"""Where encode's time goes: a profile of minisbert's forward pass, batch by batch.

    python -m bench.profile [--batch-size 32]     # STS-b test, from $MINISBERT_DATA
    python -m bench.profile --train               # one training step instead

``make bench`` adds these rows to its table. They answer "how close to this machine's
limit is encode, and what stands between it and the limit?" in five steps:

1. **host vs device**: encode's wall time split into tokenizing, packing (or sorting and
   padding) on the host, and the compiled forward pass (XLA), each call timed to completion;
2. **dense products vs the rest**: the six matrix products of every layer (Q, K, V, output,
   feed-forward in and out, 96% of the FLOPs of a 14-token sentence) timed alone at the same
   shapes, against the whole forward pass; the difference is attention's scores, softmax
   and mix, GELU, LayerNorm, embeddings and pooling;
3. **the rest, piece by piece**: the forward pass compiled again with one piece taken
   out (GELU, LayerNorm, softmax, or attention's scores and mix altogether), each timed at
   the same shapes; what the pass gets faster by is what that piece costs in context, where
   XLA fuses it with its neighbours (the vectors such a pass returns are meaningless);
4. **padding**: FLOPs of the real tokens over FLOPs computed, empty slots and a packed
   row's attention between its sentences included;
5. **the ceiling**: useful GFLOP/s against a large matrix product's GFLOP/s (the measured
   peak), and what a given multiple of another library's sentences/s would need.

FLOPs of one sentence of T tokens through L layers (multiply-add = 2 FLOPs), as in
``bench.speed.sentence_flops``:  L * (8 T D^2 + 4 T D F + 4 T^2 D).
"""

from __future__ import annotations

import argparse
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bench import speed
from minisbert import bert
from minisbert.batching import smart_batches
from minisbert.bert import BertAttention
from minisbert.fast.encode import _packed_embeddings
from minisbert.fast.packing import PackedBatch, packed_calls
from minisbert.sentence_encoder import _sentence_embeddings


def _dense_products(kernels: list[jax.Array], x: jax.Array) -> jax.Array:
    """Only the six dense products of each layer, chained so that none is optimised away.

    x: (B*T, D); per layer: q, k, v = x W_q, x W_k, x W_v; o = (q * k + v) W_o;
    h = o W_1 (D -> F); x = h W_2 (F -> D). The same FLOPs as BERT's products. (With q + k
    + v instead, XLA would rewrite x W_q + x W_k + x W_v as x (W_q + W_k + W_v): one product
    where BERT does three.)"""
    for layer in range(len(kernels) // 6):
        w_q, w_k, w_v, w_o, w_1, w_2 = kernels[6 * layer : 6 * layer + 6]
        o = ((x @ w_q) * (x @ w_k) + x @ w_v) @ w_o  # (B*T, D)
        x = (o @ w_1) @ w_2  # (B*T, F) -> (B*T, D)
    return x


def _attention_without_scores(self: BertAttention, x: jax.Array, attention_mask: jax.Array):
    """BertAttention with its scores, mask, softmax and mix taken out; the four dense
    products stay (context = q * k + v instead of softmax(q k^T) v)."""
    context = self.query(x) * self.key(x) + self.value(x)  # (B, T, D)
    return self.layer_norm(x + self.output_dropout(self.output(context)))


# What the forward pass is compiled without, in step 3: each patch is in force while jit
# traces the model, so the compiled program lacks that piece.
WITHOUT = {
    "GELU": lambda: mock.patch.object(bert, "gelu", lambda x: x),
    "LayerNorm": lambda: mock.patch.object(nnx.LayerNorm, "__call__", lambda self, x, **kw: x),
    "softmax": lambda: mock.patch.object(jax.nn, "softmax", lambda x, axis=-1: x),
    "attention scores, mask, softmax and mix": lambda: mock.patch.object(
        BertAttention, "__call__", _attention_without_scores
    ),
}


# encode's two programs: for packed rows, and for padded batches (the few long sentences)
JITTED = {"packed": _packed_embeddings, "padded": _sentence_embeddings}


def profile(encoder, sentences: list[str], batch_size: int = 32, repeats: int = 3) -> dict:
    """Seconds and FLOPs of encoding ``sentences``, split as the module docstring says."""
    config = encoder.model.config
    D, F, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    graphdef, state = nnx.split(encoder.model)
    kernels = []
    for layer in encoder.model.bert.layers:
        attention = layer.attention
        for linear in (
            attention.query,
            attention.key,
            attention.value,
            attention.output,
            layer.intermediate,
            layer.output,
        ):
            kernels.append(linear.kernel.get_value())
    dense = jax.jit(_dense_products)

    def host() -> list:  # encode's forward passes: packed calls, and padded batches
        token_ids = encoder.token_ids(sentences)
        plan = encoder.batcher.plan(encoder, [len(ids) for ids in token_ids], batch_size)
        pad = encoder.tokenizer.pad_token_id
        fit = [ids for ids in token_ids if len(ids) <= plan.row_length]  # 99% or more
        rest = [ids for ids in token_ids if len(ids) > plan.row_length]
        calls = packed_calls(fit, batch_size, plan.row_length, plan.mean_length, pad)
        batches = [batch for _, batch in calls]
        batches += smart_batches(rest, plan.rows, encoder.max_seq_length, pad,
                                 buckets=plan.buckets, rows=plan.rows)  # fmt: skip
        return batches

    def run(b, jitted=None) -> jax.Array:  # (B, D) or (n, D); jitted: its own programs
        if isinstance(b, PackedBatch):
            return (jitted or JITTED)["packed"](graphdef, state, b)
        return (jitted or JITTED)["padded"](graphdef, state, b.input_ids, b.attention_mask)

    batches = host()
    for b in batches:  # compile every shape first: the profile is of running, not compiling
        run(b).block_until_ready()
        dense(kernels, jnp.zeros((b.input_ids.size, D), jnp.float32)).block_until_ready()

    host_s = speed.best_time(host, repeats)

    def forward(jitted=None, which=None) -> None:
        for b in batches if which is None else which:
            run(b, jitted).block_until_ready()

    inputs = [jnp.ones((b.input_ids.size, D), jnp.float32) for b in batches]

    def products() -> None:
        for x in inputs:
            dense(kernels, x).block_until_ready()

    forward_s = speed.best_time(forward, repeats)
    dense_s = speed.best_time(products, repeats)
    # Step 3. piece -> (seconds with it, seconds without it), on a third of the batches,
    # timed one right after the other so that the machine's drift stays out of the
    # difference. Each jit wraps a new function: JAX reuses the trace of one it has seen.
    some = batches[: max(1, len(batches) // 3)]
    without_s = {}
    for piece, patch in WITHOUT.items():
        jitted = {
            kind: jax.jit(lambda *args, f=f.__wrapped__: f(*args), static_argnums=0)
            for kind, f in JITTED.items()
        }
        with patch():
            forward(jitted, some)  # traced and compiled under the patch
        with_it = speed.best_time(lambda: forward(None, some), repeats)
        without_s[piece] = (with_it, speed.best_time(lambda j=jitted: forward(j, some), repeats))
    encode_s = speed.best_time(lambda: encoder.encode(sentences, batch_size=batch_size), repeats)

    real = np.array([len(ids) for ids in encoder.token_ids(sentences)])
    useful = speed.sentence_flops(real, D, F, L)
    # Computed: every row in full, a packed row's attention over all its L x L pairs.
    padded = sum(
        speed.sentence_flops(np.full(b.input_ids.shape[0], b.input_ids.shape[1]), D, F, L)
        for b in batches
    )
    dense_flops = sum(b.input_ids.size * L * (8 * D * D + 4 * D * F) for b in batches)
    return {
        "encode_s": encode_s,
        "host_s": host_s,
        "forward_s": forward_s,
        "dense_s": dense_s,
        "without_s": without_s,
        "useful_flops": useful,
        "padded_flops": padded,
        "dense_flops": dense_flops,
        "shapes": sorted({b.input_ids.shape for b in batches}),
    }


def rows(p: dict, peak_gflops: float, n: int) -> list[tuple[str, float, str]]:
    """The profile as (measure, figure, unit) rows for the bench table."""
    return [
        ("profile: encode wall time, all sentences", p["encode_s"], "s"),
        ("profile:   tokenize, pack (host)", p["host_s"], "s"),
        ("profile:   forward passes, each run to completion", p["forward_s"], "s"),
        ("profile:     of which the 6 dense products per layer", p["dense_s"], "s"),
        *[
            (
                f"profile:     {piece}, as the pass gets faster without it",
                100 * (with_it - without) / with_it,
                "% of forward",
            )
            for piece, (with_it, without) in p["without_s"].items()
        ],
        (
            "profile: dense products alone, GFLOP/s / peak",
            100 * p["dense_flops"] / p["dense_s"] / 1e9 / peak_gflops,
            "%",
        ),
        (
            "profile: forward pass, computed GFLOP/s / peak",
            100 * p["padded_flops"] / p["forward_s"] / 1e9 / peak_gflops,
            "%",
        ),
        (
            "profile: useful FLOPs / computed FLOPs (padding)",
            100 * p["useful_flops"] / p["padded_flops"],
            "%",
        ),
        (
            "profile: sentences/s at 100% of peak, no padding",
            n / (p["useful_flops"] / (peak_gflops * 1e9)),
            "sent/s",
        ),
    ]


def training_profile(model_dir, batch_size: int = 16, n_steps: int = 60, repeats: int = 5) -> dict:
    """Where a training step's time goes, on the STS-b train batches ``make bench`` times.

    - slots: real tokens against the token slots of three layouts of the same batches:
      each side padded to its own longest sentence (sentence-transformers), both sides
      padded to one bucket (minisbert before packing), and minisbert's packed rows;
    - dropout: one step with dropout on (training) and off, at the median row bucket;
    - randomness: drawing that step's dropout masks alone (embeddings, attention
      probabilities and two hidden-state dropouts per layer).
    """
    from bench.training import stsb_training_data
    from minisbert.batching import bucket_length
    from minisbert.fast import use_16bit_dropout
    from minisbert.fast.buckets import ENCODE_BUCKETS
    from minisbert.fast.training import packed_train_step as train_step
    from minisbert.losses import cosine_similarity_loss
    from minisbert.optimizer import make_optimizer
    from minisbert.sentence_encoder import SentenceEncoder
    from minisbert.train import Trainable

    encoder = SentenceEncoder.from_pretrained(model_dir)
    use_16bit_dropout(encoder.model)  # as minisbert train's PackedSteps
    data, order, packed_batch = stsb_training_data(encoder.tokenizer, batch_size)
    real = own = padded = packed_slots = 0
    rows = []
    for i in range(n_steps):
        sides = [[len(ids) for ids in data.sentences(order, i, batch_size)[s::2]] for s in (0, 1)]
        longest = bucket_length(max(map(max, sides)), data.max_length, ENCODE_BUCKETS)
        real += sum(map(sum, sides))
        own += sum(batch_size * max(side) for side in sides)
        padded += 2 * batch_size * longest
        packed, _ = packed_batch(i)
        packed_slots += packed.input_ids.size
        rows.append(packed.input_ids.shape[0])
    R = int(np.median(rows))
    R = min(r for r in data.row_buckets if r >= R)
    L = data.row_length

    config = encoder.model.config
    N, D, layers = config.num_attention_heads, config.hidden_size, config.num_hidden_layers
    trainable = Trainable(encoder.model)
    optimizer = nnx.Optimizer(trainable, make_optimizer(2e-5, 10_000), wrt=nnx.Param)
    batch = next(
        b for b, _ in (packed_batch(i) for i in range(n_steps))
        if b.input_ids.shape[0] == R
    )  # fmt: skip
    labels = jnp.full((batch_size,), 0.5, jnp.float32)

    def step() -> None:
        train_step(trainable, optimizer, batch, labels, cosine_similarity_loss).block_until_ready()

    seconds = {}
    for mode in ("train", "eval"):
        getattr(trainable, mode)()
        step()  # compile
        seconds[mode] = speed.best_time(step, repeats)
    trainable.train()

    shapes = [(R, L, D)] + layers * [(R, N, L, L), (R, L, D), (R, L, D)]
    masks = jax.jit(
        lambda key: [
            jax.random.bernoulli(k, 0.9, shape)
            for k, shape in zip(jax.random.split(key, len(shapes)), shapes, strict=True)
        ]
    )
    jax.block_until_ready(masks(jax.random.key(0)))
    draw = speed.best_time(lambda: jax.block_until_ready(masks(jax.random.key(1))), repeats)
    return {
        "real": real,
        "own": own,
        "padded": padded,
        "packed": packed_slots,
        "R": R,
        "L": L,
        "train_s": seconds["train"],
        "eval_s": seconds["eval"],
        "masks_s": draw,
        "mask_values": sum(int(np.prod(s)) for s in shapes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--train", action="store_true", help="profile a training step instead")
    args = parser.parse_args()

    if args.train:
        from minisbert.sentence_encoder import resolve_model_dir

        t = training_profile(resolve_model_dir(args.model))
        print("STS-b train, batches of 16 pairs (the batches make bench times)")
        print(
            f"  real tokens {t['real']:,}; token slots: each side padded to its own longest "
            f"{t['own']:,} ({t['real'] / t['own']:.0%} useful), both sides to one bucket "
            f"{t['padded']:,} ({t['real'] / t['padded']:.0%}), minisbert's packed rows "
            f"{t['packed']:,} ({t['real'] / t['packed']:.0%})"
        )
        print(
            f"  one step of {t['R']} rows of {t['L']}: {1000 * t['train_s']:.0f} ms with "
            f"dropout, {1000 * t['eval_s']:.0f} ms without"
        )
        print(
            f"  drawing its dropout masks alone ({t['mask_values'] / 1e6:.1f} M values): "
            f"{1000 * t['masks_s']:.0f} ms"
        )
        return

    from minisbert import FastEncoder as SentenceEncoder  # the command's encoder: packed
    from minisbert.data import load_dataset

    encoder = SentenceEncoder.from_pretrained(args.model)
    pairs = load_dataset("stsb", "test")
    sentences = [p.sentence1 for p in pairs] + [p.sentence2 for p in pairs]
    peak = speed.matmul_peak_gflops()
    p = profile(encoder, sentences, args.batch_size)
    print(f"{len(sentences)} STS-b test sentences, batch {args.batch_size}, shapes {p['shapes']}")
    print(f"  {'matmul peak, 2048^2 float32':52s} {peak:10.1f} GFLOP/s")
    for name, value, unit in rows(p, peak, len(sentences)):
        print(f"  {name:52s} {value:10.2f} {unit}")


if __name__ == "__main__":
    main()

"""Fine-tuning: the siamese train step, the optimiser, and the loop that runs them.

Shapes: S sides of an example (2 for pairs, 3 for triplets), B batch, T tokens, D hidden;
R rows of L tokens in a packed batch.

One step (``train_step``), for a batch of pairs (u side, v side) or triplets:

    e_s  = model(input_ids[s], attention_mask[s])        s = 1..S, the SAME module each time
    loss = loss_fn([classifier,] e_1, ..., e_S, [labels])
    g    = grad(loss) * min(1, 1 / ||grad(loss)||)        gradient clipped at global norm 1
    AdamW: theta <- theta - lr(t) (m_hat / (sqrt(v_hat) + 1e-8) + 0.01 theta)

Calling one module on every side is what makes the network *siamese*: u and v come from
the same weights, and the gradient of both sides flows into them. (``train_step`` gets the
same e_s from one call on all sides' sentences packed into rows; see **Batches**.) The
SoftmaxClassifier of the NLI objective is trained with the encoder (it is part of
``Trainable``) and then thrown away, as in the paper.

These are sentence-transformers' ``fit`` defaults: AdamW, lr 2e-5, weight decay 0.01 on
everything except biases and LayerNorm parameters, gradient norm clipped at 1, and
"WarmupLinear": the learning rate climbs from 0 over the warm-up steps W (10% of all N
steps, as in its STS and NLI training examples) and falls linearly back to 0:

    lr(t) = lr * max(0, min(t / W, (N - t) / (N - W)))

**Your own loss.** ``train(config, loss_fn=f)`` trains with ``f`` instead of the registry
loss named by ``config.loss``; ``config.loss`` still says which data ``f`` gets and how it
is called, so ``f`` must take the same arguments: ``f(u, v, scores)`` for cosine/cosent,
``f(u, v, labels)`` for contrastive, ``f(classifier, u, v, labels)`` for softmax,
``f(anchor, positive, negative)`` for triplet/mnrl (``f(anchor, positive)`` for mnrl on
unlabelled pairs). ``f`` must be jittable and return a scalar. Options are bound with
``functools.partial(f, margin=0.3)``.

**Batches.** Each epoch visits the examples in an order drawn from
``numpy.random.default_rng([seed, epoch])``; the short last batch is dropped, so every
batch has B examples. ``compute_loss`` shows the step on a plain padded batch, (S, B, T):
that is the clear version, and what a lesson reads. ``train_step`` computes the same loss
on the batch's S * B sentences *packed* several to a row (``minisbert.packing``): the
shuffled pairs are not sorted by length, so a padded batch is mostly padding (an epoch of
STS-b train, each side padded to its own longest sentence, computes 2.2 token slots per
real token) and a packed one little (1.1). The row length L is
fixed for the run (the bucket of its longest sentence); the number of rows R is rounded
up to buckets chosen once per run from the rows every batch needs
(``minisbert.batching.choose_buckets``): at most 8, each costing as much as
``COMPILE_STEPS`` steps of its rows would, so a long run gets fine buckets and a short
one few. jit compiles one program per bucket.

**Determinism.** The same config and seed give bit-identical losses and weights on the same
machine (the shuffle, the dropout keys and the classifier all come from ``seed``). Another
CPU or jaxlib may round float sums in another order, so the last bits can differ.

Checkpoints and the output folder are ``minisbert.checkpoint``'s; the device mesh is
``minisbert.sharding``'s.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from minisbert import checkpoint, host_memory, run_guard, sharding
from minisbert.batching import ENCODE_BUCKETS, bucket_length, choose_buckets
from minisbert.data import DataError, PairExample, TripletExample, load_dataset
from minisbert.evaluate import evaluate_binary, evaluate_sts, evaluate_triplets
from minisbert.losses import DATA_KINDS, SoftmaxClassifier, get_loss
from minisbert.packing import PackedBatch, pack, rows_needed
from minisbert.sentence_encoder import SentenceEncoder, SentenceModel, resolve_model_dir
from minisbert.tokenizer import Tokenizer

LossFn = Callable[..., jax.Array]


class TrainingError(RuntimeError):
    """Training cannot go on: a NaN or infinite loss, or a resume that does not fit the run."""


# The learning rate of a loss's own, randomly initialised parameters (the softmax head),
# chosen on pairs held out of SNLI dev: see SoftmaxClassifier and bench/results/nli-ablation-*.
HEAD_LR = 3e-2


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run. Defaults: the SBERT paper's STS fine-tuning."""

    model: str = "all-MiniLM-L6-v2"  # a folder, or a name under weights/
    data: str = "stsb"  # stsb, sick, sick-nli, snli, snli-triplets, or a file
    loss: str = "cosine"  # a name in minisbert.losses.REGISTRY, or FILE.py:FUNCTION
    output: str = "runs/stsb"
    split: str = "train"
    epochs: int = 1
    batch_size: int = 16  # B, global: split across devices
    lr: float = 2e-5  # the encoder's
    head_lr: float | None = HEAD_LR  # a loss's own parameters (softmax head); None: lr
    probe_steps: int = 0  # the first steps train the head alone (encoder frozen)
    seed: int = 0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_steps: int | None = None  # stop after this many steps (the schedule ends there too)
    margin: float | None = None  # None: the loss's own default
    scale: float | None = None
    distance: str | None = None
    concat: tuple[str, ...] = ("u", "v", "abs_diff")  # softmax features; the paper's ablation
    eval_data: str = "auto"  # auto, none, a dataset name or a file; split "dev"
    eval_steps: int = 0  # evaluate every this many steps (0: only at the end)
    checkpoint_steps: int = 500
    keep_checkpoints: int = 2
    resume: bool = False
    progress: bool = True
    overwrite: bool = False  # write into a non-empty --output that no run made (run_guard)
    allow_data_change: bool = False  # let --resume continue on a changed data file

    # Fields that change the numbers: a resumed run must keep them.
    MATH_FIELDS = (
        "model", "data", "loss", "split", "epochs", "batch_size", "lr", "head_lr", "probe_steps",
        "seed", "warmup_ratio",
        "weight_decay", "max_grad_norm", "max_steps", "margin", "scale", "distance", "concat",
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_settings(self)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["concat"] = list(self.concat)
        return values


def _integer(low: int, high: float = math.inf) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v < high


def _number(low: float, high: float = math.inf, *, above: bool = False) -> Callable[[Any], bool]:
    """A finite number in [low, high], or in (low, high] when ``above``."""

    def ok(v: Any) -> bool:
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            return False
        return (v > low if above else v >= low) and v <= high

    return ok


# The range of every numeric setting. lr * weight_decay <= 1 keeps AdamW's decay
# (theta <- theta - lr * wd * theta) from overshooting zero; the seed must fit the 32 bits
# jax.random.key keeps (2**32 would give seed 0's dropout).
SETTING_RANGES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "epochs": ("an integer >= 1", _integer(1)),
    "batch_size": ("an integer >= 1", _integer(1)),
    "lr": ("a number in (0, 1]", _number(0, 1, above=True)),
    "head_lr": ("a number in (0, 1], or None for lr ('same')", _number(0, 1, above=True)),
    "probe_steps": ("an integer >= 0", _integer(0)),
    "seed": ("an integer in [0, 2**32)", _integer(0, 2**32)),
    "warmup_ratio": ("a number in [0, 1]", _number(0, 1)),
    "weight_decay": ("a number in [0, 1]", _number(0, 1)),
    "max_grad_norm": ("a number > 0", _number(0, above=True)),
    "max_steps": ("an integer >= 1, or None for all epochs", _integer(1)),
    "margin": ("a number >= 0, or None for the loss's default", _number(0)),
    "scale": ("a number > 0, or None for the loss's default", _number(0, above=True)),
    "eval_steps": ("an integer >= 0 (0: evaluate at the end only)", _integer(0)),
    "checkpoint_steps": ("an integer >= 1", _integer(1)),
    "keep_checkpoints": ("an integer >= 1", _integer(1)),
}
NAME_SETTINGS = ("model", "data", "loss", "output", "split", "eval_data")  # non-empty text


def check_settings(config: TrainConfig) -> None:
    """Refuse a setting outside its range, in one line naming it, its value and the range:
    before any work, and before a bad value turns into a ZeroDivisionError or a NaN model."""

    def refuse(name: str, allowed: str) -> ValueError:
        value = getattr(config, name)
        flag = "--" + name.replace("_", "-")
        return ValueError(f"{name}={value!r} ({flag}): must be {allowed}")

    for name, (allowed, ok) in SETTING_RANGES.items():
        value = getattr(config, name)
        may_be_none = name == "head_lr" or TrainConfig.__dataclass_fields__[name].default is None
        if not (ok(value) or (value is None and may_be_none)):
            raise refuse(name, allowed)
    for name in NAME_SETTINGS:
        if not isinstance(getattr(config, name), str) or not getattr(config, name).strip():
            raise refuse(name, "a non-empty string")
    if not config.concat:
        raise refuse("concat", "one or more of u, v, abs_diff, mul")


@dataclasses.dataclass
class TrainResult:
    output: Path
    steps: int  # steps done, in total
    losses: list[float]  # one per step run by this call
    metrics: dict[str, float]  # the final evaluation, if any
    seconds_per_step: float  # median wall time of a step (compiling steps are the outliers)


class Trainable(nnx.Module):
    """Everything the optimiser updates: the sentence model and, for softmax, its classifier."""

    def __init__(self, model: SentenceModel, classifier: SoftmaxClassifier | None = None):
        self.model = model
        self.classifier = classifier


# ---------------------------------------------------------------- which data each loss needs

def data_kinds(examples: list[Any]) -> set[str]:
    """The kinds of training data ``examples`` are (keys of ``losses.DATA_KINDS``)."""
    if all(isinstance(e, TripletExample) for e in examples):
        return {"triplets"}
    labels = [e.label for e in examples]
    if all(label is None for label in labels):
        return {"unlabelled pairs"}
    if all(isinstance(label, int) for label in labels):
        return {"class pairs", "0/1 pairs"} if set(labels) <= {0, 1} else {"class pairs"}
    if all(isinstance(label, float) for label in labels):
        return {"scored pairs"}
    raise DataError("the examples mix labelled and unlabelled pairs, or scores and classes")


@dataclasses.dataclass
class TrainingData:
    """Token ids of every side of every example, and the labels, ready to batch."""

    sides: list[list[list[int]]]  # S columns, each N lists of token ids
    labels: np.ndarray | None  # (N,) float32 scores or int32 classes; None if unlabelled
    max_length: int
    pad_token_id: int
    num_classes: int = 0  # C, for softmax
    fingerprint: str = ""  # sha256 of the examples as loaded, checked by --resume
    row_length: int = 0  # L of packed rows; plan_rows() sets it and row_buckets for a run
    row_buckets: tuple[int, ...] = ()  # the numbers of rows R that batches are packed into

    def __len__(self) -> int:
        return len(self.sides[0])

    def sentences(self, order: np.ndarray, index: int, batch_size: int) -> list[list[int]]:
        """The S * B token-id lists of batch ``index`` of an epoch, side after side."""
        rows = order[index * batch_size : (index + 1) * batch_size]  # (B,)
        return [side[i] for side in self.sides for i in rows]

    def rows_needed(self, order: np.ndarray, batch_size: int) -> np.ndarray:  # (n_batches,)
        """The packed rows of length ``row_length`` each whole batch of an epoch needs."""
        batches = range(len(order) // batch_size)
        lengths = ([len(ids) for ids in self.sentences(order, i, batch_size)] for i in batches)
        return np.array([rows_needed(batch, self.row_length) for batch in lengths])

    def batch(
        self, order: np.ndarray, index: int, batch_size: int
    ) -> tuple[PackedBatch, np.ndarray | None]:
        """Batch ``index`` of an epoch, packed: rows (R, L), sentences (S, B, L); labels (B,)."""
        sentences = self.sentences(order, index, batch_size)  # S * B lists
        needed = rows_needed([len(ids) for ids in sentences], self.row_length)
        R = bucket_length(needed, self.row_buckets[-1], self.row_buckets)
        packed = pack(sentences, self.row_length, R, self.pad_token_id)
        S, L = len(self.sides), self.row_length
        packed = packed._replace(
            token_index=packed.token_index.reshape(S, batch_size, L),  # (S, B, L)
            token_mask=packed.token_mask.reshape(S, batch_size, L),
        )
        rows = order[index * batch_size : (index + 1) * batch_size]  # (B,)
        labels = None if self.labels is None else self.labels[rows]  # (B,)
        return packed, labels


def load_training_data(config: TrainConfig, tokenizer: Tokenizer) -> TrainingData:
    """Load ``config.data``, check that ``config.loss`` can train on it, and tokenize it.

    stsb and sick scores are rescaled to [0, 1] (cosine compares them with cos(u, v)).
    Contrastive losses need 0/1 labels and are refused on scored data: minisbert does not
    invent a threshold that turns a similarity score into "similar" / "dissimilar".
    """
    loss = get_loss(config.loss)
    examples = load_dataset(config.data, config.split, normalize=True)
    if not examples:
        raise DataError(f"--data {config.data} ({config.split}) has no examples")
    kinds = data_kinds(examples)
    needs = loss.data
    if not kinds & set(needs):
        wanted = "; or ".join(f"{kind} ({DATA_KINDS[kind]})" for kind in needs)
        raise ValueError(
            f"--loss {config.loss} needs {wanted}. --data {config.data} gives "
            f"{' / '.join(sorted(kinds))}"
            + ("; for scores use --loss cosine or cosent" if "scored pairs" in kinds else "")
        )
    if isinstance(examples[0], TripletExample):
        columns = [[e.anchor for e in examples], [e.positive for e in examples],
                   [e.negative for e in examples]]  # fmt: skip
        labels = None
    else:
        columns = [[e.sentence1 for e in examples], [e.sentence2 for e in examples]]
        labels = _labels(examples, config)
    return TrainingData(
        sides=[tokenizer.tokenize(column) for column in columns],
        labels=labels,
        max_length=tokenizer.max_seq_length,
        pad_token_id=tokenizer.pad_token_id,
        num_classes=int(labels.max()) + 1 if loss.head else 0,  # type: ignore[union-attr]
        fingerprint=checkpoint.data_fingerprint(examples),
    )


def _labels(examples: list[PairExample], config: TrainConfig) -> np.ndarray | None:  # (N,)
    """The labels as an array, refused (naming the row) where the loss cannot train on them."""
    if examples[0].label is None:
        return None

    def row(i: int) -> str:  # where example i came from
        line = examples[i].line
        return f"--data {config.data}" + (f", line {line}" if line else f", example {i + 1}")

    if isinstance(examples[0].label, int):
        classes = np.array([e.label for e in examples], dtype=np.int32)
        head = get_loss(config.loss).head
        if head and classes.min() < 0:
            i = int(np.argmin(classes))
            raise DataError(f"{row(i)}: label {classes[i]} is negative; class ids are 0..C-1")
        missing = sorted(set(range(classes.max())) - set(classes.tolist()))
        if head and missing:  # a typo such as 11 for 1 makes 12 classes
            i = int(np.argmax(classes))
            raise DataError(
                f"{row(i)}: label {classes[i]} is the largest class id, but no example has class "
                f"{', '.join(map(str, missing[:5]))}: --loss softmax needs class ids 0..C-1, "
                "each with examples; fix or renumber the labels"
            )
        return classes
    scores = np.array([e.label for e in examples], dtype=np.float32)
    outside = np.flatnonzero((scores < 0) | (scores > 1))
    if config.loss == "cosine" and outside.size:
        i = int(outside[0])
        raise DataError(
            f"{row(i)}: score {scores[i]:g} is outside [0, 1]. --loss cosine regresses "
            f"cos(u, v) onto the score, so scores must lie in [0, 1]; these lie in "
            f"[{scores.min():g}, {scores.max():g}]: rescale them"
        )
    return scores


def make_loss(config: TrainConfig, loss_fn: LossFn | None = None) -> LossFn:
    """The loss to train with: ``loss_fn`` or the registry's, with --margin/--scale/--distance."""
    registered = get_loss(config.loss)
    base = loss_fn if loss_fn is not None else registered.function
    options = {
        name: value
        for name in ("margin", "scale", "distance")
        if (value := getattr(config, name)) is not None
    }
    if options and loss_fn is None:
        accepted = inspect.signature(base).parameters
        unused = [name for name in options if name not in accepted]
        if unused:
            raise ValueError(f"--{unused[0]} does not apply to --loss {config.loss}")
    if registered.on_batch is not None:
        return functools.partial(registered.on_batch, loss_fn=base, **options)
    return functools.partial(base, **options) if options else base


def eval_examples(config: TrainConfig) -> tuple[str, list[Any], Callable[..., dict]] | None:
    """What to evaluate on: ``(name, dev examples, evaluator)``, or None.

    "auto" is the SBERT paper's choice, STS benchmark dev (SICK dev when training on SICK),
    skipped quietly when the data folder lacks it.
    """
    name = config.eval_data
    if name == "none":
        return None
    if name == "auto":
        name = "sick" if config.data == "sick" else "stsb"
        try:
            examples = load_dataset(name, "dev")
        except DataError:
            return None
    else:
        examples = load_dataset(name, "dev")
    kinds = data_kinds(examples)
    if "triplets" in kinds:
        return name, examples, evaluate_triplets
    if "scored pairs" in kinds:
        return name, examples, evaluate_sts
    if "0/1 pairs" in kinds:
        return name, examples, evaluate_binary
    raise DataError(f"--eval-data {name}: no evaluator for {' / '.join(sorted(kinds))}")


# ---------------------------------------------------------------- the step


def compute_loss(
    trainable: Trainable,
    input_ids: jax.Array,  # (S, B, T)
    attention_mask: jax.Array,  # (S, B, T)
    labels: jax.Array | None,  # (B,) or None
    loss_fn: LossFn,
) -> jax.Array:  # ()
    """Embed every side with the same model, then hand the embeddings to the loss."""
    sides = [trainable.model(input_ids[s], attention_mask[s]) for s in range(input_ids.shape[0])]
    head = [trainable.classifier] if trainable.classifier is not None else []
    tail = [labels] if labels is not None else []
    return loss_fn(*head, *sides, *tail)  # each side (B, D)


def compute_packed_loss(
    trainable: Trainable,
    batch: PackedBatch,  # rows (R, L); token_index and token_mask (S, B, L)
    labels: jax.Array | None,  # (B,) or None
    loss_fn: LossFn,
) -> jax.Array:  # ()
    """``compute_loss`` on a packed batch: the same sentence vectors, from fewer token slots."""
    S, B, L = batch.token_index.shape
    flat = batch._replace(
        token_index=batch.token_index.reshape(S * B, L),
        token_mask=batch.token_mask.reshape(S * B, L),
    )
    embeddings = trainable.model.embed_packed(flat).reshape(S, B, -1)  # (S, B, D)
    head = [trainable.classifier] if trainable.classifier is not None else []
    tail = [labels] if labels is not None else []
    return loss_fn(*head, *embeddings, *tail)  # each side (B, D)


# Donating the model and the optimiser lets XLA write the new parameters and Adam's moments
# over the old ones instead of into new buffers (the arrays passed in are deleted).
@nnx.jit(static_argnames=("loss_fn",), donate_argnames=("trainable", "optimizer"))
def train_step(
    trainable: Trainable,
    optimizer: nnx.Optimizer,
    batch: PackedBatch,  # rows (R, L); token_index and token_mask (S, B, L)
    labels: jax.Array | None,  # (B,)
    loss_fn: LossFn,
) -> jax.Array:  # () the loss before the update
    """One optimiser step. Updates ``trainable`` and ``optimizer`` in place (nnx.jit does)."""

    def loss_of(t: Trainable) -> jax.Array:
        return compute_packed_loss(t, batch, labels, loss_fn)

    loss, grads = nnx.value_and_grad(loss_of)(trainable)  # grads: same tree as the Params
    optimizer.update(trainable, grads)
    return loss


# ---------------------------------------------------------------- the optimiser


def warmup_linear(lr: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
    """lr(t) = lr * max(0, min(t / W, (N - t) / (N - W))); the update at step t uses lr(t)."""

    def schedule(count: jax.Array) -> jax.Array:
        t = jnp.asarray(count, jnp.float32)
        warm = t / warmup_steps if warmup_steps > 0 else 1.0
        decay = (total_steps - t) / max(total_steps - warmup_steps, 1)
        return lr * jnp.maximum(0.0, jnp.minimum(warm, decay))

    return schedule


def group_schedule(lr: float, total_steps: int, start: int, warmup_ratio: float) -> optax.Schedule:
    """0 until step ``start``, then warm-up-linear over the remaining steps."""
    steps = total_steps - start
    schedule = warmup_linear(lr, math.ceil(warmup_ratio * steps), steps)
    if not start:
        return schedule
    return optax.join_schedules([optax.constant_schedule(0.0), schedule], [start])


def decays(params: Any) -> Any:
    """Weight-decay mask: True for kernels and embedding tables, False for biases and LayerNorm.

    sentence-transformers excludes names containing "bias", "LayerNorm.weight" and
    "LayerNorm.bias"; in minisbert's names those are exactly the ``bias`` and ``scale``
    leaves, so "decay kernels and embeddings" is the same set.
    """

    def leaf_decays(path: tuple, _: Any) -> bool:
        names = [p.key for p in path if isinstance(p, jax.tree_util.DictKey)]
        return names[-1] in ("kernel", "embedding")

    return jax.tree_util.tree_map_with_path(leaf_decays, params)


def is_head(params: Any) -> Any:
    """Parameter-group labels: "head" for a loss's own parameters (``Trainable.classifier``),
    "encoder" for the sentence model's."""

    def label(path: tuple, _: Any) -> str:
        names = [p.key for p in path if isinstance(p, jax.tree_util.DictKey)]
        return "head" if names[0] == "classifier" else "encoder"

    return jax.tree_util.tree_map_with_path(label, params)


@functools.cache
def make_optimizer(
    lr: float,
    total_steps: int,
    *,
    head_lr: float | None = None,
    probe_steps: int = 0,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
) -> optax.GradientTransformation:
    """Clip at global norm, then AdamW with a warm-up-linear schedule and masked weight decay.

    With ``head_lr``, two parameter groups: the encoder learns at ``lr``, a loss's own
    parameters (the softmax head, which starts random) at ``head_lr``, each with its own
    warm-up-linear schedule (as torch's AdamW with two parameter groups); the clipping
    still sees one global norm over both, as in torch.
    With ``probe_steps`` P the encoder's rate is 0 for the first P steps (the head alone
    learns: a linear probe, then fine-tuning, as in Kumar et al. 2022), and its warm-up
    and decay then run over the remaining steps.

    Cached: ``nnx.Optimizer`` keeps the transformation as static structure, so a new but
    identical one would make ``nnx.jit`` compile the train step again; the same arguments
    now give the same object.
    """

    def rate(peak: float, start: int) -> optax.GradientTransformation:
        return optax.scale_by_learning_rate(group_schedule(peak, total_steps, start, warmup_ratio))

    # optax.adamw is exactly this chain: Adam's step, plus decoupled weight decay, times -lr(t).
    adam = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)  # torch.optim.AdamW's defaults
    decay = optax.add_decayed_weights(weight_decay, mask=decays)
    if head_lr is None:
        rates = rate(lr, probe_steps)
    else:  # only the last factor differs per group, so Adam's moments stay one tree
        rates = optax.multi_transform(
            {"encoder": rate(lr, probe_steps), "head": rate(head_lr, 0)}, is_head
        )
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.chain(adam, decay, rates))


# Compiling a train step (10-30 s on a CPU) costs about as much as running this many steps.
COMPILE_STEPS = 30


def plan_rows(data: TrainingData, row_counts: Any, devices: int = 1) -> None:
    """Choose the row counts R that a run's batches are packed into, for batches needing
    ``row_counts`` rows (one per step): at most 8, each a multiple of ``devices`` so that
    every device gets whole rows, and a new one only where the rows it saves outweigh
    compiling for it."""
    row_counts = [int(n) for n in row_counts]
    most = -(-max(row_counts, default=1) // devices) * devices  # rounded up to whole devices
    candidates = list(range(devices, most + 1, devices))
    compile_cost = COMPILE_STEPS * float(np.median(row_counts)) if row_counts else 0.0
    data.row_buckets = choose_buckets(row_counts, most, candidates, compile_cost=compile_cost)


def set_row_length(data: TrainingData) -> None:
    """L: the bucket of the longest sentence of any side, so that every sentence fits a row."""
    longest = max(len(ids) for side in data.sides for ids in side)
    data.row_length = bucket_length(longest, data.max_length, ENCODE_BUCKETS)


def seed_dropout(model: nnx.Module, seed: int) -> None:
    """Give every dropout layer its own key, derived from ``seed``, and reset its counter."""
    streams = [node for _, node in nnx.iter_graph(model) if isinstance(node, nnx.RngStream)]
    for i, stream in enumerate(streams):
        stream.key.set_value(jax.random.fold_in(jax.random.key(seed), i))
        stream.count.set_value(jnp.zeros((), jnp.uint32))


# ---------------------------------------------------------------- the loop


def train(
    config: TrainConfig,
    *,
    loss_fn: LossFn | None = None,
    devices: list[jax.Device] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data``; the trained model ends in ``config.output``.

    ``loss_fn`` replaces the registry loss (see the module docstring). ``on_step(step,
    loss)`` is called after every step; raising in it stops the run as a crash would.

    ``minisbert.run_guard`` guards the run: --output must be empty, this run's own, or
    ``config.overwrite`` (never the --model folder); one run per folder at a time; SIGINT
    and SIGTERM stop it before the next step with ``TrainingInterrupted``.
    """
    base_dir = resolve_model_dir(config.model)
    run_guard.check_output(Path(config.output).expanduser(), base_dir, config.overwrite)
    output = checkpoint.prepare_output(config.output)  # fails before any work if unwritable
    with run_guard.RunGuard(output, base_dir, config) as guard:
        return _train(config, output, base_dir, guard, loss_fn, devices, on_step)


def _train(
    config: TrainConfig,
    output: Path,
    base_dir: Path,
    guard: run_guard.RunGuard,
    loss_fn: LossFn | None,
    devices: list[jax.Device] | None,
    on_step: Callable[[int, float], None] | None,
) -> TrainResult:
    host_memory.keep_freed_memory()  # before JAX computes: see minisbert.host_memory
    folder = output / checkpoint.CHECKPOINTS
    saved = checkpoint.latest_checkpoint(folder)
    if saved is not None and not config.resume:
        raise TrainingError(
            f"{output} already holds checkpoints of a run ({saved.name}); pass --resume to "
            "continue it, or choose another --output"
        )
    if config.resume:  # the newest checkpoint that matches its manifest
        saved = checkpoint.verified_checkpoint(folder)
    encoder = SentenceEncoder.from_pretrained(base_dir)
    data = load_training_data(config, encoder.tokenizer)
    loss_fn = make_loss(config, loss_fn)
    evaluation = eval_examples(config)

    mesh = sharding.make_mesh(devices)
    sharding.check_batch_size(config.batch_size, mesh)
    steps_per_epoch = len(data) // config.batch_size  # the short last batch is dropped
    if steps_per_epoch == 0:
        raise ValueError(f"{len(data)} examples make no batch of {config.batch_size}")
    total = config.epochs * steps_per_epoch
    total = min(total, config.max_steps) if config.max_steps else total
    epochs_seen = range(math.ceil(total / steps_per_epoch))
    set_row_length(data)
    row_counts = np.concatenate(
        [
            data.rows_needed(epoch_order(config.seed, e, len(data)), config.batch_size)
            for e in epochs_seen
        ]
    )[:total]  # (total,) one per step
    plan_rows(data, row_counts, mesh.size)

    classifier = None
    if get_loss(config.loss).head:
        classifier = SoftmaxClassifier(
            encoder.dim, data.num_classes, concat=config.concat, rngs=nnx.Rngs(config.seed)
        )
    trainable = Trainable(encoder.model, classifier)
    seed_dropout(trainable, config.seed)
    # A loss's own parameters (the softmax head) start random: they get their own rate.
    head_lr = None
    if classifier is not None and (config.head_lr is not None or config.probe_steps):
        head_lr = config.head_lr if config.head_lr is not None else config.lr
    if config.probe_steps and (classifier is None or config.probe_steps >= total):
        raise ValueError(
            f"--probe-steps {config.probe_steps} needs a loss with its own parameters "
            f"(--loss softmax) and fewer steps than the run's {total}"
        )
    tx = make_optimizer(
        config.lr, total, head_lr=head_lr, probe_steps=config.probe_steps,
        warmup_ratio=config.warmup_ratio, weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
    )  # fmt: skip
    optimizer = nnx.Optimizer(trainable, tx, wrt=nnx.Param)
    # At most keep_checkpoints + 1 checkpoints (parameters and Adam's moments) exist at once,
    # then the model: a full disk fails now, not after an hour of training.
    params_bytes = sum(x.nbytes for x in jax.tree.leaves(nnx.state(trainable, nnx.Param)))
    state_bytes = params_bytes + sum(x.nbytes for x in jax.tree.leaves(nnx.state(optimizer)))
    keep = max(config.keep_checkpoints, 1) + 1
    checkpoint.check_free_space(output, keep * state_bytes + params_bytes)
    start = 0
    if config.resume and saved is None:
        print(f"--resume: no complete checkpoint in {folder}; starting from step 0")
    if config.resume and saved is not None:
        state = checkpoint.read_state(saved)
        _check_same_run(config, state, saved, data.fingerprint)
        checkpoint.restore_checkpoint(saved, trainable, optimizer)
        start = state["step"]
    nnx.update(trainable, sharding.replicate(nnx.state(trainable), mesh))
    nnx.update(optimizer, sharding.replicate(nnx.state(optimizer), mesh))

    schedule = group_schedule(config.lr, total, config.probe_steps, config.warmup_ratio)
    progress = _progress(total, start, config.progress)
    losses: list[float] = []
    times: list[float] = []
    last_good = saved if config.resume else None
    trainable.train()  # dropout on
    for step in range(start, total):
        if guard.stop_requested:  # Ctrl-C or SIGTERM: stop here, between two steps
            progress.close()
            raise guard.interrupted(step, total, last_good)
        epoch, index = divmod(step, steps_per_epoch)
        began = time.perf_counter()
        packed, labels = data.batch(
            epoch_order(config.seed, epoch, len(data)), index, config.batch_size
        )
        packed, labels = sharding.shard_packed(packed, labels, mesh)
        loss = float(train_step(trainable, optimizer, packed, labels, loss_fn))
        times.append(time.perf_counter() - began)
        if not math.isfinite(loss):
            where = last_good if last_good is not None else "none (no checkpoint written yet)"
            raise TrainingError(
                f"the loss is {loss} at step {step + 1} (epoch {epoch + 1}, batch index {index} "
                f"in the epoch); stopped without saving. Last good checkpoint: {where}"
            )
        losses.append(loss)
        progress.set_postfix(loss=f"{loss:.4f}", lr=f"{float(schedule(step)):.2e}", refresh=False)
        progress.update(1)
        done = step + 1
        if config.eval_steps and done % config.eval_steps == 0 and done < total:
            progress.write(f"step {done}: {_evaluate(trainable, encoder, evaluation)}")
        if done % config.checkpoint_steps == 0 or done == total:
            try:
                last_good = checkpoint.save_checkpoint(
                    folder, done, trainable, optimizer,
                    {"epoch": done // steps_per_epoch, "batch_in_epoch": done % steps_per_epoch,
                     "steps_per_epoch": steps_per_epoch, "total_steps": total,
                     "shuffle": {"seed": config.seed, "rule": "default_rng([seed, epoch])"},
                     "num_classes": data.num_classes, "loss_value": loss,
                     "data_sha256": data.fingerprint, "config": config.to_dict()},
                )  # fmt: skip
            except checkpoint.NonFiniteWeights as err:
                raise TrainingError(
                    f"{err}: training diverged; stopped without saving. Last good checkpoint: "
                    f"{last_good if last_good is not None else 'none'}"
                ) from None
            except OSError as err:  # a full disk, most often
                where = last_good if last_good is not None else "none"
                raise checkpoint.OutputError(
                    f"could not write the checkpoint of step {done} ({err}). Last complete "
                    f"checkpoint: {where}; free some space, then run again with --resume"
                ) from None
            checkpoint.prune_checkpoints(folder, config.keep_checkpoints)
        if on_step is not None:
            on_step(done, loss)
    progress.close()
    if guard.stop_requested:
        raise guard.interrupted(total, total, last_good)

    metrics = _evaluate(trainable, encoder, evaluation)
    if metrics:
        print(f"final evaluation: {metrics}")
    checkpoint.save_model(output, trainable.model, base_dir, trainable.classifier)
    # The median step: the few steps that compile a new bucket shape do not count.
    return TrainResult(output, total, losses, metrics, float(np.median(times)) if times else 0.0)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:  # (n,)
    """The shuffled order of epoch ``epoch``: a function of (seed, epoch) alone, so resumable."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _evaluate(trainable: Trainable, encoder: SentenceEncoder, evaluation: Any) -> dict[str, float]:
    """Evaluate with dropout off, then switch it back on."""
    if evaluation is None:
        return {}
    name, examples, evaluate = evaluation
    metrics = evaluate(SentenceEncoder(trainable.model, encoder.tokenizer), examples)
    trainable.train()
    return {f"{Path(name).stem}_{k}": round(v, 4) for k, v in metrics.items()}


def _check_same_run(
    config: TrainConfig, state: dict[str, Any], path: Path, fingerprint: str
) -> None:
    """Refuse to resume ``path`` (whose state.json is ``state``) with other settings or data."""
    now, saved = config.to_dict(), state["config"]
    for name in TrainConfig.MATH_FIELDS:
        if now[name] != saved.get(name):
            raise TrainingError(
                f"--resume: {path} was trained with {name}={saved.get(name)!r}, this command "
                f"has {name}={now[name]!r}; resume with the same settings"
            )
    before = state.get("data_sha256", fingerprint)  # older checkpoints lack it
    if before != fingerprint and not config.allow_data_change:
        raise TrainingError(
            f"--resume: the training data --data {config.data} changed since {path} (sha256 of "
            f"its examples {before[:12]}... then, {fingerprint[:12]}... now); restore it, or "
            "pass --allow-data-change to go on with the new data"
        )


def _progress(total: int, start: int, show: bool) -> Any:
    # The plain text bar: tqdm.auto would want ipywidgets in a notebook and warn without it.
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="Training", unit="step", disable=not show)

"""What decides a training run: ``TrainConfig``, one table of every setting, each checked.

Each field of ``TrainConfig`` is a row of the table: beside its default stand its help, its
range, and how the command line spells and parses it (a ``Setting``). Everything that
offers or reads a setting reads this row: ``minisbert train``'s flags are made from it and
the config is made back from the parsed flags by it (cli.py), a value outside the range is
refused by it (``check_settings``), and the ``--resume`` command an interrupted run prints
spells its flags by it (``flag_words``, run_guard.py). So a default, a help text or a flag
is written once, and none of them can drift from the others.

The defaults are the SBERT paper's STS fine-tuning, as sentence-transformers' training
examples run it: AdamW at lr 2e-5 with weight decay 0.01, 10% linear warm-up, gradient
norm clipped at 1, batch 16; a cross-encoder's rate is its own (``CROSS_ENCODER_LR``). A
setting outside its range is refused in one line that names it, its value and the range,
before it can turn into a ZeroDivisionError or a NaN model.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from minisbert.losses.registry import TABLE  # the loss names, as plain data: no JAX

# The peak learning rate: the paper's for a bi-encoder; for a cross-encoder, whose pooler and
# head start random, a higher one: on STS-b dev (seed 0, 4 epochs, batch 16) 5e-5 and 8e-5
# beat 2e-5 and are level with each other; the lower is kept. bench/results/cross-encoder-*.md.
LR = 2e-5
CROSS_ENCODER_LR = 5e-5
# A cross-encoder that learns scores (one label, a regression) trains without dropout. On
# STS-b (4 epochs, batch 16, seeds 0, 1, 2) against the checkpoint's 0.1: level on dev (+0.06
# on the mean), cheaper steps (no random masks to draw), and +0.20 to +0.26 on test on each
# seed. bench/results/cross-encoder-*.md. Class pairs and bi-encoders keep the model's rate.
CROSS_ENCODER_DROPOUT = 0.0
# The learning rate of a loss's own, randomly initialised parameters (the softmax head),
# chosen on pairs held out of SNLI dev: see SoftmaxClassifier and bench/results/nli-ablation-*.
HEAD_LR = 3e-2
# The share of a run's steps in which such a head learns alone (the encoder frozen), before
# the encoder joins in: a linear probe, then fine-tuning (Kumar et al. 2022). Chosen on
# the same held-out pairs; 0 for losses without parameters of their own.
PROBE_RATIO = 0.2


@dataclasses.dataclass(frozen=True)
class Setting:
    """A setting's row of the table, but for its default (the dataclass field holds that)."""

    help: str  # its --help; argparse fills in %(default)s
    must: tuple[str, Callable[[Any], bool]] | None  # its range: in words, and the test
    flag: str  # how the command line spells it ("" in a field: --NAME-WITH-DASHES)
    parse: Mapping[str, Any]  # how argparse reads it: type, choices, nargs, action, required
    none: str | None = None  # the word that sets None, where None is not the default


def setting(
    default: Any,
    help: str,
    *,
    must: tuple[str, Callable[[Any], bool]] | None = None,
    flag: str | None = None,
    none: str | None = None,
    **parse: Any,
) -> Any:
    """A ``TrainConfig`` field: its default, and its ``Setting`` in the field's metadata.

    The flag is ``--NAME-WITH-DASHES`` unless ``flag`` says otherwise; ``parse`` are the
    keywords argparse's ``add_argument`` gets besides the flag, default and help."""
    row = Setting(help, must, flag or "", parse, none)
    return dataclasses.field(default=default, metadata={"setting": row})


def _integer(low: int, high: float = math.inf, *, optional: bool = False) -> Callable:
    """An int (not a bool) in [low, high); or None, when ``optional``."""

    def ok(v: Any) -> bool:
        if v is None:
            return optional
        return isinstance(v, int) and not isinstance(v, bool) and low <= v < high

    return ok


def _number(low: float, high: float = math.inf, *, above: bool = False,
            optional: bool = False) -> Callable:  # fmt: skip
    """A finite number in [low, high], or in (low, high] when ``above``; or None, when
    ``optional``."""

    def ok(v: Any) -> bool:
        if v is None:
            return optional
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            return False
        return (v > low if above else v >= low) and v <= high

    return ok


def _text(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


TEXT = ("a non-empty string", _text)
SAME = "same"  # --head-lr same: the head learns at --lr


def _rate_or_same(text: str) -> float | None:
    if text == SAME:
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or {SAME!r}") from None


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(word) for word in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not integers such as 384,128,64") from None


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(word) for word in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not numbers such as 1,0.5,0.5") from None


def _widths(v: Any) -> bool:
    return v is None or (isinstance(v, tuple) and bool(v) and all(_integer(1)(d) for d in v))


def _weights(v: Any) -> bool:
    return v is None or (isinstance(v, tuple) and bool(v) and all(_number(0)(w) for w in v))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run. Defaults: the SBERT paper's STS fine-tuning."""

    model: str = setting(  # a folder, or a name under weights/
        "all-MiniLM-L6-v2",
        "the model to start from: a model folder, or a name in weights/ (default: %(default)s)",
        must=TEXT,
    )
    data: str = setting(
        "stsb",
        "stsb, sick, snli, snli-triplets, mnli, allnli (SNLI + MultiNLI), or a CSV / TSV / "
        "JSONL file of pairs or triplets (default: %(default)s)",
        must=TEXT,
    )
    loss: str = setting(  # a name in minisbert.losses.REGISTRY, or FILE.py:FUNCTION
        "cosine",
        ", ".join(TABLE) + "; or FILE.py:FUNCTION, a loss of your own (default: %(default)s)",
        must=TEXT,
    )
    cross_encoder: bool = setting(  # minisbert.cross_encoder_training
        False,
        "train a cross-encoder (both sentences through BERT together, a score per pair) "
        "instead of a bi-encoder: binary cross-entropy on scores in [0, 1], cross-entropy on "
        "class pairs (--loss is not used)",
        action="store_true",
    )  # fmt: skip
    pair_order: str = setting(  # minisbert.cross_encoder_training.read_pairs
        "given",
        "--cross-encoder: 'given' trains the pairs as the data has them; 'both' every pair as "
        "(a, b) and as (b, a), twice the steps an epoch, so that the score depends less on the "
        "order; 'auto': both for scored pairs (similarity is symmetric), given for class pairs "
        "(NLI's premise and hypothesis are not) (default: %(default)s)",
        choices=("auto", "both", "given"),
    )  # fmt: skip
    output: str = setting(
        "runs/stsb",
        "the folder of the trained model; checkpoints in OUTPUT/checkpoints",
        must=TEXT,
        required=True,
    )
    split: str = setting(
        "train", "the split of --data to train on (default: %(default)s)", must=TEXT
    )
    epochs: int = setting(
        1, "passes over the data (default: %(default)s)",
        must=("an integer >= 1", _integer(1)), type=int,
    )  # fmt: skip
    batch_size: int = setting(  # B, global: split across devices
        16, "examples per step, split across devices (default: %(default)s)",
        must=("an integer >= 1", _integer(1)), type=int,
    )  # fmt: skip
    mini_batch_size: int | None = setting(  # M: minisbert.grad_cache
        None,
        "embed M sentences at a time through a gradient cache: the batch's loss and gradient "
        "in memory that grows with M, not with --batch-size, for a second forward pass "
        "(M >= --batch-size: the plain step; default: the plain step)",
        must=("an integer >= 1, or None for the plain step", _integer(1, optional=True)),
        type=int,
    )  # fmt: skip
    allow_duplicates: bool = setting(  # minisbert.training_data.distinct_batches
        False,
        "let a batch hold a text twice; by default a loss with in-batch negatives ("
        + ", ".join(name for name, row in TABLE.items() if row.in_batch_negatives)
        + ") gets batches without repeated texts, where another example's copy of a text "
        "would be a false negative",
        action="store_true",
    )  # fmt: skip
    lr: float | None = setting(  # the encoder's; None: LR, or CROSS_ENCODER_LR (peak_lr)
        None,
        f"the encoder's peak learning rate (default: {LR:g}; {CROSS_ENCODER_LR:g} with "
        "--cross-encoder)",
        must=("a number in (0, 1]", _number(0, 1, above=True, optional=True)),
        type=float,
    )  # fmt: skip
    head_lr: float | None = setting(  # a loss's own parameters (softmax head); None: lr
        HEAD_LR,
        "the softmax head's peak learning rate (default %(default)g; 'same' for --lr): a "
        "random head needs its own",
        must=("a number in (0, 1], or None for lr ('same')",
              _number(0, 1, above=True, optional=True)),
        type=_rate_or_same, none=SAME,
    )  # fmt: skip
    probe_steps: int | None = setting(  # the first steps train the head alone
        None,
        "train the softmax head alone (encoder frozen) for the first N steps (default: "
        f"{100 * PROBE_RATIO:g}%% of the run's steps for --loss softmax; 0: from the first step)",
        must=("an integer >= 0, or None for PROBE_RATIO of the steps",
              _integer(0, optional=True)),
        type=int,
    )  # fmt: skip
    seed: int = setting(  # must fit the 32 bits jax.random.key keeps (2**32: seed 0's dropout)
        0, "the shuffle, dropout and head initialisation (default: %(default)s)",
        must=("an integer in [0, 2**32)", _integer(0, 2**32)), type=int,
    )  # fmt: skip
    warmup_ratio: float = setting(
        0.1,
        "the share of steps over which the learning rate rises linearly from 0 "
        "(default: %(default)s)",
        must=("a number in [0, 1]", _number(0, 1)), type=float,
    )  # fmt: skip
    weight_decay: float = setting(  # lr * wd <= 1: AdamW's decay never pushes theta past 0
        0.01, "AdamW's weight decay (default: %(default)s)",
        must=("a number in [0, 1]", _number(0, 1)), type=float,
    )  # fmt: skip
    max_grad_norm: float = setting(
        1.0, "clip the gradient at this global norm (default: %(default)s)",
        must=("a number > 0", _number(0, above=True)), type=float,
    )  # fmt: skip
    max_steps: int | None = setting(  # the schedule ends there too
        None, "stop after this many steps; the schedule ends there too (default: all epochs)",
        must=("an integer >= 1, or None for all epochs", _integer(1, optional=True)), type=int,
    )  # fmt: skip
    margin: float | None = setting(  # None: the loss's own default
        None, "triplet / contrastive margin (default: the loss's own)",
        must=("a number >= 0, or None for the loss's default", _number(0, optional=True)),
        type=float,
    )  # fmt: skip
    scale: float | None = setting(
        None, "mnrl / cosent scale (default: the loss's own)",
        must=("a number > 0, or None for the loss's default",
              _number(0, above=True, optional=True)),
        type=float,
    )  # fmt: skip
    distance: str | None = setting(None, "triplet / contrastive distance (default: the loss's own)")
    concat: tuple[str, ...] = setting(  # softmax features; the paper's ablation
        ("u", "v", "abs_diff"), "softmax features, from u v abs_diff mul (the paper's ablation)",
        must=("one or more of u, v, abs_diff, mul", bool), nargs="+",
    )  # fmt: skip
    matryoshka_dims: tuple[int, ...] | None = setting(  # minisbert.losses.matryoshka
        None,
        "also train the first D1, D2, ... dimensions on their own, e.g. 384,128,64: the loss "
        "summed over the embeddings cut to each width and re-normalised (Matryoshka)",
        must=("positive integers such as 384,128,64, or None", _widths), type=_int_list,
    )  # fmt: skip
    matryoshka_weights: tuple[float, ...] | None = setting(
        None, "the weight of each --matryoshka-dims width, e.g. 1,0.5,0.5 (default: all 1)",
        must=("numbers >= 0 such as 1,0.5,0.5, or None", _weights), type=_float_list,
    )  # fmt: skip
    dropout_bits: int = setting(  # 16: masks from half the random bits (minisbert.dropout)
        32,
        "16: draw dropout masks from half the random bits, a little faster; other masks, so "
        "other weights than 32 for the same seed (default: %(default)s)",
        must=("16 or 32", lambda v: v in (16, 32) and not isinstance(v, bool)),
        type=int, choices=[16, 32],
    )  # fmt: skip
    dropout: float | None = setting(  # None: the model's own (config.json), see dropout_rate
        None,
        "the rate of every dropout layer while training, 0 for none (default: the model's own, "
        f"0.1 for all-MiniLM-L6-v2; {CROSS_ENCODER_DROPOUT:g} with --cross-encoder on scored "
        "pairs)",
        must=("a number in [0, 1), or None for the model's own",
              lambda v: v is None or (_number(0, 1)(v) and v < 1)),
        type=float,
    )  # fmt: skip
    eval_data: str = setting(  # its split "dev"
        "auto",
        "evaluated on its dev split: auto (STS Benchmark dev; SICK's for --data sick; skipped "
        "if absent), none, a dataset name or a file",
        must=TEXT,
    )
    eval_steps: int = setting(
        0, "evaluate every N steps too (default 0: at the end only)",
        must=("an integer >= 0 (0: evaluate at the end only)", _integer(0)), type=int,
    )  # fmt: skip
    checkpoint_steps: int = setting(
        500, "save a checkpoint every N steps, and at the end (default: %(default)s)",
        must=("an integer >= 1", _integer(1)), type=int,
    )  # fmt: skip
    keep_checkpoints: int = setting(
        2, "how many of the newest checkpoints to keep (default: %(default)s)",
        must=("an integer >= 1", _integer(1)), type=int,
    )  # fmt: skip
    resume: bool = setting(False, "continue from OUTPUT's last checkpoint", action="store_true")
    overwrite: bool = setting(  # a non-empty --output that no run made (run_guard)
        False, "write into a non-empty OUTPUT that is not a minisbert training folder",
        action="store_true",
    )  # fmt: skip
    allow_data_change: bool = setting(
        False, "let --resume go on although the training data changed", action="store_true"
    )
    progress: bool = setting(
        True, "no progress bar (nor the line before the first step's compile)",
        flag="--no-progress", action="store_false",
    )  # fmt: skip

    # Fields that change the numbers: a resumed run must keep them.
    MATH_FIELDS = (
        "model", "data", "loss", "cross_encoder", "pair_order", "split", "epochs",
        "batch_size", "lr", "head_lr", "probe_steps", "seed", "warmup_ratio",
        "weight_decay", "max_grad_norm", "max_steps", "margin", "scale", "distance", "concat",
        "dropout_bits", "dropout", "matryoshka_dims", "matryoshka_weights", "mini_batch_size",
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_settings(self)

    def peak_lr(self) -> float:
        """--lr, or by default LR (a bi-encoder) or CROSS_ENCODER_LR (--cross-encoder)."""
        if self.lr is not None:
            return self.lr
        return CROSS_ENCODER_LR if self.cross_encoder else LR

    def dropout_rate(self, num_labels: int | None = None) -> float | None:
        """--dropout, or by default CROSS_ENCODER_DROPOUT for a cross-encoder learning scores
        (``num_labels`` 1), else None: every layer keeps the model's own rate."""
        if self.dropout is not None:
            return self.dropout
        return CROSS_ENCODER_DROPOUT if self.cross_encoder and num_labels == 1 else None

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["concat"] = list(self.concat)
        for name in ("matryoshka_dims", "matryoshka_weights"):  # JSON reads a tuple as a list
            values[name] = None if values[name] is None else list(values[name])
        return values


# The table, a row per field in the order of TrainConfig, each flag spelled out.
SETTINGS: dict[str, Setting] = {
    f.name: dataclasses.replace(
        f.metadata["setting"], flag=f.metadata["setting"].flag or "--" + f.name.replace("_", "-")
    )
    for f in dataclasses.fields(TrainConfig)
}


def check_settings(config: TrainConfig) -> None:
    """Refuse a setting outside its range, in one line naming it, its value and the range:
    before any work, and before a bad value turns into a ZeroDivisionError or a NaN model."""
    for name, row in SETTINGS.items():
        value = getattr(config, name)
        if row.must is not None and not row.must[1](value):
            raise ValueError(f"{name}={value!r} ({row.flag}): must be {row.must[0]}")


def flag_words(name: str, value: Any) -> list[str]:
    """The command-line words that set ``name`` to ``value``: what the parser reads back.

    A flag without a value (``--resume``, ``--no-progress``) stands for the value that is
    not its default."""
    row = SETTINGS[name]
    if row.parse.get("action") in ("store_true", "store_false"):
        return [row.flag]
    if row.parse.get("nargs"):
        return [row.flag, *map(str, value)]
    if isinstance(value, tuple):  # --matryoshka-dims 384,128,64
        return [row.flag, ",".join(map(str, value))]
    if value is None:
        if row.none is None:
            raise ValueError(f"{row.flag} cannot be set to None on the command line")
        return [row.flag, row.none]
    return [row.flag, str(value)]

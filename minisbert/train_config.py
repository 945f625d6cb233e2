"""What decides a training run: ``TrainConfig``, every setting checked before any work.

The defaults are the SBERT paper's STS fine-tuning, as sentence-transformers' training
examples run it: AdamW at lr 2e-5 with weight decay 0.01, 10% linear warm-up, gradient
norm clipped at 1, batch 16. A setting outside its range is refused in one line that names
it, its value and the range, before it can turn into a ZeroDivisionError or a NaN model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

# The learning rate of a loss's own, randomly initialised parameters (the softmax head),
# chosen on pairs held out of SNLI dev: see SoftmaxClassifier and bench/results/nli-ablation-*.
HEAD_LR = 3e-2
# The share of a run's steps in which such a head learns alone (the encoder frozen), before
# the encoder joins in: a linear probe, then fine-tuning (Kumar et al. 2022). Chosen on
# the same held-out pairs; 0 for losses without parameters of their own.
PROBE_RATIO = 0.2


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
    probe_steps: int | None = None  # the first steps train the head alone; None: PROBE_RATIO
    seed: int = 0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_steps: int | None = None  # stop after this many steps (the schedule ends there too)
    margin: float | None = None  # None: the loss's own default
    scale: float | None = None
    distance: str | None = None
    concat: tuple[str, ...] = ("u", "v", "abs_diff")  # softmax features; the paper's ablation
    dropout_bits: int = 32  # 16: dropout masks from half the random bits (minisbert.dropout)
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
        "dropout_bits",
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
    "probe_steps": ("an integer >= 0, or None for PROBE_RATIO of the steps", _integer(0)),
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
    "dropout_bits": ("16 or 32", lambda v: v in (16, 32) and not isinstance(v, bool)),
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

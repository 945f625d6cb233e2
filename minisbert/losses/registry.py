"""The loss registry: every objective `minisbert train --loss NAME` knows, and what it trains on.

Adding a loss is one file and one line: write the function in ``minisbert/losses/`` and add
a row to ``TABLE`` below. The command line's choices, the check that the data suits the loss,
the loss checker's cases and the tests all read this table. ``TABLE`` is plain data (where
each function lives, not the function), so that ``minisbert train --help`` lists the losses
without importing JAX; ``REGISTRY`` holds the same rows as ``Loss``es, imported on first use.

How the train step calls a loss. It embeds the S sides of a batch with the same model
(e_1, ..., e_S, each (B, D)) and calls

    loss([head,] e_1, ..., e_S, [labels])

``head`` is passed only to a loss with trainable parameters of its own (the softmax
classifier); ``labels`` only when the data has them. A row marked ``in_batch_negatives`` takes
the batch's other examples as negatives, so its runs get batches that hold no text twice
(``minisbert.training_data.distinct_batches``; ``--allow-duplicates`` turns that off). So the
data decides the arguments:

    data kind          sides  labels             called as
    scored pairs       2      (B,) float score   loss(u, v, scores)
    class pairs        2      (B,) int class     loss(u, v, labels)  (with the head: softmax)
    0/1 pairs          2      (B,) int 0 or 1    loss(u, v, labels)
    triplets           3      none               loss(anchor, positive, negative)
    unlabelled pairs   2      none               loss(anchor, positive)

**Your own loss from a file.** ``--loss my_losses.py:my_loss`` trains the function
``my_loss`` of that file. Its parameter names say which data it needs: ``(u, v, scores)``
scored pairs, ``(u, v, labels)`` 0/1 or class pairs, ``(anchor, positive, negative)``
triplets, ``(anchor, positive)`` unlabelled pairs. It must return a scalar jax array; one that
returns anything else, or raises, stops the run in one line naming the file and function
(and, for an exception, the line of the file that raised it).

**One run, one lookup.** A run resolves its ``--loss`` once (``get_loss``: a file loss's file
runs once) and passes the ``Loss`` on: the data check reads what it trains on, the train
step calls ``make_loss``'s function, with --margin, --scale and --distance bound.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jax

# The kinds of training data, and where a user gets each.
DATA_KINDS = {
    "scored pairs": "--data stsb, sick, or a file of sentence1, sentence2, score",
    "class pairs": "--data snli, sick-nli, or a file of sentence1, sentence2, integer label",
    "0/1 pairs": "a file of sentence1, sentence2, label 0 or 1",
    "triplets": "--data snli-triplets, or a file of anchor, positive, negative",
    "unlabelled pairs": "a file of sentence1, sentence2 (positive pairs, no label column)",
}


class LossError(ValueError):
    """A --loss that names no registered loss, or a file loss that cannot be loaded."""


@dataclasses.dataclass(frozen=True)
class Loss:
    """One objective: the pure function, and the data it trains on (keys of DATA_KINDS)."""

    function: Callable[..., jax.Array]  # as tests and lessons call it
    data: tuple[str, ...]
    head: bool = False  # takes a trainable module first (the softmax classifier)
    # How the train step calls it, where that differs from ``function``'s own arguments.
    on_batch: Callable[..., jax.Array] | None = None
    # Other examples of the batch are its negatives, so a text repeated in a batch would be a
    # false negative: its runs get batches without repeated texts (training_data.py).
    in_batch_negatives: bool = False


@dataclasses.dataclass(frozen=True)
class Row:
    """A ``Loss`` written as plain data: ``function`` and ``on_batch`` are "module.name" in
    ``minisbert/losses/``."""

    function: str
    data: tuple[str, ...]
    head: bool = False
    on_batch: str | None = None
    in_batch_negatives: bool = False

    def load(self) -> Loss:
        """The ``Loss`` this row names: imports its module (and so JAX)."""
        on_batch = _function(self.on_batch) if self.on_batch is not None else None
        return Loss(_function(self.function), self.data, head=self.head, on_batch=on_batch,
                    in_batch_negatives=self.in_batch_negatives)  # fmt: skip


TABLE: dict[str, Row] = {
    "softmax": Row("softmax.softmax_loss", ("class pairs",), head=True),
    "cosine": Row("regression.cosine_similarity_loss", ("scored pairs",)),
    "cosent": Row("regression.cosent_loss", ("scored pairs",)),
    "contrastive": Row("contrastive.contrastive_loss", ("0/1 pairs",)),
    "online_contrastive": Row("contrastive.online_contrastive_loss", ("0/1 pairs",)),
    "triplet": Row("triplet.triplet_loss", ("triplets",)),
    "batch_hard_triplet": Row(
        "triplet.batch_hard_triplet_loss",
        ("triplets",),
        on_batch="triplet.batch_hard_on_triplets",
        in_batch_negatives=True,  # every other example's sentences are classes of their own
    ),
    "mnrl": Row(
        "ranking.multiple_negatives_ranking_loss",
        ("triplets", "unlabelled pairs"),
        in_batch_negatives=True,
    ),
    "mnrl_symmetric": Row(
        "ranking.symmetric_multiple_negatives_ranking_loss",
        ("triplets", "unlabelled pairs"),
        in_batch_negatives=True,
    ),
}


def _function(where: str) -> Callable[..., jax.Array]:
    module, _, name = where.rpartition(".")
    return getattr(importlib.import_module(f"minisbert.losses.{module}"), name)


@functools.cache
def load_registry() -> dict[str, Loss]:
    """Every row of ``TABLE`` as a ``Loss``, built once: always the same dict, so a loss added
    to it (``REGISTRY["mine"] = Loss(...)``) is one that ``get_loss`` finds."""
    return {name: row.load() for name, row in TABLE.items()}


def __getattr__(name: str) -> dict[str, Loss]:
    """``REGISTRY`` is ``load_registry()``, built on first use (PEP 562)."""
    if name == "REGISTRY":
        return load_registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# What a loss's parameter names say about the data it needs (for losses loaded from a file).
_DATA_BY_PARAMETERS = {
    ("u", "v", "scores"): ("scored pairs",),
    ("u", "v", "labels"): ("0/1 pairs", "class pairs"),
    ("anchor", "positive", "negative"): ("triplets",),
    ("anchor", "positive"): ("unlabelled pairs",),
}


def get_loss(spec: str) -> Loss:
    """The registry's loss named ``spec``, or ``FILE.py:FUNCTION`` loaded from a file."""
    losses = load_registry()
    if spec in losses:
        return losses[spec]
    if ":" not in spec:
        raise LossError(
            f"unknown loss {spec!r}; use one of {', '.join(losses)}, or FILE.py:FUNCTION "
            "for a loss of your own"
        )
    return load_file_loss(spec)


def load_file_loss(spec: str) -> Loss:
    """Load ``FILE.py:FUNCTION`` and read the data it needs from its parameter names."""
    file, _, name = spec.rpartition(":")
    path = Path(file).expanduser()
    if not path.is_file():
        raise LossError(f"--loss {spec}: {path} is not a file")
    module_spec = importlib.util.spec_from_file_location(f"minisbert_user_loss_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise LossError(f"--loss {spec}: {path} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:  # the user's file: report any error in one line
        raise LossError(
            f"--loss {spec}: importing {path} failed: {type(err).__name__}: {err}"
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise LossError(f"--loss {spec}: {path} defines no function {name!r}")
    required = tuple(
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )
    head = bool(required) and required[0] == "classifier"
    data = _DATA_BY_PARAMETERS.get(required[1:] if head else required)
    if data is None:
        known = "; ".join(f"({', '.join(k)})" for k in _DATA_BY_PARAMETERS)
        raise LossError(
            f"--loss {spec}: cannot tell which data {name}{tuple(required)} trains on; name its "
            f"arguments as one of {known}"
        )
    return Loss(_checked(function, spec, path), data, head=head)


def make_loss(
    loss: Loss,
    name: str,
    *,
    loss_fn: Callable[..., jax.Array] | None = None,
    matryoshka_dims: tuple[int, ...] | None = None,
    matryoshka_weights: tuple[float, ...] | None = None,
    embedding_dim: int | None = None,
    **options: object,
) -> Callable[..., jax.Array]:
    """The function a train step calls: ``loss``'s own (or ``loss_fn`` in its place), with the
    options the run sets (margin, scale, distance; None: the loss's own default) bound.

    ``name`` is how the run named the loss (``--loss``), for the message when an option does
    not apply to it. Options are checked against ``loss``'s own function only: a ``loss_fn``
    given in its place gets them unchecked.

    ``matryoshka_dims`` (--matryoshka-dims) wraps the result in ``matryoshka``: the loss summed
    over the embeddings cut to each width, weighted by ``matryoshka_weights``; a width beyond
    ``embedding_dim`` (the model's D, where known) is refused here, before any step."""
    if matryoshka_weights is not None and matryoshka_dims is None:
        raise ValueError("--matryoshka-weights needs --matryoshka-dims")
    options = {key: value for key, value in options.items() if value is not None}
    base = loss_fn if loss_fn is not None else loss.function
    if options and loss_fn is None:
        accepted = inspect.signature(base).parameters
        unused = [key for key in options if key not in accepted]
        if unused:
            raise ValueError(f"--{unused[0]} does not apply to --loss {name}")
    if loss.on_batch is not None:
        function = functools.partial(loss.on_batch, loss_fn=base, **options)
    else:
        function = functools.partial(base, **options) if options else base
    if matryoshka_dims is None:
        return function
    from minisbert.losses.matryoshka import check_matryoshka, matryoshka

    if loss.head:
        raise ValueError(f"--matryoshka-dims does not apply to --loss {name}: its head is sized D")
    check_matryoshka(matryoshka_dims, matryoshka_weights)
    too_wide = [d for d in matryoshka_dims if embedding_dim is not None and d > embedding_dim]
    if too_wide:
        raise ValueError(
            f"--matryoshka-dims {too_wide[0]} is larger than the model's embeddings "
            f"({embedding_dim} dimensions)"
        )
    return matryoshka(function, matryoshka_dims, matryoshka_weights)


def check_loss_value(value: object, name: str) -> None:
    """Refuse, in one line naming the loss, a loss value that is not a scalar float array."""
    import jax  # here, not at the top: the registry's names are read without JAX
    import jax.numpy as jnp

    if isinstance(value, jax.Array | jax.ShapeDtypeStruct):
        if value.shape != ():
            got = f"shape {value.shape}"
        elif not jnp.issubdtype(value.dtype, jnp.floating):
            got = f"a scalar of dtype {value.dtype}"
        else:
            return
    else:
        got = "None" if value is None else f"a {type(value).__name__}"
    raise LossError(f"{name}: a loss must return a scalar jax array of floats, got {got}")


def _checked(function: Callable, spec: str, path: Path) -> Callable:
    """A user's loss whose exceptions and wrong results are one-line LossErrors.

    The loss first runs while JAX traces the train step, where its exception would surface
    as a long traceback through JAX; this names the file, the function and the line."""

    @functools.wraps(function)  # keeps the signature, which says which data it takes
    def loss(*args: object, **kwargs: object) -> object:
        try:
            value = function(*args, **kwargs)
        except Exception as err:
            lines = str(err).splitlines()
            message = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
            raise LossError(f"{spec} raised {message}{_user_line(err, path)}") from None
        check_loss_value(value, spec)
        return value

    return loss


def _user_line(err: Exception, path: Path) -> str:
    """Where in the user's file ``err`` was raised (its deepest frame there), as " (at F:N)"."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename) == path]
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""

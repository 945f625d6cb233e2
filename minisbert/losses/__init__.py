"""Training objectives for sentence embeddings: each a pure function from embeddings to a scalar.

Shapes: B batch, D hidden, C classes.

    CLI name            function                          needs                         module
    softmax             softmax_loss                      pairs + class, a classifier   softmax
    cosine              cosine_similarity_loss            pairs + score in [0, 1]       regression
    cosent              cosent_loss                       pairs + score                 regression
    contrastive         contrastive_loss                  pairs + 0/1 label             contrastive
    online_contrastive  online_contrastive_loss           pairs + 0/1 label             contrastive
    triplet             triplet_loss                      anchor, positive, negative    triplet
    batch_hard_triplet  batch_hard_triplet_loss           embeddings + class labels     triplet
    mnrl                multiple_negatives_ranking_loss   anchor, positive [, negative] ranking
    mnrl_symmetric      symmetric_multiple_negatives_...  anchor, positive [, negative] ranking

Every loss is jittable, returns a mean over the batch (except where its docstring says it sums, as
the library does), and is finite in value and gradient for zero vectors and duplicate rows.
`minisbert.loss_check.check_loss` compares any loss's gradient with finite differences.
The registry (``registry.py``) is the one table of losses: add a loss there.
Names are imported on first use (PEP 562's module ``__getattr__``): the command line reads the
registry's names without importing JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from minisbert.losses.registry import (
    DATA_KINDS,
    Loss,
    LossError,
    get_loss,
    load_registry,
    make_loss,
)

if TYPE_CHECKING:  # what type checkers and editors see; at run time, __getattr__ below
    from collections.abc import Callable

    import jax

    from minisbert.losses.contrastive import contrastive_loss, online_contrastive_loss
    from minisbert.losses.ranking import (
        multiple_negatives_ranking_loss,
        symmetric_multiple_negatives_ranking_loss,
    )
    from minisbert.losses.registry import REGISTRY
    from minisbert.losses.regression import cosent_loss, cosine_similarity_loss
    from minisbert.losses.softmax import SoftmaxClassifier, softmax_loss
    from minisbert.losses.triplet import batch_hard_triplet_loss, triplet_loss

    # Every registered loss by name, as a plain function (the registry says what data each needs).
    LOSSES: dict[str, Callable[..., jax.Array]]

# Each loss, and the module of minisbert/losses/ it comes from.
_MODULES = {
    "SoftmaxClassifier": "softmax",
    "softmax_loss": "softmax",
    "cosine_similarity_loss": "regression",
    "cosent_loss": "regression",
    "contrastive_loss": "contrastive",
    "online_contrastive_loss": "contrastive",
    "triplet_loss": "triplet",
    "batch_hard_triplet_loss": "triplet",
    "multiple_negatives_ranking_loss": "ranking",
    "symmetric_multiple_negatives_ranking_loss": "ranking",
}


def __getattr__(name: str) -> Any:
    """``REGISTRY``, ``LOSSES`` and the loss functions, imported on first use."""
    if name == "REGISTRY":
        value: Any = load_registry()
    elif name == "LOSSES":  # every registered loss by name, as a plain function
        value = {loss: entry.function for loss, entry in load_registry().items()}
    elif name in _MODULES:
        value = getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # the next use is an ordinary attribute
    return value


__all__ = [
    "DATA_KINDS",
    "LOSSES",
    "REGISTRY",
    "Loss",
    "LossError",
    "SoftmaxClassifier",
    "batch_hard_triplet_loss",
    "contrastive_loss",
    "cosent_loss",
    "cosine_similarity_loss",
    "get_loss",
    "make_loss",
    "multiple_negatives_ranking_loss",
    "online_contrastive_loss",
    "softmax_loss",
    "symmetric_multiple_negatives_ranking_loss",
    "triplet_loss",
]

"""Reference loss values and gradients from the real sentence-transformers, for minisbert's tests.

Run in an environment with torch and sentence-transformers (not needed by minisbert itself):

    python scripts/reference_losses.py            # writes tests/reference/losses.npz

Each *case* names a minisbert loss, its keyword arguments and the inputs it takes. For each case
we draw float32 embeddings and labels with numpy, feed them through the matching
sentence-transformers loss class, and record the loss and torch's gradient with respect to every
embedding input. The loss classes expect a model that turns tokenised features into embeddings;
a stand-in model that hands back the embedding we put in the features lets the classes' own
`forward` run unchanged.

Shapes: B batch, D hidden, C classes.

Importing this module needs only numpy: torch is imported inside the functions that use it, so
the offline tests can read CASES and build inputs without torch installed.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATH = ROOT / "tests" / "reference" / "losses.npz"
NUM_LABELS = 3  # SoftmaxLoss classes, as in NLI

# Which embedding inputs each loss takes, in order (labels, if any, come separately).
INPUTS = {
    "softmax": ("u", "v"),
    "cosine": ("u", "v"),
    "cosent": ("u", "v"),
    "contrastive": ("u", "v"),
    "online_contrastive": ("u", "v"),
    "triplet": ("anchor", "positive", "negative"),
    "batch_hard_triplet": ("embeddings",),
    "mnrl": ("anchors", "positives"),
    "mnrl_negatives": ("anchors", "positives", "negatives"),
    "mnrl_symmetric": ("anchors", "positives"),
    "mnrl_symmetric_negatives": ("anchors", "positives", "negatives"),
}


def _cases() -> list[dict[str, Any]]:
    """Every (loss, keyword arguments, batch size) we check, with a unique name."""
    specs: list[tuple[str, str, dict[str, Any]]] = [
        ("softmax", "softmax", {}),
        ("softmax_mul", "softmax", {"concat": ["u", "v", "abs_diff", "mul"]}),
        ("cosine", "cosine", {}),
        ("cosent", "cosent", {"scale": 20.0}),
        ("mnrl", "mnrl", {"scale": 20.0}),
        ("mnrl_negatives", "mnrl_negatives", {"scale": 20.0}),
        ("triplet_margin5", "triplet", {"margin": 5.0, "distance": "euclidean"}),
    ]
    for distance, margin in [("euclidean", 1.0), ("cosine", 0.3), ("manhattan", 1.0)]:
        specs.append((f"triplet_{distance}", "triplet", {"margin": margin, "distance": distance}))
    for distance in ["cosine", "euclidean", "manhattan"]:
        margin = {"cosine": 0.5, "euclidean": 3.0, "manhattan": 7.0}[distance]
        kwargs = {"margin": margin, "distance": distance}
        specs.append((f"contrastive_{distance}", "contrastive", kwargs))
        specs.append((f"online_contrastive_{distance}", "online_contrastive", kwargs))
    for distance in ["euclidean", "squared_euclidean", "cosine", "manhattan"]:
        margin = 1.0 if distance == "cosine" else 5.0
        kwargs = {"margin": margin, "distance": distance}
        specs.append((f"batch_hard_{distance}", "batch_hard_triplet", kwargs))

    def case(
        name: str,
        loss: str,
        kwargs: dict[str, Any],
        batch: int = 4,
        dim: int = 8,
        variant: str = "random",
    ) -> dict[str, Any]:
        return dict(name=name, loss=loss, kwargs=kwargs, batch=batch, dim=dim, variant=variant)

    cases = []
    for name, loss, kwargs in specs:
        cases.append(case(f"{name}_b4", loss, kwargs))
        cases.append(case(f"{name}_b16", loss, kwargs, batch=16, dim=12))
        # A zero vector and duplicate rows: the places where NaN likes to hide.
        cases.append(case(f"{name}_edge", loss, kwargs, variant="edge"))
    for variant in ["all_positive", "all_negative"]:
        kwargs = {"margin": 0.5, "distance": "cosine"}
        cases.append(
            case(f"online_contrastive_{variant}", "online_contrastive", kwargs, variant=variant)
        )
    kwargs = {"margin": 5.0, "distance": "euclidean"}
    cases.append(case("batch_hard_one_class", "batch_hard_triplet", kwargs, variant="one_class"))
    # Added later, so drawn last: the cases above keep their inputs.
    for name, kwargs in [("mnrl_symmetric", {"scale": 20.0}), ("mnrl_symmetric_negatives", {})]:
        loss_kwargs = {"scale": kwargs.get("scale", 7.0)}
        cases.append(case(f"{name}_b4", name, loss_kwargs))
        cases.append(case(f"{name}_b16", name, loss_kwargs, batch=16, dim=12))
        cases.append(case(f"{name}_edge", name, loss_kwargs, variant="edge"))
    return cases


CASES = _cases()


def make_arrays(case: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Float32 embeddings (each (B, D)), labels, and for softmax the classifier weight and bias.

    Partners are correlated with their anchor (positive 0.6 a + 0.8 noise, negative
    0.3 a + noise) so that margins and hard-example selections fall both ways.
    """
    B, D = case["batch"], case["dim"]
    loss, variant = case["loss"], case["variant"]

    def noise() -> np.ndarray:
        return rng.standard_normal((B, D))

    arrays: dict[str, np.ndarray] = {}
    if loss == "batch_hard_triplet":
        labels = rng.integers(0, 4, size=B) if B > 4 else np.array([0, 0, 1, 2])
        if variant == "one_class":
            labels = np.zeros(B, dtype=np.int64)
        centers = rng.standard_normal((4, D))
        embeddings = centers[labels] + 0.8 * noise()
        if variant == "edge":
            labels = np.array([0, 1, 1, 0])
            embeddings[0] = 0.0
            embeddings[2] = embeddings[1]  # duplicates within one class
        arrays["embeddings"] = embeddings
        arrays["labels"] = labels.astype(np.int64)
    else:
        first = noise()
        names = INPUTS[loss]
        arrays[names[0]] = first
        arrays[names[1]] = 0.6 * first + 0.8 * noise()
        if len(names) == 3:
            arrays[names[2]] = 0.3 * first + noise()
        if variant == "edge":
            arrays[names[0]][0] = 0.0
            arrays[names[1]][1] = arrays[names[0]][1]
            if len(names) == 3:
                arrays[names[2]][2] = arrays[names[0]][2]
        if loss == "softmax":
            arrays["labels"] = rng.integers(0, NUM_LABELS, size=B).astype(np.int64)
            width = len(case["kwargs"].get("concat", ["u", "v", "abs_diff"])) * D
            arrays["classifier_weight"] = 0.3 * rng.standard_normal((NUM_LABELS, width))
            arrays["classifier_bias"] = 0.1 * rng.standard_normal(NUM_LABELS)
        elif loss == "cosine":
            arrays["labels"] = rng.uniform(0.0, 1.0, size=B)
        elif loss == "cosent":
            arrays["labels"] = rng.integers(0, 5, size=B) / 4.0  # ties on purpose
        elif loss in ("contrastive", "online_contrastive"):
            labels = rng.integers(0, 2, size=B)
            labels[:2] = [1, 0]  # both kinds; the edge variant duplicates row 1, a negative
            if variant == "all_positive":
                labels[:] = 1
            if variant == "all_negative":
                labels[:] = 0
            arrays["labels"] = labels.astype(np.float32)
    return {
        key: value.astype(np.float32) if value.dtype == np.float64 else value
        for key, value in arrays.items()
    }


def _library_loss(case: dict[str, Any], model: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The sentence-transformers loss object matching a minisbert case."""
    import torch
    from sentence_transformers.sentence_transformer import losses as st
    from sentence_transformers.sentence_transformer.losses.batch_hard_triplet import (
        BatchHardTripletLossDistanceFunction as BatchHardDistance,
    )
    from sentence_transformers.util import manhattan_sim

    loss, kwargs = case["loss"], case["kwargs"]
    if loss == "softmax":
        concat = kwargs.get("concat", ["u", "v", "abs_diff"])
        module = st.SoftmaxLoss(
            model,
            embedding_dimension=case["dim"],
            num_labels=NUM_LABELS,
            concatenation_sent_rep="u" in concat,
            concatenation_sent_difference="abs_diff" in concat,
            concatenation_sent_multiplication="mul" in concat,
        )
        with torch.no_grad():
            module.classifier.weight.copy_(torch.from_numpy(arrays["classifier_weight"]))
            module.classifier.bias.copy_(torch.from_numpy(arrays["classifier_bias"]))
        return module
    if loss == "cosine":
        return st.CosineSimilarityLoss(model)
    if loss == "cosent":
        return st.CoSENTLoss(model, scale=kwargs["scale"])
    if loss.startswith("mnrl_symmetric"):
        # Deprecated in favour of MultipleNegativesRankingLoss(directions=..., partition_mode=...)
        # with the same result; the named class is the definition minisbert follows.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return st.MultipleNegativesSymmetricRankingLoss(model, scale=kwargs["scale"])
    if loss.startswith("mnrl"):
        return st.MultipleNegativesRankingLoss(model, scale=kwargs["scale"])
    if loss == "triplet":
        metric = {
            "euclidean": st.TripletDistanceMetric.EUCLIDEAN,
            "cosine": st.TripletDistanceMetric.COSINE,
            "manhattan": st.TripletDistanceMetric.MANHATTAN,
        }[kwargs["distance"]]
        return st.TripletLoss(model, distance_metric=metric, triplet_margin=kwargs["margin"])
    if loss in ("contrastive", "online_contrastive"):
        metric = {
            "euclidean": st.SiameseDistanceMetric.EUCLIDEAN,
            "cosine": st.SiameseDistanceMetric.COSINE_DISTANCE,
            "manhattan": st.SiameseDistanceMetric.MANHATTAN,
        }[kwargs["distance"]]
        cls = st.ContrastiveLoss if loss == "contrastive" else st.OnlineContrastiveLoss
        return cls(model, distance_metric=metric, margin=kwargs["margin"])
    if loss == "batch_hard_triplet":
        metric = {
            "euclidean": BatchHardDistance.euclidean_distance,
            "squared_euclidean": lambda x: BatchHardDistance.euclidean_distance(x, squared=True),
            "cosine": BatchHardDistance.cosine_distance,
            "manhattan": lambda x: -manhattan_sim(x, x),  # not built in; any callable is allowed
        }[kwargs["distance"]]
        return st.BatchHardTripletLoss(model, distance_metric=metric, margin=kwargs["margin"])
    raise ValueError(f"unknown loss {loss!r}")


def compute_reference(
    case: dict[str, Any], arrays: dict[str, np.ndarray]
) -> tuple[float, dict[str, np.ndarray]]:
    """(loss value, {input name: d loss / d input}) from sentence-transformers, in float32."""
    import torch

    class StandIn(torch.nn.Module):
        """Plays the SentenceTransformer: the features already hold the sentence embedding."""

        device = torch.device("cpu")

        def forward(self, features: dict[str, Any]) -> dict[str, Any]:
            return {"sentence_embedding": features["sentence_embedding"]}

    names = INPUTS[case["loss"]]
    tensors = {name: torch.tensor(arrays[name], requires_grad=True) for name in names}
    loss_module = _library_loss(case, StandIn(), arrays)
    labels = torch.from_numpy(arrays["labels"]) if "labels" in arrays else None
    features = [{"sentence_embedding": tensors[name]} for name in names]
    value = loss_module(features, labels)
    value.backward()
    grads = {name: tensors[name].grad.numpy().copy() for name in names}
    return float(value.detach()), grads


def compute_references(seed: int, cases: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Inputs and reference outputs for every case, as flat npz-ready arrays.

    Keys: "cases" (the JSON case list), "<case>/in/<name>", "<case>/value", "<case>/grad/<name>".
    """
    cases = CASES if cases is None else cases
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"cases": np.array(json.dumps(cases))}
    for case in cases:
        arrays = make_arrays(case, rng)
        value, grads = compute_reference(case, arrays)
        for key, array in arrays.items():
            out[f"{case['name']}/in/{key}"] = array
        out[f"{case['name']}/value"] = np.float32(value)
        for key, grad in grads.items():
            out[f"{case['name']}/grad/{key}"] = grad
    return out


def make_loss_reference(path: str | Path = DEFAULT_PATH, seed: int = 0) -> Path:
    """Write the reference fixture (compressed npz, well under 1 MB) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **compute_references(seed))
    return path


if __name__ == "__main__":
    written = make_loss_reference()
    print(f"wrote {written} ({written.stat().st_size} bytes, {len(CASES)} cases)")

"""The softmax classifier a ``--loss softmax`` run saves beside its model, and loading it back.

    classifier.safetensors   linear.kernel (K D, C), linear.bias (C,)   (minisbert.io.weights)
    classifier.json          {"concat": ["u", "v", "abs_diff"], "num_labels": 3}

``concat`` names the features of (u, v) the classifier reads, in order (``CONCAT_PARTS``);
``num_labels`` is its number of classes C. ``minisbert eval nli`` builds a
``SoftmaxClassifier`` from classifier.json and fills it from classifier.safetensors. The
JSON comes from disk, so it is read bounded (``minisbert.io.bounded``) and checked before a
classifier is built: a damaged file is one line naming it, not a KeyError.
"""

from __future__ import annotations

import json
from pathlib import Path

from flax import nnx

from minisbert.io import manifest
from minisbert.io.bounded import UnreadableFile, read_json_bounded
from minisbert.io.weights import load_params, save_params
from minisbert.losses.softmax import CONCAT_PARTS, SoftmaxClassifier

CLASSIFIER_JSON = "classifier.json"
CLASSIFIER_WEIGHTS = "classifier.safetensors"


class ClassifierError(ValueError):
    """classifier.json is unreadable or does not describe a softmax classifier."""


def save_classifier(folder: Path, classifier: SoftmaxClassifier) -> list[str]:
    """Write ``classifier`` into ``folder``, each file atomically; return the names written."""
    save_params(classifier, folder / CLASSIFIER_WEIGHTS)
    spec = {"concat": list(classifier.concat), "num_labels": classifier.linear.out_features}
    manifest.write_atomic(folder / CLASSIFIER_JSON, json.dumps(spec, indent=1))
    return [CLASSIFIER_WEIGHTS, CLASSIFIER_JSON]


def load_classifier(folder: Path, dim: int) -> SoftmaxClassifier:
    """The classifier saved in ``folder``, for sentence vectors of size ``dim``.

    Raises FileNotFoundError when there is none, ClassifierError when classifier.json is
    damaged, and WeightsError when classifier.safetensors does not fit it."""
    path = folder / CLASSIFIER_JSON
    damaged = f"{path}: not a softmax classifier's settings"
    again = "the file is damaged: train the softmax run again"
    try:
        spec = read_json_bounded(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no classifier; only a `minisbert train --loss softmax` run saves one"
        ) from None
    except UnreadableFile as err:
        raise ClassifierError(str(err)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ClassifierError(f"{path}: not valid JSON ({err}); {again}") from None
    if not isinstance(spec, dict):
        raise ClassifierError(f"{damaged}, a JSON {type(spec).__name__}; {again}")
    num_labels, concat = spec.get("num_labels"), spec.get("concat")
    if type(num_labels) is not int or num_labels < 2:
        raise ClassifierError(
            f"{damaged}: num_labels {json.dumps(num_labels)[:80]} is not a whole number >= 2"
        )
    if (
        not isinstance(concat, list)
        or not concat
        or any(part not in CONCAT_PARTS for part in concat)
        or len(set(concat)) != len(concat)
    ):
        raise ClassifierError(
            f"{damaged}: concat {json.dumps(concat)[:80]} is not a list of distinct names from "
            f"{', '.join(CONCAT_PARTS)}"
        )
    classifier = SoftmaxClassifier(dim, num_labels, concat=concat, rngs=nnx.Rngs(0))
    load_params(classifier, folder / CLASSIFIER_WEIGHTS)  # overwrites the random weights
    return classifier

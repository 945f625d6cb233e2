"""A training run on disk: checkpoints to resume from, and the trained model at the end.

    OUTPUT/
        model.safetensors  config.json  sentence.json  tokenizer.json   the trained model
        classifier.safetensors  classifier.json                          softmax runs only
        manifest.json                   the model files' checksums, written last
        .minisbert-run.json  .minisbert-run.lock    the run's marker and lock (run_guard)
        checkpoints/
            step-00000500/
                params.safetensors      every nnx.Param by dotted path (model.bert.*, classifier.*)
                optimizer.safetensors   the optax state, flattened alike (opt_state.1.0.mu.*)
                state.json              step, epoch, shuffle and dropout RNG state, the config,
                                        the sha256 of the training data
                manifest.json           the checksums of the three files above, written last

OUTPUT is a minisbert model folder, so ``SentenceEncoder.from_pretrained(OUTPUT)`` and
``minisbert eval sts --model OUTPUT`` load it. It cannot be swapped whole (it holds the
checkpoints and the run's lock), so its model files are written as a set instead: the old
manifest removed first, each file atomically, the new manifest last. Loading refuses a
training folder without its manifest (``check_model_folder``): a run killed while writing
its model is never read as a mix of two models.

**A checkpoint exists only when complete.** It is built in a hidden sibling folder, its
``manifest.json`` written last, and renamed into place whole (``minisbert.io.folders``): a
run killed while writing leaves only the hidden folder, which the next checkpoint removes.
So a crash loses at most the steps since the last complete checkpoint. Resuming also
checks the files against the manifest (``verified_checkpoint``): a checkpoint truncated or
damaged afterwards is skipped, with a message, for the newest one that is whole. Weights
holding NaN or inf are never written.

The optimiser state is an optax pytree (clip state, Adam's ``mu`` and ``nu`` per
parameter, step counts). ``nnx.state(optimizer)`` names every leaf by its path in that
tree, and those dotted paths are the safetensors keys: stable as long as the optimiser is
built the same way, which resuming checks (the config must match).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from minisbert.io.classifier import save_classifier
from minisbert.io.convert import POOLER_FILE
from minisbert.io.folders import remove_leftovers, write_folder
from minisbert.io.manifest import (
    MANIFEST,
    ManifestError,
    verify_manifest,
    write_atomic,
    write_manifest,
)
from minisbert.io.weights import dotted_name, flat_params, load_params, write_safetensors_atomic
from minisbert.losses.softmax import SoftmaxClassifier
from minisbert.run_guard import MARKER  # a training run's folder holds it

CHECKPOINTS = "checkpoints"
STATE = "state.json"


class OutputError(RuntimeError):
    """The output folder cannot be created or written."""


class NonFiniteWeights(ValueError):
    """The weights hold NaN or inf: training diverged, and they are not worth saving."""


def prepare_output(path: str | Path) -> Path:
    """Create the output folder and prove it writable, before any training time is spent."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise OutputError(f"--output {path} is not a writable folder ({err})") from None
    return path


def check_free_space(path: Path, needed: int) -> None:
    """Refuse to start a run whose checkpoints the disk cannot hold (``needed`` bytes)."""
    free = shutil.disk_usage(path).free
    if free < needed:
        raise OutputError(
            f"--output {path}: the run needs about {needed / 1e6:.1f} MB for checkpoints and the "
            f"model, but the disk has {free / 1e6:.1f} MB free; free some space, lower "
            "--keep-checkpoints, or choose another --output"
        )


# ---------------------------------------------------------------- RNG state


def rng_state(node: nnx.Module) -> dict[str, dict[str, Any]]:
    """Every dropout RNG stream's key (as its raw uint32 words) and call count, for JSON."""
    return {
        dotted_name(path): {
            "key": np.asarray(jax.random.key_data(stream.key.get_value())).tolist(),
            "count": int(stream.count.get_value()),
        }
        for path, stream in nnx.iter_graph(node)
        if isinstance(stream, nnx.RngStream)
    }


def set_rng_state(node: nnx.Module, saved: dict[str, dict[str, Any]]) -> None:
    for path, stream in nnx.iter_graph(node):
        if isinstance(stream, nnx.RngStream):
            entry = saved[dotted_name(path)]
            key_data = jnp.asarray(entry["key"], dtype=jnp.uint32)
            stream.key.set_value(jax.random.wrap_key_data(key_data))
            stream.count.set_value(jnp.asarray(entry["count"], dtype=jnp.uint32))


# ---------------------------------------------------------------- checkpoints


def _write_json_atomic(values: dict[str, Any], path: Path) -> None:
    write_atomic(path, json.dumps(values, indent=1))


def check_finite_weights(arrays: dict[str, np.ndarray], what: str) -> None:
    """Raise NonFiniteWeights naming the first array of ``arrays`` holding NaN or inf."""
    for name, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise NonFiniteWeights(f"{what}: {name} holds NaN or inf")


def data_fingerprint(examples: list[Any]) -> str:
    """sha256 of the training examples as loaded (texts and labels, in order), kept in
    state.json so that --resume notices a changed data file. Line numbers take no part."""
    digest = hashlib.sha256()
    for example in examples:
        fields = [getattr(example, f.name) for f in dataclasses.fields(example) if f.name != "line"]
        digest.update(json.dumps(fields).encode("utf-8") + b"\n")
    return digest.hexdigest()


def save_checkpoint(
    folder: Path, step: int, trainable: nnx.Module, optimizer: nnx.Optimizer, state: dict[str, Any]
) -> Path:
    """Write checkpoint ``step`` into ``folder``; ``state`` (JSON-able) goes into state.json.

    Raises NonFiniteWeights, writing nothing, if a parameter holds NaN or inf."""
    params = flat_params(trainable)
    check_finite_weights(params, f"the weights after step {step}")
    optimizer_state = flat_params(optimizer, ...)  # every leaf of the optax state
    full = {"step": step, **state, "dropout_rng": rng_state(trainable)}

    def fill(path: Path) -> None:
        write_safetensors_atomic(params, path / "params.safetensors")
        write_safetensors_atomic(optimizer_state, path / "optimizer.safetensors")
        _write_json_atomic(full, path / STATE)

    for partial in folder.glob(".step-*.partial-*"):  # left by a killed run
        remove_leftovers(folder / partial.name[1:].split(".partial-")[0], log=lambda _: None)
    # Built beside, swapped in with its manifest (minisbert.io.folders): a checkpoint is
    # complete or absent.
    return write_folder(folder / f"step-{step:08d}", fill, overwrite=True, log=lambda _: None)


def _step(path: Path) -> int:
    return int(path.name.split("-")[1])


def complete_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints (those with a manifest), oldest first; not yet verified."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("step-*") if (p / MANIFEST).is_file()), key=_step)


def latest_checkpoint(folder: Path) -> Path | None:
    found = complete_checkpoints(folder)
    return found[-1] if found else None


def verified_checkpoint(folder: Path, log: Any = print) -> Path | None:
    """The newest checkpoint whose files match its manifest; ``log`` a line for each newer
    one skipped (incomplete, truncated, damaged), naming it and why."""
    found = sorted(folder.glob("step-*"), key=_step) if folder.is_dir() else []
    for path in reversed(found):
        try:
            verify_manifest(path)
            json.loads((path / STATE).read_text(encoding="utf-8"))["step"]
        except (ManifestError, ValueError, KeyError, OSError) as err:
            log(f"--resume: skipping checkpoint {path.name}: {err}")
            continue
        return path
    return None


def read_state(path: Path) -> dict[str, Any]:
    return json.loads((path / STATE).read_text(encoding="utf-8"))


def restore_checkpoint(path: Path, trainable: nnx.Module, optimizer: nnx.Optimizer) -> dict:
    """Load parameters, optimiser state and RNG state in place; return state.json's contents."""
    state = read_state(path)
    load_params(trainable, path / "params.safetensors")
    load_params(optimizer, path / "optimizer.safetensors", ...)
    set_rng_state(trainable, state["dropout_rng"])
    return state


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints (and older incomplete ones)."""
    complete = complete_checkpoints(folder)
    if not complete:
        return
    newest_kept = complete[-keep:] if keep > 0 else complete[-1:]
    for path in folder.glob("step-*"):
        if _step(path) < _step(newest_kept[0]):
            shutil.rmtree(path)


# ---------------------------------------------------------------- the trained model


def check_model_folder(folder: Path) -> None:
    """Refuse a model folder caught half-written: a training folder (it holds the run's
    marker) without its manifest, or a folder whose weight files differ in size from its
    manifest (a truncated or half-replaced ``*.safetensors``).

    The weight files' sizes only: this runs on every load and must stay cheap (sha256 is for
    --resume), and a settings file edited by hand (``sentence.json``'s pooling, lesson 4) is
    the user's business: it is read and checked on its own."""
    has_manifest = (folder / MANIFEST).is_file()
    if not has_manifest and (folder / MARKER).is_file():
        raise ManifestError(
            f"{folder}: a training folder without {MANIFEST}, so its run never finished "
            "writing the model; continue it with `minisbert train ... --resume` (the command "
            f"is in {folder / MARKER}), or load one of its checkpoints"
        )
    if has_manifest:
        try:
            verify_manifest(folder, check_sizes_only=True, only_suffix=".safetensors")
        except ManifestError as err:
            raise ManifestError(
                f"{err}; the folder is incomplete or was changed after it was written: write "
                f"it again (if you edited a file on purpose, delete {folder / MANIFEST})"
            ) from None


def save_model(
    output: Path, model: nnx.Module, base_dir: Path, classifier: SoftmaxClassifier | None = None
) -> None:
    """Write ``model`` (a SentenceModel) as a minisbert model folder, tokenizer from ``base_dir``.

    The weights are those of ``model.bert``, under minisbert names. ``manifest.json``, written
    last, lists the model's files (not the checkpoints beside them). Raises NonFiniteWeights,
    writing nothing, if a weight holds NaN or inf."""
    weights = flat_params(model.bert)
    check_finite_weights(weights, f"the model for {output}")
    head = flat_params(classifier) if classifier is not None else {}
    check_finite_weights(head, f"the classifier for {output}")
    # Dense layers after pooling (some converted models) are kept in a file of their own.
    dense = flat_params(model.dense) if model.sentence_config.dense else {}
    check_finite_weights(dense, f"the Dense layers for {output}")
    (output / MANIFEST).unlink(missing_ok=True)
    write_safetensors_atomic(weights, output / "model.safetensors")
    _write_json_atomic(model.config.to_dict(), output / "config.json")
    _write_json_atomic(model.sentence_config.to_dict(), output / "sentence.json")
    written = ["model.safetensors", "config.json", "sentence.json"]
    if dense:
        write_safetensors_atomic(dense, output / "dense.safetensors")
        written.append("dense.safetensors")
    written += _copy_tokenizer(base_dir, output)
    if (base_dir / POOLER_FILE).is_file():  # BERT's pooler, kept for a cross-encoder (untrained)
        if base_dir.resolve() != output.resolve():
            shutil.copyfile(base_dir / POOLER_FILE, output / POOLER_FILE)
        written.append(POOLER_FILE)
    if classifier is not None:
        written += save_classifier(output, classifier)
    write_manifest(output, written)  # last: the model folder is complete


def save_cross_encoder(output: Path, model: nnx.Module, head: Any, base_dir: Path) -> None:
    """Write ``model`` (a CrossEncoderModel) as a minisbert cross-encoder folder, as
    ``save_model`` writes a bi-encoder: its weights (bert.*, pooler.*, classifier.*),
    config.json, ``head`` (a CrossEncoderConfig) as cross_encoder.json, the tokenizer from
    ``base_dir``, then the manifest. Raises NonFiniteWeights, writing nothing, on NaN or inf."""
    from minisbert.cross_encoder import CROSS_ENCODER_JSON

    weights = flat_params(model)
    check_finite_weights(weights, f"the cross-encoder for {output}")
    (output / MANIFEST).unlink(missing_ok=True)
    write_safetensors_atomic(weights, output / "model.safetensors")
    _write_json_atomic(model.config.to_dict(), output / "config.json")
    _write_json_atomic(head.to_dict(), output / CROSS_ENCODER_JSON)
    written = ["model.safetensors", "config.json", CROSS_ENCODER_JSON]
    written += _copy_tokenizer(base_dir, output)
    write_manifest(output, written)  # last: the folder is complete


def _copy_tokenizer(base_dir: Path, output: Path) -> list[str]:
    """Copy the tokenizer's files from ``base_dir`` into ``output``; their names."""
    written = []
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (base_dir / name).is_file():
            if base_dir.resolve() != output.resolve():
                shutil.copyfile(base_dir / name, output / name)
            written.append(name)
    return written

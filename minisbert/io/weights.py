"""Saving and loading a model's parameters as safetensors, with every name and shape checked.

minisbert's file format is deliberately plain: one safetensors file whose keys are the
module paths of the parameters, joined by dots, exactly as ``nnx.state`` names them:

    embeddings.word_embeddings.embedding      (V, D)
    layers.0.attention.query.kernel           (D, D)
    layers.0.intermediate.kernel              (D, F)
    ...

Loading compares the file against the freshly built model before touching it: a
missing tensor, an unexpected one, a wrong shape or a wrong dtype is a ``WeightsError``
naming the file and the tensor. safetensors holds raw arrays only, so loading can never
run code (unlike pickle, which minisbert never loads).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from minisbert.io import manifest


class WeightsError(ValueError):
    """A weights file is missing, damaged, or does not fit the model it is loaded into."""


def _key(path: tuple) -> str:
    return ".".join(str(part) for part in path)


def flat_params(model: nnx.Module) -> dict[str, np.ndarray]:
    """Every ``nnx.Param`` of ``model`` as a numpy array under its dotted path."""
    state = nnx.state(model, nnx.Param)
    return {_key(path): np.asarray(var.get_value()) for path, var in nnx.to_flat_state(state)}


def param_shapes(model: nnx.Module) -> dict[str, jax.ShapeDtypeStruct]:
    """Shape and dtype of every ``nnx.Param``; works on an abstract ``nnx.eval_shape`` model too."""
    state = nnx.state(model, nnx.Param)
    return {
        _key(path): jax.ShapeDtypeStruct(var.get_value().shape, var.get_value().dtype)
        for path, var in nnx.to_flat_state(state)
    }


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Read a safetensors file, turning a damaged file into a clear error."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(
            f"{path}: not a readable safetensors file ({err}); the file may be truncated "
            "or damaged: fetch or convert it again"
        ) from None


def check_params(
    expected: dict[str, jax.ShapeDtypeStruct], found: dict[str, np.ndarray], source: str | Path
) -> None:
    """Raise WeightsError unless ``found`` has exactly the names, shapes, dtypes of ``expected``."""
    missing = sorted(set(expected) - set(found))
    if missing:
        raise WeightsError(
            f"{source}: missing tensor {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise WeightsError(
            f"{source}: unexpected tensor {unexpected[0]!r}"
            + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
            + "; the file does not belong to a model of this config"
        )
    for name, want in expected.items():
        got = found[name]
        if got.shape != want.shape:
            raise WeightsError(
                f"{source}: tensor {name!r} has shape {got.shape}, the config needs {want.shape}"
            )
        if got.dtype != want.dtype:
            raise WeightsError(
                f"{source}: tensor {name!r} has dtype {got.dtype}, expected {want.dtype}"
            )
        if not np.all(np.isfinite(got)):
            raise WeightsError(f"{source}: tensor {name!r} contains NaN or inf")


def load_params(model: nnx.Module, path: str | Path) -> None:
    """Fill ``model``'s parameters from a minisbert safetensors file, in place."""
    found = read_safetensors(path)
    check_params(param_shapes(model), found, path)
    state = nnx.state(model, nnx.Param)
    for key_path, var in nnx.to_flat_state(state):
        var.set_value(jnp.asarray(found[_key(key_path)]))
    nnx.update(model, state)


def write_safetensors_atomic(tensors: dict[str, np.ndarray], path: str | Path) -> None:
    """Write safetensors through ``manifest.write_atomic``: never a half-written file."""
    data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()})  # the file's bytes
    manifest.write_atomic(path, data)


def save_params(model: nnx.Module, path: str | Path) -> None:
    """Write ``model``'s parameters to ``path`` in minisbert's format, atomically."""
    write_safetensors_atomic(flat_params(model), path)

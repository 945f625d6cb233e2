"""Saving and loading a model's parameters as safetensors, with every name and shape checked.

minisbert's file format is deliberately plain: one safetensors file whose keys are the
module paths of the parameters, joined by dots, exactly as ``nnx.state`` names them:

    embeddings.word_embeddings.embedding      (V, D)
    layers.0.attention.query.kernel           (D, D)
    layers.0.intermediate.kernel              (D, F)
    ...

The same format holds any nnx variables, chosen by an nnx filter (``variables``): a
checkpoint's optimiser state is ``save_params(optimizer, path, ...)``, keys such as
``opt_state.1.0.mu.linear.kernel`` (Adam's first moment of a classifier's kernel).
``flat_params`` gathers the arrays (which ``write_safetensors_atomic`` writes;
``save_params`` does both) and ``load_params`` puts them back, checked, for models,
classifiers, checkpoints and optimisers alike.

Loading compares the file against the model before touching it: a missing tensor, an
unexpected one, a wrong shape or a wrong dtype is a ``WeightsError`` naming the file and
the tensor. safetensors holds raw arrays only, so loading can never run code (unlike
pickle, which minisbert never loads).

A safetensors file is an 8-byte little-endian header length, a JSON header giving every
tensor's dtype, shape and byte range, then the bytes. ``read_safetensors_header`` reads
only the header, with a bounded length, and checks it against the file's size: so the
names and shapes are compared with a config before any array is made, and a truncated
file is named as such.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.filterlib import Filter
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from minisbert.io import manifest
from minisbert.io.bounded import UnreadableFile, open_regular_file

MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
# safetensors dtype -> (numpy's name for it, bytes per element)
DTYPES = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2),
    "BF16": ("bfloat16", 2), "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
    "U64": ("uint64", 8), "U32": ("uint32", 4), "U16": ("uint16", 2), "U8": ("uint8", 1),
    "BOOL": ("bool", 1), "C64": ("complex64", 8),
}  # fmt: skip
TensorInfo = tuple[str, tuple[int, ...]]  # (dtype name, shape)


class WeightsError(ValueError):
    """A weights file is missing, damaged, or does not fit the model it is loaded into."""


def _damaged(path: Path, problem: str) -> WeightsError:
    return WeightsError(
        f"{path}: not a readable safetensors file ({problem}); the file may be truncated "
        "or damaged: fetch or convert it again"
    )


def read_safetensors_header(path: str | Path) -> dict[str, TensorInfo]:
    """Every tensor's (dtype, shape), from the header alone: no tensor is read.

    Refuses a file that is missing, not a regular file, whose header is over
    ``MAX_HEADER_BYTES``, or whose size differs from what its header describes."""
    path = Path(path)
    try:
        file = open_regular_file(path)
    except FileNotFoundError:
        raise WeightsError(f"{path}: file not found") from None
    except UnreadableFile as err:
        raise WeightsError(str(err)) from None
    with file:
        size = os.fstat(file.fileno()).st_size
        length = int.from_bytes(file.read(8), "little")
        if size < 8:
            raise _damaged(path, f"truncated: {size} bytes, not even the 8-byte header length")
        if length > MAX_HEADER_BYTES:
            raise _damaged(path, f"a header of {length} bytes, over the {MAX_HEADER_BYTES} allowed")
        if 8 + length > size:
            raise _damaged(path, f"truncated: a header of {length} bytes, but {size} in all")
        try:
            header = json.loads(file.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise _damaged(path, f"its header is not JSON: {err}") from None
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a JSON object")
    tensors, end = {}, 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        info = entry if isinstance(entry, dict) else {}
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPES or not _ints(shape) or not _ints(offsets) or len(offsets) != 2:
            raise _damaged(path, f"tensor {name!r} has no valid dtype, shape and data_offsets")
        begin, stop = offsets
        if stop - begin != math.prod(shape) * DTYPES[dtype][1]:
            raise _damaged(path, f"tensor {name!r}: {stop - begin} bytes for shape {shape}")
        tensors[name] = (DTYPES[dtype][0], tuple(shape))
        end = max(end, stop)
    data = size - 8 - length
    if end > data:
        raise _damaged(path, f"truncated: the header describes {end} bytes of tensors, the "
                             f"file holds {data}")  # fmt: skip
    if end < data:
        raise _damaged(path, f"{data - end} bytes after the last tensor")
    return tensors


def _ints(values: object) -> bool:
    return isinstance(values, list) and all(type(v) is int and v >= 0 for v in values)


def dotted_name(path: tuple) -> str:
    """An nnx state path as a safetensors key: ``('layers', 0, 'output', 'kernel')`` ->
    ``layers.0.output.kernel``."""
    return ".".join(str(part) for part in path)


def flat_params(node: nnx.Module, variables: Filter = nnx.Param) -> dict[str, np.ndarray]:
    """The ``variables`` of ``node`` (an nnx filter: its parameters by default, ``...`` for an
    optimiser's whole state) as numpy arrays under their dotted paths."""
    state = nnx.state(node, variables)
    return {
        dotted_name(path): np.asarray(var.get_value()) for path, var in nnx.to_flat_state(state)
    }


def param_shapes(
    node: nnx.Module, variables: Filter = nnx.Param
) -> dict[str, jax.ShapeDtypeStruct]:
    """Shape and dtype of each of ``flat_params``' arrays; works on an abstract
    ``nnx.eval_shape`` model too."""
    state = nnx.state(node, variables)
    return {
        dotted_name(path): jax.ShapeDtypeStruct(np.shape(var.get_value()), var.get_value().dtype)
        for path, var in nnx.to_flat_state(state)
    }


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Read a safetensors file, turning a damaged file into a clear error."""
    path = Path(path)
    read_safetensors_header(path)  # a plain file, whole, with a sane header
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise _damaged(path, str(err)) from None


def check_file_params(expected: dict[str, jax.ShapeDtypeStruct], path: str | Path) -> None:
    """``check_shapes`` on a file's header: a file that does not fit the model is refused
    before any of its arrays (or the model's) is made."""
    check_shapes(expected, read_safetensors_header(path), path)


def check_shapes(
    expected: dict[str, jax.ShapeDtypeStruct], found: dict[str, TensorInfo], source: str | Path
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
        dtype, shape = found[name]
        if shape != want.shape:
            raise WeightsError(
                f"{source}: tensor {name!r} has shape {shape}, the config needs {want.shape}"
            )
        if dtype != str(want.dtype):
            raise WeightsError(
                f"{source}: tensor {name!r} has dtype {dtype}, expected {want.dtype}"
            )


def check_params(
    expected: dict[str, jax.ShapeDtypeStruct], found: dict[str, np.ndarray], source: str | Path
) -> None:
    """``check_shapes`` on arrays, and every value finite."""
    check_shapes(expected, {k: (str(v.dtype), v.shape) for k, v in found.items()}, source)
    for name, got in found.items():
        if not np.all(np.isfinite(got)):
            raise WeightsError(f"{source}: tensor {name!r} contains NaN or inf")


def load_params(node: nnx.Module, path: str | Path, variables: Filter = nnx.Param) -> None:
    """Fill ``node``'s ``variables`` (its parameters by default) from a file ``save_params``
    wrote, in place. Names, shapes and dtypes are compared from the header before any array
    is read; every value must be finite."""
    expected = param_shapes(node, variables)
    # A scalar (an optimiser's step count) is saved with shape (1,): np.ascontiguousarray, in
    # write_safetensors_atomic, never returns a 0-d array.
    scalars = {name for name, want in expected.items() if want.shape == ()}
    header = {name: (dtype, () if name in scalars and shape == (1,) else shape)
              for name, (dtype, shape) in read_safetensors_header(path).items()}  # fmt: skip
    check_shapes(expected, header, path)  # before any array is read
    found = {name: array.reshape(()) if name in scalars and array.shape == (1,) else array
             for name, array in read_safetensors(path).items()}  # fmt: skip
    check_params(expected, found, path)
    state = nnx.state(node, variables)
    for key_path, var in nnx.to_flat_state(state):
        var.set_value(jnp.asarray(found[dotted_name(key_path)]))
    nnx.update(node, state)


def write_safetensors_atomic(tensors: dict[str, np.ndarray], path: str | Path) -> None:
    """Write safetensors through ``manifest.write_atomic``: never a half-written file."""
    data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()})  # the file's bytes
    manifest.write_atomic(path, data)


def save_params(node: nnx.Module, path: str | Path, variables: Filter = nnx.Param) -> None:
    """Write ``node``'s ``variables`` (its parameters by default) to ``path``, atomically."""
    write_safetensors_atomic(flat_params(node, variables), path)

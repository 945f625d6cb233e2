"""A sentence-transformers folder's ``modules.json``: its pipeline, read in one place.

    [{"idx": 0, "path": "",            "type": "sentence_transformers.models.Transformer"},
     {"idx": 1, "path": "1_Pooling",   "type": "sentence_transformers.models.Pooling"},
     {"idx": 2, "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]

Each module is a class (its kind is the last part of the name: Transformer, Pooling, Dense,
Normalize) and a folder, relative to the model folder, "" for the folder itself. Both the
conversion (``minisbert.io.convert``) and the hub download (``minisbert.io.hub``, which
fetches each module's files) read it through ``read_modules``, with one set of checks: a
non-empty list, each entry an object with a ``type`` string, each ``path`` a subfolder
(no ``/x``, no ``..``: the download writes there). Any failure is one ``ConfigError`` line.

``read_json`` is the bounded read behind it (``minisbert.io.bounded``: a link to /dev/zero
or a FIFO is refused unread), worded for a model folder; the conversion reads every JSON
file through it. It lives here, not in convert.py, so that the hub download needs no JAX.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from minisbert.config import ConfigError, read_settings_json
from minisbert.io.archive import UnsafeArchiveError, safe_relative_path

MODULES_JSON = "modules.json"
DAMAGED = "the file is damaged: download or save the model again"


def read_json(path: Path, name: str | None = None) -> Any:
    """A JSON file's content, or a one-line ConfigError naming the file (as ``name``, if
    given: how the user knows it, e.g. a hub repo's file rather than a temporary copy)."""
    missing = "file not found; the folder is incomplete"
    return read_settings_json(path, missing=missing, damaged=DAMAGED, shown_name=name)


def read_modules(folder: Path, name: str | None = None) -> list[tuple[str, str]]:
    """``folder/modules.json`` as (kind, subfolder) pairs: ``("Pooling", "1_Pooling")``.

    ``name``: how messages name the file (default its path)."""
    path = folder / MODULES_JSON
    name = name or str(path)
    modules = read_json(path, name)
    damaged = f"{name}: expected a list of modules, each an object with a 'type' string"
    if not isinstance(modules, list) or not modules:
        raise ConfigError(f"{damaged}; {DAMAGED}")
    pipeline = []
    for index, module in enumerate(modules):
        if not isinstance(module, dict) or not isinstance(module.get("type"), str):
            raise ConfigError(f"{damaged}; entry {index} is {json.dumps(module)[:80]}")
        subfolder = module.get("path", "")
        try:
            if not isinstance(subfolder, str):
                raise UnsafeArchiveError(f"{json.dumps(subfolder)[:80]} is not a folder name")
            if subfolder:
                safe_relative_path(subfolder)
        except UnsafeArchiveError as err:
            raise ConfigError(
                f"{name} names an unsafe folder in entry {index}: {err}; only subfolders of "
                "the model folder are read"
            ) from None
        pipeline.append((module["type"].rsplit(".", 1)[-1], subfolder))
    return pipeline

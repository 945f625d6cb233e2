"""Shared fixtures: where the data and the pretrained weights are, and what to do without them.

Tests that need real data read it from the folder named by ``MINISBERT_DATA`` (layout:
``stsbenchmark/``, ``sick/``, ``snli/``). Tests that need the pretrained model read it
from ``weights/all-MiniLM-L6-v2`` (``make weights`` creates it). Either missing makes
those tests skip with the reason, except when ``MINISBERT_REQUIRE_DATA=1`` (CI), where
a missing folder is a failure: CI must never pass by skipping its real checks.

The fixtures that several test files share live here too: the tiny model with a data file of
each kind (``tiny_files``), a softmax run on it (``softmax_run``) and a folder served over
HTTP (``served_folder``). What builds them is in the helper modules (tiny.py, runs.py,
served.py, loss_parity.py): a test file imports those, never another test file
(test_layers.py checks).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(__file__).resolve().parent / "reference"
PRETRAINED = ROOT / "weights" / "all-MiniLM-L6-v2"
_JAX_CACHE = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Every test compares computations (ours against the reference, packed against padded,
    jit against eager): full float32 matrix products on every backend (minisbert.precision),
    so that the stated tolerances hold on a GPU's TF32 or a TPU's bfloat16 default too.

    And one compiled program per computation for the whole session: jit caches by function
    object, so two runs whose losses are different Python functions with the same maths (a
    learner's loss file, loaded twice) compile twice. JAX's persistent compilation cache keys
    on the program itself; a fresh folder per session, so that nothing outlives the run."""
    import jax

    from minisbert import precision

    precision.use("highest")
    cache = tempfile.mkdtemp(prefix="minisbert-tests-jax-cache-")
    config.stash[_JAX_CACHE] = cache
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)  # the train steps


def pytest_unconfigure(config: pytest.Config) -> None:
    cache = config.stash.get(_JAX_CACHE, None)
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)


def _missing(reason: str) -> None:
    if os.environ.get("MINISBERT_REQUIRE_DATA") == "1":
        pytest.fail(f"{reason} (MINISBERT_REQUIRE_DATA=1 makes this a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data folder from ``MINISBERT_DATA``."""
    root = os.environ.get("MINISBERT_DATA")
    if not root:
        _missing(
            "MINISBERT_DATA is not set; point it at a folder holding stsbenchmark/, sick/, snli/"
        )
    path = Path(root)  # type: ignore[arg-type]
    if not (path / "stsbenchmark" / "sts-test.csv").is_file():
        _missing(f"MINISBERT_DATA={root} has no stsbenchmark/sts-test.csv")
    return path


@pytest.fixture(scope="session")
def pretrained_dir() -> Path:
    """The converted all-MiniLM-L6-v2 folder."""
    if not (PRETRAINED / "model.safetensors").is_file():
        _missing(
            f"{PRETRAINED} is missing; run `make weights` (or `minisbert fetch all-MiniLM-L6-v2`)"
        )
    return PRETRAINED


@pytest.fixture(scope="session")
def encoder(pretrained_dir: Path):  # noqa: ANN201 - FastEncoder, imported lazily
    """The pretrained all-MiniLM-L6-v2, loaded once per test session, as the ``minisbert``
    command loads it: a ``FastEncoder`` (packed encode). ``plain_encoder``: the core's."""
    from minisbert.fast import FastEncoder

    return FastEncoder.from_pretrained(pretrained_dir)


@pytest.fixture(scope="session")
def plain_encoder(encoder):  # noqa: ANN201 - SentenceEncoder, imported lazily
    """The same model and tokenizer through the core's ``SentenceEncoder`` (smart batching)."""
    from minisbert import SentenceEncoder

    return SentenceEncoder(encoder.model, encoder.tokenizer)


@pytest.fixture(scope="session")
def small_encoder(pretrained_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A ``FastEncoder`` of a one-layer random BERT with all-MiniLM-L6-v2's tokenizer and
    settings (tiny.with_tokenizer_of): the pretrained model's tokens, shapes and plans, at a
    fraction of its compile and run time. Weights-free checks use it; parity uses ``encoder``."""
    from tiny import with_tokenizer_of

    from minisbert.fast import FastEncoder

    folder = with_tokenizer_of(tmp_path_factory.mktemp("small") / "model", pretrained_dir)
    return FastEncoder.from_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The one-layer tiny model and 24 scored pairs, labelled pairs and triplets (tiny.py), made
    once per session: tests read them and write their runs elsewhere. Runs of the same shapes
    then share their compiled train step (pytest_configure), whichever test file they are in."""
    from tiny import write_training_files

    return write_training_files(tmp_path_factory.mktemp("tiny-files"))


@pytest.fixture(scope="session")
def softmax_run(tiny_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `minisbert train --loss softmax --concat u v abs_diff mul` wrote from tiny_files'
    labelled pairs (classes 0, 1, 2): a model folder with its classifier, trained once."""
    from runs import train_args

    from minisbert.cli import main

    output = tmp_path_factory.mktemp("softmax-run") / "run"
    concat = ["--concat", "u", "v", "abs_diff", "mul"]
    assert main(train_args(tiny_files, output, "classes", "softmax", *concat)) == 0
    return output


@pytest.fixture
def served_folder() -> Iterator[Callable[[Path], str]]:
    """``served_folder(folder)`` serves ``folder`` on 127.0.0.1 until the test ends and returns
    its base URL (served.py)."""
    from served import serving

    with contextlib.ExitStack() as stack:
        yield lambda folder: stack.enter_context(serving(folder=folder))

"""An exercise check taken out of its lesson: its cell run alone on small made-up inputs.

``check_from(stem, "check_x", name=value, ...)`` runs the code cell of ``lessons/<stem>.py``
that defines ``check_x``, with the given values in place of the lesson's variables, and
returns the check; ``solution(stem, name)`` is the reference solution's function, and
``unit_rows`` makes small unit-length inputs. No lesson is executed and no model is loaded.
"""

from __future__ import annotations

import math
import re
import runpy
import types
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jupytext
import numpy as np
import optax
from flax import nnx

from minisbert import lesson

LESSONS = Path(__file__).resolve().parent.parent / "lessons"


def lesson_source(stem: str) -> Path:
    (source,) = LESSONS.glob(f"{stem}*.py")
    return source


def code_cells(stem: str) -> list[str]:
    return [c.source for c in jupytext.read(lesson_source(stem)).cells if c.cell_type == "code"]


def check_from(stem: str, name: str, **inputs: Any):
    """The check function ``name`` of lesson ``stem``, defined by running its cell alone
    with ``inputs`` for the lesson's variables (small made-up arrays)."""
    cell = next(c for c in code_cells(stem) if f"def {name}(" in c)

    def exercise(check, *answers, lesson):  # the answers back, as lesson.exercise gives them
        return answers[0] if len(answers) == 1 else answers

    fake_lesson = types.SimpleNamespace(exercise=exercise, by_hand=lesson.by_hand)
    namespace = {
        "np": np,
        "jnp": jnp,
        "jax": jax,
        "math": math,
        "nnx": nnx,
        "optax": optax,
        "lesson": fake_lesson,
        **inputs,
    }
    call = re.search(r"lesson\.exercise\((.*?)lesson=", cell, re.S)
    for answer in re.findall(r"\w+", call.group(1) if call else ""):
        namespace.setdefault(answer, None)  # the answers the exercise call names, unused here
    exec(cell, namespace)  # noqa: S102 - the lesson's own cell
    return namespace[name]


def solution(stem: str, name: str):
    return runpy.run_path(str(LESSONS / "solutions" / f"{lesson_source(stem).stem}.py"))[name]


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def train_step_check(config: Any):
    """Lesson 06's ``check_train_step`` on a random model of ``config`` (tiny.py's), with a
    made-up batch of S = 2 sides, B = 4 pairs, T = 8 tokens and scores in [0, 1)."""
    from minisbert.config import SentenceConfig
    from minisbert.losses import cosine_similarity_loss
    from minisbert.sentence_encoder import SentenceModel
    from minisbert.train import Trainable, train_step

    rng = np.random.default_rng(0)
    S, B, T = 2, 4, 8
    mask = (np.arange(T) < rng.integers(3, T + 1, size=(S, B, 1))).astype(np.int32)  # (S, B, T)
    ids = np.where(mask == 1, rng.integers(5, config.vocab_size, size=(S, B, T)), 0)  # (S, B, T)
    model = SentenceModel(config, SentenceConfig(max_seq_length=T), rngs=nnx.Rngs(0))
    return check_from(
        "06_regression_objective",
        "check_train_step",
        encoder=types.SimpleNamespace(model=model),
        step_batch=(ids, mask, rng.uniform(size=B).astype(np.float32)),  # (S, B, T) x2, (B,)
        Trainable=Trainable,
        train_step=train_step,
        cosine_similarity_loss=cosine_similarity_loss,
    )


def padding_efficiency_check():
    """Lesson 11's ``check_padding_efficiency`` on 70 made-up token lists of 3 to 59 tokens."""
    from minisbert.batching import smart_batches

    token_ids = [[1] * n for n in np.random.default_rng(0).integers(3, 60, size=70)]
    return check_from(
        "11_speed",
        "check_padding_efficiency",
        token_ids=token_ids,
        MAX_LENGTH=256,
        real_tokens=sum(map(len, token_ids)),
        smart_batches=smart_batches,
    )

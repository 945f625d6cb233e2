"""How exactly float32 matrix products are computed: minisbert's one precision policy.

Every matrix product in BERT (``x @ kernel``, ``Q K^T``, attention times V) is a float32
product, but a backend may compute it with fewer bits to go faster:

    backend        JAX's "default" precision for a float32 product
    CPU            full float32
    NVIDIA GPU     TF32 on Ampere and newer (10 mantissa bits instead of 23): about 1e-3
    TPU            bfloat16 passes (8 mantissa bits, one or three passes)

So one model can give vectors that differ in the third decimal between a laptop and a
Colab GPU. That is harmless for training and search, and fatal for a check that compares
two computations at ``atol=1e-5``. The policy:

- **comparisons run at "highest"** (full float32 on every backend): the tests
  (``tests/conftest.py``), every lesson (``lesson.setup()`` calls ``use("highest")``), the
  parity rows of ``make device-check``. A tolerance of 1e-5 then holds everywhere;
- **training and encoding use the backend's default** unless asked: ``minisbert --precision
  highest ...`` (or ``use("highest")`` in Python) buys exactness with speed on a GPU or TPU.
  ``make device-check`` prints what each costs and changes on the device it runs on.

``jax.default_matmul_precision`` is the knob; this module only names its three settings and
sets it in one place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

PRECISIONS = ("default", "high", "highest")  # "high": TF32 / 3-pass bfloat16 where it helps


def check(name: str) -> str:
    if name not in PRECISIONS:
        raise ValueError(f"precision {name!r} is not one of {', '.join(PRECISIONS)}")
    return name


def use(name: str) -> None:
    """Set the float32 matrix-product precision for everything that follows."""
    import jax

    jax.config.update("jax_default_matmul_precision", None if check(name) == "default" else name)


def current() -> str:
    import jax

    return jax.config.jax_default_matmul_precision or "default"


@contextlib.contextmanager
def exactly(name: str = "highest") -> Iterator[None]:
    """``with exactly():`` the products inside run at ``name``; the setting before is restored."""
    import jax

    with jax.default_matmul_precision(None if check(name) == "default" else name):
        yield

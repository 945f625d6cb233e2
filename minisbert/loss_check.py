"""Check a loss's gradient against finite differences: the first test to write for a new loss.

Shapes: B batch, D hidden.

    from minisbert.loss_check import check_loss, random_inputs
    u, v = random_inputs(2)
    check_loss(lambda u, v: my_loss(u, v, labels), u, v)      # raises AssertionError if wrong

`jax.grad` is exact for the function you wrote, but if you wrote a custom gradient (jax.custom_vjp)
or a numerically fragile step (sqrt at 0, division by a norm), it can still be wrong. Central finite
differences need nothing but the loss's values:

    d loss / d x_k  ~  (loss(x + h e_k) - loss(x - h e_k)) / (2 h),   error O(h^2)

For every embedding input and every entry k we compare the two, in float64 (jax.enable_x64), where
h = 1e-6 leaves a rounding error near 1e-10 * |loss|. Finite differences are wrong at kinks: a
relu or |x| exactly at 0, a zero vector, a tie in a hardest-example choice. Random inputs almost
never land there; `random_inputs` makes such inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class InputCheck:
    """How one input's gradient compared with finite differences."""

    index: int  # position of the input in the loss's arguments
    shape: tuple[int, ...]
    max_abs_error: float  # max_k |grad_k - fd_k|
    max_rel_error: float  # max_k |grad_k - fd_k| / max(|fd_k|, tiny)
    worst: tuple[int, ...]  # the entry k that is furthest outside the tolerance
    analytic: float  # grad at `worst`
    numeric: float  # finite difference at `worst`
    ok: bool


@dataclass(frozen=True)
class LossCheckReport:
    value: float  # the loss at the given inputs, in float64
    inputs: tuple[InputCheck, ...]
    rtol: float
    atol: float

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.inputs)

    def __str__(self) -> str:
        lines = [
            f"loss = {self.value:.8g}; pass if |grad - fd| <= {self.atol:g} + {self.rtol:g} |fd|",
            "input  shape         max abs error  max rel error  ok",
        ]
        for c in self.inputs:
            lines.append(
                f"{c.index:<6} {str(c.shape):<13} {c.max_abs_error:<14.2e} "
                f"{c.max_rel_error:<14.2e} {'yes' if c.ok else 'NO'}"
            )
        return "\n".join(lines)


def random_inputs(
    count: int,
    *,
    batch: int = 4,
    dim: int = 8,
    seed: int = 0,
) -> tuple[jax.Array, ...]:  # count arrays, each (B, D) float32
    """`count` embedding batches: the first standard normal, the others 0.6 * first + 0.8 * noise.

    The correlation makes partners neither identical nor unrelated, so margins and hard-example
    choices fall both ways, as they do during training.
    """
    rng = np.random.default_rng(seed)
    first = rng.standard_normal((batch, dim))
    others = [0.6 * first + 0.8 * rng.standard_normal((batch, dim)) for _ in range(count - 1)]
    return tuple(jnp.asarray(x, dtype=jnp.float32) for x in [first, *others])


def check_loss(
    loss_fn: Callable[..., jax.Array],
    *inputs: jax.Array,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    jit: bool = True,
    verbose: bool = False,
) -> LossCheckReport:
    """Compare jax.grad(loss_fn) with central differences on every entry of every input.

    loss_fn takes exactly `inputs` (close over labels and settings with a lambda) and returns a
    scalar. Passes when |grad_k - fd_k| <= atol + rtol * |fd_k| for every entry; otherwise raises
    AssertionError naming the input, the entry and both numbers. Returns the report (printed too
    when `verbose`). Cost: 2 loss evaluations per entry, fine for test-sized inputs.
    """
    with jax.enable_x64(True):
        xs = [jnp.asarray(np.asarray(x), dtype=jnp.float64) for x in inputs]
        f = jax.jit(loss_fn) if jit else loss_fn
        value = float(f(*xs))
        grads = jax.grad(f, argnums=tuple(range(len(xs))))(*xs)

        checks = []
        for i, (x, grad) in enumerate(zip(xs, grads, strict=True)):
            flat = np.asarray(x).ravel()
            numeric = np.empty_like(flat)
            for k in range(flat.size):
                up, down = flat.copy(), flat.copy()
                up[k] += eps
                down[k] -= eps
                args_up = [*xs[:i], jnp.asarray(up.reshape(x.shape)), *xs[i + 1 :]]
                args_down = [*xs[:i], jnp.asarray(down.reshape(x.shape)), *xs[i + 1 :]]
                numeric[k] = (float(f(*args_up)) - float(f(*args_down))) / (2 * eps)
            analytic = np.asarray(grad).ravel()
            error = np.abs(analytic - numeric)
            excess = error - (atol + rtol * np.abs(numeric))
            worst = int(np.argmax(excess))
            checks.append(
                InputCheck(
                    index=i,
                    shape=tuple(x.shape),
                    max_abs_error=float(error.max()),
                    max_rel_error=float((error / np.maximum(np.abs(numeric), 1e-30)).max()),
                    worst=tuple(int(j) for j in np.unravel_index(worst, x.shape)),
                    analytic=float(analytic[worst]),
                    numeric=float(numeric[worst]),
                    ok=bool(np.all(excess <= 0) and np.all(np.isfinite(analytic))),
                )
            )

    report = LossCheckReport(value=value, inputs=tuple(checks), rtol=rtol, atol=atol)
    if verbose:
        print(report)
    for c in report.inputs:
        if not c.ok:
            raise AssertionError(
                f"gradient of input {c.index} {c.shape} disagrees with finite differences at "
                f"entry {c.worst}: jax.grad gives {c.analytic:.8g}, finite differences "
                f"{c.numeric:.8g}. Is a custom gradient wrong, or does the input sit on a kink "
                f"(relu or |x| at 0, a zero vector, a tie)?\n{report}"
            )
    return report

"""One training run in several processes: data parallelism across machines, the JAX way.

    # two machines (or two processes on one), the same command but for --process-id
    minisbert train ... --coordinator 10.0.0.1:4321 --num-processes 2 --process-id 0
    minisbert train ... --coordinator 10.0.0.1:4321 --num-processes 2 --process-id 1
    # a TPU pod slice, Slurm or Open MPI: JAX finds the others by itself
    minisbert train ... --distributed auto

Every process runs the same program on its own devices (SPMD, "multi-controller" JAX):

- **replicated**: the model, the optimiser state, the seed. Every process loads the same
  weights and data, so every process draws the same shuffle and knows every global batch;
- **split**: the rows of each global batch. The mesh's "data" axis spans the devices of
  every process (``jax.devices()``); each process packs the global batch (cheap, on the
  host) and hands JAX only the rows its own devices hold (``global_array``:
  ``jax.make_array_from_process_local_data``). The global batch, the seed and the result do
  not depend on how many processes share the work;
- **where they meet**: in the one jitted train step. XLA inserts the collectives the maths
  needs (gloo on CPUs, NCCL on GPUs, the ICI on TPUs): the all-reduce that sums the
  gradient over every row, and the all-gather that lets in-batch negatives see the whole
  global batch. So the loss is the global batch's, as on one device;
- **written once**: process 0 alone writes logs, evaluations, checkpoints and the final
  model (``is_main``). ``--resume`` needs the output folder on a file system every process
  reads (a shared disk, or one machine);
- **a process that dies**: its peers' next collective fails at once (the connection closes),
  and ``stopping_together`` turns that into one line and exit status 1 without the shutdown
  barrier, which would wait for the dead process and then abort with a C++ stack trace. A
  machine that vanishes without closing its connections is caught by the coordination
  service instead: after ``HEARTBEAT_TIMEOUT`` seconds without its heartbeat every other
  process aborts (a non-zero exit, JAX's own message), never waiting forever.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

HEARTBEAT_TIMEOUT = 30  # seconds without a heartbeat before a process counts as dead
INITIALIZATION_TIMEOUT = 120  # seconds to wait for every process to join
_log_filter: subprocess.Popen | None = None  # fatal_log's process, once started


def initialize(
    coordinator: str | None, num_processes: int | None, process_id: int | None, auto: bool
) -> None:
    """Join the run: before anything else touches JAX. ``auto``: what
    ``jax.distributed.initialize()`` detects (TPU pods, Slurm, Open MPI)."""
    if auto:
        jax.distributed.initialize(initialization_timeout=INITIALIZATION_TIMEOUT,
                                   heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)  # fmt: skip
        _filter_fatal_log()
        return
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if not all(given):
        raise ValueError(
            "several processes need all three of --coordinator HOST:PORT, --num-processes N "
            "and --process-id I (or --distributed auto on a TPU pod, Slurm or Open MPI)"
        )
    assert num_processes is not None and process_id is not None
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(
            f"--process-id {process_id} must be in 0..{num_processes - 1} "
            f"(--num-processes {num_processes})"
        )
    if ":" not in str(coordinator):
        raise ValueError(f"--coordinator {coordinator!r} must be HOST:PORT, e.g. 10.0.0.1:4321")
    jax.distributed.initialize(
        coordinator, num_processes, process_id,
        initialization_timeout=INITIALIZATION_TIMEOUT, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT,
    )  # fmt: skip
    _filter_fatal_log()


def _filter_fatal_log() -> None:
    """From here on, this process's stderr goes through ``fatal_log.py`` (a process of its
    own, so that it outlives an abort): JAX's fatal C++ log becomes one line."""
    global _log_filter
    script = Path(__file__).with_name("fatal_log.py")  # run as a file: no package import
    sys.stderr.flush()
    _log_filter = subprocess.Popen(
        [sys.executable, str(script), str(jax.process_index()), str(jax.process_count())],
        stdin=subprocess.PIPE,
    )
    assert _log_filter.stdin is not None
    os.dup2(_log_filter.stdin.fileno(), 2)  # fd 2 now writes into the filter's pipe
    _log_filter.stdin.close()  # fd 2 is the pipe's one write end left here


@contextlib.contextmanager
def stopping_together(command: str) -> Iterator[None]:
    """Around the work of one process in a run of several: any error ends this process with
    one line on stderr and exit status 1 (130/143 when interrupted), leaving at once. A normal
    exit would first wait at JAX's shutdown barrier for every process, a dead one too, and the
    coordination service would then abort this one with a C++ stack trace."""
    try:
        yield
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 (every error ends the same way)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        where = f"process {jax.process_index()} of {jax.process_count()}"
        if isinstance(err, KeyboardInterrupt):  # train's TrainingInterrupted says how to resume
            status, what = getattr(err, "exit_code", 130), f"interrupted by {first}"
        elif _peer_lost(first):
            status = 1
            what = (
                f"another process of the run stopped ({first}), so this one stops too; start "
                "every process again with the same flags and --resume to go on from the last "
                "checkpoint"
            )
        else:
            status, what = 1, f"error: {first}"
        sys.stdout.flush()
        print(f"minisbert {command}: {where}: {what}", file=sys.stderr, flush=True)
        os._exit(status)


def _peer_lost(message: str) -> bool:
    """Does an error message say that a collective lost its peer (gloo on CPUs, NCCL on
    GPUs, the coordination service)?"""
    signs = ("Connection closed by peer", "Connection reset", "Gloo", "NCCL", "heartbeat")
    return any(sign.lower() in message.lower() for sign in signs)


def is_main() -> bool:
    """Process 0: the one that writes. True in a run of one process."""
    return jax.process_index() == 0


def host_value(x: Any) -> Any:
    """This process's copy of a replicated array (the model, a loss): every process holds all
    of it, but an array that spans other processes' devices cannot be fetched whole."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return x.addressable_data(0)
    return x


def local_copy(tree: Any) -> Any:
    """``tree`` (an nnx state, a pytree) with every replicated array as this process's copy."""
    return jax.tree.map(host_value, tree)


def global_array(host: np.ndarray, sharding: jax.sharding.NamedSharding) -> jax.Array:
    """The global array ``host`` (every process holds all of it), put on the mesh with each
    process handing over only the rows its own devices hold."""
    if jax.process_count() == 1:
        return jax.device_put(host, sharding)
    indices = sharding.addressable_devices_indices_map(host.shape).values()
    # This process's devices hold one contiguous block along the split axis.
    axis = next(i for i, name in enumerate(sharding.spec) if name is not None)
    starts = [index[axis].start or 0 for index in indices]
    stops = [index[axis].stop or host.shape[axis] for index in indices]
    local = np.take(host, np.arange(min(starts), max(stops)), axis=axis)
    return jax.make_array_from_process_local_data(sharding, local, host.shape)


def replicated(host: Any, sharding: jax.sharding.NamedSharding) -> jax.Array:
    """A full copy of ``host`` on every device of every process (the same value everywhere)."""
    if jax.process_count() == 1:
        return jax.device_put(host, sharding)
    value = host_value(host)
    return jax.make_array_from_callback(np.shape(value), sharding, lambda index: value[index])

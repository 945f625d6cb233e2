"""Run safety for training: whose folder --output is, one run at a time, and a clean stop.

``check_output`` runs before the output folder is created; ``RunGuard`` is a context
manager around the rest of the run. Together they do three things:

1. **The output folder must be the run's own.** A run writes ``.minisbert-run.json`` into
   --output when it starts. Training may write into an empty folder or one holding that
   marker (an earlier run, to resume); any other folder (a model, a project holding its
   own config.json) is refused unless ``overwrite``. The --model folder is refused always,
   with or without ``overwrite``: the run would replace the weights it starts from.
   A run that stops before it wrote anything (refused settings or data, a bad loss) takes
   its marker back: the folder is left as it found it.
2. **One run per folder.** An advisory lock (``fcntl.flock``) on ``.minisbert-run.lock``,
   whose text is the holder's pid, host and start time, for the message a second run
   gets. The kernel drops a flock when its process dies, so a killed run leaves no stale
   lock behind; the file stays, and the next run takes it over. A run that ends (finished,
   failed or interrupted) removes the file itself, while it still holds the lock.
3. **Ctrl-C (SIGINT) and SIGTERM stop between steps.** The handlers only set a flag; the
   training loop looks at it before each step (``stop_requested``) and raises
   ``interrupted``. So a signal never lands inside a jitted step: raising
   KeyboardInterrupt while XLA compiles on other threads can crash the process (a
   segfault, rc -11). The last complete checkpoint is kept, and the message gives the
   ``minisbert train ... --resume`` command. A second Ctrl-C stops at once, as usual.
   The exit status is 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from minisbert.io.manifest import write_atomic
from minisbert.train_config import TrainConfig, flag_words

try:
    import fcntl
except ImportError:  # Windows: no flock, so no lock (the other guards still hold)
    fcntl = None  # type: ignore[assignment]

MARKER = ".minisbert-run.json"
LOCK = ".minisbert-run.lock"


class OutputInUse(RuntimeError):
    """--output is not this run's to write: the base model, someone's files, or a live run."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run between steps; ``exit_code`` is 128 + the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def check_output(output: Path, model_dir: Path, overwrite: bool) -> None:
    """Refuse an --output that is (or is inside) the --model folder, or a non-empty folder
    that no minisbert run made, unless ``overwrite``."""
    out, model = output.resolve(), model_dir.resolve()
    if out == model or model in out.parents:
        raise OutputInUse(
            f"--output {output} is the --model folder {model_dir}: training would replace the "
            "weights it starts from; choose another --output"
        )
    found = output.iterdir() if output.is_dir() else []
    others = sorted(p.name for p in found if p.name not in (MARKER, LOCK))
    if others and not (output / MARKER).is_file() and not overwrite:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise OutputInUse(
            f"--output {output} already holds files ({shown}) and is not a minisbert training "
            "folder; choose an empty or new --output, or pass --overwrite to write into it"
        )


def lock_output(output: Path) -> int | None:
    """Take the folder's lock, or raise OutputInUse naming the run that holds it.

    Returns the locked file descriptor (closing it releases the lock)."""
    if fcntl is None:
        return None
    fd = os.open(output / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # A run that ended between our open and our flock removed the file we locked: a
        # third run would lock a new one. Lock the file that is there now instead.
        if os.fstat(fd).st_ino != _inode(output / LOCK):
            os.close(fd)
            return lock_output(output)
    except BlockingIOError:
        holder = os.read(fd, 4096).decode("utf-8", "replace")
        os.close(fd)
        try:
            who = json.loads(holder)
            owner = (f"pid {who['pid']} on {who['host']}, started {who['started']}: "
                     f"{who['command']}")  # fmt: skip
        except (ValueError, KeyError, TypeError):
            owner = "a process that has not written its pid yet"
        raise OutputInUse(
            f"--output {output} is in use by another training ({owner}); wait for it to "
            "finish or stop it, or choose another --output"
        ) from None
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
    return fd


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def resume_command(config: TrainConfig) -> str:
    """The ``minisbert train`` command that continues ``config``'s run: its settings that
    differ from the defaults, --output, and --resume, each spelled as the parser reads it
    (``train_config.flag_words``, from the same table the flags are made from)."""
    args = ["minisbert", "train", *flag_words("output", config.output)]
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in ("output", "resume", "overwrite", "allow_data_change"):
            continue  # the marker written at the start makes --overwrite unnecessary now
        if value != field.default:
            args += flag_words(field.name, value)
    return shlex.join([*args, *flag_words("resume", True)])


class RunGuard:
    """``with RunGuard(output, model_dir, config):`` one training run, guarded as above.

    ``writes=False``: a process of a run of several that does not write (all but process 0):
    it takes no lock and writes no marker, and only stops cleanly on a signal."""

    def __init__(self, output: Path, model_dir: Path, config: Any, writes: bool = True):
        self.output, self.model_dir, self.config = output, model_dir, config
        self.writes = writes
        self.signum: int | None = None  # the first SIGINT / SIGTERM received, if any
        self._fd: int | None = None
        self._previous: dict[int, Any] = {}
        self._found: set[str] = set()  # what the folder held before the run, but for ours

    def __enter__(self) -> RunGuard:
        if self.writes:
            self._take_the_folder()
        if threading.current_thread() is threading.main_thread():  # signal.signal's rule
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) != signal.SIG_IGN:  # ignored (nohup, cmd &): keep so
                    self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def _take_the_folder(self) -> None:
        """Lock the output folder and mark it as this run's."""
        self._found = set(os.listdir(self.output))
        self._fd = lock_output(self.output)
        marker = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "model": str(self.model_dir)}
        try:
            write_atomic(self.output / MARKER, json.dumps(marker) + "\n")
        except BaseException as err:
            self.__exit__(type(err), err, None)
            raise

    def __exit__(self, exc_type: object = None, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous = {}
        if not self.writes:
            return
        ours = {MARKER, LOCK}
        if exc_type is not None and MARKER not in self._found:
            now = set(os.listdir(self.output))
            if now - ours == self._found - ours:  # the run wrote nothing: take the marker back
                (self.output / MARKER).unlink(missing_ok=True)
        if self._fd is not None:
            (self.output / LOCK).unlink(missing_ok=True)  # while still holding the lock
            os.close(self._fd)  # releases the lock
            self._fd = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # the second one: stop now, the default way
            previous = self._previous[signum]
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
            signal.raise_signal(signum)
            return
        self.signum = signum
        # os.write, not print: a handler may run in the middle of another print.
        os.write(2, f"\n{signal.Signals(signum).name}: stopping before the next step "
                    "(again to stop at once)\n".encode())  # fmt: skip

    @property
    def stop_requested(self) -> bool:
        return self.signum is not None

    def interrupted(
        self, step: int, total: int, last_checkpoint: Path | None
    ) -> TrainingInterrupted:
        """The exception that ends an interrupted run, naming what is kept and how to go on."""
        assert self.signum is not None
        kept = f"the last complete checkpoint is {last_checkpoint}" if last_checkpoint else (
            "no checkpoint was written yet")  # fmt: skip
        return TrainingInterrupted(
            f"{signal.Signals(self.signum).name} after step {step} of {total}; {kept}. "
            f"To continue:\n  {resume_command(self.config)}",
            self.signum,
        )

"""JAX's fatal C++ log, as one line: what a process of a broken multi-process run prints last.

When one process of a run dies, the others learn it in one of two ways. A collective that
loses its peer raises a Python error, and ``distributed.stopping_together`` ends the process
with one line. But when the process that dies is the coordinator (process 0, which hosts
JAX's coordination service), the C++ client of every other process notices first and aborts
the process from a C++ thread: a screenful of glog lines and a stack trace, no Python error.

So a run of several processes sends its stderr through this filter, a small process of its
own (``python -m minisbert.fast.fatal_log PROCESS NUM_PROCESSES``, started by
``distributed.initialize``). It passes everything through unchanged, until a line from JAX's
coordination client or service (glog format, ``E1207 16:07:51.767 21717 client.h:80] ...``,
``W...`` and ``F...`` too):

    from there on    kept, not shown: the C++ log, the stack trace
    at the end       the log written whole to a file, and one line instead:
                     "process 1 of 2: JAX's coordination service stopped this process ..."

Nothing is lost: a log that ends without a fatal line is shown as it was. The filter ignores
SIGINT and SIGTERM (they are meant for the training process, whose last line it must still
pass on) and ends when every writer of the pipe has gone.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile

# glog's prefix: severity, date, time, thread, file:line. Only the lines of the coordination
# client and service (and its preemption notices) start the capture; others pass through.
COORDINATION_FILES = rb"(coordination_\w+|client|preemption_\w+)\.(cc|h)"
COORDINATION_LINE = re.compile(rb"^[WEF]\d{4} [\d:.]+\s+\d+ " + COORDINATION_FILES + rb":\d+\]")
FATAL_STATUS = re.compile(rb"absl::Status: (.*)")


def one_line(log: bytes, process: str, num_processes: str, path: str) -> str:
    """The line printed in place of a fatal log: who stopped, JAX's reason, where the log is."""
    reason = "another process died or the network failed"
    status = FATAL_STATUS.search(log)
    if status:  # "UNAVAILABLE: Failed to send RPC to coordination service. Either ..."
        first_sentence = status.group(1).decode(errors="replace").split(". ")[0]
        reason = f"{reason}: {first_sentence}"
    return (
        f"minisbert train: process {process} of {num_processes}: JAX's coordination service "
        f"stopped this process ({reason}); start every process again with the same flags and "
        f"--resume to go on from the last checkpoint (JAX's log: {path})\n"
    )


def main(process: str, num_processes: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    out = sys.stderr.buffer
    captured = bytearray()  # the C++ log, from the coordination client's first line on
    pending = b""  # the start of a line not yet ended: it may be a glog prefix
    while chunk := os.read(0, 65536):
        if captured:
            captured += chunk
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for index, line in enumerate(lines):
            if COORDINATION_LINE.match(line):
                captured += b"\n".join(lines[index:]) + b"\n" + pending
                pending = b""
                break
            out.write(line + b"\n")
        if pending and not captured and pending[:1] not in (b"W", b"E", b"F"):
            out.write(pending)  # a progress bar's "\r" update: show it now
            pending = b""
        out.flush()
    if not captured:
        out.write(pending)
    elif re.search(rb"^F\d{4} ", bytes(captured), re.MULTILINE):
        handle, path = tempfile.mkstemp(prefix=f"minisbert-process-{process}-", suffix=".log")
        with os.fdopen(handle, "wb") as log:
            log.write(captured)
        out.write(one_line(bytes(captured), process, num_processes, path).encode())
    else:  # the log did not end the process: show it as it was
        out.write(bytes(captured) + pending)
    out.flush()


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""fast/fatal_log.py: JAX's fatal C++ log of a multi-process run becomes one line; every other
line passes through unchanged, and nothing is lost (the log is kept in a file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import minisbert.fast.fatal_log as fatal_log

SCRIPT = Path(fatal_log.__file__)
FATAL_LOG = (
    b"E1207 16:07:51.767981   21717 coordination_service_agent.cc:289] Polled an error from "
    b"coordination service (this can be an error from this or another task).\n"
    b"F1207 16:07:51.768018   21717 client.h:80] Terminating process because the JAX distributed "
    b"service detected fatal errors. absl::Status: UNAVAILABLE: Failed to send RPC to "
    b"coordination service. Either the leader task was preempted.\n"
    b"*** Check failure stack trace: ***\n"
    b"    @     0x7f11a2c20634  absl::log_internal::LogMessage::SendToLog()\n"
)


def through_filter(text: bytes) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), "1", "2"], input=text,
                          capture_output=True, check=True)  # fmt: skip
    return done.stderr.decode()


def test_other_lines_pass_through_unchanged():
    text = b"step 1 loss 0.5\nW1207 16:07:51.1 1 cpu_client.cc:10] other C++ news\n\rstep 2"
    assert through_filter(text) == text.decode()


def test_a_fatal_coordination_log_becomes_one_line_and_a_file():
    err = through_filter(b"step 1 loss 0.5\n" + FATAL_LOG)
    first, line = err.splitlines()
    assert first == "step 1 loss 0.5"
    assert line.startswith("minisbert train: process 1 of 2: JAX's coordination service stopped")
    assert "UNAVAILABLE: Failed to send RPC to coordination service)" in line
    assert "--resume" in line
    log = Path(line.rsplit("JAX's log: ", 1)[1].rstrip(")"))
    assert log.read_bytes() == FATAL_LOG  # the whole C++ log, stack trace included
    log.unlink()


def test_a_coordination_log_that_is_not_fatal_is_shown_as_it_was():
    text = FATAL_LOG.replace(b"F1207", b"E1207") + b"step 3 loss 0.4\n"
    assert through_filter(text) == text.decode()

"""A local HTTP server for the download tests: a folder served on 127.0.0.1, or any handler.

``serving(handler)`` starts a ``ThreadingHTTPServer`` on 127.0.0.1 (a free port) in a daemon
thread, yields its base URL, and shuts it down. ``QuietHandler`` serves a folder's files and
logs nothing; a test that needs its own answers subclasses it. The ``served_folder`` fixture
(conftest.py) serves a folder for the length of a test.

A helper module, not a test file (see tiny.py).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """http.server's file handler, without a log line per request."""

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(
    handler: type[http.server.BaseHTTPRequestHandler] = QuietHandler,
    folder: Path | None = None,
    poll_interval: float = 0.01,  # how often serve_forever looks for shutdown: a quick stop
) -> Iterator[str]:
    """Serve with ``handler`` (given ``directory=folder`` if a folder is named); yield the URL
    ``http://127.0.0.1:PORT``; stop the server and its thread on the way out."""
    factory = functools.partial(handler, directory=str(folder)) if folder is not None else handler
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)
    thread = threading.Thread(target=httpd.serve_forever, args=(poll_interval,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()

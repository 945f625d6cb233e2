"""A download counts only when it is whole: the faults a real server can have, served by an
http.server thread on 127.0.0.1 (no test touches the internet).

Each path of the server answers with one fault: half a body under the full Content-Length,
a connection closed early without one, a checksum that does not match, a redirect loop, a
stall, a body over the cap. Paths without a fault are served from a folder, in the hub's
layout, so that a whole ``minisbert fetch`` can meet a fault too.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from served import QuietHandler, serving
from tiny import make_tiny_model_dir

from minisbert.data import DataError, fetch_datasets
from minisbert.io.convert import export_sentence_transformers
from minisbert.io.fetch import FetchError, fetch
from minisbert.io.hub import download, download_verified

BODY = bytes(range(256)) * 64  # 16 KiB
SHA256 = hashlib.sha256(BODY).hexdigest()
OTHER_SHA256 = hashlib.sha256(b"another file").hexdigest()
STALL = 0.2  # seconds of silence the client waits for; the server stays silent until shutdown

Route = Callable[[http.server.BaseHTTPRequestHandler], None]


class Server:
    """A local server (served.py): ``routes[path]`` answers that path; any other is served
    from ``root``. ``quiet`` is set at shutdown, to wake the handlers that stall."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.routes: dict[str, Route] = {}
        self.quiet = threading.Event()
        self.url = ""
        routes = self.routes

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path in routes:
                    routes[self.path](self)
                else:
                    super().do_GET()

        self.handler = Handler


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "served")
    server.root.mkdir(parents=True)
    with serving(server.handler, server.root) as url:
        server.url = url
        try:
            yield server
        finally:
            server.quiet.set()


# ---------------------------------------------------------------- the faults


def send(body: bytes, length: int | None, headers: dict[str, str] | None = None) -> Route:
    """200 with ``length`` as Content-Length (None: none, the body ends when the connection
    closes), then ``body``; http.server's HTTP/1.0 closes the connection after it."""

    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        if length is not None:
            h.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)

    return route


def chunked_cut_short(body: bytes) -> Route:
    """A chunked body whose last chunk never comes (urllib raises IncompleteRead)."""

    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        h.protocol_version = "HTTP/1.1"
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
        h.close_connection = True

    return route


def redirect(location: str, headers: dict[str, str] | None = None) -> Route:
    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def stall(server: Server, before_headers: bool) -> Route:
    """Say nothing (or headers and half the body, then nothing) until the test ends."""

    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        if not before_headers:
            h.send_response(200)
            h.send_header("Content-Length", str(len(BODY)))
            h.end_headers()
            h.wfile.write(BODY[: len(BODY) // 2])
            h.wfile.flush()
        server.quiet.wait(10)

    return route


def refused_url() -> str:
    """A URL on a local port that nothing listens on: the connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.safetensors"


def refused(call: Callable[[], object], error: type[Exception] = FetchError) -> str:
    """Run ``call``, which must fail; return its message, checked to be one line."""
    with pytest.raises(error) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


# ---------------------------------------------------------------- download


@pytest.mark.parametrize(
    "route",
    [
        send(BODY[:8192], length=len(BODY)),  # the full Content-Length, half the body
        chunked_cut_short(BODY[:8192]),  # no Content-Length, chunks: IncompleteRead
    ],
    ids=["content-length", "chunked"],
)
def test_a_short_body_is_refused_and_deleted(server, tmp_path, route):
    server.routes["/model.safetensors"] = route
    dest = tmp_path / "got" / "model.safetensors"
    message = refused(lambda: download(f"{server.url}/model.safetensors", dest))
    assert message.startswith(f"{server.url}/model.safetensors: incomplete download")
    assert "received 8,192 bytes" in message
    assert not dest.exists()


def test_a_connection_closed_early_is_caught_by_the_size_the_hub_states(server, tmp_path):
    """The hub sends an LFS file as a redirect to its CDN that states the file's size and
    sha256; the CDN here sends half the file, with no Content-Length, and closes."""
    linked = {"X-Linked-Size": str(len(BODY)), "X-Linked-Etag": f'"{SHA256}"'}
    server.routes["/model.safetensors"] = redirect("/cdn/abc", linked)
    server.routes["/cdn/abc"] = send(BODY[:8192], length=None)
    dest = tmp_path / "model.safetensors"
    message = refused(lambda: download(f"{server.url}/model.safetensors", dest))
    assert f"expected {len(BODY):,} bytes, received 8,192 bytes" in message
    assert not dest.exists()


def test_only_a_stated_sha256_is_checked(server, tmp_path):
    dest = tmp_path / "model.safetensors"
    url = f"{server.url}/model.safetensors"
    refuse = {
        "X-Linked-Etag": f'"{OTHER_SHA256}"',
        "ETag": f'"{OTHER_SHA256}"',  # an ETag of 64 hex digits is a sha256 too
    }
    for name, value in refuse.items():
        server.routes["/model.safetensors"] = send(BODY, len(BODY), {name: value})
        message = refused(lambda: download(url, dest))
        assert f"sha256 {SHA256} is not the {OTHER_SHA256} the server stated" in message
        assert f"expected {len(BODY):,} bytes, received {len(BODY):,} bytes" in message
        assert not dest.exists()
    accept = [
        {"X-Linked-Etag": f'"{SHA256}"'},
        {"ETag": f'"{SHA256.upper()}"'},
        {"ETag": f'W/"{OTHER_SHA256}"'},  # weak: not a checksum of these bytes
        {"ETag": f'"{OTHER_SHA256[:40]}"'},  # 40 hex: a git blob sha1, not a sha256
    ]
    for headers in accept:
        server.routes["/model.safetensors"] = send(BODY, len(BODY), headers)
        assert download(url, dest) == SHA256, headers
        assert dest.read_bytes() == BODY


def test_a_redirect_loop_is_one_line(server, tmp_path):
    server.routes["/model.safetensors"] = redirect("/model.safetensors")
    message = refused(lambda: download(f"{server.url}/model.safetensors", tmp_path / "m"))
    assert message == f"{server.url}/model.safetensors: redirect loop (urllib gave up on HTTP 302)"


@pytest.mark.parametrize("before_headers", [True, False], ids=["before-headers", "mid-body"])
def test_a_stall_is_not_an_unreachable_hub(server, tmp_path, before_headers):
    server.routes["/model.safetensors"] = stall(server, before_headers)
    dest = tmp_path / "model.safetensors"
    message = refused(lambda: download(f"{server.url}/model.safetensors", dest, timeout=STALL))
    assert message == f"{server.url}/model.safetensors: stalled: no data for 0.2 s"
    assert not dest.exists()
    message = refused(lambda: download(refused_url(), dest, timeout=STALL))
    assert message.startswith("hub not reachable at")  # refused: not a stall


def test_a_body_over_the_cap_is_refused(server, tmp_path, monkeypatch):
    dest = tmp_path / "model.safetensors"
    url = f"{server.url}/model.safetensors"
    # A Content-Length of 10 GiB is refused before a byte is read (only 16 KiB would come).
    server.routes["/model.safetensors"] = send(BODY, length=10 << 30)
    message = refused(lambda: download(url, dest))
    assert message == (
        f"{url}: 10,737,418,240 bytes, over the download cap of 4,294,967,296 bytes; "
        "refused. To allow it, set MINISBERT_MAX_DOWNLOAD_BYTES=10737418240"
    )
    # Without a Content-Length, the body is cut off as it grows past the cap.
    server.routes["/model.safetensors"] = send(BODY, length=None)
    message = refused(lambda: download_verified(url, dest, max_bytes=1000))
    assert "more than 1,000 bytes, over the download cap of 1,000 bytes" in message
    assert not dest.exists()
    monkeypatch.setenv("MINISBERT_MAX_DOWNLOAD_BYTES", "1000")
    server.routes["/model.safetensors"] = send(BODY, length=len(BODY))
    assert "16,384 bytes, over the download cap of 1,000 bytes" in refused(
        lambda: download(url, dest)
    )
    assert download_verified(url, dest, max_bytes=len(BODY)) == SHA256  # the argument wins


def test_a_progress_bar_names_a_large_file(server, tmp_path, capsys):
    large = BODY * 128  # 2 MiB
    server.routes["/model.safetensors"] = send(large, len(large))
    server.routes["/config.json"] = send(BODY, len(BODY))
    download_verified(
        f"{server.url}/model.safetensors", tmp_path / "model.safetensors", progress=True
    )
    assert "model.safetensors" in capsys.readouterr().err
    download_verified(f"{server.url}/config.json", tmp_path / "config.json", progress=True)
    assert capsys.readouterr().err == ""  # small files come without a bar


# ---------------------------------------------------------------- through fetch and the cache


def test_a_truncated_model_file_never_reaches_the_cache(server, tmp_path, monkeypatch):
    """The first fetch meets half a model.safetensors and fails in one line; the second,
    against a good server, downloads again instead of "using cached" half a file."""
    tiny = make_tiny_model_dir(tmp_path / "tiny", normalize=True)
    served = export_sentence_transformers(tiny, tmp_path / "served/acme/tiny-st/resolve/main")
    weights = (served / "model.safetensors").read_bytes()
    path = "/acme/tiny-st/resolve/main/model.safetensors"
    server.routes[path] = send(weights[: len(weights) // 2], len(weights))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    message = refused(lambda: fetch("acme/tiny-st", tmp_path / "weights", log=lambda m: None))
    assert f"{server.url}{path}: incomplete download, expected {len(weights):,} bytes" in message
    assert list((tmp_path / "cache").rglob("manifest.json")) == []
    del server.routes[path]
    messages: list[str] = []
    out = fetch("acme/tiny-st", tmp_path / "weights", log=messages.append)
    assert not any("using cached" in m for m in messages)
    entry = tmp_path / "cache" / "hub" / "acme--tiny-st"
    assert (entry / "model.safetensors").read_bytes() == weights
    assert (entry / "manifest.json").is_file() and (out / "model.safetensors").is_file()


# ---------------------------------------------------------------- dataset archives


@pytest.mark.parametrize("fault", ["short", "over-the-cap"])
def test_a_dataset_archive_is_checked_the_same_way(server, tmp_path, monkeypatch, fault):
    if fault == "short":
        server.routes["/snli_1.0.zip"] = send(BODY[:8192], length=len(BODY))
        expected = f"{server.url}/snli_1.0.zip: incomplete download, expected 16,384 bytes"
    else:
        server.routes["/snli_1.0.zip"] = send(BODY, length=None)
        monkeypatch.setenv("MINISBERT_MAX_DOWNLOAD_BYTES", "1000")
        expected = "more than 1,000 bytes, over the download cap of 1,000 bytes"
    dest = tmp_path / "data"
    message = refused(lambda: fetch_datasets(dest, names=["snli"], base_urls=server.url), DataError)
    assert message.startswith(f"could not download {server.url}/snli_1.0.zip: ")
    assert expected in message
    assert list((dest / "snli").iterdir()) == []  # no archive, no half-written file


def test_a_whole_body_that_is_no_archive_is_one_line(server, tmp_path):
    server.routes["/snli_1.0.zip"] = send(BODY, length=len(BODY))
    dest = tmp_path / "data"
    message = refused(lambda: fetch_datasets(dest, names=["snli"], base_urls=server.url), DataError)
    assert message.startswith(f"{server.url}/snli_1.0.zip: not a readable zip or tar archive")
    assert list((dest / "snli").iterdir()) == []

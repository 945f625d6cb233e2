"""Downloading a BERT model repo from the Hugging Face hub, safetensors only.

The hub serves every file of a repo at one URL layout::

    {endpoint}/{owner}/{name}/resolve/{revision}/{file}

(``endpoint`` is ``$HF_ENDPOINT``, default https://huggingface.co; ``revision`` a branch,
tag or commit, default ``main``). There is no listing of a folder to follow, so the
files are named in advance, as sentence-transformers lays them out:

1. ``modules.json``, if present, lists the pipeline: each module's type and folder,
   e.g. Transformer in ``""``, Pooling in ``1_Pooling``, Dense in ``2_Dense``. A repo
   without it is a plain Hugging Face BERT, one Transformer at the top;
2. a Transformer folder gives ``config.json``, ``model.safetensors``, the tokenizer
   files and ``sentence_bert_config.json``; a Pooling folder its ``config.json``; any
   other (Dense, ...) its ``config.json`` and ``model.safetensors`` (or, for a large
   model, ``model.safetensors.index.json`` and the shards it names). Normalize has none;
3. ``config_sentence_transformers.json`` at the top.

A 404 on a file that a repo may lack is fine. A missing ``model.safetensors`` is not:
minisbert never downloads ``pytorch_model.bin``, a pickle, which can run any code when
it is loaded. An unknown repo cannot be pinned; still, no download counts until it is
whole (``download_verified``): as long as its Content-Length says, no longer than a cap,
and with the sha256 the hub states for it, where it states one. ``minisbert.io.fetch``
then writes a manifest, so that later damage is caught. The dataset downloads of
``minisbert.data.fetch`` go through ``download_verified`` too.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from pathlib import Path
from typing import IO

from tqdm import tqdm

from minisbert.config import ConfigError
from minisbert.io.archive import safe_relative_path
from minisbert.io.modules_json import MODULES_JSON, read_modules


class FetchError(RuntimeError):
    """No source could provide the model, or what came did not match its pins."""


TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
)  # fmt: skip
TRANSFORMER_KINDS = ("Transformer", "BERT")  # "BERT": its name in old repos (0_BERT/)
WEIGHTLESS_KINDS = ("Pooling", "Normalize")
# owner/name (the owner may be absent: "bert-base-uncased"), then an optional @revision.
REPO_ID = re.compile(r"^((?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*)(?:@([\w./-]+))?$")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MAX_DOWNLOAD_ENV = "MINISBERT_MAX_DOWNLOAD_BYTES"
DEFAULT_MAX_DOWNLOAD_BYTES = 4 << 30  # 4 GiB: BERT-large's weights are 1.3 GB, MultiNLI 230 MB
PROGRESS_MIN_BYTES = 1 << 20  # a smaller file is there before a bar could say anything
BLOCK = 1 << 20


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def parse_repo_id(text: str) -> tuple[str, str]:
    """``"owner/name@revision"`` -> ``("owner/name", "revision")``; the revision is "main"
    when absent."""
    match = REPO_ID.match(text)
    if match is None or ".." in text:
        raise FetchError(f"{text!r} is not a hub repo id like OWNER/NAME or OWNER/NAME@REVISION")
    return match[1], match[2] or "main"


def hub_url(repo: str, revision: str, name: str) -> str:
    quoted = urllib.parse.quote(revision, safe="")  # refs/pr/1 -> refs%2Fpr%2F1
    return f"{hub_endpoint()}/{repo}/resolve/{quoted}/{urllib.parse.quote(name)}"


def download(url: str, dest: Path, timeout: float = 60.0) -> str | None:
    """Stream ``url`` into ``dest``, checked as ``download_verified`` checks it, with the hub's
    own checksums; return its sha256, or None when the server says 404. The hub's HTTP and
    connection errors become one-line ``FetchError``s here."""
    try:
        return download_verified(url, dest, timeout, hub_checksums=True)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        hint = ""
        if err.code in (401, 403):  # what the hub answers for a repo it does not show
            hint = " (no such repo, or a private or gated one: minisbert sends no token)"
        raise FetchError(f"{url}: HTTP {err.code} {one_line(err.reason)}{hint}") from None
    except urllib.error.URLError as err:  # refused, no such host: no connection was made
        raise FetchError(
            f"hub not reachable at {hub_endpoint()} ({one_line(err.reason)})"
        ) from None


# ---------------------------------------------------------------- verified downloads


def download_verified(
    url: str,
    dest: Path,
    timeout: float = 60.0,
    max_bytes: int | None = None,
    progress: bool | None = None,
    hub_checksums: bool = False,
) -> str:
    """Stream ``url`` into ``dest`` and return its sha256, once the body is known to be whole.

    A download counts only if it is checked: a cache that records half a file says "using
    cached" and fails on every later run. So:

    - a body larger than the cap (``max_download_bytes``) is refused, from its Content-Length
      before anything is read, or the moment it grows past the cap when it states none;
    - a body shorter than its Content-Length is refused. urllib raises IncompleteRead for a
      chunked body cut short, but returns a plain one short without a word;
    - with ``hub_checksums``, the size and sha256 the hub states are compared too (see
      ``stated_sha256``): without a Content-Length, that is the only way to tell that a
      connection closed early;
    - a server that sends nothing for ``timeout`` seconds has stalled, which is not the same
      as one that cannot be reached.

    Each failure raises a one-line ``FetchError`` naming ``url`` and deletes ``dest``. Two
    pass through, ``dest`` deleted too, for the caller to word: ``urllib.error.HTTPError``
    (a 404 may be fine) and ``urllib.error.URLError`` (no connection). ``progress`` shows a
    bar on stderr for files over 1 MiB; None: when stderr is a terminal.
    """
    cap = max_download_bytes(max_bytes)
    dest.parent.mkdir(parents=True, exist_ok=True)
    redirects = KeepRedirectHeaders()
    try:
        try:
            response = urllib.request.build_opener(redirects).open(url, timeout=timeout)
        except urllib.error.HTTPError as err:
            if 300 <= err.code < 400:  # urllib stopped following: a loop, or more than 10
                err.close()
                raise FetchError(
                    f"{url}: redirect loop (urllib gave up on HTTP {err.code})"
                ) from None
            raise
        except (TimeoutError, urllib.error.URLError) as err:
            if isinstance(getattr(err, "reason", err), TimeoutError):
                raise FetchError(f"{url}: stalled: no data for {timeout:g} s") from None
            raise
        with response:
            stated = [*redirects.headers, response.headers] if hub_checksums else []
            return receive(response, dest, url, cap, stated, progress, timeout)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def receive(
    response: http.client.HTTPResponse,
    dest: Path,
    url: str,
    cap: int,
    stated: list[Message],
    progress: bool | None,
    timeout: float,
) -> str:
    """Write the body of ``response`` to ``dest``; refuse it if too big, short or not the
    file the headers of ``stated`` describe. Returns its sha256."""
    expected = stated_size(response.headers, "Content-Length")
    if expected is None:  # the hub states an LFS file's size on its redirect to the CDN
        expected = next((n for h in stated if (n := stated_size(h, "X-Linked-Size"))), None)
    if expected is not None and expected > cap:
        raise too_big(url, expected, cap)
    sizes = f"expected {'an unstated size' if expected is None else f'{expected:,} bytes'}"
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]) or url
    if progress is None:
        progress = sys.stderr is not None and sys.stderr.isatty()
    small = expected is not None and expected < PROGRESS_MIN_BYTES
    digest, received = hashlib.sha256(), 0
    bar = tqdm(total=expected, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
               disable=not progress or small, leave=False)  # fmt: skip
    with open(dest, "wb") as out, bar:
        while True:
            try:
                block = response.read(BLOCK)
            except TimeoutError:
                raise FetchError(f"{url}: stalled: no data for {timeout:g} s") from None
            except (http.client.HTTPException, ValueError, OSError) as err:  # IncompleteRead, reset
                received += len(getattr(err, "partial", b""))  # what IncompleteRead did read
                raise FetchError(
                    f"{url}: incomplete download, {sizes}, received {received:,} bytes before "
                    f"the connection broke ({one_line(repr(err))})"
                ) from None
            if not block:
                break
            received += len(block)
            if received > cap:
                raise too_big(url, None, cap)
            digest.update(block)
            out.write(block)
            bar.update(len(block))
    if expected is not None and received != expected:
        raise FetchError(f"{url}: incomplete download, {sizes}, received {received:,} bytes")
    sha256, want = digest.hexdigest(), stated_sha256(stated)
    if want is not None and sha256 != want:
        raise FetchError(
            f"{url}: sha256 {sha256} is not the {want} the server stated; {sizes}, "
            f"received {received:,} bytes"
        )
    return sha256


class KeepRedirectHeaders(urllib.request.HTTPRedirectHandler):
    """Follows redirects as urllib does, keeping the headers of each: the hub answers an LFS
    file (model.safetensors) with a redirect to its CDN, and only that redirect carries the
    file's sha256 and size (X-Linked-Etag, X-Linked-Size)."""

    def __init__(self) -> None:
        self.headers: list[Message] = []

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        self.headers.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def stated_sha256(stated: list[Message]) -> str | None:
    """The sha256 that the hub's headers give for a file, or None.

    X-Linked-Etag (an LFS file) is the quoted sha256 of the file; so is an ETag of 64 hex
    digits on the last response. Others are not a sha256 and are ignored: a weak ETag
    (``W/"..."``) or the 40-hex git blob sha1 the hub gives a small file.
    """
    linked = [h.get("X-Linked-Etag") for h in stated]
    last = [stated[-1].get("ETag")] if stated else []
    for value in linked + last:
        if value and not value.startswith("W/"):
            value = value.strip().strip('"').lower()
            if SHA256_HEX.fullmatch(value):
                return value
    return None


def stated_size(headers: Message, name: str) -> int | None:
    value = (headers.get(name) or "").strip()
    return int(value) if value.isdigit() else None


def max_download_bytes(max_bytes: int | None = None) -> int:
    """The most bytes one download may bring: ``max_bytes``, else
    ``$MINISBERT_MAX_DOWNLOAD_BYTES``, else 4 GiB."""
    where = "max_bytes"
    if max_bytes is None:
        text = os.environ.get(MAX_DOWNLOAD_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_DOWNLOAD_BYTES
        where, max_bytes = f"{MAX_DOWNLOAD_ENV}={text!r}", int(text) if text.isdigit() else 0
    if max_bytes <= 0:
        raise FetchError(f"{where} is not a positive whole number of bytes")
    return max_bytes


def too_big(url: str, size: int | None, cap: int) -> FetchError:
    """``size``: the Content-Length, or None when the body grew past ``cap`` without one."""
    stated = f"{size:,} bytes" if size is not None else f"more than {cap:,} bytes"
    allow = f"{MAX_DOWNLOAD_ENV}={size}" if size is not None else f"{MAX_DOWNLOAD_ENV}=BYTES"
    return FetchError(
        f"{url}: {stated}, over the download cap of {cap:,} bytes; refused. To allow it, "
        f"set {allow}"
    )


def one_line(text: object) -> str:
    """``text`` with its line breaks folded: urllib's redirect error spans three lines."""
    return " ".join(str(text).split())


def read_pipeline(dest: Path, repo: str) -> list[tuple[str, str]]:
    """The (kind, folder) of each module in the downloaded ``modules.json``
    (``minisbert.io.modules_json``: a folder that could leave ``dest``, ``../x`` or ``/x``,
    is refused), as a FetchError naming the repo."""
    try:
        return read_modules(dest, name=f"{repo}: {MODULES_JSON}")
    except ConfigError as err:
        raise FetchError(str(err)) from None


def no_safetensors(repo: str, revision: str, name: str) -> FetchError:
    return FetchError(
        f"{repo}@{revision} has no {name}, and minisbert never downloads or unpickles "
        "pytorch_model.bin (a pickle can run code). Convert it once where you trust it, e.g. "
        f"transformers' AutoModel.from_pretrained('{repo}').save_pretrained(DIR, "
        "safe_serialization=True) or sentence-transformers' SentenceTransformer(...).save(DIR), "
        f"then `minisbert fetch NAME --from DIR`; or fetch a revision that has it: {repo}@REV"
    )


def from_hub_repo(repo: str, revision: str, dest: Path) -> None:
    """Download the sentence-transformers (or plain BERT) files of ``repo`` into ``dest``."""
    asked: set[str] = set()
    got: set[str] = set()

    def get(name: str) -> bool:
        if name not in asked:
            asked.add(name)
            if download(hub_url(repo, revision, name), dest / name) is not None:
                got.add(name)
        return name in got

    pipeline = read_pipeline(dest, repo) if get(MODULES_JSON) else [("Transformer", "")]
    for name in ("sentence_bert_config.json", "config_sentence_transformers.json"):
        get(name)
    for kind, folder in pipeline:
        if kind == "Normalize":  # no files: its folder is empty
            continue
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        if not get(f"{prefix}config.json") and kind in TRANSFORMER_KINDS:
            raise FetchError(
                f"{repo}@{revision}: no {prefix}config.json at {hub_endpoint()}; "
                "is it a BERT model repo?"
            )
        if kind in TRANSFORMER_KINDS:
            for name in (*TOKENIZER_FILES, "sentence_bert_config.json"):
                get(prefix + name)
        if kind in WEIGHTLESS_KINDS or get(f"{prefix}model.safetensors"):
            continue
        if get(f"{prefix}model.safetensors.index.json"):  # large models: shards
            for shard in read_shards(dest / f"{prefix}model.safetensors.index.json", repo):
                if not get(prefix + shard):
                    raise FetchError(f"{repo}@{revision}: shard {prefix}{shard} not found")
        elif kind in (*TRANSFORMER_KINDS, "Dense"):
            raise no_safetensors(repo, revision, f"{prefix}model.safetensors")


def read_shards(index: Path, repo: str) -> list[str]:
    """The shard files that ``model.safetensors.index.json`` maps tensors to."""
    try:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        for shard in shards:  # plain names beside the index, and safetensors only
            if "/" in shard or not shard.endswith(".safetensors"):
                raise ValueError(f"shard {shard!r} is not a .safetensors file beside the index")
            safe_relative_path(shard)
    except (
        json.JSONDecodeError,
        UnicodeDecodeError,
        KeyError,
        TypeError,
        AttributeError,
        ValueError,
    ) as err:
        raise FetchError(f"{repo}: {index.name} unreadable or unsafe ({err})") from None
    return shards

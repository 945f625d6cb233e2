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
it is loaded. Nothing here is checked against known checksums (an unknown repo cannot
be pinned); ``minisbert.io.fetch`` writes a manifest so that later damage is caught.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from minisbert.io.archive import UnsafeArchiveError, safe_relative_path


class FetchError(RuntimeError):
    """No source could provide the model, or what came did not match its pins."""


TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
)  # fmt: skip
TRANSFORMER_KINDS = ("Transformer", "BERT")  # "BERT": its name in old repos (0_BERT/)
WEIGHTLESS_KINDS = ("Pooling", "Normalize")
# owner/name (the owner may be absent: "bert-base-uncased"), then an optional @revision.
REPO_ID = re.compile(r"^((?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*)(?:@([\w./-]+))?$")


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
    """Stream ``url`` into ``dest``; return its sha256, or None when the server says 404."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
    except urllib.error.HTTPError as err:
        dest.unlink(missing_ok=True)
        if err.code == 404:
            return None
        hint = ""
        if err.code in (401, 403):  # what the hub answers for a repo it does not show
            hint = " (no such repo, or a private or gated one: minisbert sends no token)"
        raise FetchError(f"{url}: HTTP {err.code} {err.reason}{hint}") from None
    except (urllib.error.URLError, OSError) as err:
        dest.unlink(missing_ok=True)
        reason = getattr(err, "reason", err)
        raise FetchError(f"hub not reachable at {hub_endpoint()} ({reason})") from None
    return digest.hexdigest()


def read_modules(path: Path, repo: str) -> list[tuple[str, str]]:
    """The (type, folder) of each module in ``modules.json``; a folder that could leave
    the download folder (``../x``, ``/x``) is refused."""
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
        pipeline = [(m["type"].rsplit(".", 1)[-1], m.get("path", "")) for m in modules]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise FetchError(f"{repo}: modules.json is not a list of modules ({err!r})") from None
    for _, folder in pipeline:
        try:
            if folder:
                safe_relative_path(folder)
        except (UnsafeArchiveError, TypeError) as err:
            raise FetchError(f"{repo}: modules.json names an unsafe folder: {err}") from None
    return pipeline


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

    pipeline = read_modules(dest / "modules.json", repo) if get("modules.json") else []
    pipeline = pipeline or [("Transformer", "")]
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

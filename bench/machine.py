"""What machine a benchmark ran on, so figures from different machines are never mixed."""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata


def cpu_model() -> str:
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
        match = re.search(r"model name\s*:\s*(.+)", text)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict[str, str]:
    import jax

    device = jax.devices()[0]
    versions = {}
    for package in ("jax", "jaxlib", "flax", "torch", "sentence-transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "-"
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "python": platform.python_version(),
        **versions,
    }


def slug(info: dict[str, str]) -> str:
    """A file name that differs whenever the hardware or backend differs."""
    text = f"{info['backend']}-{info['device']}-{info['cpu']}-{info['cores']}cores"
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()

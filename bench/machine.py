"""What machine a benchmark ran on, so figures from different machines are never mixed."""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata


def cpu_model() -> str:
    """The CPU's name, with its family and model numbers where the name alone is vague
    (a virtual machine may report just "AMD EPYC" for CPUs of different generations)."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return platform.processor() or platform.machine()
    name = re.search(r"model name\s*:\s*(.+)", text)
    family = re.search(r"cpu family\s*:\s*(\d+)", text)
    model = re.search(r"^model\s*:\s*(\d+)", text, re.MULTILINE)
    described = name.group(1).strip() if name else platform.machine()
    if family and model:
        described += f" (family {family.group(1)}, model {model.group(1)})"
    return described


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

"""Host memory for XLA on the CPU: keep freed blocks in the process instead of returning them.

Every run of a compiled training step allocates its scratch memory and frees it at the end.
Some of it is large: the gradient of the word-embedding table alone is V x D = 30,522 x 384
float32, 47 MB, written into a fresh zero-filled buffer every step. With glibc's default
settings a block that large goes back to the operating system when it is freed (blocks above
M_MMAP_THRESHOLD, at most 32 MiB by default, are mapped and unmapped one by one), and XLA's
worker threads allocate from arenas of their own. The next step then touches fresh pages,
which the kernel maps and zeroes again.

Three ``mallopt`` settings keep that memory in the process, ready for the next step:

    M_ARENA_MAX      = 1        every thread allocates from the one main heap
    M_MMAP_THRESHOLD = 1 GiB    blocks under 1 GiB come from that heap, not from mmap
    M_TRIM_THRESHOLD = 1 GiB    up to 1 GiB of free memory at the heap's top stays mapped

The cost: after a step the process keeps its peak memory instead of shrinking back. The
settings apply to arenas created afterwards, so they work best before JAX first computes
(``minisbert train`` applies them first thing). Linux with glibc only; elsewhere nothing
changes. bench/README.md ("The allocator settings", "The step's memory traffic") has what
they are worth on a training step, and which of the three mattered.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
KEEP_BYTES = 1 << 30  # 1 GiB


def keep_freed_memory(thresholds: bool = True) -> bool:
    """Apply the three settings above. Returns True where glibc accepted all three.

    ``thresholds=False`` applies the single arena alone, and freed blocks go back to the
    system as glibc's defaults say: the gradient cache (``minisbert.grad_cache``) frees many
    buffers of many sizes every step, and keeping them in one heap fragments it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = [(M_ARENA_MAX, 1), (M_MMAP_THRESHOLD, KEEP_BYTES), (M_TRIM_THRESHOLD, KEEP_BYTES)]
    settings = settings if thresholds else settings[:1]
    return all(mallopt(param, value) == 1 for param, value in settings)

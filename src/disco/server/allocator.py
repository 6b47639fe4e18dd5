"""Make the C allocator give big buffers back to the system as soon as they are freed.

The server handles model-sized buffers (frames of tens of MB, decoded updates, encoded replies)
from several threads. glibc's defaults keep such memory: its mmap threshold grows up to 32 MB
after the first big free (later buffers then come from arenas that rarely shrink), and each
thread may get an arena of its own. Fixing the threshold at 1 MiB and capping the arenas keeps
the server's resident memory close to what it really uses (measured by bench/memory.py).
A no-op where glibc's `mallopt` is not available.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("disco.server")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 1 << 20
TRIM_THRESHOLD_BYTES = 4 << 20
ARENA_MAX = 2


def tune_allocator() -> bool:
    """Apply the settings above; True when glibc took them."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = all(
        mallopt(option, value) == 1
        for option, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
            (M_ARENA_MAX, ARENA_MAX),
        )
    )
    if not applied:
        log.debug("mallopt refused a setting; the allocator keeps its defaults")
    return applied

"""Make the C allocator reuse frame-sized buffers, and give bigger ones back at once.

The server handles model-sized buffers (frames of a few to tens of MB, decoded updates, encoded
replies) from several threads. glibc's defaults keep such memory: its mmap threshold grows up to
32 MB after the first big free, and each thread may get an arena of its own. The settings:
- buffers above `MMAP_THRESHOLD_BYTES` (32 MiB: frames of models over ~8e6 parameters, chunks of
  bigger ones) are mapped on their own and unmapped when freed, so resident memory follows what
  the server really uses (measured by bench/memory.py);
- smaller ones come from the heap and are reused round after round, and up to
  `TRIM_THRESHOLD_BYTES` of free heap is kept: a fresh mapping costs a page fault per 4 KiB page
  when first written, which on a virtual machine made each 4 MB buffer ~30x dearer than a
  reused one (a 1 MiB threshold mapped every frame afresh: the server spent twice the CPU of a
  bare WebSocket server per round of 10 × 4 MB updates, bench/federated_round.py);
- at most `ARENA_MAX` arenas, whatever the number of worker threads.
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
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 64 << 20
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

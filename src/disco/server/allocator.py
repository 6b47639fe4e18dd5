"""Make the C allocator reuse frame-sized buffers, and give the heap back once the server is idle.

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

Free heap kept that way stays resident however long the server then waits (between rounds,
while clients train), and a burst of mixed sizes (model downloads, a round's frames, decodes
and replies) leaves holes the next burst only partly reuses: sampled through three legacy
rounds, resident memory ratcheted up round after round. `IdleTrimmer` gives free heap back
(`malloc_trim`) from its own thread once the process has been quiet for a while, so a waiting
server holds what it uses, while back-to-back rounds (never quiet) keep their reused buffers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Final

log = logging.getLogger("disco.server")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 64 << 20
ARENA_MAX = 2

TRIM_CHECK_S: Final = 0.25
"""How often the idle trimmer looks at the process (a CPU-time read and a /proc read)."""
QUIET_S: Final = 1.0
"""How long the process must have been quiet before free heap is given back: longer than any
pause inside a round of clients that answer at once, so rounds back to back never pay the page
faults of memory given back and taken again."""
QUIET_CPU_SHARE: Final = 0.05
"""Below this share of one core over a check, the process counts as quiet (an idle server uses
well under 1 %; any request, decode or send is far above)."""
TRIM_GROWTH_BYTES: Final = 16 << 20
"""Resident growth since the last trim that makes another one worth it: an idle server is not
trimmed over and over, and a trim is only made when there may be something to give back."""


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def tune_allocator() -> bool:
    """Apply the settings above; True when glibc took them."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
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


def malloc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)` (gives every arena's free pages back), or None without it."""
    function = getattr(_libc(), "malloc_trim", None)
    if function is None:
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return lambda: function(0)


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident memory (Linux /proc), None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return None


class IdleTrimmer:
    """Gives free heap back once the process has been quiet for `QUIET_S` after its resident
    memory grew by `TRIM_GROWTH_BYTES` since the last trim.

    `tick` decides once (the thread started by `start` calls it every `TRIM_CHECK_S`); the
    probes are parameters so that the rule is tested without timing. The trim itself runs in
    the trimmer's thread: it takes the allocator's locks for a few ms, never the event loop.
    """

    def __init__(
        self,
        trim: Callable[[], object],
        resident: Callable[[], int | None] = resident_bytes,
        cpu: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trim = trim
        self._resident = resident
        self._cpu = cpu
        self._clock = clock
        self._last_cpu = cpu()
        self._last_check = clock()
        self._quiet_since: float | None = None
        self._after_trim = resident() or 0
        self.trims = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> bool:
        """Look at the process once; True when it trimmed."""
        now, cpu = self._clock(), self._cpu()
        elapsed = now - self._last_check
        busy = cpu - self._last_cpu > QUIET_CPU_SHARE * max(elapsed, TRIM_CHECK_S)
        self._last_check, self._last_cpu = now, cpu
        if busy:
            self._quiet_since = None
            return False
        if self._quiet_since is None:
            self._quiet_since = now
        resident = self._resident()
        if (
            now - self._quiet_since < QUIET_S
            or resident is None
            or resident - self._after_trim < TRIM_GROWTH_BYTES
        ):
            return False
        self._trim()
        self.trims += 1
        self._after_trim = self._resident() or resident
        # The trim's own CPU is not the clients': do not count it as activity.
        self._last_cpu = self._cpu()
        return True

    def start(self) -> IdleTrimmer:
        self._thread = threading.Thread(target=self._run, name="disco-idle-trim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(TRIM_CHECK_S):
            try:
                self.tick()
            except Exception:  # a probe that fails must not end the server; log, go on
                log.exception("the idle heap trim failed")


def start_idle_trimmer() -> IdleTrimmer | None:
    """The process's idle trimmer, started; None where glibc's malloc_trim or /proc is missing."""
    trim = malloc_trim()
    if trim is None or resident_bytes() is None:
        return None
    return IdleTrimmer(trim).start()

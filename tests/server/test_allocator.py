"""The idle heap trimmer: when it gives free heap back, from which thread, and that glibc does."""

from __future__ import annotations

import asyncio
import threading
from unittest.mock import patch

import pytest

from disco.server import allocator
from disco.server.allocator import (
    QUIET_CPU_SHARE,
    QUIET_S,
    TRIM_CHECK_S,
    TRIM_GROWTH_BYTES,
    IdleTrimmer,
    malloc_trim,
    resident_bytes,
    tune_allocator,
)

MB = 1 << 20


class Process:
    """A fake process: its clock, CPU seconds and resident bytes, moved by the test."""

    def __init__(self) -> None:
        self.now = 100.0
        self.cpu = 5.0
        self.resident = 80 * MB
        self.trimmed: list[int] = []

    def trim(self) -> None:
        self.trimmed.append(self.resident)
        self.resident = 90 * MB

    def trimmer(self) -> IdleTrimmer:
        return IdleTrimmer(self.trim, lambda: self.resident, lambda: self.cpu, lambda: self.now)

    def run(self, trimmer: IdleTrimmer, seconds: float, cpu_share: float) -> None:
        """`seconds` of checks at `TRIM_CHECK_S` apart, using `cpu_share` of a core."""
        for _ in range(round(seconds / TRIM_CHECK_S)):
            self.now += TRIM_CHECK_S
            self.cpu += cpu_share * TRIM_CHECK_S
            trimmer.tick()


def test_grown_heap_is_given_back_once_the_process_has_been_quiet() -> None:
    process = Process()
    trimmer = process.trimmer()
    process.resident += TRIM_GROWTH_BYTES + 40 * MB  # a round's buffers, freed but kept
    process.run(trimmer, QUIET_S - TRIM_CHECK_S, 0.0)
    assert process.trimmed == []  # not quiet for long enough yet
    process.run(trimmer, 2 * TRIM_CHECK_S, 0.0)
    assert process.trimmed == [80 * MB + TRIM_GROWTH_BYTES + 40 * MB]
    process.run(trimmer, 10 * QUIET_S, 0.001)
    assert trimmer.trims == 1  # nothing grew since: no trim over and over


def test_a_busy_process_is_not_trimmed_however_much_it_holds() -> None:
    """Rounds back to back (never quiet) keep their free heap for the next round's buffers."""
    process = Process()
    trimmer = process.trimmer()
    process.resident += 200 * MB
    process.run(trimmer, 20 * QUIET_S, 2 * QUIET_CPU_SHARE)
    assert process.trimmed == []
    # A short pause between busy spells is not quiet either.
    for _ in range(5):
        process.run(trimmer, QUIET_S / 2, 0.0)
        process.run(trimmer, TRIM_CHECK_S, 1.0)
    assert process.trimmed == []
    process.run(trimmer, QUIET_S + TRIM_CHECK_S, 0.0)
    assert len(process.trimmed) == 1


def test_growth_since_the_last_trim_is_what_counts() -> None:
    process = Process()
    trimmer = process.trimmer()
    process.resident += TRIM_GROWTH_BYTES - MB  # less than worth a trim
    process.run(trimmer, 3 * QUIET_S, 0.0)
    assert process.trimmed == []
    process.resident += 30 * MB
    process.run(trimmer, 3 * QUIET_S, 0.0)
    assert len(process.trimmed) == 1  # leaves 90 MB
    process.resident = 90 * MB + TRIM_GROWTH_BYTES + MB
    process.run(trimmer, 3 * QUIET_S, 0.0)
    assert len(process.trimmed) == 2


def test_the_trim_runs_in_the_trimmers_thread_never_the_event_loop() -> None:
    """The server's event loop keeps serving while the trimmer trims from its own thread."""
    calls: list[tuple[str, bool]] = []
    trimmed = threading.Event()

    def trim() -> None:
        try:
            asyncio.get_running_loop()
            on_a_loop = True
        except RuntimeError:
            on_a_loop = False
        calls.append((threading.current_thread().name, on_a_loop))
        trimmed.set()

    grown = iter([0] + [TRIM_GROWTH_BYTES * (2 + n) for n in range(10**6)])

    async def serve() -> None:
        with patch.multiple(allocator, TRIM_CHECK_S=0.01, QUIET_S=0.02):
            trimmer = IdleTrimmer(trim, lambda: next(grown), lambda: 0.0).start()
            try:
                await asyncio.to_thread(trimmed.wait, 10)
            finally:
                trimmer.stop()

    asyncio.run(serve())
    assert calls, "the trimmer did not trim within 10 s"
    assert all(name == "disco-idle-trim" and not on_a_loop for name, on_a_loop in calls)


def test_glibc_gives_freed_heap_back() -> None:
    """What the trimmer calls does give memory back: heap kept after frees (the allocator's
    trim threshold keeps it) leaves the process's resident memory."""
    trim = malloc_trim()
    if trim is None or resident_bytes() is None or not tune_allocator():
        pytest.skip("needs glibc and /proc")
    blocks = [bytearray(b"\x01" * MB) for _ in range(48)]  # heap: below the mmap threshold
    pinned = bytearray(b"\x01" * 1024)  # above them: their heap cannot simply shrink
    held = resident_bytes()
    del blocks
    kept = resident_bytes()
    trim()
    after = resident_bytes()
    assert held is not None and kept is not None and after is not None
    assert kept - after >= 24 * MB, (held, kept, after)
    del pinned

"""Wait on child processes by their progress instead of a guess of the machine's speed.

A fixed timeout ("the peer is ready within 30 s") says how fast the machine is: on two cores
shared with other work a `disco` process can spend a minute importing torch, and the test fails
although nothing is wrong. These waits fail when the children *stall* instead: together they
used less than `MIN_CPU_S` of CPU time, none exited and none printed a line for `STALL_S`
(a process stuck on a lost message or a lock uses next to nothing, one starved of CPU still gets
seconds of it per minute). `LIMIT_S` bounds every wait in all, under pytest's per-test timeout.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO

import psutil
import pytest

STALL_S = 60.0
MIN_CPU_S = 0.5
LIMIT_S = 240.0
POLL_S = 0.05

Child = subprocess.Popen[str]


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of a process and all its descendants, None when it is gone.

    Descendants count too: `disco simulate --engine ray` works in raylet's worker processes,
    grandchildren of the command. Reaped descendants count through their parent's totals.
    """
    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for member in family:
        with contextlib.suppress(psutil.Error):
            times = member.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


class Watch:
    """The progress of some child processes: CPU time used, exits, lines printed."""

    def __init__(
        self,
        children: Sequence[Child],
        *,
        stall_s: float = STALL_S,
        limit_s: float = LIMIT_S,
        min_cpu_s: float = MIN_CPU_S,
    ) -> None:
        self.children = list(children)
        self.stall_s = stall_s
        self.limit_s = limit_s
        self.min_cpu_s = min_cpu_s
        self.lines = 0  # lines read from the children's output (by `wait_for_exit`)
        self._started = time.monotonic()
        self._cpu = {child.pid: 0.0 for child in self.children}
        self._mark = self._state()
        self._mark_time = self._started

    def _state(self) -> tuple[float, int, int]:
        for child in self.children:
            used = cpu_seconds(child.pid)
            if used is not None:  # a reaped child keeps the last value read
                self._cpu[child.pid] = max(self._cpu[child.pid], used)
        exited = sum(child.poll() is not None for child in self.children)
        return sum(self._cpu.values()), exited, self.lines

    def check(self, what: str) -> None:
        """Fail the test naming `what` when the children stalled or the limit is reached."""
        now = time.monotonic()
        cpu, exited, lines = state = self._state()
        mark_cpu, mark_exited, mark_lines = self._mark
        if cpu - mark_cpu >= self.min_cpu_s or exited != mark_exited or lines != mark_lines:
            self._mark, self._mark_time = state, now
        elif now - self._mark_time > self.stall_s:
            pytest.fail(
                f"{what}: stalled; in the last {self.stall_s:.0f} s the processes used "
                f"{cpu - mark_cpu:.2f} CPU-s, none exited and none printed a line"
            )
        if now - self._started > self.limit_s:
            pytest.fail(f"{what}: still not done after {self.limit_s:.0f} s ({cpu:.1f} CPU-s used)")

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Poll `condition` until it holds while every child keeps running (and progressing).

        A child that exits first fails the test with its output.
        """
        while not condition():
            for child in self.children:
                if child.poll() is not None:
                    stdout, stderr = child.communicate()
                    pytest.fail(
                        f"{what}: the process exited ({child.returncode}) first;\n"
                        f"stdout:\n{stdout}\nstderr:\n{stderr}"
                    )
            self.check(what)
            time.sleep(POLL_S)

    def wait_for_exit(self, what: str) -> list[tuple[str, str]]:
        """Wait for every child to exit; (stdout, stderr) of each, in order.

        The output is read meanwhile (a full pipe would block a child) and every line counts as
        progress.
        """
        outputs: list[tuple[list[str], list[str]]] = [([], []) for _ in self.children]
        readers = []
        for child, (out, err) in zip(self.children, outputs, strict=True):
            for stream, lines in ((child.stdout, out), (child.stderr, err)):
                assert stream is not None, "start the child with stdout and stderr piped"
                reader = threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                reader.start()
                readers.append(reader)
        while any(child.poll() is None for child in self.children):
            self.check(what)
            time.sleep(POLL_S)
        for reader in readers:
            reader.join(timeout=10)
        return [("".join(out), "".join(err)) for out, err in outputs]

    def _read(self, stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            self.lines += 1

"""The server-wide budget of bytes that big incoming WebSocket frames may hold at once.

A frame's payload is reserved from its header's length before any of it is read, so the
memory held by frames being received (and by frames handed over and not yet done with) stays
under `limit`. A reservation that does not fit waits, first come first served, so nobody
starves; a frame bigger than the whole budget is granted when nothing else is held (it would
otherwise never be). Pure bookkeeping, no I/O: the WebSocket protocol pauses and resumes
reading around it (`disco.server.ws_transport`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Reservation:
    """`size` bytes asked of a budget; `on_grant` runs when a waiting reservation is granted.

    Released at most once (`release` is idempotent); `timer`, when set, is cancelled then.
    """

    __slots__ = ("_budget", "granted", "on_grant", "released", "size", "timer")

    def __init__(self, budget: ReceiveBudget, size: int, on_grant: Callable[[], None]) -> None:
        self._budget = budget
        self.size = size
        self.on_grant = on_grant
        self.granted = False
        self.released = False
        self.timer: Cancellable | None = None

    def release(self) -> None:
        """Give the bytes back (or stop waiting); wakes the waiters that now fit, in order."""
        if self.released:
            return
        self.released = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._budget._released(self)


class ReceiveBudget:
    """At most `limit` bytes reserved at once, except one lone reservation above it."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("a receive budget must be positive")
        self.limit = limit
        self.held = 0
        self.high_water = 0
        """Most bytes ever held at once (tests and metrics)."""
        self.waits = 0
        """Reservations that ever had to wait for their turn (metrics: a budget often waited
        on is too small for the traffic, or someone sends faster than the others read)."""
        self._waiting: deque[Reservation] = deque()

    @property
    def waiting(self) -> int:
        """Reservations waiting for their turn."""
        return len(self._waiting)

    def reserve(self, size: int, on_grant: Callable[[], None]) -> Reservation:
        """A reservation of `size` bytes: granted at once when it fits and nobody waits
        (`on_grant` is then not called), else queued until releases make room."""
        reservation = Reservation(self, size, on_grant)
        if not self._waiting and self._fits(size):
            self._grant(reservation)
        else:
            self._waiting.append(reservation)
            self.waits += 1
        return reservation

    def _fits(self, size: int) -> bool:
        return self.held == 0 or self.held + size <= self.limit

    def _grant(self, reservation: Reservation) -> None:
        reservation.granted = True
        self.held += reservation.size
        self.high_water = max(self.high_water, self.held)

    def _released(self, reservation: Reservation) -> None:
        if reservation.granted:
            self.held -= reservation.size
        else:
            self._waiting.remove(reservation)
        while self._waiting and self._fits(self._waiting[0].size):
            head = self._waiting.popleft()
            self._grant(head)
            head.on_grant()

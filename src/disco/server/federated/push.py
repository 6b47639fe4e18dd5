"""Pushed rounds: a native client's waiting latestServerRound, answered the moment the round moves.

A client that sends `{type: 11, afterRound: r}` gets `{type: 11, round, weights}` (the same
frame, encoded once per round and encoding, as a plain latestServerRound) as soon as the task's
round is past `r`: at once if it already is, else from a task of its own, so the connection's
read loop keeps serving the client's other requests meanwhile. While it waits the client gets
roundStatus frames (type 14): one once the wait has lasted the status interval (`STATUS_INTERVAL_S`,
longer for a crowd: `StatusBoard.interval`), then one whenever a figure changes, at most one
per `STATUS_INTERVAL_S` (a round of N contributions would otherwise send N frames to each of N
waiters). A wait answered sooner sees no roundStatus at all: a crowd whose round completes
within the interval gets one frame each, the answer. The answer itself is never delayed.

Fan-out: the waits of a task do not watch the round engine themselves (each contribution would
wake every waiter: O(N²) wake-ups for a round of N). The task's `StatusBoard` watches it and
wakes the waiters at once when the round moves (each then sends the answer, encoded once per
round), and otherwise at most once per interval, which grows with the crowd (see
`STATUS_CROWD`): a status frame is packed once per change of figures, and the frames of a crowd
stay around `STATUS_CROWD / STATUS_INTERVAL_S` a second whatever its size.

A post with `awaitRound` (post and wait in one request) starts the same wait once accepted,
with `after_round` = the post's round (see the handler).

At most one wait per connection: any latestServerRound, and any post with `awaitRound`,
replaces a pending wait (a waiting one starts the new wait, a plain one is answered at once).
No server-side timeout: the client owns its deadline, and the wait ends with the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from disco.protocol.framing import pack
from disco.protocol.messages import RoundStatus, round_status

if TYPE_CHECKING:
    from disco.server.federated.engine import RoundEngine
    from disco.server.federated.hub import Session, TaskChannel

log = logging.getLogger("disco.server.federated")

Send = Callable[[bytes], Awaitable[None]]
"""Sends one frame to the connection; returns quietly when the client is gone."""

STATUS_INTERVAL_S = 0.1
"""Least time between two roundStatus frames to one connection (changes in between coalesce)."""

STATUS_CROWD = 25
"""Waiters up to which roundStatus frames may follow each other every `STATUS_INTERVAL_S`;
with W waiters past that, every `STATUS_INTERVAL_S × W / STATUS_CROWD` (1,000 waiters: 4 s).
A task's status frames stay around 250 a second whatever its crowd: a slow round (a busy
server) is not made slower by telling everyone about it."""


def _status_key(status: RoundStatus, deadline_at: float | None) -> tuple[object, ...]:
    """What makes a status new: its figures and the deadline's firing time, not the time left
    (which changes every millisecond)."""
    return (
        status.round,
        status.participants,
        status.contributions,
        status.min_participants,
        status.waiting_for,
        deadline_at,
    )


class StatusBoard:
    """What the waits of one task watch instead of the round engine (see the module docstring):
    `published()` is set the moment the round moves (or the engine closes), and after other
    changes at most once per `interval()`; `current()` is the roundStatus frame, packed once
    per change of its figures. Its watching task runs while some wait is registered
    (`enter`)."""

    def __init__(self, engine: RoundEngine) -> None:
        self._engine = engine
        self._published = asyncio.Event()
        self._frame: tuple[tuple[object, ...], bytes] | None = None
        self._waiters = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def waiters(self) -> int:
        """Waits registered now."""
        return self._waiters

    def interval(self) -> float:
        """Least time between two publications that do not move the round."""
        return STATUS_INTERVAL_S * max(1.0, self._waiters / STATUS_CROWD)

    def published(self) -> asyncio.Event:
        """The event set at the next publication (take it before reading the state)."""
        return self._published

    def current(self) -> tuple[tuple[object, ...], bytes]:
        """The round's status now: its key (what makes it new) and its packed frame."""
        engine = self._engine
        status = engine.round_status()
        key = _status_key(status, engine.deadline_at())
        if self._frame is None or self._frame[0] != key:
            self._frame = (key, pack(round_status(status)))
        return self._frame

    def enter(self) -> None:
        """Register a wait (the board watches the engine while some wait is registered)."""
        self._waiters += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._watch(), name=f"federated-status-{self._engine.task_id}"
            )
            self._task.add_done_callback(log_wait_failure)

    def leave(self) -> None:
        """Unregister a wait (`enter`)."""
        self._waiters -= 1

    def _publish(self) -> None:
        published, self._published = self._published, asyncio.Event()
        published.set()

    async def _watch(self) -> None:
        engine = self._engine
        loop = asyncio.get_running_loop()
        round_ = engine.round
        last = -float("inf")  # loop time of the last publication
        pending = False  # a change not published yet
        while self._waiters and not engine.closed:
            changed = engine.changed()  # taken before reading the state: no change is missed
            advanced = engine.advanced()
            now = loop.time()
            if engine.round != round_:  # at once: the waits answer
                round_, pending, last = engine.round, False, now
                self._publish()
            elif pending and now >= last + self.interval():
                pending, last = False, now
                self._publish()
            if not pending:
                await changed.wait()
                pending = True
                continue
            # A change waits for the interval's end (the status is read then): until it, only
            # the round moving matters, so the crowd's contributions do not wake this task.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, last + self.interval() - now)):
                    await advanced.wait()
        self._publish()  # the engine closed (or nobody waits): let the waits look


async def answer_when_past(
    channel: TaskChannel, session: Session, after_round: int, send: Send
) -> None:
    """Send roundStatus frames until the round is past `after_round`, then the round's model."""
    engine = channel.engine
    board = channel.status
    loop = asyncio.get_running_loop()
    sent: tuple[object, ...] | None = None
    # The first status once the wait has lasted the board's interval (then STATUS_INTERVAL_S).
    sent_at = loop.time() - STATUS_INTERVAL_S + board.interval()
    board.enter()
    try:
        while not engine.closed:
            published = board.published()  # taken before reading the state
            if engine.round > after_round:
                await channel.send_latest(session.encoding, send, session.writer)
                return
            wait = sent_at + STATUS_INTERVAL_S - loop.time()
            if wait <= 0:  # a status may go out: read it (not before: most waits never send one)
                key, frame = board.current()
                if key != sent:
                    await send(frame)
                    sent, sent_at = key, loop.time()
                    continue
                await published.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):  # coalesce; no task per wait, unlike wait_for
                    await published.wait()
    finally:
        board.leave()


def log_wait_failure(task: asyncio.Task[None]) -> None:
    """Done callback of a wait task: a fault of the server is logged, never raised into nothing."""
    if not task.cancelled() and task.exception() is not None:
        log.error("a pushed round failed (%s)", task.get_name(), exc_info=task.exception())

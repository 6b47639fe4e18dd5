"""Pushed rounds: a native client's waiting latestServerRound, answered the moment the round moves.

A client that sends `{type: 11, afterRound: r}` gets `{type: 11, round, weights}` (the same
frame, encoded once per round and encoding, as a plain latestServerRound) as soon as the task's
round is past `r`: at once if it already is, else later, while the connection's read loop keeps
serving the client's other requests. While it waits the client gets roundStatus frames (type
14): one once the wait has lasted the status interval (`STATUS_INTERVAL_S`, longer for a crowd:
`StatusBoard.interval`), then one whenever a figure changes, at most one per `STATUS_INTERVAL_S`
(a round of N contributions would otherwise send N frames to each of N waiters). A wait answered
sooner sees no roundStatus at all: a crowd whose round completes within the interval gets one
frame each, the answer. The answer itself is never delayed.

Fan-out: a wait is a record (`Wait`), not a task, and the waits of a task do not watch the
round engine themselves (each contribution would wake every waiter: O(N²) wake-ups for a round
of N). The task's `StatusBoard` watches it and, the moment the round moves, answers its crowd
in one pass: the answer is encoded once per round and encoding, framed once (`ServerFrame`) and
written to each connection at once through its direct writer (`Session.writer`,
`ws_transport.DIRECT_WRITE`). A connection that cannot take it at once (a send under way, a full
buffer, no direct writer, a model sent in chunks) is sent it by a task of its own, so a slow or
closed connection holds up nobody. Status frames go out the same way, from the board's pass at
most once per interval, which grows with the crowd (see `STATUS_CROWD`), or when a wait's own
status time comes: a status frame is packed once per change of figures, and the frames of a
crowd stay around `STATUS_CROWD / STATUS_INTERVAL_S` a second whatever its size. Frames of one
wait keep their order: while one of its sends is under way, later ones queue behind it.

A post with `awaitRound` (post and wait in one request) starts the same wait once accepted,
with `after_round` = the post's round (see the handler).

At most one wait per connection: any latestServerRound, and any post with `awaitRound`,
replaces a pending wait (a waiting one starts the new wait, a plain one is answered at once).
No server-side timeout: the client owns its deadline, and the wait ends with the connection or
when the task's engine closes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from disco.protocol.framing import pack
from disco.protocol.messages import RoundStatus, round_status
from disco.server.ws_transport import ServerFrame

if TYPE_CHECKING:
    from disco.protocol.weights import WeightEncoding
    from disco.server.federated.engine import RoundEngine
    from disco.server.federated.hub import Session

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


class Wait:
    """One connection's waiting request: registered on its task's `StatusBoard` until the round
    is past `after_round`, then answered (at once, or by a task of its own)."""

    __slots__ = ("active", "after_round", "due", "scheduled", "send", "sent", "session", "task")

    def __init__(self, session: Session, after_round: int, send: Send, due: float) -> None:
        self.session = session
        self.after_round = after_round
        self.send = send
        self.active = True  # neither answered nor cancelled
        self.due = due  # loop time from which its next status may go out
        self.scheduled: float | None = None  # time of its live entry in the board's heap
        self.sent: tuple[object, ...] | None = None  # key of the last status it was sent
        self.task: asyncio.Task[None] | None = None  # its latest send that could not be written

    def give_status(self, key: tuple[object, ...], frame: ServerFrame, now: float) -> bool:
        """Send the status unless this wait has it already; True when sent."""
        if key == self.sent:
            return False
        self.sent, self.due = key, now + STATUS_INTERVAL_S
        if not self._write(frame):
            send = self.send
            self._queue(lambda: send(frame.payload))
        return True

    def answer(self, frame: ServerFrame | None) -> None:
        """Send the round's answer (`frame`, or None when it is sent in chunks) and end."""
        if frame is not None and self._write(frame):
            self.active = False
            return
        session, send = self.session, self.send
        self._queue(lambda: session.channel.send_latest(session.encoding, send, session.writer))
        assert self.task is not None
        self.task.add_done_callback(self._answered)

    def cancel(self) -> None:
        """End the wait: it sends nothing more (a send under way is cancelled)."""
        if self.active:
            self.active = False
            self.session.channel.status.discard(self)
        if self.task is not None:
            self.task.cancel()

    def _answered(self, task: asyncio.Task[None]) -> None:
        self.active = False

    def _write(self, frame: ServerFrame) -> bool:
        """Write `frame` at once, when no earlier send of this wait is still under way."""
        writer = self.session.writer
        if writer is None or (self.task is not None and not self.task.done()):
            return False
        return writer(frame)

    def _queue(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job` in a task once this wait's earlier sends are done (frames keep their
        order)."""
        previous = self.task
        self.task = asyncio.get_running_loop().create_task(
            _after(previous, job), name=f"federated-wait-{self.session.channel.task_id}"
        )
        self.task.add_done_callback(log_wait_failure)


async def _after(previous: asyncio.Task[None] | None, job: Callable[[], Awaitable[None]]) -> None:
    if previous is not None and not previous.done():
        await asyncio.wait((previous,))  # its failure is its own (logged), not this job's
    await job()


class StatusBoard:
    """The waits of one task, and what they watch instead of the round engine (see the module
    docstring). Its watching task runs while some wait is registered."""

    def __init__(self, engine: RoundEngine) -> None:
        self._engine = engine
        self._frame: tuple[tuple[object, ...], ServerFrame] | None = None
        self._waits: dict[Wait, None] = {}  # registered, in arrival order
        self._heap: list[tuple[float, int, Wait]] = []  # status times of waits
        self._order = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._alarm: asyncio.Future[None] | None = None  # the watching task's sleep
        self._alarm_at = math.inf  # when that sleep ends at the latest

    @property
    def waiters(self) -> int:
        """Waits registered now."""
        return len(self._waits)

    def interval(self) -> float:
        """Least time between two publications that do not move the round."""
        return STATUS_INTERVAL_S * max(1.0, len(self._waits) / STATUS_CROWD)

    def current(self) -> tuple[tuple[object, ...], ServerFrame]:
        """The round's status now: its key (what makes it new) and its frame."""
        engine = self._engine
        status = engine.round_status()
        key = _status_key(status, engine.deadline_at())
        if self._frame is None or self._frame[0] != key:
            self._frame = (key, ServerFrame(pack(round_status(status))))
        return self._frame

    def wait(self, session: Session, after_round: int, send: Send) -> Wait:
        """Register a wait for the round past `after_round`; its first status may go out once
        it has lasted `interval()`."""
        loop = asyncio.get_running_loop()
        wait = Wait(session, after_round, send, loop.time() + self.interval())
        self._waits[wait] = None
        self._schedule(wait)
        if self._task is None or self._task.done():
            self._task = loop.create_task(
                self._watch(), name=f"federated-status-{self._engine.task_id}"
            )
            self._task.add_done_callback(log_wait_failure)
        return wait

    def discard(self, wait: Wait) -> None:
        """Unregister a wait (cancelled, or taken for an answer)."""
        self._waits.pop(wait, None)

    def _schedule(self, wait: Wait) -> None:
        """Look at `wait` again at its `due` time."""
        at = wait.due
        if wait.scheduled is not None and wait.scheduled <= at:
            return
        wait.scheduled = at
        heapq.heappush(self._heap, (at, next(self._order), wait))
        if at < self._alarm_at:
            self._wake()

    def _wake(self) -> None:
        """End the current sleep (a wait needs looking at sooner)."""
        if self._alarm is not None:
            _ring(self._alarm)

    def _next_status_time(self) -> float:
        heap = self._heap
        while heap and (not heap[0][2].active or heap[0][2].scheduled != heap[0][0]):
            heapq.heappop(heap)  # answered, cancelled or rescheduled since
        return heap[0][0] if heap else math.inf

    def _statuses_due(self, now: float) -> None:
        """Statuses of the waits whose time has come (their wait lasted its interval)."""
        heap = self._heap
        frame: tuple[tuple[object, ...], ServerFrame] | None = None
        while self._next_status_time() <= now:
            _, _, wait = heapq.heappop(heap)
            wait.scheduled = None
            frame = frame or self.current()  # read only when a status may go out
            if wait.give_status(*frame, now):
                self._schedule(wait)  # and look again then, as after any status

    def _publish(self, now: float) -> None:
        """A publication: each registered wait whose status time has come gets the status (if
        new to it); the others are looked at again at their time."""
        frame: tuple[tuple[object, ...], ServerFrame] | None = None
        for wait in list(self._waits):
            if wait.due <= now:
                frame = frame or self.current()
                if not wait.give_status(*frame, now):
                    continue
            self._schedule(wait)

    async def _answer(self, round_: int) -> None:
        """Answer every wait the round is now past, in one pass."""
        due = [wait for wait in self._waits if wait.after_round < round_]
        for wait in due:
            self.discard(wait)
        frames: dict[WeightEncoding, ServerFrame | None] = {}
        for wait in due:
            if not wait.active:  # cancelled while an answer was being encoded
                continue
            session = wait.session
            encoding = session.encoding
            if encoding not in frames:
                try:
                    frames[encoding] = await session.channel.answer_frame(encoding)
                except Exception:  # each wait's own send tries again, and logs a failure
                    frames[encoding] = None
                if not wait.active:
                    continue
            wait.answer(frames[encoding])

    async def _sleep(self, event: asyncio.Event, until: float) -> None:
        """Until `event` is set, a wait needs looking at sooner (`_wake`) or `until`.

        The watcher and the timer ring this sleep's own alarm, not `self._alarm`: the
        watcher's done callback runs after it is cancelled, when the next sleep has begun, and
        waking that one would make the board spin through the event loop for as long as
        anyone waits."""
        loop = asyncio.get_running_loop()
        self._alarm = alarm = loop.create_future()
        self._alarm_at = until
        watcher = loop.create_task(event.wait())
        watcher.add_done_callback(lambda _: _ring(alarm))
        timer = None if until == math.inf else loop.call_at(until, _ring, alarm)
        try:
            await alarm
        finally:
            self._alarm, self._alarm_at = None, math.inf
            watcher.cancel()
            if timer is not None:
                timer.cancel()

    async def _watch(self) -> None:
        engine = self._engine
        loop = asyncio.get_running_loop()
        # Not engine.round: the round may have moved since the first wait was registered, before
        # this task first ran; the first pass answers any wait the round is already past.
        round_ = -1
        last = -math.inf  # loop time of the last publication
        pending = False  # a change not published yet
        while self._waits and not engine.closed:
            changed = engine.changed()  # taken before reading the state: no change is missed
            advanced = engine.advanced()
            now = loop.time()
            if engine.round != round_:  # at once: the waits answer
                round_, pending, last = engine.round, False, now
                await self._answer(round_)
                self._publish(loop.time())
                continue  # the state may have moved while an answer was being encoded
            if pending and now >= last + self.interval():
                pending, last = False, now
                self._publish(now)
            self._statuses_due(now)
            until = self._next_status_time()
            if pending:  # until the interval's end, only the round moving matters
                until = min(until, last + self.interval())
            await self._sleep(advanced if pending else changed, until)
            if not pending and changed.is_set():
                pending = True
        if engine.closed:  # the waits end unanswered, as their connections will
            for wait in self._waits:
                wait.active = False
            self._waits.clear()
        # Nothing is awaited past the loop: a wait registered once it ended starts a new task.


def _ring(alarm: asyncio.Future[None]) -> None:
    """Wake the sleep waiting on `alarm`, unless it is over already."""
    if not alarm.done():
        alarm.set_result(None)


def log_wait_failure(task: asyncio.Task[None]) -> None:
    """Done callback of a wait's task: a fault of the server is logged, never raised into
    nothing."""
    if not task.cancelled() and task.exception() is not None:
        log.error("a pushed round failed (%s)", task.get_name(), exc_info=task.exception())

"""The server's event bus: what live pages (the dashboard, the task list) are pushed.

Publishers (the federated and decentralized hubs, task creation) call `notify(task_id, change)`:
synchronous and cheap, it only marks the task as changed. At most once every `interval_s` the bus
renders each changed task once (`render(task_id)`, a JSON-able snapshot of it) and queues that
event for every subscriber, so a burst of changes (a thousand contributions, a hundred clients
joining) costs one snapshot per task and per interval, whatever the number of subscribers.

Bounded: each subscriber has a queue of `queue_size` events; one that falls that far behind (a
stalled or very slow reader) is dropped: its stream ends (its oldest queued event makes room for
the end), and nothing it missed is kept for it (an EventSource reconnects by itself and starts
again from fresh snapshots).
`close()` ends every stream and refuses new subscribers (server shut-down).

Served as Server-Sent Events by `GET /events` (`disco.server.http.live`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

log = logging.getLogger("disco.server.events")

TASK_EVENT: Final = "task"
"""Name of the event carrying one task's snapshot."""

Change = str
"""What changed: "round" (a round completed), "connections" (clients came or went), "status"
(a contribution, readiness or the round's deadline), "created" (a new task)."""

Render = Callable[[str], Mapping[str, Any] | None]
"""A task's snapshot; None when the task is unknown (nothing is sent)."""


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One event: its sequence number, name and JSON data."""

    id: int
    name: str
    data: Mapping[str, Any]

    def encode(self) -> bytes:
        """The Server-Sent Events frame (`id`, `event`, one `data` line, blank line)."""
        data = json.dumps(self.data, separators=(",", ":"), allow_nan=False)
        return f"id: {self.id}\nevent: {self.name}\ndata: {data}\n\n".encode()


class Subscription:
    """One subscriber's bounded queue of events; `next()` returns None once the stream is over."""

    def __init__(
        self, bus: EventBus, queue_size: int, shows: Callable[[str], bool] | None = None
    ) -> None:
        self._bus = bus
        self.shows = shows or (lambda task_id: True)
        """Whether this subscriber may see a task (enrolled tasks: only their participants)."""
        self._queue: asyncio.Queue[ServerEvent | None] = asyncio.Queue(queue_size)
        self.dropped = False
        self.closed = False

    def offer(self, event: ServerEvent) -> bool:
        """Queue `event`; False (and the subscription is ended) when the queue is full."""
        if self.closed:
            return False
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped = True
            self.end()
            return False
        return True

    def end(self) -> None:
        """End the stream: the reader gets what is queued, then None; idempotent."""
        if self.closed:
            return
        self.closed = True
        self._bus.unsubscribe(self)
        while True:  # make room for the end marker: what is queued is dropped with it
            try:
                self._queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()

    async def next(self, timeout_s: float | None = None) -> ServerEvent | None:
        """The next event; None when the stream is over; TimeoutError after `timeout_s`."""
        if timeout_s is None:
            return await self._queue.get()
        return await asyncio.wait_for(self._queue.get(), timeout_s)


class EventBus:
    """Coalesced, bounded fan-out of task snapshots (see the module docstring)."""

    def __init__(
        self,
        render: Render,
        *,
        interval_s: float = 0.2,
        queue_size: int = 64,
        max_subscribers: int = 1000,
    ) -> None:
        if interval_s <= 0 or queue_size < 1 or max_subscribers < 1:
            raise ValueError("interval_s, queue_size and max_subscribers must be positive")
        self._render = render
        self.interval_s = interval_s
        self.queue_size = queue_size
        self.max_subscribers = max_subscribers
        self._subscribers: set[Subscription] = set()
        self._changed: dict[str, set[Change]] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def subscribers(self) -> int:
        """Streams currently open."""
        return len(self._subscribers)

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    def notify(self, task_id: str, change: Change) -> None:
        """Mark `task_id` as changed; its snapshot goes out at the next flush (event loop only)."""
        if self._closed or not self._subscribers:
            return  # nobody listens: nothing to render (a new subscriber gets fresh snapshots)
        self._changed.setdefault(task_id, set()).add(change)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self.interval_s, self._send)

    def subscribe(
        self, task_ids: Iterable[str] = (), shows: Callable[[str], bool] | None = None
    ) -> Subscription:
        """A new stream, starting with the snapshots of `task_ids` (their current state), then
        the events of every task that `shows` (default: all) allows.

        RuntimeError when the bus is closed or has `max_subscribers` streams already.
        """
        if self._closed:
            raise RuntimeError("the server is shutting down")
        if len(self._subscribers) >= self.max_subscribers:
            raise RuntimeError(f"too many event streams (at most {self.max_subscribers})")
        initial = [event for event in map(self._event, task_ids) if event is not None]
        subscription = Subscription(self, self.queue_size + len(initial), shows)
        for event in initial:
            subscription.offer(event)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscriber (its stream ended); idempotent."""
        self._subscribers.discard(subscription)

    def close(self) -> None:
        """End every stream and refuse new ones; idempotent."""
        self._closed = True
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._changed.clear()
        for subscription in list(self._subscribers):
            subscription.end()

    def _event(self, task_id: str, changes: Iterable[Change] = ()) -> ServerEvent | None:
        try:
            snapshot = self._render(task_id)
        except Exception:  # a broken snapshot must not stop the other tasks' events
            log.exception("rendering the event of task %r failed", task_id)
            return None
        if snapshot is None:
            return None
        data = {**snapshot, "changes": sorted(changes)}
        return ServerEvent(next(self._ids), TASK_EVENT, data)

    def _send(self) -> None:
        self._flush = None
        changed, self._changed = self._changed, {}
        for task_id, changes in changed.items():
            event = self._event(task_id, changes)
            if event is None:
                continue
            for subscription in list(self._subscribers):
                if not subscription.shows(task_id):
                    continue
                if not subscription.offer(event):
                    log.info("event stream dropped: %d events behind", self.queue_size)

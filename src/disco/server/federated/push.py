"""Pushed rounds: a native client's waiting latestServerRound, answered the moment the round moves.

A client that sends `{type: 11, afterRound: r}` gets `{type: 11, round, weights}` (the same
frame, encoded once per round and encoding, as a plain latestServerRound) as soon as the task's
round is past `r`: at once if it already is, else from a task of its own, so the connection's
read loop keeps serving the client's other requests meanwhile. While it waits the client gets
roundStatus frames (type 14): one when the wait starts, then one whenever a figure changes,
at most one per `STATUS_INTERVAL_S` (a round of N contributions would otherwise send N frames
to each of N waiters). The answer itself is never delayed by that limit.

At most one wait per connection: any latestServerRound replaces a pending wait (a waiting one
starts the new wait, a plain one is answered at once). No server-side timeout: the client owns
its deadline, and the wait ends with the connection.
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
    from disco.server.federated.hub import Session, TaskChannel

log = logging.getLogger("disco.server.federated")

Send = Callable[[bytes], Awaitable[None]]
"""Sends one frame to the connection; returns quietly when the client is gone."""

STATUS_INTERVAL_S = 0.1
"""Least time between two roundStatus frames to one connection (changes in between coalesce)."""


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


async def answer_when_past(
    channel: TaskChannel, session: Session, after_round: int, send: Send
) -> None:
    """Send roundStatus frames until the round is past `after_round`, then the round's model."""
    engine = channel.engine
    loop = asyncio.get_running_loop()
    sent: tuple[object, ...] | None = None
    sent_at = -STATUS_INTERVAL_S
    while not engine.closed:
        changed = engine.changed()  # taken before reading the state: no change is missed
        if engine.round > after_round:
            await channel.send_latest(session.encoding, send)
            return
        status = engine.round_status()
        key = _status_key(status, engine.deadline_at())
        timeout: float | None = None
        if key != sent:
            wait = sent_at + STATUS_INTERVAL_S - loop.time()
            if wait <= 0:
                await send(pack(round_status(status)))
                sent, sent_at = key, loop.time()
            else:
                timeout = wait  # coalesce: look again once the interval has passed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)


def log_wait_failure(task: asyncio.Task[None]) -> None:
    """Done callback of a wait task: a fault of the server is logged, never raised into nothing."""
    if not task.cancelled() and task.exception() is not None:
        log.error("a pushed round failed (%s)", task.get_name(), exc_info=task.exception())

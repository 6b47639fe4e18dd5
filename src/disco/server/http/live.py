"""`GET /events`: live task snapshots as Server-Sent Events, for the dashboard and task pages.

A stream starts with one `task` event per task (its current state), then gets a `task` event
whenever something about a task changed (the event bus `disco.server.events` coalesces changes:
at most one event per task every 0.2 s). A comment line every `HEARTBEAT_S` keeps idle streams
open through proxies and finds clients that went away. The stream ends when the server shuts
down or when the client reads too slowly (EventSource then reconnects by itself). The data of an
event is `ServerState.snapshot` (documented in docs/protocol.md, "Live events").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from disco.server.access import listing_filter
from disco.server.events import Subscription
from disco.server.http.errors import error_response, responses
from disco.server.state import StateDep

router = APIRouter()

HEARTBEAT_S: Final = 15.0
RETRY_MS: Final = 3000
"""How long an EventSource waits before it reconnects to an ended stream."""


async def _stream(subscription: Subscription) -> AsyncIterator[bytes]:
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        while True:
            try:
                event = await subscription.next(HEARTBEAT_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if event is None:
                return
            yield event.encode()
    finally:
        subscription.end()


@router.get(
    "/events",
    summary="Live task snapshots (Server-Sent Events)",
    response_class=Response,
    responses={
        200: {
            "description": "a text/event-stream of `task` events (docs/protocol.md, Live events)",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **responses(503),
    },
)
async def events(request: Request, state: StateDep) -> Response:
    """Every task's snapshot now, then one whenever it changes (coalesced). A task that requires
    enrollment is only shown to its participants and the admin (as in `GET /tasks`)."""
    shows = listing_filter(request, state)
    stored_tasks = state.store.stored()  # a dictionary read: no thread hop
    task_ids = [stored.task_id for stored in stored_tasks if shows(stored.task_id)]
    try:
        subscription = state.events.subscribe(task_ids, shows)
    except RuntimeError as error:
        return error_response(503, str(error))
    return StreamingResponse(
        _stream(subscription),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )

"""One decentralized peer's WebSocket: decode its frames for the hub, write its outbox, close.

Three things run per connection: the reader (frames → hub), the writer (outbox → socket) and a
watch on the outbox being closed (by a protocol error, an overflow or shutdown). The first to end
ends the connection, so a peer that stops reading can be cut off even while a write is stuck.
Nothing a peer sends can touch other peers' connections: every error closes only its own, and
is logged once as a warning without a traceback (tracebacks are for faults of the server itself).
`?peerUpdates=1` on the URL opts in to mid-round peer-list updates (`hub` module docstring).
"""

from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket

from disco.protocol.errors import CloseCode, ProtocolError
from disco.protocol.framing import unpack_message
from disco.protocol.messages import parse_decentralized
from disco.server import websocket as ws
from disco.server.decentralized.hub import PeerSession, SignalingHub
from disco.server.decentralized.outbox import Outbox
from disco.server.enrollment import AccessRefused, Gate
from disco.server.logs import log_context
from disco.server.websocket import safe_text

log = logging.getLogger("disco.server.decentralized")

PEER_UPDATES_PARAMETER = "peerUpdates"
"""Query parameter by which a client opts in to mid-round peer-list updates (see `hub`)."""


def wants_peer_updates(value: str | None) -> bool:
    """`?peerUpdates=1|true|0|false` (absent: no); ProtocolError (1008) for anything else."""
    if value is None:
        return False
    choice = {"1": True, "true": True, "0": False, "false": False}.get(value.lower())
    if choice is None:
        raise ProtocolError(
            f"{PEER_UPDATES_PARAMETER} must be 1, true, 0 or false, got {value[:40]!r}",
            CloseCode.POLICY_VIOLATION,
        )
    return choice


def _connection(task_id: str, session: PeerSession | None = None) -> str:
    """How log lines name a connection: by its peer id once it has one (the task id is
    client-controlled: escaped)."""
    task = f"task {safe_text(task_id)}"
    if session is None or session.peer_id is None:
        return f"{task}: a connection"
    return f"{task}: peer {session.peer_id}"


async def serve_peer(
    websocket: WebSocket,
    task_id: str,
    hub: SignalingHub | None,
    peer_updates: str | None = None,
    gate: Gate | None = None,
    client_id: str | None = None,
) -> None:
    """Serve one connection of the decentralized protocol until either side ends it.

    `peer_updates` is the raw `?peerUpdates=` value (None when absent; see `wants_peer_updates`).
    `gate`: the connection's participant token, checked (with `client_id`, when the URL has
    one, bound to it) when the task requires enrollment; revoking it closes the connection.
    """
    with log_context(task=task_id, client=client_id):
        await _serve_connection(websocket, task_id, hub, peer_updates, gate, client_id)


async def _serve_connection(
    websocket: WebSocket,
    task_id: str,
    hub: SignalingHub | None,
    peer_updates: str | None,
    gate: Gate | None,
    client_id: str | None,
) -> None:
    if not await ws.accept(websocket):
        return
    if hub is None:
        await ws.close(
            websocket, CloseCode.INTERNAL_ERROR, "decentralized signaling is not running"
        )
        return
    try:
        grant = None if gate is None else gate.admit(task_id, client_id)
    except AccessRefused as refusal:
        await ws.refuse(
            websocket, log, _connection(task_id), refusal.close_code, refusal.reason
        )
        return
    try:
        minimum = hub.task_minimum(task_id)  # an in-memory lookup: no thread needed
        if minimum is None:
            raise ProtocolError(f"unknown task: {task_id}", CloseCode.POLICY_VIOLATION)
        session = hub.attach(task_id, minimum, peer_updates=wants_peer_updates(peer_updates))
    except ProtocolError as error:
        await ws.refuse(websocket, log, _connection(task_id), error.close_code, error.reason)
        return

    release = (
        None if gate is None or grant is None else gate.hold(grant, session.outbox.close)
    )
    hub.metrics.connected(task_id, "decentralized")
    reader = asyncio.create_task(_read(websocket, hub, session), name="decentralized-read")
    writer = asyncio.create_task(_write(websocket, session.outbox), name="decentralized-write")
    closed = asyncio.create_task(session.outbox.wait_closed(), name="decentralized-closed")
    tasks = (reader, writer, closed)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if release is not None:
            release()
        hub.detach(session)
        hub.metrics.disconnected(task_id, "decentralized")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    request = session.outbox.close_request
    if request is not None and not _client_left(reader):
        await ws.close(websocket, request.code, request.reason)


async def _read(websocket: WebSocket, hub: SignalingHub, session: PeerSession) -> bool:
    """Feed the hub until the client leaves (True) or breaks the protocol (False, outbox closed)."""
    def connection() -> str:
        return _connection(session.task_id, session)

    try:
        async for frame in ws.binary_frames(websocket, log, connection):
            hub.handle(session, parse_decentralized(unpack_message(frame, hub.max_frame_bytes)))
    except ProtocolError as error:
        ws.log_refusal(log, connection(), error.close_code, error.reason)
        session.outbox.close(error.close_code, error.reason)
        return False
    except Exception:
        log.exception("task %s: failed to handle a decentralized message", session.task_id)
        session.outbox.close(CloseCode.INTERNAL_ERROR, "internal error")
        return False
    return True


def _client_left(reader: asyncio.Task[bool]) -> bool:
    """True when the reader saw the client go (no close frame is owed then)."""
    if not reader.done() or reader.cancelled() or reader.exception() is not None:
        return False
    return reader.result()


async def _write(websocket: WebSocket, outbox: Outbox) -> None:
    """Write queued frames in order until the outbox closes or the socket fails."""
    while (frame := await outbox.get()) is not None:
        if not await ws.send(websocket, frame):
            return

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
import contextlib
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from disco.protocol.errors import CloseCode, ProtocolError
from disco.protocol.framing import unpack_message
from disco.protocol.messages import parse_decentralized
from disco.server.decentralized.hub import PeerSession, SignalingHub
from disco.server.decentralized.outbox import Outbox
from disco.server.ws_refusals import safe_text, transport_refusal

log = logging.getLogger("disco.server.decentralized")

CLOSE_TIMEOUT_S = 5.0
MAX_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code
MAX_LOGGED = 500
"""Longest reason written to a log line."""


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


def close_reason(text: str) -> str:
    """`text` cut to what fits in a WebSocket close frame, without splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_REASON_BYTES:
        return text
    return encoded[: MAX_REASON_BYTES - 3].decode("utf-8", errors="ignore") + "..."


async def serve_peer(
    websocket: WebSocket, task_id: str, hub: SignalingHub | None, peer_updates: str | None = None
) -> None:
    """Serve one connection of the decentralized protocol until either side ends it.

    `peer_updates` is the raw `?peerUpdates=` value (None when absent; see `wants_peer_updates`).
    """
    try:
        await websocket.accept()
    except (WebSocketDisconnect, RuntimeError, OSError):  # the client left during the handshake
        return
    if hub is None:
        await _close(websocket, CloseCode.INTERNAL_ERROR, "decentralized signaling is not running")
        return
    minimum = hub.task_minimum(task_id)  # an in-memory lookup: no thread needed
    if minimum is None:
        await _refuse_connection(
            websocket, task_id, CloseCode.POLICY_VIOLATION, f"unknown task: {task_id}"
        )
        return
    try:
        session = hub.attach(task_id, minimum, peer_updates=wants_peer_updates(peer_updates))
    except ProtocolError as error:
        await _refuse_connection(websocket, task_id, error.close_code, error.reason)
        return

    reader = asyncio.create_task(_read(websocket, hub, session), name="decentralized-read")
    writer = asyncio.create_task(_write(websocket, session.outbox), name="decentralized-write")
    closed = asyncio.create_task(session.outbox.wait_closed(), name="decentralized-closed")
    tasks = (reader, writer, closed)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hub.detach(session)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    request = session.outbox.close_request
    if request is not None and not _client_left(reader):
        await _close(websocket, request.code, request.reason)


async def _read(websocket: WebSocket, hub: SignalingHub, session: PeerSession) -> bool:
    """Feed the hub until the client leaves (True) or breaks the protocol (False, outbox closed)."""
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError, OSError):
            return True
        if message["type"] == "websocket.disconnect":
            refusal = transport_refusal(message)
            if refusal is not None:
                log.warning(
                    "task %s: connection of peer %s closed by the WebSocket layer with %s",
                    session.task_id, session.peer_id, refusal,
                )
            return True
        frame = message.get("bytes")
        if frame is None:
            _refuse(
                session, CloseCode.UNSUPPORTED_DATA,
                "text frames are not supported: send binary msgpack",
            )
            return False
        try:
            hub.handle(session, parse_decentralized(unpack_message(frame, hub.max_frame_bytes)))
        except ProtocolError as error:
            _refuse(session, error.close_code, error.reason)
            return False
        except Exception:
            log.exception("task %s: failed to handle a decentralized message", session.task_id)
            session.outbox.close(CloseCode.INTERNAL_ERROR, "internal error")
            return False


def _refuse(session: PeerSession, code: int, reason: str) -> None:
    """Log a bad input once (a warning: the client broke the protocol) and close its outbox."""
    log.warning(
        "task %s: closing peer %s with %d: %s",
        session.task_id, session.peer_id, code, safe_text(reason, MAX_LOGGED),
    )
    session.outbox.close(code, reason)


async def _refuse_connection(websocket: WebSocket, task_id: str, code: int, reason: str) -> None:
    """Log why a connection is refused before it starts (once; shutdown is not a fault), close."""
    level = logging.INFO if code == CloseCode.GOING_AWAY else logging.WARNING
    log.log(
        level, "task %s: refusing a connection with %d: %s",
        safe_text(task_id), code, safe_text(reason, MAX_LOGGED),
    )
    await _close(websocket, code, reason)


def _client_left(reader: asyncio.Task[bool]) -> bool:
    """True when the reader saw the client go (no close frame is owed then)."""
    if not reader.done() or reader.cancelled() or reader.exception() is not None:
        return False
    return reader.result()


async def _write(websocket: WebSocket, outbox: Outbox) -> None:
    """Write queued frames in order until the outbox closes or the socket fails."""
    while (frame := await outbox.get()) is not None:
        try:
            await websocket.send_bytes(frame)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with a code and reason, bounded in time; the client may already be gone."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError, TimeoutError):
        await asyncio.wait_for(websocket.close(code, close_reason(reason)), CLOSE_TIMEOUT_S)

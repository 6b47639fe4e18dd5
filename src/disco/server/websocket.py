"""The WebSocket plumbing both handlers share: accept, read binary frames, refuse, close.

Every connection is accepted before any check, so that a refusal reaches the client as a close
code and reason (a refused handshake only shows an HTTP 403). Each refused input is one log line
without a traceback, with client-controlled text escaped and bounded (`safe_text`): a warning
when the client broke the rules, info for the server going away. Closing is bounded in time and
the reason cut to what a close frame holds, since the client may be gone or never read.

The WebSocket layer itself (`disco.server.ws_transport`: uvicorn's websockets-sansio protocol
with a direct path for binary frames) enforces `ws_max_size` and the framing rules: it closes
the connection (1009 for a frame over the limit, 1007 for a text frame that is not UTF-8, 1002
for a broken frame) and hands the app only `websocket.disconnect` with that code. It also holds
big frames to a server-wide receive budget (`Settings.ws_receive_budget_bytes`: a frame over
256 KiB reserves its length before it is read, and waits without being read when that does not
fit) and closes with 1008 a sender whose granted frame arrives slower than
`Settings.ws_min_receive_rate`. A frame's reservation is given back when the handler asks for
the connection's next message (so read frames one at a time and finish with one before asking
for the next), drops the frame, or 10 s after delivery at the latest. Frames over 256 KiB
arrive as a `bytearray`, the others as `bytes`.
`binary_frames` logs those closes too: the one bad input refused most often in practice (an
update over the frame limit) would otherwise leave no trace in the server's logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

from starlette.websockets import WebSocket, WebSocketDisconnect

from disco.protocol.errors import CloseCode, ProtocolError
from disco.server.ws_transport import DIRECT_WRITE, FrameWriter, ServerFrame

CLOSE_TIMEOUT_S: Final = 5.0
MAX_REASON_BYTES: Final = 123  # a close frame's payload is at most 125 bytes, 2 of them the code
MAX_LOGGED: Final = 500
"""Longest client-controlled text written to a log line (a close reason may quote the input)."""
MAX_LOGGED_REASON: Final = 200
"""Longest reason quoted from a close the WebSocket layer made."""

CONNECTION_LOST: Final = (WebSocketDisconnect, RuntimeError, OSError)
"""What starlette raises when the other side is gone (or the socket is already closed)."""

TRANSPORT_REFUSALS: Final = frozenset(
    {
        1002,
        int(CloseCode.INVALID_DATA),
        int(CloseCode.POLICY_VIOLATION),
        int(CloseCode.MESSAGE_TOO_BIG),
    }
)
"""Close codes with which the WebSocket layer fails a connection over a bad frame."""


def safe_text(text: str, limit: int = MAX_LOGGED_REASON) -> str:
    """Client-controlled text for a log line: one line (control characters escaped), bounded."""
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit + 1])
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def close_reason(text: str) -> str:
    """`text` cut to what fits in a WebSocket close frame, without splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_REASON_BYTES:
        return text
    return encoded[: MAX_REASON_BYTES - 3].decode("utf-8", errors="ignore") + "..."


def transport_refusal(message: Mapping[str, Any]) -> str | None:
    """For a `websocket.disconnect` that reports a refused frame: "<code> (<reason>)", else None.

    A client may close with one of these codes itself; the line then still says what happened.
    """
    if message.get("type") != "websocket.disconnect":
        return None
    code = message.get("code")
    if code not in TRANSPORT_REFUSALS:
        return None
    reason = message.get("reason") or ""
    text = reason if isinstance(reason, str) else repr(reason)
    return f"{code} ({safe_text(text) or 'no reason'})"


async def accept(websocket: WebSocket) -> bool:
    """Accept the connection; False when the client left during the handshake."""
    try:
        await websocket.accept()
    except CONNECTION_LOST:
        return False
    return True


async def close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with a code and reason, bounded in time; the client may already be gone."""
    with contextlib.suppress(*CONNECTION_LOST, TimeoutError):
        await asyncio.wait_for(websocket.close(code, close_reason(reason)), CLOSE_TIMEOUT_S)


async def send(websocket: WebSocket, frame: bytes) -> bool:
    """Send one binary frame; False when the client is gone."""
    try:
        await websocket.send_bytes(frame)
    except CONNECTION_LOST:
        return False
    return True


def frame_writer(websocket: WebSocket) -> FrameWriter | None:
    """The connection's direct frame writer (`ws_transport.DIRECT_WRITE`), None when the server
    offers none (another ASGI server, a test client)."""
    direct = (websocket.scope.get("extensions") or {}).get(DIRECT_WRITE)
    return None if direct is None else direct["write"]


async def send_frame(websocket: WebSocket, frame: bytes, write: FrameWriter | None) -> bool:
    """Send one binary frame, written at once through `write` (`frame_writer`) when the
    WebSocket layer allows it, else the ordinary way; False when the client is gone."""
    if write is not None and write(ServerFrame(frame)):
        return True
    return await send(websocket, frame)


def log_refusal(log: logging.Logger, connection: str, code: int, reason: str) -> None:
    """The one line for a connection closed over what its client sent (a warning: the client
    broke the rules) or refused before it started (info when the server is going away)."""
    level = logging.INFO if code == CloseCode.GOING_AWAY else logging.WARNING
    log.log(level, "%s: closing with %d: %s", connection, code, safe_text(reason, MAX_LOGGED))


async def refuse(
    websocket: WebSocket, log: logging.Logger, connection: str, code: int, reason: str
) -> None:
    """Log why the connection ends (once) and close it with `code` and `reason`."""
    log_refusal(log, connection, code, reason)
    await close(websocket, code, reason)


async def binary_frames(
    websocket: WebSocket, log: logging.Logger, connection: Callable[[], str]
) -> AsyncIterator[bytes]:
    """The client's frames, in order, until it leaves (a frame the WebSocket layer refused is
    logged, naming the connection as `connection()` says at that moment); ProtocolError (1003)
    on a text frame: the protocol is binary msgpack.

    Each frame is at most the server's `max_frame_bytes` (uvicorn's `ws_max_size`; handlers
    check again for servers that do not enforce it), so reading never grows without bound.
    """
    while True:
        try:
            message = await websocket.receive()
        except CONNECTION_LOST:
            return
        if message["type"] == "websocket.disconnect":
            refusal = transport_refusal(message)
            if refusal is not None:
                log.warning("%s: closed by the WebSocket layer with %s", connection(), refusal)
            return
        if message.get("bytes") is None:
            raise ProtocolError(
                "text frames are not supported: send binary msgpack", CloseCode.UNSUPPORTED_DATA
            )
        # Handed over without a reference kept here: the caller may drop a big frame as soon
        # as it has decoded it.
        yield message.pop("bytes")

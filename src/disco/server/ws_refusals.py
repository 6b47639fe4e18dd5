"""Frames the WebSocket layer refuses before the app sees them, so that handlers can log them.

uvicorn (websockets) enforces `ws_max_size` and the framing rules itself: it closes the
connection (1009 for a frame over the limit, 1007 for a text frame that is not UTF-8, 1002 for a
broken frame) and hands the app only `websocket.disconnect` with that code. Without a log line
there, the one bad input the server refuses most often in practice (an update over the frame
limit) would leave no trace in the server's logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from disco.protocol.errors import CloseCode

TRANSPORT_REFUSALS: Final = frozenset(
    {1002, int(CloseCode.INVALID_DATA), int(CloseCode.MESSAGE_TOO_BIG)}
)
"""Close codes with which the WebSocket layer fails a connection over a bad frame."""

MAX_LOGGED_REASON = 200


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


def safe_text(text: str, limit: int = MAX_LOGGED_REASON) -> str:
    """Client-controlled text for a log line: one line (control characters escaped), bounded."""
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit + 1])
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."

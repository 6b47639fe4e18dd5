"""uvicorn's HTTP/1.1 protocol (h11) with a deadline on each request's head.

uvicorn arms its keep-alive timer only once a response is sent, and disarms it on any byte, so
a connection that never completes a request head (nothing at all after connecting, or a
slowloris sending a header byte every few seconds) is held forever; enough of them exhaust
`max_connections` and every newcomer gets 503. Here a request head must arrive in full within
`Settings.request_header_timeout_s`, counted from the connection's start or from the first byte
of a later request (between requests, uvicorn's keep-alive time-out still closes an idle
connection silently). Past the deadline the server answers 408 with a JSON reason and closes.
A request body and an upgraded WebSocket are not under this deadline (WebSockets have pings).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def request_timeout_response(timeout_s: float) -> bytes:
    """The 408 answer (JSON reason, connection closed), written as raw bytes: h11 refuses to
    send a response before a request, and here none arrived in full."""
    body = json.dumps(
        {"error": f"the request's headers did not arrive within {timeout_s:g} s"}
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode("ascii")
    return head + body


class HeaderDeadlineProtocol(H11Protocol):
    """H11Protocol plus the request-head deadline (see the module docstring)."""

    header_timeout_s: float = 15.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and data and not self.transport.is_closing():
            self._arm()  # the first bytes of a request after a response: its head is now due
        else:
            self._disarm()  # a request head arrived (or the connection became a WebSocket)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        self.logger.info("closing a connection whose request head did not arrive in time")
        self.transport.write(request_timeout_response(self.header_timeout_s))
        self.transport.close()


def with_header_deadline(timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class for uvicorn's `http=` setting, with this deadline (uvicorn builds the
    class itself, so the setting travels as a class attribute)."""
    attributes = {"header_timeout_s": timeout_s}
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), attributes)

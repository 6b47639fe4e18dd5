"""The WebSocket plumbing both handlers share (`disco.server.websocket`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest
from starlette.websockets import WebSocket, WebSocketDisconnect

from disco.protocol.errors import CloseCode, ProtocolError
from disco.server import websocket as ws


class Script:
    """Enough of starlette's WebSocket for the helpers: scripted messages, recorded closes."""

    def __init__(self, *messages: dict[str, Any], gone: bool = False) -> None:
        self.messages = list(messages)
        self.gone = gone
        self.closes: list[tuple[int, str | None]] = []

    async def accept(self) -> None:
        if self.gone:
            raise WebSocketDisconnect(1006)

    async def receive(self) -> dict[str, Any]:
        if not self.messages:
            raise RuntimeError('Cannot call "receive" once a disconnect message has been received.')
        return self.messages.pop(0)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if self.gone:
            raise RuntimeError("closed")
        self.closes.append((code, reason))

    async def send_bytes(self, data: bytes) -> None:
        if self.gone:
            raise WebSocketDisconnect(1006)


def socket(script: Script) -> WebSocket:
    return cast(WebSocket, script)


LOG = logging.getLogger("disco.test.websocket")


def test_close_reason_fits_a_close_frame() -> None:
    assert ws.close_reason("short") == "short"
    long = ws.close_reason("é" * 200)
    assert len(long.encode()) <= 123 and long.endswith("...")


def test_safe_text_is_one_bounded_line() -> None:
    assert ws.safe_text("a\nINFO forged") == "a\\nINFO forged"
    assert len(ws.safe_text("x" * 1000, 50)) == 50


def test_transport_refusal_names_only_the_layers_codes() -> None:
    assert ws.transport_refusal({"type": "websocket.disconnect", "code": 1009}) == (
        "1009 (no reason)"
    )
    assert ws.transport_refusal({"type": "websocket.disconnect", "code": 1000}) is None
    assert ws.transport_refusal({"type": "websocket.receive", "bytes": b""}) is None


async def test_frames_until_the_client_leaves(caplog: pytest.LogCaptureFixture) -> None:
    script = Script(
        {"type": "websocket.receive", "bytes": b"a"},
        {"type": "websocket.receive", "bytes": b"b"},
        {"type": "websocket.disconnect", "code": 1009, "reason": "frame too big"},
    )
    with caplog.at_level(logging.INFO, logger=LOG.name):
        frames = [f async for f in ws.binary_frames(socket(script), LOG, lambda: "conn 1")]
    assert frames == [b"a", b"b"]
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "conn 1: closed by the WebSocket layer with 1009 (frame too big)"


async def test_a_text_frame_is_a_protocol_error() -> None:
    script = Script({"type": "websocket.receive", "text": "{}"})
    with pytest.raises(ProtocolError) as refused:
        async for _ in ws.binary_frames(socket(script), LOG, lambda: "conn"):
            pass
    assert refused.value.close_code == CloseCode.UNSUPPORTED_DATA


async def test_a_vanished_client_ends_the_frames_quietly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOG.name):
        assert [f async for f in ws.binary_frames(socket(Script()), LOG, lambda: "c")] == []
    assert caplog.records == []


async def test_refusal_is_one_line_and_a_close(caplog: pytest.LogCaptureFixture) -> None:
    script = Script()
    with caplog.at_level(logging.INFO, logger=LOG.name):
        await ws.refuse(socket(script), LOG, "task t: client c", 1008, "bad\nthing " + "é" * 200)
        await ws.refuse(socket(script), LOG, "task t: client d", 1001, "server shutting down")
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]
    assert caplog.records[0].getMessage().startswith("task t: client c: closing with 1008: bad\\n")
    assert [code for code, _ in script.closes] == [1008, 1001]
    assert len((script.closes[0][1] or "").encode()) <= 123


async def test_a_gone_client_makes_no_error() -> None:
    gone = Script(gone=True)
    assert await ws.accept(socket(gone)) is False
    assert await ws.send(socket(gone), b"x") is False
    await asyncio.wait_for(ws.close(socket(gone), 1000, "bye"), 1)
    assert await ws.accept(socket(Script())) is True

"""Shared by the robustness tests: raw WebSocket clients, log watching and model fingerprints.

The checks every hostile-input test makes are the same: the bad input gets a clear answer
(close code + reason, or an error reply), it is logged exactly once as a warning without a
traceback, and nothing else on the server changes (other connections, every task's model).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from disco.protocol.framing import pack, unpack_message
from disco.server.runner import base_url, bound_port, uvicorn_config
from disco.server.settings import Settings
from disco.server.state import server_state

ANSWER_TIMEOUT_S = 3.0
LOG_WAIT_S = 2.0
LOG_SETTLE_S = 0.05
"""After the expected log line arrived: how long a repeated line would have to show up."""


# --------------------------------------------------------------------------- WebSocket client


class WsClient:
    """One raw WebSocket connection that speaks msgpack frames (or anything else, on purpose)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, frame: bytes | str | dict[str, Any]) -> None:
        """Send a message (packed), or raw bytes / text exactly as given."""
        await self.ws.send(pack(frame) if isinstance(frame, dict) else frame)

    async def receive(self) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.recv(), ANSWER_TIMEOUT_S)
        assert isinstance(frame, bytes), "the server must send binary frames"
        return unpack_message(frame)

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send and return the next frame (each channel answers a connection in order)."""
        await self.send(message)
        return await self.receive()

    async def closed(self) -> tuple[int, str]:
        """Wait for the server's close frame (skipping frames queued before it): code, reason."""
        with pytest.raises(ConnectionClosed) as caught:
            for _ in range(100):
                await asyncio.wait_for(self.ws.recv(), ANSWER_TIMEOUT_S)
        assert caught.value.rcvd is not None, "the server sent no close frame"
        return caught.value.rcvd.code, caught.value.rcvd.reason


class Connections:
    """Opens WebSocket clients against one server and closes them all at the end of a test."""

    def __init__(self, base_url: str) -> None:
        self.ws_base = "ws://" + base_url.removeprefix("http://")
        self.opened: list[WsClient] = []

    async def open(self, path: str) -> WsClient:
        ws = await connect(
            self.ws_base + path,
            compression=None,
            max_size=None,
            open_timeout=ANSWER_TIMEOUT_S,
            close_timeout=1,
        )
        client = WsClient(ws)
        self.opened.append(client)
        return client

    async def close_all(self) -> None:
        await asyncio.gather(*(c.ws.close() for c in self.opened), return_exceptions=True)


# --------------------------------------------------------------------------- logs


class LogWatch:
    """What the server logs during a test: `disco.*` from INFO, uvicorn's own from WARNING.

    uvicorn's loggers do not propagate to the root logger once it configured them, so the
    capture handler is attached to the `uvicorn` logger directly (it sees `uvicorn.error`,
    where "Exception in ASGI application" tracebacks go).
    """

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.checked = 0

    @property
    def records(self) -> list[logging.LogRecord]:
        return list(self.caplog.records)

    def notable(self) -> list[logging.LogRecord]:
        """Records at WARNING or above (what an operator is meant to notice)."""
        return [r for r in self.records if r.levelno >= logging.WARNING]

    def lines(self, records: list[logging.LogRecord] | None = None) -> list[str]:
        return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in (records or self.records)]

    def clear(self) -> None:
        self.caplog.clear()
        self.checked = 0

    async def expect_next(self, fragment: str, level: int = logging.WARNING) -> None:
        """The next line at INFO or above (after those already checked) is at `level`, has no
        traceback and names `fragment`. Waits for it (bounded): the server may log after the
        client already saw the close. Repeats show up as the next line or in `expect_total`.
        """
        await _poll(lambda: len(self._visible()) > self.checked)
        visible = self._visible()
        assert len(visible) > self.checked, f"nothing was logged for {fragment!r}"
        record = visible[self.checked]
        self.checked += 1
        self._check(record, fragment, level)

    async def expect_total(self, count: int) -> None:
        """Exactly `count` lines at INFO or above so far (waits briefly for late ones)."""
        await _poll(lambda: len(self._visible()) >= count)
        await asyncio.sleep(LOG_SETTLE_S)
        visible = self._visible()
        assert len(visible) == count, self.lines(visible[self.checked :])

    def _check(self, record: logging.LogRecord, fragment: str, level: int) -> None:
        line = self.lines([record])
        assert record.levelno == level, line
        assert record.name.startswith("disco"), line
        assert record.exc_info is None and record.exc_text is None, f"traceback: {line}"
        assert record.stack_info is None, line
        assert fragment in record.getMessage(), (fragment, line)
        assert "\n" not in record.getMessage(), f"multi-line log record: {line}"

    async def expect_one(self, fragment: str, level: int = logging.WARNING) -> logging.LogRecord:
        """Exactly one line at INFO or above was logged, at `level`, naming `fragment`.

        Waits (bounded) for it: the server may log after the client already saw the close.
        """
        await _poll(lambda: bool(self._visible()))
        await asyncio.sleep(LOG_SETTLE_S)
        visible = self._visible()
        assert len(visible) == 1, self.lines(visible) or "nothing was logged"
        [record] = visible
        self._check(record, fragment, level)
        return record

    def expect_quiet(self) -> None:
        """Nothing at WARNING or above."""
        assert self.notable() == [], self.lines(self.notable())

    def _visible(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= logging.INFO]


async def _poll(condition: Callable[[], bool], timeout_s: float = LOG_WAIT_S) -> None:
    """Wait until `condition()` holds or `timeout_s` passes (log records arrive from the server
    thread, which offers nothing to await)."""
    step = 0.005
    for _ in range(int(timeout_s / step)):
        if condition():
            return
        await asyncio.sleep(step)


@contextmanager
def watching_logs(caplog: pytest.LogCaptureFixture) -> Iterator[LogWatch]:
    """Capture `disco.*` at INFO and uvicorn at WARNING for the duration of the block."""
    caplog.set_level(logging.INFO, logger="disco")
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.addHandler(caplog.handler)
    try:
        yield LogWatch(caplog)
    finally:
        uvicorn_logger.removeHandler(caplog.handler)


# --------------------------------------------------------------------------- models


async def fingerprint(base_url: str) -> dict[str, tuple[str, ...]]:
    """Every task's served model, by task id: round, version and sha256 of each representation.

    Covers the TF.js files, the DISCO byte-array encoding and the status round, so any change of
    any global model (in memory and persisted: the routes serve the store) shows up.
    """
    out: dict[str, tuple[str, ...]] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=ANSWER_TIMEOUT_S) as http:
        listing = await http.get("/tasks")
        assert listing.status_code == 200
        for task in listing.json():
            task_id = task["taskID"]
            parts: list[str] = []
            for path, params in (
                (f"/tasks/{task_id}/model.json", {"format": "tfjs"}),
                (f"/tasks/{task_id}/weights.bin", {"format": "tfjs"}),
                (f"/tasks/{task_id}/model.json", {"format": "disco"}),
            ):
                response = await http.get(path, params=params)
                assert response.status_code == 200, response.text
                parts.append(hashlib.sha256(response.content).hexdigest())
            status = (await http.get(f"/tasks/{task_id}/status")).json()
            parts += [str(status["round"]), str(status["modelVersion"])]
            out[task_id] = tuple(parts)
    return out


def state_fingerprint(app: FastAPI) -> dict[str, tuple[object, ...]]:
    """Every task's model as the running server holds it, read in-process (cheap: no I/O).

    Store: round, version and SHA-256 of the persisted weights; federated engines (once a client
    connected to the task): round and a SHA-256 of the in-memory global weights.
    """
    out: dict[str, tuple[object, ...]] = {}
    state = server_state(app)
    for stored in state.store.stored():
        version = stored.model_version
        out[stored.task_id] = (version.round, version.version, version.sha256)
    hub = state.federated
    assert hub is not None
    for task_id, channel in hub.channels().items():
        round_, weights = channel.engine.current()
        digest = hashlib.sha256()
        for tensor in weights:
            digest.update(tensor.tobytes())
        out[task_id] = (*out.get(task_id, ()), round_, digest.hexdigest())
    return out


@contextmanager
def serve_app_in_thread(app: FastAPI, settings: Settings, timeout_s: float = 30.0) -> Iterator[str]:
    """`runner.serve_in_thread` for an app the test keeps a handle on (to read its state)."""
    server = uvicorn.Server(uvicorn_config(app, settings))
    thread = threading.Thread(target=server.run, name="disco-hostile-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            assert thread.is_alive(), "the server thread stopped during start-up"
            assert time.monotonic() < deadline, "the server did not start in time"
            time.sleep(0.01)
        yield base_url(settings.host, bound_port(server))
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --------------------------------------------------------------------------- raw HTTP


async def raw_http(
    base_url: str, request_line: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """Send one request exactly as written (no URL normalisation) and read the whole answer.

    httpx (and every other client) resolves `..` segments before sending; this does not, so
    the server sees the path a hostile client would send. HTTP/1.1 with `Connection: close`.
    """
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, int(port)), ANSWER_TIMEOUT_S
    )
    try:
        lines = [request_line, f"Host: {host}:{port}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT_S)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, content = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return status, parsed, content

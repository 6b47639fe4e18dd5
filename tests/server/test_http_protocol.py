"""The request-head deadline (`disco.server.http_protocol`) on a live loopback server: a silent or
trickling connection gets 408 with a JSON reason and is closed; an idle keep-alive connection
and a WebSocket are not under it."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from disco.cli.server import load_settings
from disco.server.app import create_app
from disco.server.http_protocol import HeaderDeadlineProtocol
from disco.server.runner import serve_in_thread, uvicorn_config
from disco.server.settings import Settings
from support.robust_ws import FedClient

DEADLINE_S = 0.6
KEEP_ALIVE_S = 3
WAIT_S = 15.0
"""Upper bound of any wait here (a loaded machine answers late, never this late)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"), port=0, log_level="warning",
        request_header_timeout_s=DEADLINE_S, keep_alive_timeout_s=KEEP_ALIVE_S,
    )  # fmt: skip
    with serve_in_thread(settings) as url:
        yield url


def dial(url: str) -> socket.socket:
    parts = urlsplit(url)
    connection = socket.create_connection((parts.hostname, parts.port), timeout=WAIT_S)
    connection.settimeout(WAIT_S)
    return connection


def read_all(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes (bounded by the socket's time-out)."""
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def assert_timed_out(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"content-type: application/json" in head.lower()
    reason = f"the request's headers did not arrive within {DEADLINE_S:g} s"
    assert json.loads(body) == {"error": reason}


def get(connection: socket.socket, path: str = "/tasks") -> bytes:
    """One keep-alive GET; the response head and its body (by content-length)."""
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536) or b"!closed"
        assert not data.endswith(b"!closed"), data[:200]
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:"))
    while len(body) < length:
        body += connection.recv(65536)
    return head


def test_a_silent_connection_gets_408_and_is_closed(server: str) -> None:
    with dial(server) as connection:
        started = time.monotonic()
        assert_timed_out(read_all(connection))
        assert DEADLINE_S * 0.9 <= time.monotonic() - started < WAIT_S


def test_trickled_headers_get_408_before_they_end(server: str) -> None:
    request = b"GET /tasks HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 40 + b"\r\n\r\n"
    with dial(server) as connection:
        started = time.monotonic()
        sent = 0
        try:
            for byte in request:  # one byte every 50 ms: 2.5 s for the whole head
                connection.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.05)
        except OSError:
            pass  # closed by the server under our feet
        assert sent < len(request)
        assert_timed_out(read_all(connection))
        assert time.monotonic() - started < WAIT_S


def test_an_idle_keep_alive_connection_is_not_under_the_deadline(server: str) -> None:
    with dial(server) as connection:
        assert get(connection).startswith(b"HTTP/1.1 200 ")
        time.sleep(DEADLINE_S * 2)  # idle past the head deadline, within the keep-alive time
        assert get(connection).startswith(b"HTTP/1.1 200 ")


def test_a_websocket_outlives_the_deadline(server: str) -> None:
    async def scenario() -> None:
        client = await FedClient.open(server, "titanic")
        try:
            await asyncio.sleep(DEADLINE_S * 2)
            assert (await client.request({"type": 0}))["type"] == 0
        finally:
            await client.close()

    asyncio.run(scenario())


def test_the_deadline_option_reaches_uvicorn(tmp_path: Path) -> None:
    chosen = load_settings(["--request-header-timeout", "2.5", "--data-dir", str(tmp_path)])
    config = uvicorn_config(create_app(chosen), chosen)
    assert isinstance(config.http, type) and issubclass(config.http, HeaderDeadlineProtocol)
    assert config.http.header_timeout_s == 2.5
    with pytest.raises(SystemExit):
        load_settings(["--request-header-timeout", "0"])

"""The HTTP API over a real loopback socket (uvicorn in a thread via `serve_in_thread`)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import numpy as np

from disco.protocol.weights import encode_legacy
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from disco.tasks.defaults import titanic_model, titanic_task
from disco.tasks.disco_encoding import decode_disco_model, encode_disco_model

AXIOS = {"Accept": "application/json, text/plain, */*"}


def raw_request(base_url: str, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Send `request` bytes as they are (no client-side path normalization); return the reply.

    Reads the status line and headers, then the body its Content-Length announces.
    """
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
        sock.sendall(request)
        reply = b""
        deadline = time.monotonic() + timeout_s
        expected: int | None = None
        while time.monotonic() < deadline:
            if expected is None and b"\r\n\r\n" in reply:
                head, _, _ = reply.partition(b"\r\n\r\n")
                lengths = [
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                expected = len(head) + 4 + (lengths[0] if lengths else 0)
            if expected is not None and len(reply) >= expected:
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply


def test_live_server_serves_the_api(live_server: str) -> None:
    with httpx.Client(base_url=live_server, timeout=10) as client:
        assert "disco" in client.get("/").text
        assert {t["taskID"] for t in client.get("/tasks").json()} >= {"titanic"}
        disco = client.get("/tasks/titanic/model.json", headers=AXIOS)
        model = decode_disco_model(bytes(disco.json()))
        tfjs = client.get("/tasks/titanic/model.json", headers={"Accept": "*/*"}).json()
        assert tfjs["weightsManifest"][0]["weights"][0]["shape"] == list(model.shapes()[0])

        artifacts = titanic_model(np.random.default_rng(3))
        body = {
            "task": {**titanic_task(), "taskID": "live"},
            "model": list(encode_disco_model(artifacts)),
            "weights": encode_legacy(artifacts.weights()),
        }
        created = client.post("/tasks", json=body)
        assert created.status_code == 201, created.text
        weights = client.get("/tasks/live/weights.bin")
        assert weights.content == artifacts.weight_data


def test_raw_dot_dot_paths_are_404(live_server: str) -> None:
    for path in (
        b"/tasks/titanic/..",
        b"/tasks/titanic/../../meta.json",
        b"/tasks/titanic/%2e%2e/%2e%2e/meta.json",
        b"/tasks/../tasks/titanic/weights-1.bin",
    ):
        reply = raw_request(
            live_server, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert reply.startswith(b"HTTP/1.1 404"), (path, reply[:200])
        assert b'{"error":' in reply


def test_oversized_body_is_refused_without_being_read(
    make_settings: Callable[..., Settings],
) -> None:
    with serve_in_thread(make_settings(max_body_bytes=1024, load_default_tasks=False)) as url:
        started = time.monotonic()
        # Announces 1 GB but sends only a few bytes: the answer must come without the body.
        reply = raw_request(
            url,
            b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n{",
        )
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert time.monotonic() - started < 5
        # And a chunked body that never ends stops being read once past the limit.
        reply = raw_request(
            url,
            b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b" " * 1024 + b"\r\n" + b"1\r\n ",
        )
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_serve_in_thread_reports_the_bound_port(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(load_default_tasks=False)
    assert settings.port == 0
    with serve_in_thread(settings) as url:
        port = urlsplit(url).port
        assert port is not None and port > 0
        assert httpx.get(f"{url}/tasks", timeout=10).json() == []
    # Stopped: the port no longer answers.
    try:
        httpx.get(f"{url}/", timeout=2)
    except httpx.TransportError:
        pass
    else:
        raise AssertionError("the server still answers after serve_in_thread exited")

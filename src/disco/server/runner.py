"""Run the server: in the foreground (`disco-server`) or in a thread (tests, `disco simulate`)."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Literal

import uvicorn
from fastapi import FastAPI
from uvicorn.config import LOGGING_CONFIG

from disco.server.allocator import start_idle_trimmer, tune_allocator
from disco.server.app import create_app
from disco.server.collector import tune_collector
from disco.server.http_protocol import with_header_deadline
from disco.server.receive_budget import ReceiveBudget
from disco.server.settings import EventLoop, Settings
from disco.server.state import drain
from disco.server.ws_transport import protocol_class


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def uvicorn_config(app: object, settings: Settings) -> uvicorn.Config:
    """The uvicorn settings the server always runs with.

    WebSockets run `disco.server.ws_transport`'s protocol (uvicorn's websockets-sansio one with a
    direct path for binary frames and a receive budget of `settings.ws_receive_budget_bytes`).
    permessage-deflate is off: it makes weight frames ~40x slower for no gain on float data.
    HTTP is uvicorn's h11 protocol with a deadline on request heads (`http_protocol`).
    The event loop is `settings.event_loop` (`event_loop_name`: auto resolved here, so that a
    missing uvloop is said at start-up rather than in uvicorn's traceback).
    With `log_format="json"` uvicorn leaves its loggers to the process's logging set-up
    (`disco.server.logs.configure_logging`), so its lines are JSON too.
    """
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        loop=event_loop_name(settings.event_loop),
        http=with_header_deadline(settings.request_header_timeout_s),
        ws=protocol_class(app_receive_budget(app, settings), settings.ws_min_receive_rate),
        ws_per_message_deflate=False,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=3,
        lifespan="on",
        # JSON lines: uvicorn's loggers propagate to the root handler `configure_logging` set.
        log_config=None if settings.log_format == "json" else LOGGING_CONFIG,
    )


def app_receive_budget(app: object, settings: Settings) -> ReceiveBudget:
    """The receive budget `create_app` made (its metrics report that one), or a new one of
    `settings.ws_receive_budget_bytes` for an app made elsewhere."""
    budget = getattr(getattr(app, "state", None), "receive_budget", None)
    if isinstance(budget, ReceiveBudget):
        return budget
    return ReceiveBudget(settings.ws_receive_budget_bytes)


def uvloop_available() -> bool:
    """Whether uvloop can be imported (not a dependency: `pip install uvloop` to use it)."""
    return importlib.util.find_spec("uvloop") is not None


def event_loop_name(choice: EventLoop) -> Literal["asyncio", "uvloop"]:
    """The loop uvicorn runs for the `event_loop` setting: auto is uvloop when installed.

    Raises RuntimeError when uvloop is asked for and is not installed.
    """
    if choice == "asyncio":
        return "asyncio"
    if uvloop_available():
        return "uvloop"
    if choice == "uvloop":
        raise RuntimeError("event_loop is uvloop, but uvloop is not installed")
    return "asyncio"


class DiscoServer(uvicorn.Server):
    """uvicorn's server, stopping gracefully (SIGTERM, SIGINT, `should_exit`):

    1. stop accepting connections;
    2. `drain` the app: event streams end, hubs refuse newcomers and ask each live WebSocket to
       close with 1001 and a reason, a running aggregation finishes and is persisted;
    3. wait (at most `DRAIN_TIMEOUT_S`) for the connections' handlers to have closed them;
    4. uvicorn's own shut-down (it would otherwise close WebSockets with a bare 1012 at once,
       and wait on endless event streams for its whole graceful time-out).
    """

    DRAIN_TIMEOUT_S = 5.0

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        super().__init__(uvicorn_config(app, settings))
        self.disco_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        await drain(self.disco_app)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.DRAIN_TIMEOUT_S
        while any(not task.done() for task in self.server_state.tasks):
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.02)
        await super().shutdown(sockets)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's graceful stop (before it starts, or re-raised by uvicorn once
    it is done): exit with status 0, the way a service manager expects a requested stop."""
    raise SystemExit(0)


def run_server(settings: Settings) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (uvicorn handles the signals; a SIGTERM
    ends the process with status 0 once the graceful stop is done)."""
    tune_allocator()
    signal.signal(signal.SIGTERM, _exit_cleanly)
    trimmer = start_idle_trimmer()  # process-wide: only for a server that owns its process
    try:
        server = DiscoServer(create_app(settings), settings)
        tune_collector()  # after the imports and the app are built: they are never garbage
        server.run()
    finally:
        if trimmer is not None:
            trimmer.stop()


def bound_port(server: uvicorn.Server) -> int:
    """The port a started server listens on (the OS's choice when configured with port 0)."""
    for listener in getattr(server, "servers", []):
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("the server has no listening socket")


def base_url(host: str, port: int, tls: bool = False) -> str:
    """`http://host:port` (`https://` with TLS), IPv6 hosts in brackets."""
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


@contextmanager
def serve_in_thread(settings: Settings, start_timeout_s: float = 30.0) -> Iterator[str]:
    """Serve `settings` in a daemon thread; yield the base URL (`http(s)://host:port`); stop on
    exit.

    With `port=0` the OS picks the port when uvicorn binds (no window for another process to
    take it); the yielded URL carries the real one.
    """
    server = DiscoServer(create_app(settings), settings)
    thread = threading.Thread(target=server.run, name="disco-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server thread stopped during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start in time")
            time.sleep(0.01)
        yield base_url(settings.host, bound_port(server), settings.tls)
    finally:
        server.should_exit = True
        thread.join(timeout=10)

"""A loopback TCP proxy that cuts its first connection after a set number of bytes.

For tests (and bench/resume.py) of a connection lost mid-stream: the bytes before the cut reach
the server whole (the proxy writes them, then closes towards the server with a FIN, so the
server reads them before the end), nothing after the cut does, nothing more reaches the client,
and the client's side is aborted (no close frame). Later connections pass through untouched, as
every connection does without a cut. `sent` counts the bytes each connection's client sent
after its HTTP handshake and the proxy forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

HANDSHAKE_END = b"\r\n\r\n"


class CuttingProxy:
    """Forwards 127.0.0.1:`port` to `target`; the first connection is cut once `cut_after`
    bytes the client sent after its HTTP handshake went through (never with None)."""

    def __init__(self, target: str, cut_after: int | None) -> None:
        parts = urlsplit(target)
        self.target_host = parts.hostname or "127.0.0.1"
        self.target_port = parts.port or 80
        self.cut_after = cut_after
        self.connections = 0
        self.sent: list[int] = []  # per connection: client bytes forwarded past the handshake
        self.cut = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CuttingProxy]:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        budget = self.cut_after if self.connections == 1 else None
        index = len(self.sent)
        self.sent.append(0)

        def count(forwarded: int) -> None:
            self.sent[index] += forwarded

        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            writer.close()
            return
        cut = asyncio.Event()
        down = asyncio.create_task(_pipe(up_reader, writer, None, cut))
        try:
            await _pipe(reader, up_writer, budget, count=count)
            if budget is not None:
                cut.set()  # from now on the server's bytes are read and dropped
                self.cut.set()
                writer.transport.abort()  # the client: connection lost, no close frame
            # The server reads to the end (FIN) and closes: only then is our side closed, so
            # that no reset can overtake the bytes it has not read yet.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(down), 5)
        finally:
            down.cancel()
            await asyncio.gather(down, return_exceptions=True)
            for side in (up_writer, writer):
                side.close()
            self._tasks.discard(task)


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    budget: int | None,
    drop: asyncio.Event | None = None,
    count: Callable[[int], None] | None = None,
) -> None:
    """Copy until EOF, or (with `budget`) until `budget` bytes past the handshake went through,
    then end the write side with a FIN; once `drop` is set, read and drop. `count` is told of
    the bytes past the handshake written (client to server only: it skips the handshake)."""
    handshake = b"" if count is not None else None
    with contextlib.suppress(OSError, ConnectionError):
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            if drop is not None and drop.is_set():
                continue
            if handshake is not None:
                handshake += data
                end = handshake.find(HANDSHAKE_END)
                if end < 0:
                    writer.write(data)
                    continue
                past = len(handshake) - end - len(HANDSHAKE_END)  # bytes after it in `data`
                writer.write(data[: len(data) - past])
                data, handshake = data[len(data) - past :], None
            if budget is not None:
                data = data[:budget]
                budget -= len(data)
            writer.write(data)
            if count is not None:
                count(len(data))
            await writer.drain()
            if budget == 0:
                break
        if drop is None or not drop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                writer.write_eof()
                await writer.drain()

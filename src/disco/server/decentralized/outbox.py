"""A peer's bounded queue of outgoing frames, so one slow reader never stalls the relay.

The hub only ever calls the non-blocking `put`; one task per connection drains the queue into
the socket. A peer that lets its queue grow past the bounds is cut off (`close` with a reason)
instead of making the server buffer without limit.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from disco.protocol.errors import CloseCode


@dataclass(frozen=True)
class CloseRequest:
    """Why the server ends a connection: the WebSocket close code and reason to send."""

    code: int
    reason: str


class Outbox:
    """FIFO of frames bounded in count and bytes; closing it drops what is still queued."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("outbox bounds must be positive")
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._wakeup = asyncio.Event()
        self._closed = asyncio.Event()
        self.close_request: CloseRequest | None = None

    @property
    def closed(self) -> bool:
        """True once `close` was called: nothing more is accepted or delivered."""
        return self.close_request is not None

    @property
    def queued_frames(self) -> int:
        """Frames waiting to be written."""
        return len(self._frames)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting to be written."""
        return self._bytes

    def put(self, frame: bytes) -> bool:
        """Queue a frame; False when closed or (after closing it) when the bounds overflow."""
        if self.close_request is not None:
            return False
        if len(self._frames) >= self._max_frames or self._bytes + len(frame) > self._max_bytes:
            self.close(
                CloseCode.POLICY_VIOLATION,
                f"outgoing queue full ({len(self._frames)} frames, {self._bytes} bytes): "
                "the peer reads too slowly",
            )
            return False
        self._frames.append(frame)
        self._bytes += len(frame)
        self._wakeup.set()
        return True

    def close(self, code: int, reason: str) -> None:
        """Stop accepting and delivering frames; the first request wins, later ones are ignored."""
        if self.close_request is not None:
            return
        self.close_request = CloseRequest(int(code), reason)
        self._frames.clear()
        self._bytes = 0
        self._wakeup.set()
        self._closed.set()

    async def get(self) -> bytes | None:
        """The next frame to write, waiting for one; None once the outbox is closed."""
        while True:
            if self.close_request is not None:
                return None
            if self._frames:
                frame = self._frames.popleft()
                self._bytes -= len(frame)
                return frame
            self._wakeup.clear()
            await self._wakeup.wait()

    async def wait_closed(self) -> CloseRequest:
        """Wait until `close` is called and return its request."""
        await self._closed.wait()
        assert self.close_request is not None
        return self.close_request

"""The server's WebSocket protocol: uvicorn's websockets-sansio protocol with a direct path for
binary data frames, a server-wide receive budget, and flow control without a pause per message.

Why: uvicorn's class runs every frame through websockets' generator parser (its buffer, then an
extracted payload, then an unmasked copy: three copies of a 13.5 MB legacy post), pauses and
resumes reading after every message, and joins each outgoing frame into a new bytes. On 1,000
small clients that was a third of the server's time; on ten legacy posts, 200 MB of RSS.

Receiving. While websockets' parser sits at a message boundary with nothing buffered, a
complete, FIN, masked, RSV-clear binary frame within `ws_max_size` is read here: a small one is
unmasked straight out of the read buffer (one copy, a `bytes`); a big one (over
`BIG_FRAME_BYTES`) goes into a `bytearray` of exactly its payload length, unmasked in place,
which the app receives. The protocol is an `asyncio.BufferedProtocol`: while a big frame's
payload is being read, the transport receives the socket's bytes straight into that bytearray
(`get_buffer` hands it the unread part), so the kernel's copy is the only one, and one read
takes whatever the socket holds rather than 256 KiB (a 1.3 MB legacy post cost ~40 % less
event-loop time to receive than copying each read into it). Other reads land in a per-thread
scratch buffer that is consumed before the read returns. Every other frame
(text, control, fragments, unmasked, RSV set, oversize) and the handshake are fed, byte for
byte, to the inherited parser, so their handling and close codes (1002, 1007, 1009) are
uvicorn's.

Budget. A big frame reserves its length from the server-wide `ReceiveBudget`
(`Settings.ws_receive_budget_bytes`) before its payload is read; while the reservation waits,
that connection is not read (TCP holds the sender back). The reservation is released when the
app asks for its next message on that connection (our handlers read sequentially: the frame
has then been decoded and folded), when the app drops the payload, when the connection ends, or
`HOLD_TIMEOUT_S` after delivery, so that an app keeping a message without reading on cannot
stall the others for longer than that. A granted frame must arrive within
max(`MIN_READ_DEADLINE_S`, length / `Settings.ws_min_receive_rate`) when other frames wait for
the budget: a slower sender is then closed with 1008 and a reason, and its reservation
released. While nobody waits, a slow sender (a slow link) keeps no one waiting and is let be.

Not budgeted: messages that take the inherited path, a fragmented binary message above all, are
held by websockets' parser up to `ws_max_size` each. Chromium (156, measured) sends a binary
message over 131,000 bytes as fragments of at most 131,000 bytes, so a browser's big post takes
that path: bounded per message, not server-wide.

Flow control. Reading pauses only while more than `MAX_QUEUED_MESSAGES` messages or
`MAX_QUEUED_BYTES` bytes wait for the app, and resumes when it drains below.

Sending. A binary message is written as the server's (unmasked) frame header and the payload,
in one write up to 64 KiB, two up to 1 MiB, and beyond in 1 MiB slices, each once the socket's
buffer has drained (uvicorn's `writable`), so that ten clients sent one shared 7.5 MB reply hold
a slice each in their write buffers rather than a copy each. Sends on a connection take turns
(a lock), and the inherited protocol's own writes (pong, keepalive ping, close) made while a
frame is in slices wait for its end. websockets' protocol state tracks nothing for data frames
it did not serialize (it only refuses them once closing, which this path checks first). Text,
close, ping and the handshake stay inherited.

Direct writes. A message the app sends to many connections (a round's answer to a crowd of
waiting clients) is the same bytes on every one of them, since server frames are not masked:
`ServerFrame` builds them once, and the scope extension `DIRECT_WRITE` writes them to this
connection at once, without the per-message ASGI send chain (starlette, the middlewares, this
protocol's `send`). It writes only a whole frame in one `write`, and only when the ordinary path
would do the same without waiting: no send under way or queued on the connection (so frames
keep their order and none is cut into), the socket's buffer under its high-water mark, the
connection open, the payload at most `SMALL_WRITE_BYTES`. Otherwise it returns False and the app
sends the ordinary way.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Final, cast

import numpy as np
from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

from disco.protocol.errors import CloseCode
from disco.server.receive_budget import ReceiveBudget, Reservation

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a websockets build without its C extension
    from websockets.utils import apply_mask

BIG_FRAME_BYTES: Final = 256 * 1024
"""Payloads above this are assembled in place and count against the receive budget."""
MAX_QUEUED_MESSAGES: Final = 8
MAX_QUEUED_BYTES: Final = 1024 * 1024
"""Reading pauses while the app has more than this many messages or bytes waiting."""
HOLD_TIMEOUT_S: Final = 10.0
"""A delivered frame's reservation is released at the latest this long after delivery."""
MIN_READ_DEADLINE_S: Final = 10.0
"""A granted frame has at least this long to arrive, however small."""
SMALL_WRITE_BYTES: Final = 64 * 1024
"""Payloads up to this are sent with their header in one write (one syscall)."""
SCRATCH_BYTES: Final = 256 * 1024
"""Reads outside a big frame's payload take at most this much (asyncio's own read size)."""
SEND_SLICE_BYTES: Final = 1024 * 1024
"""Bigger payloads leave in slices of this size, each once the socket's buffer has drained."""

DIRECT_WRITE: Final = "disco.websocket.write"
"""ASGI scope extension: `scope["extensions"][DIRECT_WRITE]["write"]` is a `FrameWriter`."""

_BINARY_FIN: Final = 0x82
_MASKED: Final = 0x80


class Payload(bytearray):
    """A big frame's payload: a bytearray that can be watched (its release frees the budget)."""

    __slots__ = ("__weakref__",)


def header_length(head: bytes | bytearray | memoryview) -> int:
    """Length of a frame header whose first two bytes are `head[:2]`."""
    code = head[1] & 0x7F
    extended = 2 if code == 126 else 8 if code == 127 else 0
    return 2 + extended + (4 if head[1] & _MASKED else 0)


def payload_length(head: bytes | bytearray | memoryview) -> int:
    """Payload length of a frame whose whole header is `head`."""
    code = head[1] & 0x7F
    if code == 126:
        return int.from_bytes(head[2:4], "big")
    if code == 127:
        return int.from_bytes(head[2:10], "big")
    return code


def frame_header(length: int) -> bytes:
    """The header of a server's (unmasked) FIN binary frame of `length` bytes."""
    if length < 126:
        return bytes((_BINARY_FIN, length))
    if length < 65536:
        return struct.pack("!BBH", _BINARY_FIN, 126, length)
    return struct.pack("!BBQ", _BINARY_FIN, 127, length)


class ServerFrame:
    """A binary message as this server writes it (one frame, unmasked: the same bytes on every
    connection), built once for any number of connections."""

    __slots__ = ("payload", "wire")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.wire: bytes | None = (
            frame_header(len(payload)) + payload if len(payload) <= SMALL_WRITE_BYTES else None
        )
        """Header and payload, when the frame may be written directly (see `DIRECT_WRITE`)."""


FrameWriter = Callable[[ServerFrame], bool]
"""Writes a frame to one connection at once (True), or does nothing (False: send it through
`websocket.send`, which waits its turn, for the buffer to drain, or slices it)."""


def unmask_in_place(buffer: bytearray, start: int, stop: int, key: bytes) -> None:
    """XOR `buffer[start:stop]` (payload offsets) with the 4-byte mask `key`, vectorized."""
    if stop <= start:
        return
    data = np.frombuffer(buffer, dtype=np.uint8)
    position = start
    while position < stop and position % 4:
        data[position] ^= key[position % 4]
        position += 1
    words = (stop - position) // 4
    if words:
        block = data[position : position + 4 * words].view(np.uint32)
        np.bitwise_xor(block, np.frombuffer(key, dtype=np.uint32)[0], out=block)
        position += 4 * words
    while position < stop:
        data[position] ^= key[position % 4]
        position += 1


def _release_soon(loop: asyncio.AbstractEventLoop, reservation: Reservation) -> None:
    """Release from whichever thread dropped the payload (the budget lives on the loop)."""
    with contextlib.suppress(RuntimeError):  # a closed loop: nothing waits on the budget
        loop.call_soon_threadsafe(reservation.release)


class _BigFrame:
    __slots__ = ("deadline", "filled", "key", "payload", "reservation", "timer")

    def __init__(self, size: int, key: bytes, reservation: Reservation, deadline: float) -> None:
        self.payload = Payload(size)
        self.key = key
        self.filled = 0
        self.reservation = reservation
        self.deadline = deadline
        self.timer: asyncio.TimerHandle | None = None


class _SlowFrame:
    """A frame fed to the inherited parser: its header so far, then how much is left."""

    __slots__ = ("fed", "head", "total")

    def __init__(self) -> None:
        self.head = bytearray()
        self.total: int | None = None
        self.fed = 0


class _WriteGuard(asyncio.Transport):
    """The transport as the inherited protocol sees it: while a frame leaves in slices
    (`hold`), its writes (a pong, a keepalive ping, a close) wait for the frame's end."""

    def __init__(self, raw: asyncio.Transport) -> None:
        super().__init__(None)
        self.raw = raw
        self._held: list[bytes] | None = None

    def hold(self) -> None:
        self._held = []

    def release(self) -> None:
        held, self._held = self._held, None
        if held and not self.raw.is_closing():
            self.raw.write(b"".join(held))

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            self._held.append(bytes(data))
        else:
            self.raw.write(data)

    def close(self) -> None:
        self.raw.close()

    def abort(self) -> None:
        self.raw.abort()

    def is_closing(self) -> bool:
        return self.raw.is_closing()

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def is_reading(self) -> bool:
        return self.raw.is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.raw.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size()


class _Scratch(threading.local):
    """One read buffer per thread, so per event loop: whatever is read into it is parsed or
    copied out before `buffer_updated` returns, so all of a loop's connections share it
    (one per connection would be 256 KiB times 10,000 idle connections)."""

    def __init__(self) -> None:
        self.buffer = bytearray(SCRATCH_BYTES)


_scratch = _Scratch()


class DiscoWebSocketProtocol(WebSocketsSansIOProtocol, asyncio.BufferedProtocol):
    """See the module docstring. `budget` and `min_receive_rate` are set per server by
    `protocol_class`."""

    budget: ClassVar[ReceiveBudget]
    min_receive_rate: ClassVar[float]
    big_frame_bytes: ClassVar[int] = BIG_FRAME_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inherited = True  # all input to the inherited parser (handshake, closing)
        self._failed = False  # the inherited parser failed the connection
        self._stash = bytearray()  # input at a frame boundary not yet usable
        self._slow: _SlowFrame | None = None
        self._big: _BigFrame | None = None
        self._waiting: Reservation | None = None  # reading paused until it is granted
        self._granted: Reservation | None = None  # granted, for the frame in the stash
        self._queued: deque[tuple[int, Reservation | None]] = deque()
        self._queued_bytes = 0
        self._returned: list[Reservation] = []  # handed to the app, freed on its next read
        self._flow_paused = False
        self._send_lock = asyncio.Lock()
        self._sends = 0  # sends under way or waiting for the lock (direct writes wait for none)
        self._guard: _WriteGuard
        self._into_payload = False  # the buffer last given to the transport is a payload's

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._guard = _WriteGuard(self.transport)
        self.transport = self._guard

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if not self.close_sent:  # the handshake was accepted: the app gets this scope
            self.scope["extensions"][DIRECT_WRITE] = {"write": self.write_frame}

    # Receiving

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the transport's next read goes: the unread part of the big frame being read
        (no copy of it in between), else the thread's scratch buffer. A memoryview either way:
        asyncio's TLS transport reads on into slices of it, which of a bytearray would be
        copies."""
        big = self._big
        if big is not None:
            self._into_payload = True
            return memoryview(big.payload)[big.filled :]
        self._into_payload = False
        return memoryview(_scratch.buffer)

    def buffer_updated(self, nbytes: int) -> None:
        if not self._into_payload:
            self.data_received(memoryview(_scratch.buffer)[:nbytes])
            return
        big = self._big
        if big is None:  # pragma: no cover - nothing runs between the read and this call
            raise RuntimeError("payload bytes read with no frame being read")
        start = big.filled
        unmask_in_place(big.payload, start, start + nbytes, big.key)
        big.filled += nbytes
        if big.filled == len(big.payload):
            self._complete_big(big)

    def data_received(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes read (from the scratch buffer: copied or parsed here, never kept)."""
        if self._inherited and not self._may_go_direct():
            super().data_received(data if isinstance(data, bytes) else bytes(data))
            return
        if self._stash:
            buffered = self._stash
            self._stash = bytearray()
            buffered += data
            self._consume(buffered)
        else:
            self._consume(data)

    def _may_go_direct(self) -> bool:
        """Whether the inherited parser is idle at a frame boundary of an open connection."""
        conn = self.conn
        if (
            self._failed
            or self.close_sent
            or conn.state is not State.OPEN
            or conn.parser_exc is not None
            or conn.reader.buffer
            or conn.extensions
        ):
            return False
        parser: Any = conn.parser
        while parser.gi_yieldfrom is not None:
            parser = parser.gi_yieldfrom
        if parser.gi_code.co_name != "at_eof":
            return False
        self._inherited = False
        return True

    def _consume(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        end = len(view)
        pos = 0
        max_size = self.conn.max_message_size
        while pos < end:
            if self._big is not None:
                pos = self._fill_big(view, pos, end)
                continue
            if self._slow is not None:
                pos = self._feed_slow(view, pos, end)
                if self._failed:
                    return
                continue
            if self._waiting is not None:
                self._stash += view[pos:]
                return
            if self._inherited or self.close_sent or self.conn.state is not State.OPEN:
                self._inherited = True
                super().data_received(bytes(view[pos:]))
                return
            # At a frame boundary of the inherited parser, which has nothing buffered.
            if view[pos] != _BINARY_FIN or self.conn.current_size is not None:
                self._slow = _SlowFrame()
                continue
            available = end - pos
            if available < 2:
                self._stash += view[pos:]
                return
            if not view[pos + 1] & _MASKED:
                self._slow = _SlowFrame()
                continue
            header = header_length(view[pos : pos + 2])
            if available < header - 4:  # the extended length is not there yet
                self._stash += view[pos:]
                return
            size = payload_length(view[pos : pos + header - 4])
            if max_size is not None and size > max_size:
                self._slow = _SlowFrame()
                continue
            if available < header:
                self._stash += view[pos:]
                return
            key = bytes(view[pos + header - 4 : pos + header])
            if size <= self.big_frame_bytes:
                if available < header + size:
                    self._stash += view[pos:]
                    return
                payload = apply_mask(view[pos + header : pos + header + size], key)
                pos += header + size
                self._deliver({"type": "websocket.receive", "bytes": payload}, size, None)
                continue
            reservation = self._granted or self.budget.reserve(size, self._on_grant)
            self._granted = None
            if not reservation.granted:
                self._waiting = reservation
                self._stash += view[pos:]
                self._update_reading()
                return
            self._start_big(size, key, reservation)
            pos += header

    def _feed_slow(self, view: memoryview, pos: int, end: int) -> int:
        """Feed the inherited parser the current slow frame's bytes, no further (all of them
        when it fails or closes the connection)."""
        slow = self._slow
        assert slow is not None
        if slow.total is None:
            known = len(slow.head)
            wanted = 2 - known if known < 2 else header_length(slow.head) - known
            take = min(wanted, end - pos)
            slow.head += view[pos : pos + take]
            if len(slow.head) >= 2 and len(slow.head) == header_length(slow.head):
                slow.total = len(slow.head) + payload_length(slow.head)
        else:
            take = min(slow.total - slow.fed, end - pos)
        slow.fed += take
        super().data_received(bytes(view[pos : pos + take]))
        if self.conn.parser_exc is not None or self.transport.is_closing():
            # Failed or closed: a transport delivers nothing more once closed.
            self._failed = True
            self._slow = None
            self._inherited = True
            return end
        if slow.total is not None and slow.fed == slow.total:
            self._slow = None
        return pos + take

    def _start_big(self, size: int, key: bytes, reservation: Reservation) -> None:
        deadline = max(MIN_READ_DEADLINE_S, size / self.min_receive_rate)
        big = _BigFrame(size, key, reservation, deadline)
        big.timer = self.loop.call_later(deadline, self._too_slow)
        self._big = big

    def _fill_big(self, view: memoryview, pos: int, end: int) -> int:
        big = self._big
        assert big is not None
        take = min(len(big.payload) - big.filled, end - pos)
        start = big.filled
        big.payload[start : start + take] = view[pos : pos + take]
        unmask_in_place(big.payload, start, start + take, big.key)
        big.filled += take
        if big.filled == len(big.payload):
            self._complete_big(big)
        return pos + take

    def _complete_big(self, big: _BigFrame) -> None:
        """The big frame is all there: hand it to the app."""
        self._big = None
        if big.timer is not None:
            big.timer.cancel()
        payload = big.payload
        weakref.finalize(payload, _release_soon, self.loop, big.reservation)
        # A bytearray: every consumer takes a bytes-like (msgpack, numpy, starlette).
        message = cast("ASGIReceiveEvent", {"type": "websocket.receive", "bytes": payload})
        self._deliver(message, len(payload), big.reservation)

    def _on_grant(self) -> None:
        self.loop.call_soon(self._granted_now)

    def _granted_now(self) -> None:
        reservation = self._waiting
        if reservation is None or reservation.released:
            return
        self._waiting = None
        self._granted = reservation
        self._update_reading()
        stash = self._stash
        self._stash = bytearray()
        self._consume(stash)

    def _too_slow(self) -> None:
        """The granted frame did not arrive in time: close with 1008, free its bytes. Not while
        this side holds reading paused (its app lags), nor while no other frame waits for the
        budget (a slow link, e.g. a 13.5 MB post over 1 Mbit/s, then keeps no one waiting): the
        deadline is re-armed, so a waiter that comes later waits at most that much longer."""
        big = self._big
        if big is None:
            return
        if (self.read_paused or self.budget.waiting == 0) and not self.transport.is_closing():
            big.timer = self.loop.call_later(MIN_READ_DEADLINE_S, self._too_slow)
            return
        self._big = None
        big.reservation.release()
        self._inherited = True
        self._failed = True
        if self.close_sent or self.transport.is_closing():
            self.transport.close()
            return
        reason = f"frame of {len(big.payload)} bytes not received within {big.deadline:.0f} s"
        code = int(CloseCode.POLICY_VIOLATION)
        self.conn.fail(code, reason)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()

    def send_receive_event_to_app(self) -> None:
        """uvicorn's, for messages of the inherited parser, without its pause per message."""
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        if self.curr_msg_data_type == "text":
            try:
                text = data.decode()
            except UnicodeDecodeError:  # pragma: no cover - websockets checks UTF-8 first
                self.logger.exception("Invalid UTF-8 sequence received from client.")
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
            self._deliver({"type": "websocket.receive", "text": text}, len(data), None)
        else:
            self._deliver({"type": "websocket.receive", "bytes": data}, len(data), None)

    def _deliver(
        self, message: ASGIReceiveEvent, size: int, reservation: Reservation | None
    ) -> None:
        if self.close_sent:  # the app is past websocket.close: uvicorn discards messages
            if reservation is not None:
                reservation.release()
            return
        if reservation is not None:
            reservation.timer = self.loop.call_later(HOLD_TIMEOUT_S, reservation.release)
        self.queue.put_nowait(message)
        self._queued.append((size, reservation))
        self._queued_bytes += size
        if len(self._queued) > MAX_QUEUED_MESSAGES or self._queued_bytes > MAX_QUEUED_BYTES:
            self._flow_paused = True
            self._update_reading()

    def _update_reading(self) -> None:
        """Pause reading while the app lags or a reservation waits; resume otherwise."""
        paused = self._flow_paused or self._waiting is not None
        if paused == self.read_paused:
            return
        self.read_paused = paused
        if paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    async def receive(self) -> ASGIReceiveEvent:
        if self._returned:
            for done in self._returned:
                done.release()
            self._returned.clear()
        message = await self.queue.get()
        if message["type"] == "websocket.receive" and self._queued:
            size, reservation = self._queued.popleft()
            self._queued_bytes -= size
            if reservation is not None:
                self._returned.append(reservation)
            if (
                self._flow_paused
                and len(self._queued) <= MAX_QUEUED_MESSAGES
                and self._queued_bytes <= MAX_QUEUED_BYTES
            ):
                self._flow_paused = False
                self._update_reading()
        return message

    def connection_lost(self, exc: Exception | None) -> None:
        self._release_all()
        super().connection_lost(exc)

    def _release_all(self) -> None:
        big, self._big = self._big, None
        if big is not None:
            if big.timer is not None:
                big.timer.cancel()
            big.reservation.release()
        for pending in (self._waiting, self._granted):
            if pending is not None:
                pending.release()
        self._waiting = self._granted = None
        for _, queued in self._queued:
            if queued is not None:
                queued.release()
        for returned in self._returned:
            returned.release()
        self._returned.clear()

    # Sending

    def _may_send_direct(self) -> bool:
        return (
            self.handshake_complete
            and not self.close_sent
            and self.initial_response is None
            and not self.disconnected
            and self.conn.state is State.OPEN
        )

    def write_frame(self, frame: ServerFrame) -> bool:
        """The `DIRECT_WRITE` extension (see the module docstring): write `frame` now, when the
        ordinary path would write it at once in one piece; False to send it that way."""
        wire = frame.wire
        if wire is None or self._sends or not self.writable.is_set():
            return False
        if not self._may_send_direct():
            return False
        self.transport.write(wire)
        return True

    async def send(self, message: ASGISendEvent) -> None:
        self._sends += 1
        try:
            await self._send(message)
        finally:
            self._sends -= 1

    async def _send(self, message: ASGISendEvent) -> None:
        async with self._send_lock:  # a sliced frame is never interleaved with another send
            if message["type"] == "websocket.send" and self._may_send_direct():
                data = cast("dict[str, Any]", message).get("bytes")
                if data is not None:
                    await self.writable.wait()
                    if self.disconnected:
                        raise ClientDisconnected()
                    if self._may_send_direct():
                        await self._write_binary(data)
                        return
            await super().send(message)
            if message["type"] == "websocket.close" and self.close_sent:
                self._after_close()

    async def _write_binary(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        length = view.nbytes
        header = frame_header(length)
        if length <= SMALL_WRITE_BYTES:
            self.transport.write(header + data)
            return
        if length <= SEND_SLICE_BYTES:
            self.transport.write(header)
            self.transport.write(view)
            return
        # Slice by slice, each once the socket's buffer has drained: N clients sent one shared
        # 7.5 MB reply hold a slice each in their buffers, not a copy each. Writes of the
        # inherited protocol meanwhile (pong, keepalive ping, close) wait for the frame's end.
        guard = self._guard
        guard.hold()
        try:
            guard.raw.write(header)
            for start in range(0, length, SEND_SLICE_BYTES):
                if start:
                    await self.writable.wait()
                    if self.disconnected or guard.raw.is_closing():
                        raise ClientDisconnected()
                guard.raw.write(view[start : start + SEND_SLICE_BYTES])
        finally:
            guard.release()

    def _after_close(self) -> None:
        """The app closed: uvicorn reads on for the close reply; so do we, through the
        inherited parser (a frame waiting for the budget is then read as uvicorn would)."""
        self._flow_paused = False
        waiting, self._waiting = self._waiting, None
        granted, self._granted = self._granted, None
        for reservation in (waiting, granted):
            if reservation is not None:
                reservation.release()
        self._update_reading()
        if (waiting is not None or granted is not None) and self._stash:
            stash = self._stash
            self._stash = bytearray()
            self._inherited = True
            super().data_received(bytes(stash))


def protocol_class(budget: ReceiveBudget, min_receive_rate: float) -> type[DiscoWebSocketProtocol]:
    """The protocol class for one server (uvicorn's `Config(ws=...)` takes a class)."""
    return type(
        "DiscoWebSocketProtocol",
        (DiscoWebSocketProtocol,),
        {"budget": budget, "min_receive_rate": min_receive_rate},
    )

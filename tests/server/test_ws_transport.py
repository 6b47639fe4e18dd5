"""The server's WebSocket protocol (`disco.server.ws_transport`) against uvicorn's own class:
same messages to the app, same close codes and bytes written, for any frames cut anywhere;
and its receive budget, read deadline and flow control. Driven through a fake transport."""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidState

from disco.server import ws_transport
from disco.server.receive_budget import ReceiveBudget
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from disco.server.ws_transport import (
    DIRECT_WRITE,
    DiscoWebSocketProtocol,
    ServerFrame,
    frame_header,
    protocol_class,
    unmask_in_place,
)

MAX_SIZE = 3000
HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False
        self.paused = False
        self.pauses = 0

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(name, default)


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bytes | None = b"abcd"
) -> bytes:
    """A client frame (masked with `mask`, or unmasked when None)."""
    head1 = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        header = struct.pack("!BB", head1, mask_bit | length)
    elif length < 65536:
        header = struct.pack("!BBH", head1, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", head1, mask_bit | 127, length)
    if mask is None:
        return header + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class Recorder:
    """An ASGI app that accepts and records every message, reading on after each `pause_s`."""

    def __init__(self, pause_s: float = 0.0, keep: bool = False) -> None:
        self.messages: list[tuple[Any, ...]] = []
        self.kept: list[Any] = []
        self.pause_s = pause_s
        self.keep = keep

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.messages.append(("disconnect", message.get("code"), message.get("reason")))
                return
            data = message.get("bytes")
            if self.keep:
                self.kept.append(data)
            if data is not None:
                self.messages.append(("bytes", bytes(data)))
            else:
                self.messages.append(("text", message.get("text")))
            if self.pause_s:
                await asyncio.sleep(self.pause_s)


class Holder:
    """An ASGI app that keeps its first message's payload until `kept` is emptied and `go` set."""

    def __init__(self) -> None:
        self.kept: list[Any] = []
        self.go = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        self.kept.append((await receive())["bytes"])
        await self.go.wait()
        while (await receive())["type"] != "websocket.disconnect":
            pass


class Connection:
    """One protocol instance on a fake transport, after its handshake."""

    mark = 1

    def __init__(self, cls: type[WebSocketsSansIOProtocol], app: Any, max_size: int) -> None:
        config = Config(
            app=app, ws=cls, ws_max_size=max_size, ws_ping_interval=None, log_level="critical"
        )
        config.load()
        self.protocol = cls(config=config, server_state=ServerState(), app_state={})
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)

    async def open(self) -> None:
        self.protocol.data_received(HANDSHAKE)
        await settle()
        assert self.transport.written[0].startswith(b"HTTP/1.1 101")
        self.mark = 1

    async def feed(self, chunks: Sequence[bytes], buffered: bool = False) -> None:
        """Each chunk as one read (`data_received`), or with `buffered` as asyncio's transport
        reads a `BufferedProtocol`: into the buffer `get_buffer` gives, then `buffer_updated`,
        in as many reads as those buffers need (as a socket holding the chunk would)."""
        for chunk in chunks:
            rest = memoryview(chunk)
            while rest:
                for i in range(2000):  # a real transport does not read while paused
                    if not self.transport.paused:
                        break
                    await asyncio.sleep(0 if i < 50 else 0.001)
                else:
                    raise AssertionError("reading stayed paused")
                if self.transport.closed:
                    return
                if buffered:
                    assert isinstance(self.protocol, asyncio.BufferedProtocol)
                    buffer = self.protocol.get_buffer(-1)
                    taken = min(len(buffer), len(rest))
                    half = taken // 2
                    buffer[:half] = rest[:half]
                    tail = buffer[half:]  # asyncio's TLS transport reads on into a slice
                    tail[: taken - half] = rest[half:taken]
                    del buffer, tail  # a transport keeps nothing of it
                    self.protocol.buffer_updated(taken)
                    rest = rest[taken:]
                else:
                    self.protocol.data_received(chunk)
                    rest = rest[:0]
                await settle()

    def after_handshake(self) -> bytes:
        return b"".join(self.transport.written[self.mark :])


async def settle(rounds: int = 8) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until_closed(connection: Connection) -> None:
    """Wait (at most 2 s) for the protocol to close the connection's transport."""
    for _ in range(400):
        if connection.transport.closed:
            break
        await asyncio.sleep(0.005)
    await settle()
    assert connection.transport.closed


async def lose_all(budget: ReceiveBudget, connections: Sequence[Connection]) -> None:
    """Every connection lost: the budget must then hold nothing."""
    for connection in connections:
        connection.protocol.connection_lost(None)
    await settle()
    assert budget.held == 0


def small_threshold_class(budget: ReceiveBudget, rate: float = 1e9) -> type[DiscoWebSocketProtocol]:
    cls = protocol_class(budget, rate)
    cls.big_frame_bytes = 64  # big-frame path for small payloads
    return cls


async def outcome(
    cls: type[WebSocketsSansIOProtocol], chunks: Sequence[bytes], buffered: bool = False
) -> tuple[list[tuple[Any, ...]], bytes, bool]:
    app = Recorder()
    connection = Connection(cls, app, MAX_SIZE)
    await connection.open()
    await connection.feed(chunks, buffered)
    closed = connection.transport.closed
    written = connection.after_handshake()
    connection.protocol.connection_lost(None)
    await settle()
    return app.messages, written, closed


# --- frames, valid and invalid --------------------------------------------------------------

payloads = st.one_of(
    st.binary(max_size=140),
    st.integers(min_value=120, max_value=MAX_SIZE + 50).map(lambda n: os.urandom(n)),
)
masks = st.binary(min_size=4, max_size=4)


@st.composite
def frames(draw: st.DrawFn) -> list[bytes]:
    """One frame, valid or not (two for a fragmented message)."""
    kind = draw(
        st.sampled_from(
            ["binary"] * 6
            + ["text", "bad-text", "ping", "pong", "fragmented", "unmasked", "rsv", "opcode"]
            + ["long-ping", "cont", "close", "oversize-header"]
        )
    )
    mask = draw(masks)
    payload = draw(payloads)
    if kind == "binary":
        return [frame(0x2, payload, mask=mask)]
    if kind == "text":
        return [frame(0x1, draw(st.text(max_size=50)).encode(), mask=mask)]
    if kind == "bad-text":
        return [frame(0x1, b"\xff\xfe" + payload[:10], mask=mask)]
    if kind in ("ping", "pong"):
        return [frame(0x9 if kind == "ping" else 0xA, payload[:125], mask=mask)]
    if kind == "long-ping":
        return [frame(0x9, payload[:200] + b"x" * 126, mask=mask)]
    if kind == "fragmented":
        first, second = payload[: len(payload) // 2], payload[len(payload) // 2 :]
        return [frame(0x2, first, fin=False, mask=mask), frame(0x0, second, mask=mask)]
    if kind == "cont":
        return [frame(0x0, payload[:20], mask=mask)]
    if kind == "unmasked":
        return [frame(0x2, payload, mask=None)]
    if kind == "rsv":
        return [frame(0x2, payload[:30], rsv=draw(st.integers(1, 7)), mask=mask)]
    if kind == "opcode":
        return [frame(draw(st.sampled_from([0x3, 0x7, 0xB])), payload[:10], mask=mask)]
    if kind == "close":
        return [frame(0x8, struct.pack("!H", 1000) + b"bye", mask=mask)]
    # A header that claims more than the limit (its payload never comes).
    return [bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 10**6)]


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    """(the frames one by one, the same bytes cut at random points); the stream may stop
    mid-frame."""
    whole = [f for group in draw(st.lists(frames(), min_size=1, max_size=8)) for f in group]
    data = b"".join(whole)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    one_by_one, start = [], 0
    for f in whole:
        if start < len(data):
            one_by_one.append(data[start : start + len(f)])
        start += len(f)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return one_by_one, [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def is_subsequence(short: list[Any], long: list[Any]) -> bool:
    remaining = iter(long)
    return all(any(item == other for other in remaining) for item in short)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(stream=streams(), small_threshold=st.booleans(), buffered=st.booleans())
def test_the_app_sees_what_uvicorns_protocol_gives_it(
    stream: tuple[list[bytes], list[bytes]], small_threshold: bool, buffered: bool
) -> None:
    """Cut anywhere, our protocol gives the app what uvicorn's gives it when it reads one frame
    at a time: the same messages, close code and reason, bytes written; whether it is read
    through `data_received` or, as a real asyncio transport does, through `get_buffer` and
    `buffer_updated` (`buffered`).

    uvicorn cut anywhere differs in one way: it parses a whole read before acting on its
    frames, so when a read holds a valid message and then a broken frame, it fails the
    connection without handing over the message (it checks the parser's error before its
    events), it may answer a ping that follows a refused text frame, and it reports the
    broken frame before an invalid text message that preceded it. So for that run only a
    subsequence of the data messages is required (ours hands over every message that precedes
    the broken frame, and then closes for the first fault).
    """
    one_by_one, chunks = stream
    budget = ReceiveBudget(10**6)
    ours = small_threshold_class(budget) if small_threshold else protocol_class(budget, 1e9)
    got = asyncio.run(outcome(ours, chunks, buffered))
    assert got == asyncio.run(outcome(WebSocketsSansIOProtocol, one_by_one))
    assert got == asyncio.run(outcome(ours, one_by_one))
    try:
        messages, _, closed = asyncio.run(outcome(WebSocketsSansIOProtocol, chunks))
    except InvalidState:  # uvicorn's own crash: a refused text frame, then a close, in one read
        return
    assert closed == got[2]
    data = [m for m in messages if m[0] != "disconnect"]
    assert is_subsequence(data, [m for m in got[0] if m[0] != "disconnect"])
    assert budget.held == 0


def test_the_equivalence_covers_both_paths() -> None:
    """The direct path and the inherited one both run on a stream like the property's."""
    budget = ReceiveBudget(10**6)
    cls = small_threshold_class(budget)
    data = frame(0x2, b"a" * 10) + frame(0x1, b"hi") + frame(0x2, b"b" * 100) + frame(0x9, b"p")
    messages, written, _ = asyncio.run(outcome(cls, [data[:7], data[7:]]))
    assert messages[:3] == [("bytes", b"a" * 10), ("text", "hi"), ("bytes", b"b" * 100)]
    assert written.startswith(b"\x8a\x01p")  # the pong
    assert budget.high_water == 100


# --- big frames ----------------------------------------------------------------------------


@given(
    size=st.integers(65, 5000),
    key=masks,
    cuts=st.lists(st.integers(0, 6000), max_size=20),
    buffered=st.booleans(),
)
@settings(max_examples=100, deadline=None)
def test_a_big_frame_cut_anywhere_arrives_intact(
    size: int, key: bytes, cuts: list[int], buffered: bool
) -> None:
    payload = os.urandom(size)
    data = frame(0x2, payload, mask=key)
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    async def run() -> None:
        app = Recorder(keep=True)
        connection = Connection(small_threshold_class(ReceiveBudget(10**6)), app, 10**6)
        await connection.open()
        await connection.feed(chunks, buffered)
        assert app.messages == [("bytes", payload)]
        assert type(app.kept[0]) is ws_transport.Payload
        connection.protocol.connection_lost(None)
        await settle()

    asyncio.run(run())


def test_a_big_payload_is_read_straight_into_the_buffer_the_app_gets() -> None:
    """Once a big frame's header is in, the transport's reads go into the payload the app will
    receive (no copy in between), in reads as long as the rest of the payload; around it they go
    to the shared scratch buffer, and nothing read there is kept."""
    payload = os.urandom(5000)
    data = frame(0x2, payload, mask=b"\x01\x80\xff\x10") + frame(0x2, b"next")

    async def run() -> None:
        app = Recorder(keep=True)
        connection = Connection(small_threshold_class(ReceiveBudget(10**6)), app, 10**6)
        await connection.open()
        protocol = connection.protocol
        assert isinstance(protocol, DiscoWebSocketProtocol)
        assert isinstance(protocol, asyncio.BufferedProtocol)  # how asyncio picks recv_into
        head = data[:100]
        scratch = protocol.get_buffer(-1)
        scratch[: len(head)] = head
        protocol.buffer_updated(len(head))
        direct = protocol.get_buffer(-1)
        assert isinstance(direct, memoryview)
        assert len(direct) == len(payload) - (100 - 8)  # a header of 2 + 2 bytes, a mask of 4
        rest = data[100 : 100 + len(direct)]
        direct[:] = rest
        target = direct.obj
        del direct
        protocol.buffer_updated(len(rest))
        scratch_again = protocol.get_buffer(-1)
        assert scratch_again.obj is scratch.obj
        tail = data[100 + len(rest) :]
        scratch[: len(tail)] = tail
        scratch[len(tail) : len(tail) + 8] = b"garbage!"  # stale scratch bytes are never read
        protocol.buffer_updated(len(tail))
        await settle()
        assert app.messages == [("bytes", payload), ("bytes", b"next")]
        assert app.kept[0] is target
        protocol.connection_lost(None)
        await settle()

    asyncio.run(run())


def test_unmask_in_place_matches_a_byte_by_byte_xor() -> None:
    key = b"\x01\x80\xff\x10"
    data = os.urandom(1001)
    for start, stop in [(0, 1001), (3, 998), (1, 2), (5, 5), (2, 11)]:
        buffer = bytearray(data)
        unmask_in_place(buffer, start, stop, key)
        expected = bytes(b ^ key[i % 4] if start <= i < stop else b for i, b in enumerate(data))
        assert bytes(buffer) == expected


def test_the_server_frame_header() -> None:
    assert frame_header(5) == b"\x82\x05"
    assert frame_header(300) == b"\x82\x7e\x01\x2c"
    assert frame_header(70000) == b"\x82\x7f" + struct.pack("!Q", 70000)


# --- the budget ----------------------------------------------------------------------------


def test_the_budget_grants_in_order_and_serves_a_frame_bigger_than_itself() -> None:
    budget = ReceiveBudget(100)
    granted: list[str] = []
    a = budget.reserve(60, lambda: granted.append("a"))
    b = budget.reserve(60, lambda: granted.append("b"))
    c = budget.reserve(30, lambda: granted.append("c"))  # would fit, but waits behind b
    huge = budget.reserve(500, lambda: granted.append("huge"))
    assert a.granted and not b.granted and not c.granted
    a.release()
    assert granted == ["b", "c"]
    assert budget.held == 90
    b.release()
    c.release()
    assert granted == ["b", "c", "huge"]
    assert budget.held == 500
    huge.release()
    huge.release()  # idempotent
    assert budget.held == 0
    assert budget.high_water == 500


def test_a_waiter_that_leaves_is_forgotten_and_unblocks_the_next() -> None:
    budget = ReceiveBudget(100)
    granted: list[str] = []
    a = budget.reserve(90, lambda: granted.append("a"))
    b = budget.reserve(50, lambda: granted.append("b"))
    c = budget.reserve(10, lambda: granted.append("c"))
    b.release()  # b gives up: c fits beside a
    assert granted == ["c"]
    assert budget.waiting == 0
    a.release()
    c.release()
    assert budget.held == 0


def test_k_big_frames_at_once_never_hold_more_than_the_budget() -> None:
    async def run() -> None:
        budget = ReceiveBudget(1000)
        cls = small_threshold_class(budget)
        payloads = [os.urandom(400) for _ in range(6)]
        apps = [Recorder(pause_s=0.01) for _ in payloads]
        connections = [Connection(cls, app, 10**6) for app in apps]
        for connection in connections:
            await connection.open()
        datas = [frame(0x2, p, mask=bytes([i] * 4)) for i, p in enumerate(payloads)]
        # Every connection sends its header and a first piece; then the rest, bit by bit.
        await asyncio.gather(
            *(
                c.feed([d[i : i + 100] for i in range(0, len(d), 100)])
                for c, d in zip(connections, datas, strict=True)
            )
        )
        for _ in range(100):
            if all(len(app.messages) == 1 for app in apps):
                break
            await asyncio.sleep(0.01)
        for app, payload in zip(apps, payloads, strict=True):
            assert app.messages == [("bytes", payload)]
        assert budget.high_water <= 1000
        assert budget.high_water >= 800  # two at a time, not one
        await lose_all(budget, connections)

    asyncio.run(run())


def test_a_waiting_connection_stops_reading_until_granted_in_order() -> None:
    async def run() -> None:
        budget = ReceiveBudget(100)
        cls = small_threshold_class(budget)
        holder = Holder()
        first = Connection(cls, holder, 10**6)
        await first.open()
        second_app, third_app = Recorder(), Recorder()
        second = Connection(cls, second_app, 10**6)
        third = Connection(cls, third_app, 10**6)
        await second.open()
        await third.open()
        await first.feed([frame(0x2, b"1" * 90)])
        assert [bytes(b) for b in holder.kept] == [b"1" * 90]
        await second.feed([frame(0x2, b"2" * 90)])
        await third.feed([frame(0x2, b"3" * 90)])
        assert second.transport.paused and third.transport.paused
        assert second_app.messages == third_app.messages == []
        del holder.kept[:]  # the app drops the payload: its bytes are free again
        await settle(40)
        assert second_app.messages == [("bytes", b"2" * 90)]
        assert third_app.messages == [("bytes", b"3" * 90)]  # second's app read on at once
        assert not second.transport.paused
        await lose_all(budget, [first, second, third])

    asyncio.run(run())


def test_a_stalled_sender_is_closed_with_1008_while_another_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ws_transport, "MIN_READ_DEADLINE_S", 0.2)

    async def run() -> None:
        budget = ReceiveBudget(100)
        cls = small_threshold_class(budget, rate=1e9)
        slow_app, fast_app = Recorder(), Recorder()
        slow, fast = Connection(cls, slow_app, 10**6), Connection(cls, fast_app, 10**6)
        await slow.open()
        await fast.open()
        slow_data = frame(0x2, b"s" * 90)
        await slow.feed([slow_data[:30]])  # granted, then silence
        fast_data = frame(0x2, b"f" * 90)
        await fast.feed([fast_data[:50]])
        assert fast.transport.paused  # waits for the slow one's bytes
        await until_closed(slow)
        assert slow_app.messages[0][:2] == ("disconnect", 1008)
        assert "not received within" in slow_app.messages[0][2]
        assert slow.after_handshake().startswith(b"\x88")  # a close frame
        assert not fast.transport.paused
        await fast.feed([fast_data[50:]])
        assert fast_app.messages == [("bytes", b"f" * 90)]
        await lose_all(budget, [slow, fast])

    asyncio.run(run())


def test_a_slow_sender_keeping_no_one_waiting_is_let_be(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its deadline, a slow frame is closed only once another frame waits for the budget
    (a slow link alone harms no one)."""
    monkeypatch.setattr(ws_transport, "MIN_READ_DEADLINE_S", 0.05)

    async def run() -> None:
        budget = ReceiveBudget(100)
        cls = small_threshold_class(budget, rate=1e9)
        slow_app, late_app = Recorder(), Recorder()
        slow, late = Connection(cls, slow_app, 10**6), Connection(cls, late_app, 10**6)
        await slow.open()
        await late.open()
        slow_data = frame(0x2, b"s" * 90)
        await slow.feed([slow_data[:30]])
        await asyncio.sleep(0.3)  # six deadlines, nobody waiting
        assert not slow.transport.closed
        await slow.feed([slow_data[30:60]])
        await asyncio.sleep(0.2)
        assert not slow.transport.closed
        late_data = frame(0x2, b"l" * 90)
        await late.feed([late_data[:50]])  # now someone waits: the next deadline closes it
        await until_closed(slow)
        assert slow_app.messages[0][:2] == ("disconnect", 1008)
        await late.feed([late_data[50:]])
        assert late_app.messages == [("bytes", b"l" * 90)]
        await lose_all(budget, [slow, late])

    asyncio.run(run())


def test_a_disconnect_mid_frame_releases_its_reservation() -> None:
    async def run() -> None:
        budget = ReceiveBudget(100)
        cls = small_threshold_class(budget)
        app = Recorder()
        connection = Connection(cls, app, 10**6)
        await connection.open()
        await connection.feed([frame(0x2, b"x" * 90)[:40]])
        assert budget.held == 90
        connection.protocol.connection_lost(None)
        await settle()
        assert budget.held == 0
        assert app.messages == [("disconnect", 1005, None)]

    asyncio.run(run())


def test_a_message_kept_unread_is_released_after_the_hold_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ws_transport, "HOLD_TIMEOUT_S", 0.05)

    async def run() -> None:
        budget = ReceiveBudget(100)
        cls = small_threshold_class(budget)
        app = Recorder(pause_s=10, keep=True)  # takes the frame, then never reads on
        connection = Connection(cls, app, 10**6)
        await connection.open()
        await connection.feed([frame(0x2, b"x" * 90)])
        assert budget.held == 90
        await asyncio.sleep(0.1)
        assert budget.held == 0
        connection.protocol.connection_lost(None)

    asyncio.run(run())


# --- flow control and sending --------------------------------------------------------------


def test_reading_pauses_only_past_the_queue_bound() -> None:
    async def run() -> None:
        release = asyncio.Event()

        async def slow_app(scope: Any, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await release.wait()
            while (await receive())["type"] != "websocket.disconnect":
                pass

        connection = Connection(protocol_class(ReceiveBudget(10**6), 1e9), slow_app, 10**6)
        await connection.open()
        bound = ws_transport.MAX_QUEUED_MESSAGES
        for i in range(bound):
            connection.protocol.data_received(frame(0x2, bytes([i])))
        assert connection.transport.pauses == 0
        connection.protocol.data_received(frame(0x2, b"over"))
        assert connection.transport.paused
        release.set()
        await settle(20)
        assert not connection.transport.paused
        assert connection.transport.pauses == 1
        connection.protocol.connection_lost(None)
        await settle()

    asyncio.run(run())


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 300_000, 3 * 1024 * 1024 + 7])
def test_a_binary_send_is_one_frame_uvicorn_would_write(size: int) -> None:
    async def written(cls: type[WebSocketsSansIOProtocol]) -> bytes:
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "bytes": payload})
            await send({"type": "websocket.send", "text": "t"})
            await send({"type": "websocket.close", "code": 1000, "reason": "done"})

        connection = Connection(cls, app, 10**6)
        await connection.open()
        await settle()
        data = connection.after_handshake()
        connection.protocol.connection_lost(None)
        await settle()
        return data

    ours = asyncio.run(written(protocol_class(ReceiveBudget(10**6), 1e9)))
    assert ours == asyncio.run(written(WebSocketsSansIOProtocol))


@pytest.mark.parametrize("size", [0, 125, 126, 65535, ws_transport.SMALL_WRITE_BYTES])
def test_a_direct_write_is_the_frame_the_send_path_writes(size: int) -> None:
    """The same bytes as `websocket.send` (ours and uvicorn's), one frame built once for many
    connections; a payload over `SMALL_WRITE_BYTES` is left to `websocket.send`."""
    payload = os.urandom(size)
    shared = ServerFrame(payload)

    async def written(cls: type[WebSocketsSansIOProtocol], direct: bool) -> bytes:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            if direct:
                write = scope["extensions"][DIRECT_WRITE]["write"]
                assert write(shared) and write(shared)
                assert not write(ServerFrame(os.urandom(ws_transport.SMALL_WRITE_BYTES + 1)))
            else:
                for _ in range(2):
                    await send({"type": "websocket.send", "bytes": payload})
            await send({"type": "websocket.close", "code": 1000, "reason": "done"})

        connection = Connection(cls, app, 10**6)
        await connection.open()
        await settle()
        data = connection.after_handshake()
        connection.protocol.connection_lost(None)
        await settle()
        return data

    ours = protocol_class(ReceiveBudget(10**6), 1e9)
    direct = asyncio.run(written(ours, direct=True))
    assert direct == asyncio.run(written(ours, direct=False))
    assert direct == asyncio.run(written(WebSocketsSansIOProtocol, direct=False))
    assert direct.startswith(2 * (frame_header(size) + payload))


def test_a_direct_write_waits_for_no_one_and_cuts_into_nothing() -> None:
    """Refused (False, nothing written) while a send is under way or waits its turn, while the
    socket's buffer is over its high-water mark, and once the connection closes or is lost;
    a ping due during a sliced frame still waits for the frame's end, the direct write too."""
    payload = os.urandom(2 * ws_transport.SEND_SLICE_BYTES)
    small = ServerFrame(b"direct")

    async def run() -> None:
        go = asyncio.Event()
        writes: list[bool] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            write = scope["extensions"][DIRECT_WRITE]["write"]
            await receive()
            await send({"type": "websocket.accept"})
            sliced = asyncio.ensure_future(send({"type": "websocket.send", "bytes": payload}))
            queued = asyncio.ensure_future(send({"type": "websocket.send", "bytes": b"next"}))
            await settle()
            writes.append(write(small))  # a sliced frame is under way
            await go.wait()
            await asyncio.gather(sliced, queued)
            writes.append(write(small))  # everything sent: written at once
            protocol.pause_writing()
            writes.append(write(small))  # the buffer is over its high-water mark
            protocol.resume_writing()
            await send({"type": "websocket.close", "code": 1000, "reason": "done"})
            writes.append(write(small))  # closing

        connection = Connection(protocol_class(ReceiveBudget(10**6), 1e9), app, 10**6)
        protocol, transport = connection.protocol, connection.transport
        plain_write = transport.write

        def write(data: Any) -> None:  # the socket's buffer fills after each slice
            plain_write(data)
            if len(data) == ws_transport.SEND_SLICE_BYTES:
                protocol.pause_writing()

        transport.write = write  # type: ignore[method-assign]
        await connection.open()
        await settle()
        protocol.send_keepalive_ping()
        go.set()
        protocol.resume_writing()
        assert not protocol.write_frame(small)  # writable, but the sliced frame is not done
        for _ in range(3):
            await settle()
            protocol.resume_writing()
        await settle()
        assert writes == [False, True, False, False]
        data = connection.after_handshake()
        whole = frame_header(len(payload)) + payload
        assert data[: len(whole)] == whole
        rest = data[len(whole) :]
        assert rest[:2] == b"\x89\x04"  # the ping, after the frame
        assert rest[6:].startswith(frame_header(4) + b"next" + frame_header(6) + b"direct")
        assert rest.count(b"direct") == 1
        protocol.connection_lost(None)
        assert not protocol.write_frame(small)  # lost

    asyncio.run(run())


# --- through a real server -----------------------------------------------------------------


def test_a_real_server_closes_a_stalled_sender_and_reads_the_waiting_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loopback, the app's own protocol class: a sender that stalls mid-frame holds the budget
    until its deadline (1008 with a reason), then the frame that waited is read."""
    monkeypatch.setattr(ws_transport, "MIN_READ_DEADLINE_S", 0.5)
    settings = Settings(
        data_dir=tmp_path,
        port=0,
        log_level="critical",
        ws_receive_budget_bytes=1024 * 1024,
        ws_min_receive_rate=10**9,
    )

    async def run(base: str) -> None:
        url = "ws://" + base.removeprefix("http://") + "/federated/titanic/"
        options: dict[str, Any] = {"compression": None, "max_size": None, "close_timeout": 2}
        async with (
            connect(url + "stalled", **options) as stalled,
            connect(url + "waiting", **options) as waiting,
        ):
            # Header and a third of a 700 KB frame, written under websockets' feet, then silence.
            raw = frame(0x2, os.urandom(700_000))
            stalled.transport.write(raw[: len(raw) // 3])
            await asyncio.sleep(0.1)
            started = asyncio.get_running_loop().time()
            await waiting.send(os.urandom(700_000))  # does not fit beside the stalled frame
            await asyncio.wait_for(stalled.wait_closed(), 5)
            assert stalled.close_code == 1008
            assert "not received within" in (stalled.close_reason or "")
            await asyncio.wait_for(waiting.wait_closed(), 5)
            assert waiting.close_code not in (1006, 1008)  # read, then refused as garbage
            assert asyncio.get_running_loop().time() - started >= 0.3

    with serve_in_thread(settings) as base:
        asyncio.run(run(base))


def test_a_ping_during_a_sliced_frame_waits_for_the_frames_end() -> None:
    """A big frame leaves in slices as the socket drains; a keepalive ping due meanwhile is
    written after the frame, never inside it; the next send waits for the frame too."""
    payload = os.urandom(3 * ws_transport.SEND_SLICE_BYTES + 7)

    async def run() -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await asyncio.gather(
                send({"type": "websocket.send", "bytes": payload}),
                send({"type": "websocket.send", "bytes": b"next"}),
            )
            await receive()

        connection = Connection(protocol_class(ReceiveBudget(10**6), 1e9), app, 10**6)
        protocol, transport = connection.protocol, connection.transport
        plain_write = transport.write

        def write(data: Any) -> None:  # the socket's buffer fills after each slice
            plain_write(data)
            if len(data) == ws_transport.SEND_SLICE_BYTES:
                protocol.pause_writing()

        transport.write = write  # type: ignore[method-assign]
        await connection.open()
        await settle()
        assert not protocol.writable.is_set()  # one slice out, waiting for the drain
        protocol.send_keepalive_ping()
        for _ in range(3):
            protocol.resume_writing()
            await settle()
        data = connection.after_handshake()
        whole = frame_header(len(payload)) + payload
        assert data[: len(whole)] == whole
        ping = data[len(whole) : len(whole) + 6]
        assert ping[:2] == b"\x89\x04" and ping[2:] == protocol.pending_ping_payload
        assert data[len(whole) + 6 :] == frame_header(4) + b"next"
        protocol.connection_lost(None)
        await settle()

    asyncio.run(run())


def test_the_deadline_does_not_close_a_sender_the_server_stopped_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A big frame follows a message the app has not taken yet: reading pauses (flow control),
    so the frame's deadline waits for reading to resume instead of closing the sender."""
    monkeypatch.setattr(ws_transport, "MIN_READ_DEADLINE_S", 0.05)
    monkeypatch.setattr(ws_transport, "MAX_QUEUED_MESSAGES", 0)

    async def run() -> None:
        go = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await go.wait()
            while (await receive())["type"] != "websocket.disconnect":
                pass

        connection = Connection(small_threshold_class(ReceiveBudget(10**6)), app, 10**6)
        await connection.open()
        big = frame(0x2, b"b" * 100)
        connection.protocol.data_received(frame(0x2, b"first") + big[:20])
        assert connection.transport.paused
        await asyncio.sleep(0.15)
        assert not connection.transport.closed
        go.set()
        await connection.feed([big[20:]])
        assert not connection.transport.closed
        connection.protocol.connection_lost(None)
        await settle()

    asyncio.run(run())

"""WebRTC links: simple-peer signal handling helpers, and two aiortc peers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from disco.client.decentralized.webrtc import (
    PYTHON_CHUNK_SIZE,
    LinkSettings,
    PeerGone,
    PeerLink,
    candidate_address,
    filter_sdp_candidates,
    ice_servers_from,
    is_loopback_address,
    parse_candidate_signal,
    sdp_max_message_size,
)
from disco.protocol.chunking import DISCO_CHUNK_SIZE
from disco.protocol.peer_messages import (
    CAPABILITY_KEY,
    PeerCapabilities,
    encode_float_payload,
    encode_peer_message,
)
from disco.protocol.types import MessageType

pytestmark = pytest.mark.timeout(30)

# --------------------------------------------------------------------------- pure helpers

SDP = "\r\n".join(
    [
        "v=0",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "a=candidate:1 1 udp 2122260223 192.0.2.2 50000 typ host generation 0",
        "a=candidate:2 1 udp 2122262783 ::1 50001 typ host generation 0",
        "a=candidate:3 1 udp 2122194687 127.0.0.1 50002 typ host generation 0",
        "a=candidate:4 1 udp 2122194687 fd00::2 50003 typ host generation 0",
        "a=candidate:5 1 udp 2122194687 abc.local 50004 typ host generation 0",
        "a=max-message-size:262144",
        "",
    ]
)


def test_only_loopback_candidate_lines_are_kept() -> None:
    kept = filter_sdp_candidates(SDP)
    assert [candidate_address(line) for line in kept.split("\r\n") if "candidate" in line] == [
        "::1",
        "127.0.0.1",
    ]
    assert kept.startswith("v=0\r\nm=application") and kept.endswith("262144\r\n")


def test_loopback_addresses() -> None:
    assert is_loopback_address("127.0.0.1") and is_loopback_address("[::1]")
    assert is_loopback_address("0:0:0:0:0:0:0:1")
    for other in ("127.0.0.2", "192.0.2.2", "fd00::2", "abc.local", "", None):
        assert not is_loopback_address(other)


def test_max_message_size_is_read_from_the_sdp() -> None:
    assert sdp_max_message_size(SDP) == 262144
    assert sdp_max_message_size("v=0\r\n") is None


def test_candidate_signals_of_simple_peer_are_parsed() -> None:
    signal = {
        "type": "candidate",
        "candidate": {
            "candidate": "candidate:1 1 udp 1 ::1 5 typ host",
            "sdpMLineIndex": 0,
            "sdpMid": "0",
        },
    }
    assert parse_candidate_signal(signal) == ("candidate:1 1 udp 1 ::1 5 typ host", 0, "0")
    assert parse_candidate_signal({"type": "candidate", "candidate": "x"}) is None
    assert parse_candidate_signal({"type": "candidate", "candidate": {"sdpMid": "0"}}) is None


def test_capabilities_round_trip_and_js_signals_have_none() -> None:
    caps = PeerCapabilities(native_secure_scale_bits=16)
    assert PeerCapabilities.from_signal({"type": "offer", CAPABILITY_KEY: caps.to_wire()}) == caps
    refusing = PeerCapabilities(native_secure_scale_bits=None)
    assert PeerCapabilities.from_signal({CAPABILITY_KEY: refusing.to_wire()}) == refusing
    assert PeerCapabilities.from_signal({"type": "offer", "sdp": "v=0"}) is None
    assert PeerCapabilities.from_signal({CAPABILITY_KEY: {"version": True}}) is None
    odd = {CAPABILITY_KEY: {"version": 2, "nativeSecure": {"scaleBits": 99}}}
    assert PeerCapabilities.from_signal(odd) == PeerCapabilities(2, None)


def test_ice_servers() -> None:
    assert ice_servers_from([]) == []
    defaults = ice_servers_from(None)
    assert [s.urls for s in defaults] == [
        "stun:stun.l.google.com:19302",
        "stun:global.stun.twilio.com:3478",
    ]
    (turn,) = ice_servers_from(
        [{"urls": "turn:t.example:3478", "username": "u", "credential": "p"}]
    )
    assert (turn.urls, turn.username, turn.credential) == ("turn:t.example:3478", "u", "p")
    with pytest.raises(TypeError):
        ice_servers_from([3])  # type: ignore[list-item]


# --------------------------------------------------------------------------- real links


class Pair:
    """Two PeerLinks wired to each other by an in-memory signal relay (what the server does)."""

    def __init__(self, settings_a: LinkSettings, settings_b: LinkSettings) -> None:
        self.signals: list[tuple[int, dict[str, Any]]] = []
        self.intercept: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda s: s
        # Peer 2 has the larger id, so it offers (the 2.1.1 rule).
        self.a = PeerLink(2, 1, self._relay(2), settings_a, initiator=True)
        self.b = PeerLink(1, 2, self._relay(1), settings_b, initiator=False)

    def _relay(self, sender: int) -> Callable[[int, dict[str, Any]], Any]:
        async def send(target: int, signal: dict[str, Any]) -> None:
            self.signals.append((sender, signal))
            forwarded = self.intercept(signal)
            if forwarded is not None:
                (self.b if target == 1 else self.a).signal(forwarded)

        return send

    async def open(self) -> None:
        await self.a.start()
        assert await self.a.wait_open(10) and await self.b.wait_open(10)

    async def close(self) -> None:
        await asyncio.gather(self.a.close(), self.b.close())


def settings(native: int | None = 16, chunk: int = PYTHON_CHUNK_SIZE) -> LinkSettings:
    return LinkSettings([], True, PeerCapabilities(native_secure_scale_bits=native), chunk)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    created = Pair(settings(), settings(native=None))
    try:
        yield created
    finally:
        await created.close()


async def test_links_connect_on_loopback_and_learn_each_other(pair: Pair) -> None:
    await pair.open()
    for link in (pair.a, pair.b):
        addresses = link.local_candidate_addresses()
        assert addresses and all(is_loopback_address(a) for a in addresses), addresses
        assert link.is_python and link.chunk_size == PYTHON_CHUNK_SIZE
    assert pair.a.capabilities == PeerCapabilities(native_secure_scale_bits=None)
    assert pair.b.capabilities == PeerCapabilities(native_secure_scale_bits=16)
    kinds = [signal["type"] for _, signal in pair.signals]
    assert kinds == ["offer", "answer"]  # aiortc does not trickle: candidates are in the SDP
    for _, signal in pair.signals:
        assert "a=max-message-size:" in signal["sdp"]  # the JS peer throws without it
        lines = [line for line in signal["sdp"].split("\r\n") if line.startswith("a=candidate:")]
        assert lines and all(is_loopback_address(candidate_address(line)) for line in lines)


async def test_big_messages_travel_both_ways(pair: Pair) -> None:
    await pair.open()
    tensors = [np.arange(300_000, dtype=np.float32).reshape(500, 600)]
    message = encode_peer_message(MessageType.WEIGHTS, 1, encode_float_payload(tensors, "f32le"))
    await pair.a.send(message)
    await pair.b.send(
        encode_peer_message(MessageType.SHARES, 2, encode_float_payload(tensors, "legacy"))
    )
    got = await pair.b.receive(MessageType.WEIGHTS, 10)
    np.testing.assert_array_equal(got.payload.tensors[0], tensors[0])  # type: ignore[union-attr]
    got = await pair.a.receive(MessageType.SHARES, 10)
    np.testing.assert_array_equal(got.payload.tensors[0], tensors[0])  # type: ignore[union-attr]
    with pytest.raises(TimeoutError):
        await pair.a.receive(MessageType.PARTIAL_SUMS, 0.05)


async def test_a_peer_without_capabilities_gets_16_kib_chunks(pair: Pair) -> None:
    """JS peers: the capability field is what a JS peer never sends."""
    pair.intercept = lambda s: {k: v for k, v in s.items() if k != CAPABILITY_KEY}
    await pair.open()
    assert not pair.a.is_python and pair.a.chunk_size == DISCO_CHUNK_SIZE
    await pair.a.send(
        encode_peer_message(
            MessageType.WEIGHTS, 1, encode_float_payload([np.ones(20_000, np.float32)], "legacy")
        )
    )
    got = await pair.b.receive(MessageType.WEIGHTS, 10)
    assert got.payload.tensors[0].shape == (20_000,)  # type: ignore[union-attr]


async def test_media_renegotiation_signals_are_ignored(pair: Pair) -> None:
    await pair.open()
    pair.a.signal({"type": "renegotiate", "renegotiate": True})
    pair.b.signal({"type": "transceiverRequest", "transceiverRequest": {"kind": "audio"}})
    pair.b.signal({"type": "weird"})
    pair.b.signal({"type": "offer", "sdp": "v=0\r\n"})  # a second offer: ignored, not fatal
    await pair.a.send(
        encode_peer_message(
            MessageType.WEIGHTS, 1, encode_float_payload([np.ones(3, np.float32)], "f32le")
        )
    )
    assert (await pair.b.receive(MessageType.WEIGHTS, 5)).peer == 1
    assert pair.a.is_open and pair.b.is_open


async def test_garbage_on_the_channel_closes_the_link(pair: Pair) -> None:
    await pair.open()
    assert pair.a._channel is not None
    pair.a._channel.send(b"\x00")  # shorter than a chunk header
    with pytest.raises(PeerGone, match="bad chunk"):
        await pair.b.receive(MessageType.WEIGHTS, 5)
    assert pair.b.closed


async def test_undecodable_message_closes_the_link(pair: Pair) -> None:
    await pair.open()
    await pair.a.send(b"\x93\x01\x02\x03")  # a msgpack array, not a peer message
    with pytest.raises(PeerGone, match="bad message"):
        await pair.b.receive(MessageType.WEIGHTS, 5)


async def test_closing_one_side_ends_the_other(pair: Pair) -> None:
    await pair.open()
    waiting = asyncio.ensure_future(pair.b.receive(MessageType.SHARES, 10))
    await pair.a.close()
    with pytest.raises(PeerGone):
        await waiting
    with pytest.raises(PeerGone):
        await pair.a.send(b"x")
    assert not await pair.a.wait_open(0.1)


async def test_link_without_an_answer_does_not_open() -> None:
    created = Pair(settings(), settings())
    created.intercept = lambda s: None  # the server lost every signal
    try:
        await created.a.start()
        assert not await created.a.wait_open(0.3)
    finally:
        await created.close()

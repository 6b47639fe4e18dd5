"""Secure-aggregation messages (types 20-27): every builder's frame reads back through its
parser unchanged, and malformed frames are refused with a ProtocolError naming the field."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from disco.protocol.errors import ProtocolError
from disco.protocol.framing import pack, unpack_message
from disco.protocol.secagg import (
    SecAggJoin,
    SecAggMasked,
    SecAggOutcome,
    SecAggRelay,
    SecAggReveal,
    SecAggRoster,
    SecAggShares,
    SecAggUnmask,
    parse_secagg,
    parse_secagg_reply,
    secagg_join,
    secagg_masked,
    secagg_outcome,
    secagg_relay,
    secagg_reveal,
    secagg_roster,
    secagg_shares,
    secagg_unmask,
)
from disco.protocol.weights import encode_native

SESSION = bytes(range(32))


def wire(message: dict[str, Any]) -> dict[str, Any]:
    """Through msgpack and back, as the other side reads it."""
    return unpack_message(pack(message))


def roster() -> dict[str, Any]:
    return secagg_roster(
        round=3, session=SESSION, curve="x25519", index=2,
        participants={1: (b"a" * 32, b"b" * 32), 2: (b"c" * 32, b"d" * 32)},
        degree=1, threshold=2, vector_length=16, fractional_bits=24, deadline_ms=1500,
    )


def test_client_messages_read_back() -> None:
    keys = {"x25519": (b"k" * 32, b"m" * 32), "p256": (b"p" * 65, b"q" * 65)}
    assert parse_secagg(wire(secagg_join(4, keys, 12, 0.5)), 1024) == SecAggJoin(
        4, keys, 12, 0.5
    )
    assert parse_secagg(wire(secagg_shares(SESSION, {2: b"s2", 1: b"s1"}, b"c" * 32)), 1024) == (
        SecAggShares(SESSION, {1: b"s1", 2: b"s2"}, b"c" * 32)
    )
    masked = parse_secagg(wire(secagg_masked(SESSION, b"\x01" * 64)), 1024)
    assert isinstance(masked, SecAggMasked) and masked.masked == b"\x01" * 64
    assert parse_secagg(wire(secagg_reveal(SESSION, {3: b"r"})), 1024) == SecAggReveal(
        SESSION, {3: b"r"}
    )


def test_server_messages_read_back() -> None:
    assert parse_secagg_reply(wire(roster())) == SecAggRoster(
        3, SESSION, "x25519", 2, {1: (b"a" * 32, b"b" * 32), 2: (b"c" * 32, b"d" * 32)},
        1, 2, 16, 24, 1500,
    )
    assert parse_secagg_reply(wire(secagg_relay(SESSION, {1: b"x"}, [2, 1], 900))) == (
        SecAggRelay(SESSION, {1: b"x"}, (1, 2), 900)
    )
    assert parse_secagg_reply(wire(secagg_unmask(SESSION, [1, 2], [3], 900))) == SecAggUnmask(
        SESSION, (1, 2), (3,), 900
    )
    aborted = parse_secagg_reply(wire(secagg_outcome(5, "aborted", "too few")))
    assert isinstance(aborted, SecAggOutcome)
    assert (aborted.round, aborted.status, aborted.error, aborted.weights) == (
        5, "aborted", "too few", None
    )
    model = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2, np.float32)]
    done = parse_secagg_reply(
        wire(secagg_outcome(6, "aggregated", participants=4, weights_payload=encode_native(model)))
    )
    assert isinstance(done, SecAggOutcome) and done.participants == 4 and done.weights is not None
    for got, want in zip(done.weights, model, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"curve": "ed448"}, "curve"),
        ({"index": -1}, "index"),
        ({"participants": [[1, b"a", b"b", b"c"]]}, "participants"),
        ({"participants": [[1, b"a", b"b"], [1, b"a", b"b"]]}, "twice"),
        ({"vectorLength": "16"}, "vectorLength"),
        ({"session": "text"}, "session"),
        ({"deadlineMs": None}, "deadlineMs"),
    ],
)
def test_malformed_roster_is_refused(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolError, match=field):
        parse_secagg_reply(wire({**roster(), **change}))


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (secagg_outcome(1, "aggregated") | {"status": "done"}, "status"),
        (secagg_outcome(1, "aborted") | {"error": 7}, "error"),
        (secagg_relay(SESSION, {1: b"x"}, [1], 9) | {"sharers": [1, "2"]}, "sharers"),
        (secagg_unmask(SESSION, [1], [2], 9) | {"dropped": 2}, "dropped"),
        (secagg_join(0, {"x25519": (b"k", b"m")}), "not a server"),
        ({"type": 99}, "unknown message type"),
    ],
)
def test_malformed_server_messages_are_refused(message: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolError, match=field):
        parse_secagg_reply(wire(message))

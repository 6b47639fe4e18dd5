"""Server -> client frames as the Python client reads them: every builder's output parses back.

The builders are what the server sends; the parsers are what `disco.client` reads. A frame
goes through msgpack in between, as on the wire.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disco.protocol import (
    LatestRoundReply,
    PeerIdAssigned,
    PostAck,
    PostStatus,
    ProtocolError,
    RoundPeers,
    ServerStatistics,
    SignalForPeer,
    SignalUndeliverable,
    WeightEncoding,
    encode_weights,
    latest_round_reply,
    pack,
    parse_latest_round_reply,
    parse_post_ack,
    parse_signaling_reply,
    parse_statistics_reply,
    peer_id,
    peer_list_update,
    peers_for_round,
    post_ack,
    signal_error,
    signal_from,
    statistics_reply,
    unpack_message,
    wire_peer_id,
)
from disco.protocol.messages import MAX_PEER_ID, MAX_ROUND

PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=100)
ROUNDS = st.integers(0, MAX_ROUND)
PEER_IDS = st.integers(0, MAX_PEER_ID)


def wire(message: dict[str, Any]) -> dict[str, Any]:
    """The message as the other side decodes it."""
    return unpack_message(pack(message))


# ---------------------------------------------------------------------------------------------
# Federated channel


@PROPERTY
@given(ROUNDS, st.sampled_from(list(PostStatus)), st.text(min_size=1, max_size=50))
def test_post_ack_round_trips(round_: int, status: PostStatus, reason: str) -> None:
    ack = parse_post_ack(wire(post_ack(round_, status, reason)))
    assert ack == PostAck(round_, status, "" if status is PostStatus.ACCEPTED else reason)
    assert ack.accepted is (status is PostStatus.ACCEPTED)


def test_post_ack_carries_an_error_exactly_when_refused() -> None:
    accepted = {"type": 8, "round": 4, "status": "accepted"}
    assert post_ack(4, PostStatus.ACCEPTED, "ignored") == accepted
    assert post_ack(4, PostStatus.STALE, "too old") == {
        "type": 8,
        "round": 4,
        "status": "stale",
        "error": "too old",
    }
    assert post_ack(4, PostStatus.CLOSED)["error"] == "closed"  # never an empty reason


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ({"type": 11, "round": 1, "status": "accepted"}, "expected postWeightsToServer"),
        ({"type": 8, "status": "accepted"}, "no 'round' field"),
        ({"type": 8, "round": -1, "status": "accepted"}, "'round' must be in"),
        ({"type": 8, "round": 1}, "no 'status' field"),
        ({"type": 8, "round": 1, "status": "maybe"}, "unknown status 'maybe'"),
        ({"type": 8, "round": 1, "status": 3}, "unknown status '3'"),
        ({"type": 8, "round": 1, "status": "stale", "error": 5}, "'error' must be a string"),
    ],
)
def test_malformed_post_acks_are_refused(frame: dict[str, Any], reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_post_ack(frame)


@pytest.mark.parametrize("encoding", list(WeightEncoding))
def test_latest_round_reply_round_trips_in_both_encodings(encoding: WeightEncoding) -> None:
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array(-1.5, np.float32)]
    reply = parse_latest_round_reply(wire(latest_round_reply(7, encode_weights(weights, encoding))))
    assert isinstance(reply, LatestRoundReply)
    assert (reply.round, reply.encoding) == (7, encoding)
    for got, want in zip(reply.weights, weights, strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ProtocolError, match="no 'weights' field"):
        parse_latest_round_reply({"type": 11, "round": 7})


@PROPERTY
@given(
    st.builds(
        ServerStatistics,
        round=ROUNDS,
        current_participants=st.integers(0, 10**6),
        total_participants=st.integers(0, 10**6),
        average_participants=st.floats(0, 1e6),
        last_round_participants=st.integers(0, 10**6),
    )
)
def test_statistics_round_trip(stats: ServerStatistics) -> None:
    assert parse_statistics_reply(wire(statistics_reply(stats))) == stats


def test_statistics_without_our_extension_and_malformed_ones() -> None:
    frame = wire(statistics_reply(ServerStatistics(3, 2, 5, 1.5, 2)))
    del frame["statistics"]["lastRoundParticipants"]  # a server without the extension
    assert parse_statistics_reply(frame) == ServerStatistics(3, 2, 5, 1.5, 0)
    frame["statistics"]["averageNumberOfParticipants"] = True
    with pytest.raises(ProtocolError, match="non-negative number"):
        parse_statistics_reply(frame)
    with pytest.raises(ProtocolError, match="'statistics' must be a map"):
        parse_statistics_reply({"type": 13, "statistics": [1]})


# ---------------------------------------------------------------------------------------------
# Signaling channel


@PROPERTY
@given(PEER_IDS, PEER_IDS, st.lists(PEER_IDS, max_size=6), st.text(max_size=30))
def test_signaling_frames_round_trip(
    own: int, other: int, peers: list[int], reason: str
) -> None:
    signal = {"type": "offer", "sdp": "v=0\r\n"}
    assert parse_signaling_reply(wire(peer_id(own))) == PeerIdAssigned(own)
    assert parse_signaling_reply(wire(signal_from(other, signal))) == SignalForPeer(other, signal)
    assert parse_signaling_reply(wire(peers_for_round(peers))) == RoundPeers(tuple(peers))
    assert parse_signaling_reply(wire(peer_list_update(peers))) == RoundPeers(tuple(peers), True)
    assert parse_signaling_reply(wire(signal_error(own, other, reason))) == SignalUndeliverable(
        other, reason
    )


def test_signaling_replies_accept_integral_floats_and_skip_other_types() -> None:
    assert parse_signaling_reply({"type": 1, "id": 3.0}) == PeerIdAssigned(3)
    assert parse_signaling_reply({"type": 4, "peers": [1.0, 2]}) == RoundPeers((1, 2))
    # an undeliverable signal whose target the client sent malformed: the reason still arrives
    assert parse_signaling_reply(signal_error(1, "x", "bad")) == SignalUndeliverable(None, "bad")
    assert parse_signaling_reply({"type": 0}) is None


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ({"type": 1, "id": -1}, "'id' must be a peer id"),
        ({"type": 1, "id": True}, "'id' must be a peer id"),
        ({"type": 2, "peer": 1}, "no 'signal' field"),
        ({"type": 2, "peer": 1, "signal": "sdp"}, "a map 'signal'"),
        ({"type": 2, "peer": 1.5, "signal": {}}, "a peer id 'peer'"),
        ({"type": 4, "peers": [1, "2"]}, "array of peer ids"),
        ({"type": 4, "peers": 3}, "array of peer ids"),
    ],
)
def test_malformed_signaling_frames_are_refused(frame: dict[str, Any], reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_signaling_reply(frame)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (MAX_PEER_ID, MAX_PEER_ID),
        (7.0, 7),
        (MAX_PEER_ID + 1, None),
        (-1, None),
        (1.5, None),
        (True, None),
        ("1", None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_wire_peer_id(value: object, expected: int | None) -> None:
    assert wire_peer_id(value) == expected

"""Typed channel messages: what the 2.1.1 client sends parses; anything else is a ProtocolError."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disco.protocol import (
    ClientConnected,
    CloseCode,
    GetMetadataMap,
    LatestServerRound,
    MessageType,
    PeerIsReady,
    PostMetadata,
    PostWeights,
    ProtocolError,
    PullServerStatistics,
    SignalForPeer,
    WeightEncoding,
    client_connected,
    decode_weights,
    encode_legacy,
    encode_native,
    error_reply,
    federated_connected,
    get_metadata_map,
    latest_round_reply,
    latest_server_round,
    metadata_map_reply,
    pack,
    parse_decentralized,
    parse_federated,
    peer_id,
    peer_is_ready,
    peers_for_round,
    post_metadata,
    post_weights,
    pull_server_statistics,
    signal_for_peer,
    signal_from,
    statistics_reply,
    unpack_message,
)
from disco.protocol.messages import (
    MAX_ID_CHARS,
    MAX_PEER_ID,
    MAX_ROUND,
    PostStatus,
    ServerStatistics,
    peer_list_update,
    post_ack,
    signal_error,
)

PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)

# postWeightsToServer frame written by the real 2.1.1 client (see test_weights.py for how).
JS_POST_WEIGHTS_FRAME = bytes.fromhex(
    "83a47479706508a777656967687473dc0058cc93cc82cca57368617065cc920203cca464617461cc9600cccb"
    "3fccf8000000000000ccfecccb3fccb9cc99cc99cca0000000cccb3e601b2b20000000cccdccffcce0cc82cca5"
    "7368617065cc90cca464617461cc91cccbccc01d000000000000cc82cca57368617065cc920004cca464617461"
    "cc90a5726f756e6403"
)
NODE_DIR = Path(__file__).resolve().parents[1] / "interop" / "node"
WEIGHTS = [np.array([[1.0, 2.0]], np.float32), np.array(3.0, np.float32)]
SIGNAL = {"type": "offer", "sdp": "v=0\r\na=max-message-size:262144\r\n"}


def refused(parse: Any, message: dict[str, Any]) -> str:
    with pytest.raises(ProtocolError) as info:
        parse(message)
    assert info.value.close_code == CloseCode.INVALID_DATA
    return info.value.reason


# ---------------------------------------------------------------------------------------------
# Federated channel


def test_real_js_post_weights_frame_parses() -> None:
    message = parse_federated(unpack_message(JS_POST_WEIGHTS_FRAME))
    assert isinstance(message, PostWeights)
    assert message.round == 3
    assert message.encoding is WeightEncoding.LEGACY
    assert message.num_samples is None
    assert [w.shape for w in message.weights] == [(2, 3), (), (0, 4)]
    assert message.weights[0][1, 2] == 65504.0


def test_federated_messages_as_the_js_client_writes_them() -> None:
    # Field names and values as in dist/core/client/federated/client.js.
    assert parse_federated({"type": 0}) == ClientConnected()
    assert parse_federated({"type": 11}) == LatestServerRound()
    assert parse_federated({"type": 13}) == PullServerStatistics()
    meta = {
        "type": 9,
        "taskId": "titanic",
        "clientId": "0b7d8e1e-6c2a-4b5a-9d55-3c1a7f6f0e11",
        "round": 2,
        "metadataId": "validationLoss",
        "metadata": "0.25",
    }
    assert parse_federated(meta) == PostMetadata(
        task_id="titanic",
        client_id="0b7d8e1e-6c2a-4b5a-9d55-3c1a7f6f0e11",
        round=2,
        metadata_id="validationLoss",
        metadata="0.25",
    )
    get = {k: v for k, v in meta.items() if k != "metadata"} | {"type": 10}
    assert parse_federated(get) == GetMetadataMap(
        task_id="titanic",
        client_id="0b7d8e1e-6c2a-4b5a-9d55-3c1a7f6f0e11",
        round=2,
        metadata_id="validationLoss",
    )


@pytest.mark.parametrize("encode", [encode_legacy, encode_native])
def test_post_weights_in_both_encodings(encode: Any) -> None:
    frame = pack(post_weights(encode(WEIGHTS), round=0, num_samples=12))
    message = parse_federated(unpack_message(frame))
    assert isinstance(message, PostWeights)
    assert message.round == 0
    assert message.num_samples == 12
    assert message.encoding is (
        WeightEncoding.NATIVE if encode is encode_native else WeightEncoding.LEGACY
    )
    for got, want in zip(message.weights, WEIGHTS, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, None),
        ({"numSamples": 5}, 5),
        ({"nbSamples": 7}, 7),
        ({"numSamples": 5, "nbSamples": 5}, 5),
        ({"numSamples": None}, None),
        ({"numSamples": None, "nbSamples": 0}, 0),
    ],
)
def test_optional_sample_count(extra: dict[str, Any], expected: int | None) -> None:
    message = parse_federated({"type": 8, "weights": encode_legacy(WEIGHTS), "round": 1, **extra})
    assert isinstance(message, PostWeights)
    assert message.num_samples == expected


LEGACY = encode_legacy(WEIGHTS)
POST = {"type": 8, "weights": LEGACY, "round": 1}
META = {"type": 9, "taskId": "t", "clientId": "c", "round": 1, "metadataId": "m", "metadata": "x"}
GET = {"type": 10, "taskId": "t", "clientId": "c", "round": 1, "metadataId": "m"}

BAD_FEDERATED: list[tuple[str, dict[str, Any], str]] = [
    ("no type", {"round": 1}, "no integer 'type' field"),
    ("bool type", {"type": False}, "no integer 'type' field"),
    ("PeerID", {"type": 1, "id": 1}, "PeerID (type 1) is not allowed on the federated channel"),
    ("SignalForPeer", {"type": 2, "peer": 1, "signal": {}}, "SignalForPeer (type 2) is not"),
    ("PeerIsReady", {"type": 3}, "PeerIsReady (type 3) is not allowed"),
    ("PeersForRound", {"type": 4, "peers": []}, "PeersForRound (type 4)"),
    ("Weights", {"type": 5}, "Weights (type 5)"),
    ("Shares", {"type": 6}, "Shares (type 6)"),
    ("PartialSums", {"type": 7}, "PartialSums (type 7)"),
    ("pullRoundAndFetchWeights", {"type": 12}, "pullRoundAndFetchWeights (type 12) is not"),
    ("unknown code", {"type": 99}, "message type 99 is not allowed on the federated channel"),
    (
        "post no weights",
        {"type": 8, "round": 1},
        "postWeightsToServer (type 8) message has no 'weights'",
    ),
    ("post no round", {"type": 8, "weights": LEGACY}, "has no 'round' field"),
    ("round bool", {**POST, "round": True}, "'round' must be an integer, got bool"),
    ("round float", {**POST, "round": 1.0}, "'round' must be an integer, got float"),
    ("round str", {**POST, "round": "1"}, "'round' must be an integer, got str"),
    ("round nil", {**POST, "round": None}, "'round' must be an integer, got nil"),
    ("round negative", {**POST, "round": -1}, f"'round' must be in 0..{MAX_ROUND}, got -1"),
    ("round too big", {**POST, "round": MAX_ROUND + 1}, f"got {MAX_ROUND + 1}"),
    ("weights nil", {**POST, "weights": None}, "weights must be an array of byte-integers"),
    ("weights bad bytes", {**POST, "weights": [300]}, "integers in 0..255"),
    ("samples bool", {**POST, "numSamples": True}, "'numSamples' must be an integer, got bool"),
    ("samples negative", {**POST, "nbSamples": -3}, "'nbSamples' must be in 0.."),
    ("samples disagree", {**POST, "numSamples": 1, "nbSamples": 2}, "disagree"),
    ("awaitRound int", {**POST, "awaitRound": 1}, "'awaitRound' must be a boolean, got int"),
    ("awaitRound str", {**POST, "awaitRound": "yes"}, "'awaitRound' must be a boolean, got str"),
    ("meta no taskId", {k: v for k, v in META.items() if k != "taskId"}, "has no 'taskId' field"),
    ("meta no metadata", {k: v for k, v in META.items() if k != "metadata"}, "no 'metadata' field"),
    ("meta clientId int", {**META, "clientId": 3}, "'clientId' must be a string, got int"),
    ("meta metadata bin", {**META, "metadata": b"x"}, "'metadata' must be a string, got bin"),
    ("meta round float", {**META, "round": 0.5}, "postMetadata (type 9): 'round' must be"),
    ("meta long id", {**META, "metadataId": "m" * (MAX_ID_CHARS + 1)}, "at most 1024 allowed"),
    ("get no round", {k: v for k, v in GET.items() if k != "round"}, "getMetadataMap (type 10)"),
    ("get taskId nil", {**GET, "taskId": None}, "'taskId' must be a string, got nil"),
]


@pytest.mark.parametrize(
    ("message", "reason"), [b[1:] for b in BAD_FEDERATED], ids=[b[0] for b in BAD_FEDERATED]
)
def test_bad_federated_messages_are_refused_with_a_reason(
    message: dict[str, Any], reason: str
) -> None:
    assert reason in refused(parse_federated, message)


def test_a_post_may_ask_to_await_the_round() -> None:
    """`awaitRound` on every kind of type 8; absent or nil means the legacy acknowledgement."""
    native = encode_native(WEIGHTS)
    for extra, expected in (({}, False), ({"awaitRound": None}, False),
                            ({"awaitRound": False}, False), ({"awaitRound": True}, True)):
        for weights in (LEGACY, native):
            message = parse_federated({**POST, "weights": weights, **extra})
            assert isinstance(message, PostWeights) and message.await_round is expected
    built = post_weights(native, round=3, num_samples=2, await_round=True)
    assert built["awaitRound"] is True
    message = parse_federated(built)
    assert isinstance(message, PostWeights) and message.await_round and message.round == 3
    assert "awaitRound" not in post_weights(native, round=3)  # the legacy post, unchanged


def test_limits_are_inclusive_and_extra_fields_are_ignored() -> None:
    message = parse_federated({**POST, "round": MAX_ROUND, "future": {"x": 1}})
    assert isinstance(message, PostWeights)
    assert message.round == MAX_ROUND
    long_ok = parse_federated({**META, "taskId": "t" * MAX_ID_CHARS, "metadata": "v" * 100_000})
    assert isinstance(long_ok, PostMetadata)


# ---------------------------------------------------------------------------------------------
# Decentralized channel


def test_decentralized_messages_as_the_js_client_writes_them() -> None:
    assert parse_decentralized({"type": 0}) == ClientConnected()
    assert parse_decentralized({"type": 3}) == PeerIsReady()
    candidate = {
        "type": "candidate",
        "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0"},
    }
    original = {"type": 2, "peer": 7, "signal": candidate}
    message = parse_decentralized(original)
    assert message == SignalForPeer(peer=7, signal=candidate)
    assert isinstance(message, SignalForPeer)
    assert message.signal is candidate  # forwarded untouched


BAD_DECENTRALIZED: list[tuple[str, dict[str, Any], str]] = [
    ("type str", {"type": "0"}, "no integer 'type' field"),
    ("post weights", POST, "postWeightsToServer (type 8) is not allowed on the decentralized"),
    ("latest round", {"type": 11}, "latestServerRound (type 11)"),
    ("statistics", {"type": 13}, "pullServerStatistics (type 13)"),
    ("PeerID", {"type": 1, "id": 3}, "PeerID (type 1)"),
    ("PeersForRound", {"type": 4, "peers": [1]}, "PeersForRound (type 4)"),
    ("peer-to-peer weights", {"type": 5, "peer": 1, "weights": LEGACY}, "Weights (type 5)"),
    ("no peer", {"type": 2, "signal": SIGNAL}, "SignalForPeer (type 2) message has no 'peer'"),
    ("no signal", {"type": 2, "peer": 1}, "has no 'signal' field"),
    ("peer str", {"type": 2, "peer": "1", "signal": SIGNAL}, "'peer' must be an integer, got str"),
    ("peer float", {"type": 2, "peer": 1.5, "signal": SIGNAL}, "got float"),
    ("peer bool", {"type": 2, "peer": True, "signal": SIGNAL}, "got bool"),
    ("peer negative", {"type": 2, "peer": -1, "signal": SIGNAL}, "must be in 0.."),
    ("peer huge", {"type": 2, "peer": MAX_PEER_ID + 1, "signal": SIGNAL}, str(MAX_PEER_ID)),
    ("signal str", {"type": 2, "peer": 1, "signal": "offer"}, "'signal' must be a map, got str"),
    ("signal nil", {"type": 2, "peer": 1, "signal": None}, "'signal' must be a map, got nil"),
]


@pytest.mark.parametrize(
    ("message", "reason"), [b[1:] for b in BAD_DECENTRALIZED], ids=[b[0] for b in BAD_DECENTRALIZED]
)
def test_bad_decentralized_messages_are_refused_with_a_reason(
    message: dict[str, Any], reason: str
) -> None:
    assert reason in refused(parse_decentralized, message)


# ---------------------------------------------------------------------------------------------
# Random input


FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.lists(st.integers(min_value=-1, max_value=256), max_size=8),
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=3), max_size=3),
)
RANDOM_MESSAGES = st.fixed_dictionaries(
    {"type": st.integers(min_value=-1, max_value=14) | FIELD_VALUES},
    optional={
        key: FIELD_VALUES
        for key in (
            "round",
            "weights",
            "numSamples",
            "nbSamples",
            "taskId",
            "clientId",
            "metadataId",
            "metadata",
            "peer",
            "signal",
        )
    },
)


@PROPERTY
@given(RANDOM_MESSAGES)
def test_random_messages_parse_or_raise_protocol_error(message: dict[str, Any]) -> None:
    for parse in (parse_federated, parse_decentralized):
        try:
            parse(message)
        except ProtocolError as error:
            assert error.close_code == CloseCode.INVALID_DATA
            assert error.reason


# ---------------------------------------------------------------------------------------------
# Builders


def test_server_builders_produce_the_shapes_the_js_client_reads() -> None:
    assert federated_connected() == {"type": 0}
    assert peer_id(4) == {"type": 1, "id": 4}
    assert signal_from(2, SIGNAL) == {"type": 2, "peer": 2, "signal": SIGNAL}
    assert peers_for_round(p for p in (3, 1)) == {"type": 4, "peers": [3, 1]}
    assert latest_round_reply(5, LEGACY) == {"type": 11, "round": 5, "weights": LEGACY}
    assert statistics_reply(
        ServerStatistics(
            round=5, current_participants=2, total_participants=9, average_participants=1.8,
            last_round_participants=3,
        )
    ) == {
        "type": 13,
        "statistics": {
            "round": 5,
            "currentNumberOfParticipants": 2,
            "totalNumberOfParticipants": 9,
            "averageNumberOfParticipants": 1.8,
            "lastRoundParticipants": 3,
        },
    }
    assert metadata_map_reply(
        task_id="t", client_id="c", round=1, metadata_id="m", metadata_map=[("a", "1"), ("b", None)]
    ) == {**GET, "metadataMap": [["a", "1"], ["b", None]]}
    assert error_reply(MessageType.LATEST_SERVER_ROUND, "no model yet") == {
        "type": 11,
        "error": "no model yet",
    }


def test_client_builders_parse_back() -> None:
    assert parse_federated(client_connected()) == ClientConnected()
    assert parse_federated(latest_server_round()) == LatestServerRound()
    assert parse_federated(pull_server_statistics()) == PullServerStatistics()
    ids: dict[str, Any] = {"task_id": "t", "client_id": "c", "round": 4, "metadata_id": "m"}
    assert parse_federated(post_metadata(**ids, metadata="v")) == PostMetadata(**ids, metadata="v")
    assert parse_federated(get_metadata_map(**ids)) == GetMetadataMap(**ids)
    assert "numSamples" not in post_weights(LEGACY, round=1)
    assert parse_decentralized(peer_is_ready()) == PeerIsReady()
    assert parse_decentralized(signal_for_peer(3, SIGNAL)) == SignalForPeer(3, SIGNAL)


def test_every_builder_output_is_a_valid_frame() -> None:
    built = [
        federated_connected(),
        peer_id(1),
        signal_from(1, SIGNAL),
        peers_for_round([]),
        latest_round_reply(0, encode_native(WEIGHTS)),
        statistics_reply(
            ServerStatistics(
                round=0, current_participants=0, total_participants=0, average_participants=0
            )
        ),
        metadata_map_reply(task_id="t", client_id="c", round=0, metadata_id="m", metadata_map=[]),
        error_reply(13, "x"),
    ]
    for message in built:
        assert unpack_message(pack(message)) == message
    reply = unpack_message(pack(latest_round_reply(0, encode_native(WEIGHTS))))
    weights, encoding = decode_weights(reply["weights"])
    assert encoding is WeightEncoding.NATIVE
    np.testing.assert_array_equal(weights[0], WEIGHTS[0])


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_real_js_client_accepts_our_server_messages() -> None:
    """Feed our frames to the 2.1.1 client's own validators (messages.js of each channel)."""
    if not (NODE_DIR / "node_modules" / "@epfml" / "discojs-node").is_dir():
        pytest.skip("tests/interop/node has no node_modules")
    federated = [
        federated_connected(),
        latest_round_reply(3, encode_legacy(WEIGHTS)),
        statistics_reply(
            ServerStatistics(
                round=3, current_participants=2, total_participants=4, average_participants=2.0
            )
        ),
        metadata_map_reply(
            task_id="t", client_id="c", round=3, metadata_id="m", metadata_map=[("c", "v")]
        ),
        post_ack(3, PostStatus.ACCEPTED),
        post_ack(3, PostStatus.INVALID, "weights hold NaN or Inf (tensor 0)"),
    ]
    decentralized = [
        peer_id(0),
        signal_from(1, SIGNAL),
        peers_for_round([1, 2]),
        peer_list_update([2]),
        signal_error(1, 7, "peer 7 is not connected to task t"),
    ]
    script = """
      const msgpack = require('msgpack-lite');
      const base = '@epfml/discojs-node/dist/core/client/';
      const fed = require(base + 'federated/messages');
      const dec = require(base + 'decentralized/messages');
      const { serialization } = require('@epfml/discojs-node');
      const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
      const decode = (hex) => msgpack.decode(Buffer.from(hex, 'hex'));
      const out = {
        federated: input.federated.map((h) => fed.isMessageFederated(decode(h))),
        decentralized: input.decentralized.map((h) => dec.isMessageFromServer(decode(h))),
      };
      const latest = decode(input.federated[1]);
      out.round = latest.round;
      out.weights = serialization.weights.decode(latest.weights).weights.map(
        (t) => ({ shape: t.shape, data: Array.from(t.dataSync()) }));
      out.statistics = decode(input.federated[2]).statistics;
      out.metadataMap = Array.from(new Map(decode(input.federated[3]).metadataMap));
      console.log(JSON.stringify(out));
    """
    payload = {
        "federated": [pack(m).hex() for m in federated],
        "decentralized": [pack(m).hex() for m in decentralized],
    }
    result = subprocess.run(
        ["node", "-e", script],
        cwd=NODE_DIR,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["federated"] == [True] * 4 + [True] * 2  # + the post acknowledgements
    assert out["decentralized"] == [True] * 3 + [True] * 2  # + update and signal error
    assert out["round"] == 3
    assert out["weights"] == [{"shape": [1, 2], "data": [1.0, 2.0]}, {"shape": [], "data": [3.0]}]
    assert out["statistics"]["averageNumberOfParticipants"] == 2
    assert out["metadataMap"] == [["c", "v"]]

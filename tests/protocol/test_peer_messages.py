"""Peer messages 5/6/7: the JS client's layout, the four payload encodings, refused input."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from disco.protocol.errors import ProtocolError
from disco.protocol.peer_messages import (
    F64_TAG,
    FIXED_POINT_TAG,
    FixedPointPayload,
    FloatPayload,
    decode_peer_message,
    encode_fixed_point_payload,
    encode_float_payload,
    encode_peer_message,
    pack_payload,
    peer_message_bytes,
)
from disco.protocol.types import MessageType
from disco.protocol.weights import NATIVE_TAG, decode_legacy, encode_legacy

TENSORS = [
    np.array([[0.5, -1.25, 3.0], [2.0, 0.0, -0.125]], dtype=np.float32),
    np.array([1e-3, -7.5], dtype=np.float32),
]
SHAPES = [(2, 3), (2,)]


def raw(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


@pytest.mark.parametrize("kind", [MessageType.WEIGHTS, MessageType.SHARES])
def test_weights_and_shares_messages_carry_legacy_weights_for_js(kind: MessageType) -> None:
    """`{type, peer, weights}` with weights the byte-integer array JS's isEncoded accepts."""
    packet = encode_peer_message(kind, 42, encode_float_payload(TENSORS, "legacy"))
    message = msgpack.unpackb(packet)
    assert list(message) == ["type", "peer", "weights"]
    assert message["type"] == int(kind) and message["peer"] == 42
    assert isinstance(message["weights"], list)
    assert all(isinstance(b, int) and 0 <= b <= 255 for b in message["weights"])
    decoded = decode_peer_message(packet)
    assert decoded.type == kind and decoded.peer == 42
    assert isinstance(decoded.payload, FloatPayload)
    for got, want in zip(decoded.payload.tensors, TENSORS, strict=True):
        np.testing.assert_array_equal(got, want)


def test_partial_sums_use_the_partials_field() -> None:
    packet = encode_peer_message(
        MessageType.PARTIAL_SUMS, 1, encode_float_payload(TENSORS, F64_TAG)
    )
    assert list(msgpack.unpackb(packet)) == ["type", "peer", "partials"]
    decoded = decode_peer_message(packet)
    assert decoded.type == MessageType.PARTIAL_SUMS
    assert isinstance(decoded.payload, FloatPayload)
    assert decoded.payload.shapes == SHAPES


def test_prepacked_payload_gives_the_same_bytes_as_packing_the_map() -> None:
    payload = encode_float_payload(TENSORS, "legacy")
    spliced = peer_message_bytes(MessageType.SHARES, 2**40, pack_payload(payload))
    assert spliced == raw({"type": 6, "peer": 2**40, "weights": payload})


def test_decodes_a_message_as_msgpack_lite_writes_it() -> None:
    """JS numbers: integral values as msgpack ints, others as float64; `peer` an int."""
    js_weights = list(raw([{"shape": [2], "data": [1, -0.5]}]))
    decoded = decode_peer_message(raw({"type": 5, "peer": 3, "weights": js_weights}))
    assert isinstance(decoded.payload, FloatPayload)
    np.testing.assert_array_equal(decoded.payload.tensors[0], np.array([1.0, -0.5], np.float32))


@pytest.mark.parametrize(("encoding", "dtype"), [(NATIVE_TAG, np.float32), (F64_TAG, np.float64)])
def test_native_float_encodings_round_trip(encoding: str, dtype: type) -> None:
    values = [np.array([[1 / 3, -2.0]], dtype=np.float64), np.array([5.0], dtype=np.float64)]
    packet = encode_peer_message(MessageType.SHARES, 9, encode_float_payload(values, encoding))
    decoded = decode_peer_message(packet)
    assert isinstance(decoded.payload, FloatPayload)
    assert decoded.payload.shapes == [(1, 2), (1,)]
    for got, want in zip(decoded.payload.tensors, values, strict=True):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want.astype(dtype))


def test_fixed_point_payload_round_trips() -> None:
    values = np.array([0, 1, 2**32 - 1, 2**31], dtype=np.uint32)
    payload = FixedPointPayload([(2, 2)], values, 16)
    packet = encode_peer_message(MessageType.PARTIAL_SUMS, 5, encode_fixed_point_payload(payload))
    decoded = decode_peer_message(packet)
    assert isinstance(decoded.payload, FixedPointPayload)
    assert decoded.payload.scale_bits == 16 and decoded.payload.shapes == [(2, 2)]
    assert decoded.payload.values.dtype == np.uint32
    np.testing.assert_array_equal(decoded.payload.values, values)


def test_unknown_float_encoding_and_type_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="unknown float encoding"):
        encode_float_payload(TENSORS, "f16")
    with pytest.raises(ValueError, match="not a peer-to-peer"):
        encode_peer_message(MessageType.PEER_ID, 1, [])


LEGACY = list(encode_legacy(TENSORS))


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ([5, 1, LEGACY], "must be a msgpack map"),
        ({"type": 4, "peer": 1, "weights": LEGACY}, "expected 5, 6 or 7"),
        ({"type": True, "peer": 1, "weights": LEGACY}, "expected 5, 6 or 7"),
        ({"peer": 1, "weights": LEGACY}, "expected 5, 6 or 7"),
        ({"type": 5, "weights": LEGACY}, "'peer' must be a peer id"),
        ({"type": 5, "peer": -1, "weights": LEGACY}, "'peer' must be a peer id"),
        ({"type": 5, "peer": "1", "weights": LEGACY}, "'peer' must be a peer id"),
        ({"type": 5, "peer": False, "weights": LEGACY}, "'peer' must be a peer id"),
        ({"type": 5, "peer": 1.5, "weights": LEGACY}, "'peer' must be a peer id"),
        ({"type": 7, "peer": 1, "weights": LEGACY}, "no 'partials' field"),
        ({"type": 6, "peer": 1, "weights": 3}, "must be an array or a map"),
        ({"type": 6, "peer": 1, "weights": [300, 1]}, "integers in 0..255"),
        ({"type": 6, "peer": 1, "weights": {"encoding": "f16"}}, "unknown peer payload"),
        (
            {"type": 6, "peer": 1, "weights": {"encoding": F64_TAG, "shapes": [[2]], "data": b"x"}},
            "holds 1 bytes, the shapes need 16",
        ),
        (
            {"type": 6, "peer": 1, "weights": {"encoding": F64_TAG, "shapes": [[-1]], "data": b""}},
            "shape 0",
        ),
        (
            {"type": 6, "peer": 1, "weights": {"encoding": F64_TAG, "shapes": "2", "data": b""}},
            "'shapes' must be an array",
        ),
        (
            {"type": 6, "peer": 1, "weights": {"encoding": F64_TAG, "shapes": [], "data": "x"}},
            "'data' must be msgpack bin",
        ),
        (
            {
                "type": 7,
                "peer": 1,
                "partials": {
                    "encoding": FIXED_POINT_TAG,
                    "scaleBits": 31,
                    "shapes": [],
                    "data": b"",
                },
            },
            "'scaleBits' must be in 0..30",
        ),
        (
            {
                "type": 7,
                "peer": 1,
                "partials": {
                    "encoding": FIXED_POINT_TAG,
                    "scaleBits": 8,
                    "shapes": [[3]],
                    "data": b"1234",
                },
            },
            "the shapes need 12",
        ),
    ],
)
def test_malformed_messages_are_refused(message: Any, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode_peer_message(raw(message))


def test_garbage_and_ext_types_are_refused() -> None:
    with pytest.raises(ProtocolError, match="not decodable"):
        decode_peer_message(b"\x85\xa4type")
    with pytest.raises(ProtocolError, match="ext type"):
        decode_peer_message(raw({"type": 5, "peer": 1, "weights": msgpack.ExtType(1, b"")}))


def test_integral_float_peer_ids_are_accepted() -> None:
    decoded = decode_peer_message(raw({"type": 5, "peer": 7.0, "weights": LEGACY}))
    assert decoded.peer == 7
    assert decode_legacy(bytes(LEGACY))[0].shape == (2, 3)

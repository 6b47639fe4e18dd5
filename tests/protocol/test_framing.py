"""Framing: one msgpack map with a known integer `type` per frame; everything else is refused."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disco.protocol import CloseCode, MessageType, ProtocolError, pack, unpack_message
from disco.protocol.framing import MAX_CONTAINERS, unpackb_untrusted

PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)

# A postWeightsToServer frame exactly as @epfml/discojs-node 2.1.1 sends it (msgpack-lite);
# how it was made is explained in tests/protocol/test_weights.py (JS_FRAME_HEX there too).
JS_POST_WEIGHTS_FRAME = bytes.fromhex(
    "83a47479706508a777656967687473dc0058cc93cc82cca57368617065cc920203cca464617461cc9600cccb"
    "3fccf8000000000000ccfecccb3fccb9cc99cc99cca0000000cccb3e601b2b20000000cccdccffcce0cc82cca5"
    "7368617065cc90cca464617461cc91cccbccc01d000000000000cc82cca57368617065cc920004cca464617461"
    "cc90a5726f756e6403"
)


def raw(obj: Any) -> bytes:
    """msgpack bytes of any object, bypassing `pack`'s Mapping type."""
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def refused(frame: bytes, max_size: int | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        unpack_message(frame, max_size)
    return info.value


@pytest.mark.parametrize("code", list(MessageType))
def test_every_type_code_round_trips(code: MessageType) -> None:
    message = {"type": int(code), "blob": b"\x00\xff", "text": "héllo", "n": [1, 2.5, None]}
    frame = pack(message)
    assert unpack_message(frame) == message


def test_pack_writes_bytes_as_bin_and_str_as_str() -> None:
    frame = pack({"type": 0, "b": b"ab", "s": "ab"})
    assert b"\xc4\x02ab" in frame  # bin8
    assert b"\xa2ab" in frame  # fixstr


def test_real_js_client_frame_decodes() -> None:
    message = unpack_message(JS_POST_WEIGHTS_FRAME)
    assert message["type"] == MessageType.POST_WEIGHTS_TO_SERVER
    assert message["round"] == 3
    assert isinstance(message["weights"], list)
    assert all(type(b) is int and 0 <= b <= 255 for b in message["weights"])


def test_size_limit_gives_close_code_1009() -> None:
    frame = pack({"type": 0, "pad": "x" * 100})
    assert unpack_message(frame, max_size=len(frame)) == {"type": 0, "pad": "x" * 100}
    error = refused(frame, max_size=len(frame) - 1)
    assert error.close_code == CloseCode.MESSAGE_TOO_BIG
    assert f"{len(frame)} bytes" in error.reason
    assert str(len(frame) - 1) in error.reason


MALFORMED: list[tuple[str, bytes, str]] = [
    ("empty", b"", "not decodable msgpack"),
    ("truncated map", b"\x81\xa4type", "not decodable msgpack"),
    ("truncated frame", JS_POST_WEIGHTS_FRAME[:-1], "not decodable msgpack"),
    ("trailing garbage", raw({"type": 0}) + b"\x00", "trailing bytes"),
    ("two messages", raw({"type": 0}) * 2, "trailing bytes"),
    ("reserved byte", b"\xc1", "reserved byte"),
    ("array", raw([0]), "must be a msgpack map, got array"),
    ("int", raw(0), "must be a msgpack map, got int"),
    ("nil", raw(None), "must be a msgpack map, got nil"),
    ("str", raw("type"), "must be a msgpack map, got str"),
    ("bin", raw(b"\x80"), "must be a msgpack map, got bin"),
    ("no type", raw({"round": 1}), "no integer 'type' field"),
    ("type nil", raw({"type": None}), "no integer 'type' field"),
    ("type bool", raw({"type": True}), "no integer 'type' field"),
    ("type float", raw({"type": 8.0}), "no integer 'type' field"),
    ("type str", raw({"type": "8"}), "no integer 'type' field"),
    ("type bin key", raw({b"type": 0}), "keys must be strings, got bin"),
    ("int key", raw({"type": 0, 1: 2}), "keys must be strings, got int"),
    ("unknown type", raw({"type": 16}), "unknown message type 16"),
    ("negative type", raw({"type": -1}), "unknown message type -1"),
    ("huge type", raw({"type": 2**64 - 1}), f"unknown message type {2**64 - 1}"),
    ("invalid utf-8", b"\x82\xa4type\x00\xa1x\xa2\xff\xfe", "not valid UTF-8"),
    ("ext type", b"\x82\xa4type\x00\xa1x\xd4\x05\x00", "ext type 5"),
    ("bad timestamp", b"\x82\xa4type\x00\xa1x\xd4\xff\x00", "not decodable msgpack"),
    ("map as key", b"\x82\xa4type\x00\x80\x00", "not decodable msgpack"),
    ("array as key", b"\x82\xa4type\x00\x90\x00", "not decodable msgpack"),
    ("deep nesting", b"\x81\xa1x" + b"\x91" * 5000 + b"\xc0", "nests msgpack containers"),
    ("huge array header", b"\x81\xa1x\xdd\xff\xff\xff\xff", "not decodable msgpack"),
    ("huge str header", b"\x81\xa1x\xdb\xff\xff\xff\xff", "not decodable msgpack"),
]


@pytest.mark.parametrize(
    ("frame", "reason"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_frames_give_1007_with_a_reason(frame: bytes, reason: str) -> None:
    error = refused(frame)
    assert error.close_code == CloseCode.INVALID_DATA
    assert reason in error.reason
    assert str(error) == error.reason


def test_msgpack_timestamps_decode_without_error_and_repack() -> None:
    frame = b"\x82\xa4type\x00\xa1t\xd6\xff\x00\x00\x00\x01"
    message = unpack_message(frame)
    assert message["t"] == msgpack.Timestamp(seconds=1)
    assert pack(message) == frame


def test_container_budget_bounds_memory_of_empty_containers() -> None:
    n = MAX_CONTAINERS + 1
    frame = b"\x82\xa4type\x00\xa1x\xdd" + n.to_bytes(4, "big") + b"\x80" * n
    error = refused(frame)
    assert f"more than {MAX_CONTAINERS} msgpack maps and arrays" in error.reason
    inner = MAX_CONTAINERS - 2  # + the outer array + the top-level map = exactly the budget
    ok = b"\x82\xa4type\x00\xa1x\xdd" + inner.to_bytes(4, "big") + b"\x90" * inner
    assert len(unpack_message(ok)["x"]) == inner


def test_unpackb_untrusted_names_the_payload_and_honours_a_budget() -> None:
    with pytest.raises(ProtocolError, match=r"^legacy weights has trailing bytes"):
        unpackb_untrusted(b"\x90\x90", "legacy weights")
    with pytest.raises(ProtocolError, match="more than 2 msgpack maps"):
        unpackb_untrusted(raw([[], []]), "payload", max_containers=2)
    assert unpackb_untrusted(bytearray(raw([[], {}])), "payload", max_containers=3) == [[], {}]


@PROPERTY
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_protocol_error(frame: bytes) -> None:
    try:
        message = unpack_message(frame, max_size=200)
    except ProtocolError as error:
        assert error.close_code in (CloseCode.INVALID_DATA, CloseCode.MESSAGE_TOO_BIG)
        assert error.reason
    else:
        assert isinstance(message, dict)
        assert type(message["type"]) is int
        assert message["type"] in set(MessageType)


MSGPACK_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


@PROPERTY
@given(
    st.dictionaries(st.sampled_from(["type", "round", "weights", "peer", "x"]), MSGPACK_VALUES),
    st.integers(min_value=0, max_value=40),
    st.binary(min_size=1, max_size=3),
)
def test_valid_or_mutated_messages_decode_or_raise_protocol_error(
    message: dict[str, Any], cut: int, splice: bytes
) -> None:
    frame = pack(message)
    has_valid_type = type(message.get("type")) is int and message["type"] in set(MessageType)
    if has_valid_type:
        assert unpack_message(frame) == message
    else:
        with pytest.raises(ProtocolError):
            unpack_message(frame)
    mutated = frame[:cut] + splice + frame[cut + len(splice) :]
    try:
        unpack_message(mutated)
    except ProtocolError as error:
        assert error.close_code == CloseCode.INVALID_DATA

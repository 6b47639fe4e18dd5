"""The vectorized legacy codec against the generic (reference) msgpack decoding, by hypothesis.

On random valid payloads (numbers in every msgpack encoding a client may use, shapes in any
integer width) and on random damage to them (truncation, changed bytes and markers, wrong
lengths, inserted garbage), the codec and the reference accept and refuse the same inputs and
agree on the result. Scan blocks are shrunk so that block boundaries fall everywhere, and the
thresholds that choose between numpy runs and msgpack's decoder for the numbers are varied so
that every path decodes every kind of data array.
"""

from __future__ import annotations

import struct
from typing import Any
from unittest.mock import patch

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disco.protocol import legacy
from disco.protocol.errors import ProtocolError
from disco.protocol.framing import pack, unpack_message
from disco.protocol.messages import latest_round_reply, parse_federated
from disco.protocol.weights import (
    WeightEncoding,
    Weights,
    decode_legacy,
    decode_legacy_reference,
)
from disco.server.federated.handler import decode_frame
from disco.server.federated.hub import _latest_frame
from disco.weights import flatten

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
blocks = st.sampled_from([3, 8, 64, 1 << 20])
paths = st.fixed_dictionaries(
    {
        "SMALL_MIXED": st.sampled_from([0, 2, 4096]),
        "RUNS_PER_NUMBERS": st.sampled_from([1, 4, 1024]),
    }
)
"""SMALL_MIXED 0 sends every mixed array run by run; RUNS_PER_NUMBERS 1 hands short runs to
msgpack's decoder after the first few."""


# --------------------------------------------------------------------------- msgpack by hand


def int_encodings(value: int) -> list[bytes]:
    """Every msgpack encoding of an integer (canonical or not)."""
    out = []
    if 0 <= value < 0x80:
        out.append(bytes([value]))
    if -32 <= value < 0:
        out.append(struct.pack(">b", value))
    for code, fmt, low, high in (
        (0xCC, ">B", 0, 2**8), (0xCD, ">H", 0, 2**16), (0xCE, ">I", 0, 2**32),
        (0xCF, ">Q", 0, 2**64), (0xD0, ">b", -(2**7), 2**7), (0xD1, ">h", -(2**15), 2**15),
        (0xD2, ">i", -(2**31), 2**31), (0xD3, ">q", -(2**63), 2**63),
    ):  # fmt: skip
        if low <= value < high:
            out.append(bytes([code]) + struct.pack(fmt, value))
    return out


@st.composite
def numbers(draw: st.DrawFn) -> bytes:
    """One msgpack number as a JS or Python client may write it (rarely a boolean)."""
    kind = draw(st.sampled_from(["f64"] * 6 + ["f32", "int", "int", "bigint", "bool"]))
    if kind == "f64":
        return b"\xcb" + struct.pack(">d", draw(st.floats(width=64)))
    if kind == "f32":
        return b"\xca" + struct.pack(">f", draw(st.floats(width=32)))
    if kind == "bool":
        return draw(st.sampled_from([b"\xc2", b"\xc3"]))
    value = draw(
        st.integers(-(2**63), 2**64 - 1) if kind == "bigint" else st.integers(-300, 70000)
    )
    return draw(st.sampled_from(int_encodings(value)))


@st.composite
def tensors(draw: st.DrawFn) -> bytes:
    """`{shape, data}` with the data matching the shape (keys in either order)."""
    shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=3))
    size = int(np.prod(shape, dtype=np.int64))
    if draw(st.integers(0, 9)) == 0:  # one long run of a single encoding
        size_values = [draw(numbers())] * size
    else:
        size_values = draw(st.lists(numbers(), min_size=size, max_size=size))
    shape_bytes = legacy.pack_array_header(len(shape)) + b"".join(
        draw(st.sampled_from(int_encodings(d))) for d in shape
    )
    data_bytes = legacy.pack_array_header(len(size_values)) + b"".join(size_values)
    entries = [b"\xa5shape" + shape_bytes, b"\xa4data" + data_bytes]
    if draw(st.booleans()):
        entries.reverse()
    return legacy.pack_map_header(2) + b"".join(entries)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(tensors(), min_size=0, max_size=4))
    return legacy.pack_array_header(len(items)) + b"".join(items)


garbage = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=4)
    | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                               max_size=3),
    max_leaves=8,
)  # fmt: skip


@st.composite
def damaged(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid payload with one kind of damage (or none)."""
    raw = bytearray(draw(valid))
    how = draw(st.sampled_from(["none", "truncate", "byte", "marker", "insert", "delete",
                                "garbage", "append"]))  # fmt: skip
    if how == "truncate" and raw:
        return bytes(raw[: draw(st.integers(0, len(raw) - 1))])
    if how in ("byte", "marker") and raw:
        at = draw(st.integers(0, len(raw) - 1))
        markers = [0x90, 0x93, 0xDC, 0x80, 0x82, 0xCB, 0xCA, 0xCC, 0xC0, 0xC1, 0xC3, 0xA5, 0xD9]
        raw[at] = draw(st.sampled_from(markers) if how == "marker" else st.integers(0, 255))
        return bytes(raw)
    if how == "insert":
        at = draw(st.integers(0, len(raw)))
        return bytes(raw[:at] + draw(st.binary(min_size=1, max_size=3)) + raw[at:])
    if how == "delete" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        return bytes(raw[:at] + raw[at + 1 :])
    if how == "garbage":
        at = draw(st.integers(0, len(raw)))
        return bytes(raw[:at] + msgpack.packb(draw(garbage)) + raw[at:])
    if how == "append":
        return bytes(raw) + msgpack.packb(draw(garbage))
    return bytes(raw)


# --------------------------------------------------------------------------- comparisons


def outcome(decode: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", decode(*args)
    except ProtocolError as error:
        assert error.reason, "a refusal must say why"
        return "refused", error.reason


def same_weights(a: Weights, b: Weights) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype == np.float32 and x.shape == y.shape
        and np.array_equal(x, y, equal_nan=True)
        for x, y in zip(a, b, strict=True)
    )  # fmt: skip


def assert_agree(raw: bytes) -> None:
    fast, reference = outcome(decode_legacy, raw), outcome(decode_legacy_reference, raw)
    assert fast[0] == reference[0], (raw.hex(), fast, reference)
    if fast[0] == "ok":
        assert same_weights(fast[1], reference[1])


@SETTINGS
@given(payloads(), blocks, paths)
def test_valid_payloads_decode_as_the_reference_does(
    raw: bytes, block: int, path: dict[str, int]
) -> None:
    with patch.object(legacy, "SCAN_BLOCK", block), patch.multiple(legacy, **path):
        assert_agree(raw)


@SETTINGS
@given(damaged(payloads()), blocks, paths)
def test_damaged_payloads_are_refused_alike(raw: bytes, block: int, path: dict[str, int]) -> None:
    with patch.object(legacy, "SCAN_BLOCK", block), patch.multiple(legacy, **path):
        assert_agree(raw)


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "truncated"),
        (b"\x91\x82\xa5shape\x91\x03\xa4data\x93\xcb", "truncated"),
        (b"\x91\x82\xa5shape\x91\x02\xa4data\x93\x01\x02\x03", "needs 2 values, data has 3"),
        (b"\x91\x82\xa5shape\x91\x01\xa4data\x91\x01\x00", "trailing bytes"),
        (b"\x91\x07", "expected a {shape, data} map"),
        (b"\x81\xa1a\x01", "must decode to an array"),
        (b"\x91\x82\xa5shape\x91\x01\xa4data\xa1x", "data must be an array, got str"),
        (b"\x91\x82\xa5shape\x91\xff\xa4data\x91\x01", "must hold integers"),
        (b"\xdd\xff\xff\xff\xff", "truncated"),
    ],
)
def test_refusals_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        decode_legacy(raw)
    assert reason in refused.value.reason
    with pytest.raises(ProtocolError):
        decode_legacy_reference(raw)


def test_float64_tensors_come_out_as_views_of_one_buffer() -> None:
    """msgpack-lite's payloads (all float64): the server flattens them without a copy."""
    weights = [np.arange(12, dtype=np.float32).reshape(3, 4) / 7, np.ones(5, np.float32) / 3]
    raw = legacy.encode_payload(weights)
    decoded = decode_legacy(raw)
    assert same_weights(decoded, decode_legacy_reference(raw))
    flat = flatten(decoded)
    assert np.shares_memory(flat, decoded[0]) and np.shares_memory(flat, decoded[1])
    mixed = decode_legacy(msgpack.packb([{"shape": [2], "data": [0, 0.5]},
                                         {"shape": [1], "data": [0.25]}]))  # fmt: skip
    assert same_weights(mixed, [np.array([0, 0.5], np.float32), np.array([0.25], np.float32)])


# --------------------------------------------------------------------------- the byte array


@st.composite
def byte_arrays(draw: st.DrawFn) -> bytes:
    """An msgpack array of byte-integers, mostly canonical, sometimes not (uint16, true)."""
    values = draw(st.lists(st.sampled_from([0, 1, 0x7F, 0x80, 0xCC, 0xCD, 0xFF])
                           | st.integers(0, 255), max_size=300))  # fmt: skip
    cells = []
    for value in values:
        odd = draw(st.integers(0, 40)) == 0
        cells.append(draw(st.sampled_from(int_encodings(value))) if odd else msgpack.packb(value))
    return legacy.pack_array_header(len(values)) + b"".join(cells)


@SETTINGS
@given(st.binary(max_size=400), blocks)
def test_byte_array_encoding_is_msgpacks(payload: bytes, block: int) -> None:
    with patch.object(legacy, "SCAN_BLOCK", block):
        encoded = legacy.encode_byte_array(payload)
        assert encoded == msgpack.packb(list(payload))
        decoded, end = legacy.decode_byte_array(np.frombuffer(encoded + b"\xa1x", np.uint8), 0)
        assert decoded.tobytes() == payload and end == len(encoded)


@SETTINGS
@given(st.one_of(byte_arrays(), damaged(byte_arrays())), st.integers(0, 2**31 - 1), blocks)
def test_frames_decode_as_the_reference_does(array: bytes, round: int, block: int) -> None:
    """A postWeightsToServer frame around the array, padded past the fast path's threshold."""
    frame = post_frame(array, round)
    with patch.object(legacy, "SCAN_BLOCK", block):
        fast = outcome(decode_frame, frame, 10**9)
        # The WebSocket layer hands big frames over as a bytearray: decoded alike.
        as_bytearray = outcome(decode_frame, bytearray(frame), 10**9)
    reference = outcome(lambda f: parse_federated(unpack_message(f)), frame)
    assert fast[0] == reference[0], (frame.hex(), fast, reference)
    assert as_bytearray[0] == fast[0]
    if fast[0] == "ok":
        assert fast[1].round == reference[1].round
        assert same_weights(fast[1].weights, reference[1].weights)


def post_frame(array: bytes, round: int, tail: bytes = b"") -> bytes:
    """A postWeightsToServer frame around `array`, padded past the fast path's threshold;
    `tail`: more map entries after the padding (counted in the map header)."""
    entries = 4 + (1 if tail else 0)
    return (
        legacy.pack_map_header(entries) + b"\xa4type\x08" + b"\xa7weights" + array + b"\xa5round"
        + msgpack.packb(round) + b"\xa3pad" + msgpack.packb(b"\x00" * legacy.FAST_FRAME_BYTES)
        + tail
    )  # fmt: skip


@SETTINGS
@given(st.one_of(byte_arrays(), damaged(byte_arrays())), blocks)
def test_a_frame_decoded_in_place_gives_the_copys_bytes_or_stays_whole(
    array: bytes, block: int
) -> None:
    """In place (the server's big frames), the weights come out as the copying decode gives
    them, as a view of the frame; whenever the fast path gives the frame up (to the reference
    decoder) or refuses it, the frame is left exactly as it was."""
    frame = post_frame(array, 7)
    with patch.object(legacy, "SCAN_BLOCK", block):
        copied = outcome(legacy.unpack_frame, frame)
        buffer = bytearray(frame)
        in_place = outcome(legacy.unpack_frame, buffer, None, True)
    assert in_place[0] == copied[0]
    if in_place[0] == "ok" and isinstance(in_place[1]["weights"], legacy.ByteArray):
        payload = in_place[1]["weights"].data
        assert payload.size == 0 or np.shares_memory(payload, np.frombuffer(buffer, np.uint8))
        assert isinstance(copied[1]["weights"], legacy.ByteArray)
        assert payload.tobytes() == copied[1]["weights"].data.tobytes()
        assert in_place[1]["round"] == 7
        return
    assert bytes(buffer) == frame
    if in_place[0] == "refused":
        assert in_place == copied
        return
    # The reference decoder's message: it holds the same weights, or is refused alike.
    parsed, expected = outcome(parse_federated, in_place[1]), outcome(parse_federated, copied[1])
    assert parsed[0] == expected[0]
    if parsed[0] == "ok":
        assert same_weights(parsed[1].weights, expected[1].weights)


def canonical_elements(values: bytes) -> bytes:
    return msgpack.packb(list(values))[len(legacy.pack_array_header(len(values))) :]


@pytest.mark.parametrize("block", [4, 5, 8])
@pytest.mark.parametrize(
    "odd",
    [b"\xcc\x05", b"\xcd\x00\x80", b"\xc3", b"\xe0"],
    ids=["uint8 below 128", "uint16", "true", "negative fixint"],
)
@pytest.mark.parametrize("at", [0, 3, 4, 5, 9, 40])
def test_an_odd_element_after_compacted_blocks_leaves_the_frame_whole(
    odd: bytes, at: int, block: int
) -> None:
    """Blocks before the odd element (at every offset against the block boundaries, a marker's
    value opening a block included) were compacted already: they are written back."""
    values = bytes([0x80, 0x01, 0xCC, 0xFF] * 12)
    array = (
        legacy.pack_array_header(len(values) + 1)
        + canonical_elements(values[:at]) + odd + canonical_elements(values[at:])
    )  # fmt: skip
    frame = post_frame(array, 1)
    buffer = bytearray(frame)
    with patch.object(legacy, "SCAN_BLOCK", block):
        message = legacy.unpack_frame(buffer, None, True)
    assert bytes(buffer) == frame
    assert message == unpack_message(frame)  # the reference decoder's message


@pytest.mark.parametrize(
    "tail",
    [msgpack.packb(5) + b"\x01", b"\xa7weights" + msgpack.packb([1, 2])],
    ids=["a key that is not a string", "a repeated weights key"],
)
def test_a_frame_found_unfit_after_its_weights_were_decoded_is_restored(tail: bytes) -> None:
    values = bytes(range(256)) * 3
    frame = post_frame(legacy.encode_byte_array(values), 2, tail)
    buffer = bytearray(frame)
    with patch.object(legacy, "SCAN_BLOCK", 64):
        outcome(legacy.unpack_frame, buffer, None, True)
    assert bytes(buffer) == frame


def test_a_truncated_array_decoded_in_place_is_refused_and_left_whole() -> None:
    values = bytes(range(256)) * 40
    frame = post_frame(legacy.encode_byte_array(values), 3)
    cut = bytearray(frame[: len(frame) // 2])
    with patch.object(legacy, "SCAN_BLOCK", 100), pytest.raises(ProtocolError) as refused:
        legacy.unpack_frame(cut, None, True)
    assert "truncated" in refused.value.reason
    assert bytes(cut) == frame[: len(frame) // 2]


def test_only_a_consumed_bytearray_is_written() -> None:
    frame = post_frame(legacy.encode_byte_array(bytes(range(256)) * 20), 4)
    kept = bytearray(frame)
    legacy.unpack_frame(kept)  # not consumed: decoded into a new buffer
    assert bytes(kept) == frame
    message = legacy.unpack_frame(frame, None, True)  # bytes cannot be written
    assert not np.shares_memory(message["weights"].data, np.frombuffer(frame, np.uint8))


def test_a_weights_field_that_is_not_a_byte_array_is_left_to_the_reference() -> None:
    frame = pack({"type": 8, "weights": {"encoding": "f32le", "shapes": [[1]], "data": b"\0" * 4},
                  "round": 0, "pad": b"\0" * legacy.FAST_FRAME_BYTES})  # fmt: skip
    assert legacy.unpack_frame(frame) == unpack_message(frame)


# --------------------------------------------------------------------------- replies


@SETTINGS
@given(
    st.lists(
        st.lists(st.integers(0, 3), max_size=3).flatmap(
            lambda shape: st.lists(st.floats(width=32), min_size=int(np.prod(shape)),
                                   max_size=int(np.prod(shape))).map(
                lambda values: np.asarray(values, np.float32).reshape(shape))
        ),
        max_size=3,
    ),
    st.integers(0, 2**31 - 1),
    blocks,
)  # fmt: skip
def test_legacy_reply_frames_are_byte_identical(weights: Weights, round: int, block: int) -> None:
    """The reply holds the model's numbers as msgpack float32 (what msgpack writes with
    `use_single_float`); decoded, they are the numbers float64 would carry."""
    generic = [
        {"shape": list(w.shape), "data": w.astype(np.float64).ravel().tolist()} for w in weights
    ]
    payload = msgpack.packb(generic, use_single_float=True)
    expected = pack(latest_round_reply(round, list(payload)))
    with patch.object(legacy, "SCAN_BLOCK", block):
        frame = _latest_frame(round, weights, WeightEncoding.LEGACY)
    assert frame == expected
    decoded = decode_legacy(bytes(unpack_message(frame)["weights"]))
    assert same_weights(decoded, weights)


@SETTINGS
@given(
    st.lists(st.lists(st.floats(width=64), max_size=40), max_size=3),
    st.booleans(),
    blocks,
)
def test_payload_encoding_is_msgpacks(tensors: list[list[float]], single: bool, block: int) -> None:
    """float64 and float32 payloads, as msgpack writes them (float32: numbers in its range,
    as the server's float32 model has; msgpack refuses others)."""
    if single:
        with np.errstate(over="ignore"):
            tensors = [np.asarray(v, np.float32).astype(np.float64).tolist() for v in tensors]
    weights = [np.asarray(values, np.float64) for values in tensors]
    generic = [{"shape": [len(values)], "data": values} for values in tensors]
    with patch.object(legacy, "SCAN_BLOCK", block):
        encoded = legacy.encode_payload(weights, single=single)
    assert encoded == msgpack.packb(generic, use_single_float=single)


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.lists(st.floats(width=64) | st.sampled_from([0.0, -0.0, 1e39, -1e39, 5e-324]),
                     max_size=300),
            st.booleans(),
        ),
        max_size=4,
    ),
    blocks,
)  # fmt: skip
def test_the_reply_weights_are_the_float32_payloads_byte_integers(
    tensors: list[tuple[list[float], bool]], block: int
) -> None:
    """`pack_legacy_weights` writes the numbers' byte-integers in one pass: the same bytes as
    encoding the float32 payload and then its bytes, for float32 and float64 tensors (beyond
    float32's range: Inf, as msgpack), empty ones, none at all, and any block size."""
    with np.errstate(over="ignore"):
        weights = [np.asarray(values).astype(np.float32 if single else np.float64)
                   for values, single in tensors]  # fmt: skip
    with patch.object(legacy, "SCAN_BLOCK", block):
        packed = legacy.pack_legacy_weights(weights)
        expected = legacy.encode_byte_array(legacy.encode_payload(weights, single=True))
    assert packed == expected
    assert msgpack.unpackb(packed) == list(legacy.encode_payload(weights, single=True))

"""Weight encodings: the 2.1.1 JS client's legacy one and the native f32le one.

JS_LEGACY_HEX / JS_FRAME_HEX were produced once by the real client's own encoder, by running
this script with node in tests/interop/node (msgpack-lite 0.1.26, @epfml/discojs-node 2.1.1):

    const { serialization, WeightsContainer, tf } = require('@epfml/discojs-node');
    const msgpack = require('msgpack-lite');
    (async () => {
      const w = new WeightsContainer([
        tf.tensor([[0, 1.5, -2], [0.1, 3e-8, 65504]], [2, 3]),
        tf.tensor(-7.25),
        tf.tensor([], [0, 4]),
      ]);
      const encoded = await serialization.weights.encode(w);   // array of byte-integers
      const frame = msgpack.encode({ type: 8, weights: encoded, round: 3 });
      console.log(Buffer.from(encoded).toString('hex'));
      console.log(frame.toString('hex'));
    })();

It shows what msgpack-lite really writes: integral values as positive/negative fixints and
uint16 (0, -2, 65504), the others as float64 (0.1 is the float32 0.1 widened to a double).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from disco.protocol import (
    CloseCode,
    ProtocolError,
    WeightEncoding,
    decode_legacy,
    decode_native,
    decode_weights,
    encode_legacy,
    encode_native,
    encode_weights,
    legacy,
)
from disco.protocol.weights import MAX_DIM, MAX_NDIM
from disco.weights import (
    WeightsError,
    check_finite,
    check_shapes,
    num_parameters,
    shapes_of,
    weights_nbytes,
)

PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)

JS_LEGACY_HEX = (
    "9382a57368617065920203a4646174619600cb3ff8000000000000fecb3fb99999a0000000cb3e601b2b2000"
    "0000cdffe082a5736861706590a46461746191cbc01d00000000000082a57368617065920004a46461746190"
)
JS_EXPECTED = [
    np.array([[0, 1.5, -2], [0.1, 3e-8, 65504]], dtype=np.float32),
    np.array(-7.25, dtype=np.float32),
    np.zeros((0, 4), dtype=np.float32),
]

NODE_DIR = Path(__file__).resolve().parents[1] / "interop" / "node"


def legacy_payload(obj: Any) -> list[int]:
    """Byte-integers of an arbitrary msgpack object, to build malformed legacy payloads."""
    return list(msgpack.packb(obj, use_bin_type=True))


def assert_same_weights(got: list[npt.NDArray[Any]], want: list[npt.NDArray[Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.float32
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# The real client's bytes


def test_decodes_bytes_written_by_the_real_js_client() -> None:
    payload = list(bytes.fromhex(JS_LEGACY_HEX))
    weights, encoding = decode_weights(payload)
    assert encoding is WeightEncoding.LEGACY
    assert_same_weights(weights, JS_EXPECTED)


def test_decodes_legacy_given_as_bin_bytes() -> None:
    weights, encoding = decode_weights(bytes.fromhex(JS_LEGACY_HEX))
    assert encoding is WeightEncoding.LEGACY
    assert_same_weights(weights, JS_EXPECTED)
    assert_same_weights(decode_legacy(bytearray.fromhex(JS_LEGACY_HEX)), JS_EXPECTED)


def test_our_legacy_encoding_has_the_js_structure() -> None:
    payload = encode_legacy(JS_EXPECTED)
    assert all(type(b) is int and 0 <= b <= 255 for b in payload)
    decoded = msgpack.unpackb(bytes(payload))
    assert [entry["shape"] for entry in decoded] == [[2, 3], [], [0, 4]]
    assert decoded[1]["data"] == [-7.25]
    assert all(isinstance(v, float) for v in decoded[0]["data"])  # float64, like msgpack-lite


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("reply", [False, True], ids=["float64", "server-reply-float32"])
def test_real_js_client_decodes_our_legacy_encoding(reply: bool) -> None:
    """Both our float64 payload and the server's latestServerRound payload (float32 numbers,
    `legacy.pack_legacy_weights`) decode in the real client to the same numbers."""
    if not (NODE_DIR / "node_modules" / "@epfml" / "discojs-node").is_dir():
        pytest.skip("tests/interop/node has no node_modules")
    weights = [np.array([[1.0, -0.5], [1e-3, 3.0]], np.float32), np.array(2.5, np.float32)]
    if reply:
        payload = msgpack.unpackb(legacy.pack_legacy_weights(weights))
    else:
        payload = encode_legacy(weights)
    script = """
      const { serialization } = require('@epfml/discojs-node');
      const encoded = JSON.parse(require('fs').readFileSync(0, 'utf8'));
      if (!serialization.weights.isEncoded(encoded)) throw new Error('not isEncoded');
      const w = serialization.weights.decode(encoded);
      const out = w.weights.map((t) => ({ shape: t.shape, data: Array.from(t.dataSync()) }));
      console.log(JSON.stringify(out));
    """
    result = subprocess.run(
        ["node", "-e", script],
        cwd=NODE_DIR,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    tensors = json.loads(result.stdout.strip().splitlines()[-1])
    assert tensors == [
        {"shape": [2, 2], "data": [1.0, -0.5, float(np.float32(1e-3)), 3.0]},
        {"shape": [], "data": [2.5]},
    ]


# ---------------------------------------------------------------------------------------------
# Round trips

SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
TENSORS = hnp.arrays(np.float32, SHAPES, elements=st.floats(width=32))
FINITE_TENSORS = hnp.arrays(
    np.float32, SHAPES, elements=st.floats(width=32, allow_nan=False, allow_infinity=False)
)


@PROPERTY
@given(st.lists(TENSORS, max_size=5))
def test_native_round_trip_is_bit_exact(weights: list[npt.NDArray[np.float32]]) -> None:
    payload = encode_native(weights)
    assert payload["encoding"] == "f32le"
    assert payload["shapes"] == [list(shape) for shape in shapes_of(weights)]
    assert isinstance(payload["data"], bytes)
    assert len(payload["data"]) == weights_nbytes(weights)
    packed = msgpack.unpackb(msgpack.packb(payload, use_bin_type=True))  # survives the wire
    decoded, encoding = decode_weights(packed)
    assert encoding is WeightEncoding.NATIVE
    assert len(decoded) == len(weights)
    for got, want in zip(decoded, weights, strict=True):
        assert got.dtype == np.float32
        assert got.shape == want.shape
        assert got.tobytes() == want.tobytes()


@PROPERTY
@given(st.lists(TENSORS, max_size=5))
def test_legacy_round_trip_keeps_every_float32(weights: list[npt.NDArray[np.float32]]) -> None:
    payload = encode_weights(weights, WeightEncoding.LEGACY)
    decoded, encoding = decode_weights(payload)
    assert encoding is WeightEncoding.LEGACY
    assert_same_weights(decoded, weights)  # assert_array_equal treats NaN == NaN


@PROPERTY
@given(st.lists(FINITE_TENSORS, max_size=5))
def test_legacy_accepts_msgpack_lite_style_integers(
    weights: list[npt.NDArray[np.float32]],
) -> None:
    """msgpack-lite writes values equal to their int32 truncation as ints: mimic that."""

    def lite(v: float) -> int | float:
        return int(v) if v.is_integer() and -(2**31) <= v < 2**31 else v

    entries = [
        {"shape": list(w.shape), "data": [lite(v) for v in w.ravel().tolist()]} for w in weights
    ]
    assert_same_weights(decode_legacy(legacy_payload(entries)), weights)


def test_legacy_accepts_any_msgpack_integer() -> None:
    (tensor,) = decode_legacy(legacy_payload([{"shape": [3], "data": [-(2**63), 2**64 - 1, 7]}]))
    assert tensor.tolist() == [-(2.0**63), 2.0**64, 7.0]


@PROPERTY
@given(
    st.lists(FINITE_TENSORS, max_size=4),
    st.sampled_from([WeightEncoding.LEGACY, WeightEncoding.NATIVE]),
)
def test_check_helpers_accept_what_was_encoded(
    weights: list[npt.NDArray[np.float32]], encoding: WeightEncoding
) -> None:
    decoded, _ = decode_weights(encode_weights(weights, encoding))
    check_finite(decoded)
    check_shapes(decoded, shapes_of(weights))
    assert num_parameters(decoded) == sum(w.size for w in weights)


def test_native_decoding_is_zero_copy() -> None:
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array(7.0, np.float32)]
    payload = encode_native(weights)
    buffer = bytearray(payload["data"])
    decoded = decode_native({**payload, "data": buffer})
    buffer[0:4] = np.float32(42.0).tobytes()
    buffer[24:28] = np.float32(-1.0).tobytes()
    assert decoded[0][0, 0] == 42.0
    assert decoded[1] == -1.0
    read_only = decode_native(payload)
    assert not read_only[0].flags.writeable


def test_native_encodes_little_endian_float32_in_tensor_order() -> None:
    weights = [np.array([1.0, 2.0], np.float64), np.array([[3]], np.int64)]
    payload = encode_native(weights)
    assert payload["shapes"] == [[2], [1, 1]]
    assert payload["data"] == np.array([1, 2, 3], dtype="<f4").tobytes()
    assert encode_native([]) == {"encoding": "f32le", "shapes": [], "data": b""}


def test_encoding_out_of_float32_range_gives_inf_without_warnings() -> None:
    big = [np.array([1e300, -1e300])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        native, _ = decode_weights(encode_native(big))
        legacy, _ = decode_weights(encode_legacy(big))
    for decoded in (native, legacy):
        assert decoded[0].tolist() == [math.inf, -math.inf]
        with pytest.raises(WeightsError, match="weights hold NaN or Inf"):
            check_finite(decoded)


def test_a_million_parameters_round_trip_both_ways() -> None:
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((1000, 999), dtype=np.float32), np.ones(1000, np.float32)]
    for encoding in WeightEncoding:
        decoded, got = decode_weights(encode_weights(weights, encoding))
        assert got is encoding
        assert_same_weights(decoded, weights)


# ---------------------------------------------------------------------------------------------
# Malformed input

MALFORMED_LEGACY: list[tuple[str, Any, str]] = [
    ("byte over 255", [0x90, 256], "integers in 0..255"),
    ("negative byte", [-1], "integers in 0..255"),
    ("float byte", [144.0], "integers in 0..255"),
    ("str byte", ["a"], "integers in 0..255"),
    ("nil byte", [None], "integers in 0..255"),
    ("nested byte", [[0x90]], "integers in 0..255"),
    ("empty payload", [], "not decodable msgpack"),
    ("truncated", list(bytes.fromhex(JS_LEGACY_HEX))[:-3], "not decodable msgpack"),
    ("trailing", [*bytes.fromhex(JS_LEGACY_HEX), 0], "trailing bytes"),
    ("reserved byte", [0xC1], "reserved byte"),
    ("ext", [0x91, 0xD4, 0x01, 0x00], "ext type 1"),
    ("top-level map", legacy_payload({"shape": [1], "data": [1]}), "got map"),
    ("top-level int", legacy_payload(3), "got int"),
    ("entry not a map", legacy_payload([[1, 2]]), "weight tensor 0: expected a {shape, data} map"),
    ("missing data", legacy_payload([{"shape": [1]}]), "needs both 'shape' and 'data'"),
    ("missing shape", legacy_payload([{"data": [1]}]), "needs both 'shape' and 'data'"),
    (
        "shape not array",
        legacy_payload([{"shape": 3, "data": [1, 2, 3]}]),
        "shape must be an array",
    ),
    ("negative dim", legacy_payload([{"shape": [-1], "data": []}]), "must hold integers"),
    ("float dim", legacy_payload([{"shape": [2.0], "data": [1, 2]}]), "must hold integers"),
    ("bool dim", legacy_payload([{"shape": [True], "data": [1]}]), "must hold integers"),
    ("huge dim", legacy_payload([{"shape": [MAX_DIM + 1, 0], "data": []}]), "must hold integers"),
    ("too many dims", legacy_payload([{"shape": [1] * 33, "data": [1]}]), "33 dimensions"),
    ("data not array", legacy_payload([{"shape": [1], "data": 1}]), "data must be an array"),
    (
        "data bin",
        legacy_payload([{"shape": [1], "data": b"\x00"}]),
        "data must be an array, got bin",
    ),
    ("size mismatch", legacy_payload([{"shape": [2, 2], "data": [1, 2, 3]}]), "needs 4 values"),
    ("str values", legacy_payload([{"shape": [2], "data": ["1.5", "2"]}]), "array of numbers"),
    ("nil value", legacy_payload([{"shape": [2], "data": [1.0, None]}]), "array of numbers"),
    ("nested values", legacy_payload([{"shape": [1], "data": [[1.0]]}]), "array of numbers"),
    (
        "ragged values",
        legacy_payload([{"shape": [2], "data": [[1.0], [1, 2]]}]),
        "array of numbers",
    ),
    ("bool values", legacy_payload([{"shape": [2], "data": [True, False]}]), "array of numbers"),
    ("map values", legacy_payload([{"shape": [1], "data": [{}]}]), "array of numbers"),
    ("2nd tensor bad", legacy_payload([{"shape": [], "data": [1]}, {"shape": [1]}]), "tensor 1"),
]


@pytest.mark.parametrize(
    ("payload", "reason"), [m[1:] for m in MALFORMED_LEGACY], ids=[m[0] for m in MALFORMED_LEGACY]
)
def test_malformed_legacy_weights_are_refused_with_a_reason(payload: Any, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_weights(payload)
    assert info.value.close_code == CloseCode.INVALID_DATA
    assert reason in info.value.reason


def test_legacy_dimension_limits_are_inclusive() -> None:
    payload = legacy_payload([{"shape": [MAX_DIM, 0] + [1] * (MAX_NDIM - 2), "data": []}])
    (tensor,) = decode_legacy(payload)
    assert tensor.shape == (MAX_DIM, 0) + (1,) * (MAX_NDIM - 2)


GOOD_NATIVE = encode_native([np.ones((2, 3), np.float32), np.zeros(0, np.float32)])

MALFORMED_NATIVE: list[tuple[str, Any, str]] = [
    ("unknown encoding", {**GOOD_NATIVE, "encoding": "f16"}, "unsupported weights encoding 'f16'"),
    ("no encoding", {"shapes": [], "data": b""}, "unsupported weights encoding None"),
    ("long encoding", {"encoding": "x" * 500}, "..."),
    ("shapes missing", {"encoding": "f32le", "data": b""}, "'shapes' must be an array, got nil"),
    ("shapes map", {**GOOD_NATIVE, "shapes": {}}, "'shapes' must be an array, got map"),
    ("data missing", {"encoding": "f32le", "shapes": []}, "'data' must be msgpack bin, got nil"),
    ("data list", {**GOOD_NATIVE, "data": [0] * 24}, "'data' must be msgpack bin, got array"),
    ("data str", {**GOOD_NATIVE, "data": "x" * 24}, "'data' must be msgpack bin, got str"),
    ("data short", {**GOOD_NATIVE, "data": GOOD_NATIVE["data"][:-1]}, "holds 23 bytes"),
    ("data long", {**GOOD_NATIVE, "data": GOOD_NATIVE["data"] + b"\0" * 4}, "the shapes need 24"),
    ("shape not array", {**GOOD_NATIVE, "shapes": [6, [0]]}, "weight tensor 0: shape must be"),
    ("negative dim", {**GOOD_NATIVE, "shapes": [[-2, -3], [0]]}, "must hold integers"),
    ("bool dim", {**GOOD_NATIVE, "shapes": [[2, 3], [False]]}, "weight tensor 1"),
    ("overflowing dims", {**GOOD_NATIVE, "shapes": [[2**62, 2**62], [0]]}, "must hold integers"),
]


@pytest.mark.parametrize(
    ("payload", "reason"), [m[1:] for m in MALFORMED_NATIVE], ids=[m[0] for m in MALFORMED_NATIVE]
)
def test_malformed_native_weights_are_refused_with_a_reason(payload: Any, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_weights(payload)
    assert info.value.close_code == CloseCode.INVALID_DATA
    assert reason in info.value.reason
    assert len(info.value.reason) < 200


@pytest.mark.parametrize(
    ("payload", "kind"), [(None, "nil"), (3, "int"), (1.5, "float"), ("w", "str"), (True, "bool")]
)
def test_unknown_weights_types_are_named(payload: Any, kind: str) -> None:
    with pytest.raises(ProtocolError, match=f"got {kind}$"):
        decode_weights(payload)


def test_decode_native_checks_its_tag() -> None:
    with pytest.raises(ProtocolError, match="'encoding': 'f32le'"):
        decode_native({**GOOD_NATIVE, "encoding": "legacy"})


@PROPERTY
@given(st.binary(max_size=200))
def test_random_legacy_bytes_only_ever_raise_protocol_error(payload: bytes) -> None:
    for candidate in (payload, list(payload)):
        try:
            weights, _ = decode_weights(candidate)
        except ProtocolError as error:
            assert error.close_code == CloseCode.INVALID_DATA
        else:
            assert all(w.dtype == np.float32 for w in weights)


@PROPERTY
@given(
    st.lists(st.lists(st.integers(-3, 2**40), max_size=3), max_size=3),
    st.binary(max_size=64),
)
def test_random_native_maps_only_ever_raise_protocol_error(
    shapes: list[list[int]], data: bytes
) -> None:
    try:
        weights = decode_native({"encoding": "f32le", "shapes": shapes, "data": data})
    except ProtocolError as error:
        assert error.close_code == CloseCode.INVALID_DATA
    else:
        assert [list(w.shape) for w in weights] == shapes

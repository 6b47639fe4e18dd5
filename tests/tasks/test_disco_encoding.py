"""DISCO model encoding (msgpack-lite style ModelArtifacts) and byte-array JSON, Python side."""

from __future__ import annotations

import json
import time
from typing import Any

import msgpack
import numpy as np
import pytest

from disco.tasks.artifacts import ArtifactsError, ModelArtifacts, WeightSpec
from disco.tasks.defaults import default_tasks
from disco.tasks.disco_encoding import (
    EXT_ARRAY_BUFFER,
    byte_array_json,
    bytes_from_int_array,
    decode_disco_model,
    decode_disco_model_json,
    decode_disco_model_text,
    encode_disco_model,
    encode_disco_model_json,
)

TOPOLOGY = {"class_name": "Sequential", "config": {"name": "m", "layers": [{"a": 1.5}]}}


def small() -> ModelArtifacts:
    data = np.arange(6, dtype="<f4").tobytes()
    specs = [WeightSpec("k", (2, 2)), WeightSpec("b", (2,))]
    extra = {"format": "layers-model", "generatedBy": "x", "convertedBy": None, "u": {"e": 0}}
    return ModelArtifacts(TOPOLOGY, specs, data, extra)


def raw_map(artifacts: ModelArtifacts) -> dict[str, Any]:
    """The encoded map with ext types left as ExtType."""
    obj = msgpack.unpackb(encode_disco_model(artifacts), raw=False)
    assert isinstance(obj, dict)
    return obj


def test_weight_data_is_an_array_buffer_ext() -> None:
    a = small()
    obj = raw_map(a)
    assert obj["weightData"] == msgpack.ExtType(EXT_ARRAY_BUFFER, a.weight_data)
    assert obj["modelTopology"] == TOPOLOGY
    assert obj["weightSpecs"] == [
        {"name": "k", "shape": [2, 2], "dtype": "float32"},
        {"name": "b", "shape": [2], "dtype": "float32"},
    ]
    assert list(obj)[:4] == ["modelTopology", "format", "generatedBy", "convertedBy"]
    assert obj["u"] == {"e": 0}


def test_eight_byte_weight_data_is_fixext8_like_msgpack_lite() -> None:
    a = ModelArtifacts({}, [WeightSpec("w", (2,))], bytes(8))
    assert bytes.fromhex("aa77656967687444617461d71a" + "00" * 8) in encode_disco_model(a)


def test_round_trip_of_every_default_model() -> None:
    for _, artifacts in default_tasks():
        assert decode_disco_model(encode_disco_model(artifacts)) == artifacts
        text = encode_disco_model_json(artifacts)
        assert decode_disco_model_text(text) == artifacts


def _encoded_with(weight_data: Any) -> bytes:
    a = small()
    payload = {"modelTopology": TOPOLOGY, "weightSpecs": raw_map(a)["weightSpecs"]}
    payload["weightData"] = weight_data
    packed: bytes = msgpack.packb(payload, use_bin_type=True)
    return packed


@pytest.mark.parametrize(
    "wrap",
    [
        lambda b: msgpack.ExtType(0x1A, b),  # ArrayBuffer
        lambda b: msgpack.ExtType(0x12, b),  # Uint8Array
        lambda b: msgpack.ExtType(0x1B, b),  # Buffer
        lambda b: msgpack.ExtType(0x17, b),  # Float32Array
        lambda b: b,  # msgpack bin
        lambda b: list(b),  # array of byte ints
        lambda b: [msgpack.ExtType(0x1A, b[:8]), msgpack.ExtType(0x1A, b[8:])],  # ArrayBuffer[]
    ],
)
def test_decode_accepts_the_byte_containers_clients_send(wrap: Any) -> None:
    a = small()
    back = decode_disco_model(_encoded_with(wrap(a.weight_data)))
    assert back.weight_data == a.weight_data
    assert back.weights()[0].tolist() == [[0.0, 1.0], [2.0, 3.0]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xc1", "not a valid msgpack"),
        (b"\x92\x01\x02", "must be a msgpack map"),
        (msgpack.packb({"weightSpecs": [], "weightData": b""}), "modelTopology: must be an obj"),
        (msgpack.packb({"modelTopology": {}, "weightData": b""}), "weightSpecs: must be an array"),
        (msgpack.packb({"modelTopology": {}, "weightSpecs": []}), "weightData: required"),
        (_encoded_with(msgpack.ExtType(0x0D, b"x")), "unsupported msgpack ext type 13"),
        (_encoded_with(bytes(20)), "size mismatch"),
        (_encoded_with("text"), "weightData: must be binary"),
        (_encoded_with([1, 300]), "integers 0..255"),
        (
            msgpack.packb({"modelTopology": {"x": b"\x00"}, "weightSpecs": [], "weightData": b""}),
            r"modelTopology.x: bytes is not a JSON value",
        ),
        (
            msgpack.packb(
                {"modelTopology": {"x": float("nan")}, "weightSpecs": [], "weightData": b""}
            ),
            "must be a finite number",
        ),
        (
            msgpack.packb({"modelTopology": {}, "weightSpecs": [], "weightData": b"", "e": {1: 2}}),
            "not a valid msgpack|keys must be strings",
        ),
        (
            msgpack.packb({"modelTopology": {}, "weightSpecs": [], "weightData": b"", "m": b"x"}),
            r"model.m: bytes is not a JSON value",
        ),
    ],
)
def test_decode_rejects_bad_input_with_reason(data: bytes, message: str) -> None:
    with pytest.raises(ArtifactsError, match=message):
        decode_disco_model(data)


def test_decode_rejects_deep_nesting() -> None:
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    data = msgpack.packb({"modelTopology": {"d": deep}, "weightSpecs": [], "weightData": b""})
    with pytest.raises(ArtifactsError, match="nested deeper than"):
        decode_disco_model(data)


def test_byte_array_json_is_the_json_array_padded_with_spaces() -> None:
    """The same JSON value as json.dumps, each number in 4 characters (spaces are JSON
    whitespace): without the spaces, the text json.dumps writes."""
    for data in [b"", b"\x00", bytes(range(256)), bytes(range(256))[::-1] * 3]:
        text = byte_array_json(data)
        assert text.replace(b" ", b"") == json.dumps(list(data), separators=(",", ":")).encode()
        assert json.loads(text) == list(data)
        assert bytes_from_int_array(json.loads(text)) == data
        assert len(text) == (2 if not data else 4 * len(data) + 4)
    assert byte_array_json(b"\x00\x07\xff") == b"[     0,  7,255]"


@pytest.mark.parametrize("bad", [[256], [-1], [1.0], [True], ["1"], [None], "abc", {"a": 1}])
def test_bytes_from_int_array_rejects_non_bytes(bad: Any) -> None:
    with pytest.raises(ArtifactsError):
        bytes_from_int_array(bad)


def test_decode_json_entry_points() -> None:
    a = small()
    ints = list(encode_disco_model(a))
    assert decode_disco_model_json(ints) == a
    with pytest.raises(ArtifactsError, match="not valid JSON"):
        decode_disco_model_text(b"[1,2")


def test_million_parameter_model_encodes_fast() -> None:
    rng = np.random.default_rng(0)
    data = rng.standard_normal(1_000_000).astype("<f4").tobytes()
    a = ModelArtifacts(TOPOLOGY, [WeightSpec("w", (1000, 1000))], data)
    start = time.perf_counter()
    text = encode_disco_model_json(a)
    elapsed = time.perf_counter() - start
    assert text.startswith(b"[") and text.endswith(b"]")
    assert elapsed < 3.0, f"{elapsed:.2f}s for a 1e6-parameter model"
    assert decode_disco_model_text(text).weight_data == data

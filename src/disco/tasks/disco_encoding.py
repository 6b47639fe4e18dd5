"""The model encoding DISCO clients speak: msgpack of TF.js `ModelArtifacts`, as msgpack-lite.

The 2.1.1 client GETs `/tasks/:id/model.json` and POSTs `pushTask.model` as a JSON array of
byte-integers; those bytes are `msgpack-lite.encode(artifacts)` where `artifacts` is what
`model.save()` hands to an IOHandler: `{modelTopology, weightSpecs, weightData: ArrayBuffer,
format, generatedBy, convertedBy, ...}`. msgpack-lite writes an ArrayBuffer as ext type 0x1A
holding the raw bytes and decodes that ext back to an ArrayBuffer, which tfjs needs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import msgpack
import numpy as np
from numpy.typing import NDArray

from disco.tasks.artifacts import RESERVED_KEYS, ArtifactsError, ModelArtifacts, parse_weight_specs
from disco.tasks.jsonvalue import json_problem

EXT_ARRAY_BUFFER: Final = 0x1A
# msgpack-lite ext types whose payload is the raw memory of a byte container.
_BYTE_EXT_TYPES: Final = frozenset(
    {
        0x12,  # Uint8Array
        0x17,  # Float32Array (raw float32 bytes: exactly weightData's layout)
        0x19,  # Uint8ClampedArray
        EXT_ARRAY_BUFFER,  # ArrayBuffer
        0x1B,  # Buffer
        0x1D,  # DataView
    }
)
# Order of the keys `model.save()` produces; others follow in their own order.
_LEADING_KEYS: Final = ("format", "generatedBy", "convertedBy")


# --------------------------------------------------------------------------- byte arrays as JSON


def _cell_table() -> NDArray[np.uint32]:
    """Per byte value b: 4 ASCII cells holding `b,` right-aligned (`"  7,"`, `"255,"`), stored
    as one uint32 so that a lookup gathers the 4 bytes at once."""
    table = np.frombuffer(b"".join(f"{value},".rjust(4).encode() for value in range(256)), np.uint8)
    return table.view(np.uint32).copy()


_CELLS = _cell_table()
_OPEN = np.frombuffer(b"[   ", np.uint8).view(np.uint32)[0]


def byte_array_json(data: bytes) -> bytes:
    """`data` as the JSON text of an array of byte-integers, e.g. b'[     1,  2,255]'.

    Every number takes 4 characters, padded with spaces (JSON whitespace): the text is one
    table lookup per byte, without compacting variable-length numbers (about 12% longer than
    the tightest text for weight data, and many times faster to build).
    """
    if not data:
        return b"[]"
    cells = np.empty(len(data) + 1, dtype=np.uint32)
    cells[0] = _OPEN
    np.take(_CELLS, np.frombuffer(data, dtype=np.uint8), out=cells[1:])
    text = cells.view(np.uint8)
    text[-1] = ord("]")  # replaces the trailing ','
    return text.tobytes()


def bytes_from_int_array(obj: object, where: str = "model") -> bytes:
    """The bytes of a decoded JSON array of byte-integers (0..255)."""
    if not isinstance(obj, list):
        raise ArtifactsError(f"{where}: must be an array of byte integers")
    if not set(map(type, obj)) <= {int}:
        raise ArtifactsError(f"{where}: must contain only integers 0..255")
    try:
        return bytes(obj)
    except ValueError:
        raise ArtifactsError(f"{where}: must contain only integers 0..255") from None


# --------------------------------------------------------------------------- encode / decode


def _ordered_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    head = {k: extra[k] for k in _LEADING_KEYS if k in extra}
    return head | {k: v for k, v in extra.items() if k not in head}


def encode_disco_model(artifacts: ModelArtifacts) -> bytes:
    """msgpack that msgpack-lite decodes to TF.js ModelArtifacts (weightData: an ArrayBuffer)."""
    payload = {
        "modelTopology": artifacts.model_topology,
        **_ordered_extra(artifacts.extra),
        "weightSpecs": [spec.to_json() for spec in artifacts.weight_specs],
        "weightData": msgpack.ExtType(EXT_ARRAY_BUFFER, artifacts.weight_data),
    }
    try:
        packed: bytes = msgpack.packb(payload, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as error:
        raise ArtifactsError(f"model cannot be encoded: {error}") from None
    return packed


def encode_disco_model_json(artifacts: ModelArtifacts) -> bytes:
    """The JSON text DISCO clients GET as model.json: an array of the msgpack's byte-integers."""
    return byte_array_json(encode_disco_model(artifacts))


def _ext_hook(code: int, data: bytes) -> Any:
    if code in _BYTE_EXT_TYPES:
        return data
    return msgpack.ExtType(code, data)


def _weight_data(value: object) -> bytes:
    """weightData as msgpack-lite or other encoders may send it, as raw bytes."""
    if isinstance(value, bytes):  # an ext of a byte container, or msgpack bin
        return value
    if isinstance(value, msgpack.ExtType):
        raise ArtifactsError(f"weightData: unsupported msgpack ext type {value.code}")
    if isinstance(value, list):
        if all(isinstance(chunk, bytes) for chunk in value) and value:
            return b"".join(value)  # several ArrayBuffers (tfjs WeightData as ArrayBuffer[])
        return bytes_from_int_array(value, "weightData")
    raise ArtifactsError("weightData: must be binary data (ArrayBuffer, Uint8Array, bin, bytes)")


def check_json_value(value: object, where: str) -> None:
    """Reject what cannot be written back as JSON (bytes, ext types, NaN, non-string keys)."""
    problem = json_problem(value, where)
    if problem is not None:
        raise ArtifactsError(f"{problem[0]}: {problem[1]}")


def decode_disco_model(data: bytes | bytearray | memoryview) -> ModelArtifacts:
    """Parse msgpack-encoded TF.js ModelArtifacts (as DISCO clients send) into ModelArtifacts."""
    try:
        obj = msgpack.unpackb(bytes(data), raw=False, ext_hook=_ext_hook)
    except (ValueError, msgpack.UnpackException) as error:
        raise ArtifactsError(f"model: not a valid msgpack document ({error})") from None
    if not isinstance(obj, dict):
        raise ArtifactsError("model: must be a msgpack map of TF.js ModelArtifacts")
    topology = obj.get("modelTopology")
    if not isinstance(topology, dict):
        raise ArtifactsError("model.modelTopology: must be an object")
    check_json_value(topology, "model.modelTopology")
    specs = parse_weight_specs(obj.get("weightSpecs"), "model.weightSpecs")
    if "weightData" not in obj:
        raise ArtifactsError("model.weightData: required")
    weight_data = _weight_data(obj["weightData"])
    extra = {k: v for k, v in obj.items() if k not in RESERVED_KEYS}
    for key, value in extra.items():
        check_json_value(value, f"model.{key}")
    return ModelArtifacts(topology, specs, weight_data, extra)


def decode_disco_model_json(obj: object) -> ModelArtifacts:
    """Decode the parsed JSON byte-int array DISCO clients send (`pushTask`'s `model`)."""
    return decode_disco_model(bytes_from_int_array(obj))


def decode_disco_model_text(text: bytes | str) -> ModelArtifacts:
    """Decode the JSON text of a byte-int array (what `GET /tasks/:id/model.json` serves)."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactsError(f"model: not valid JSON ({error})") from None
    return decode_disco_model_json(obj)

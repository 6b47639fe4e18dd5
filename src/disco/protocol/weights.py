"""Weight tensors on the wire: the 2.1.1 JS client's "legacy" encoding and a compact native one.

Legacy (what the real client sends and expects back): an array of byte-integers of a msgpack
encoding of `[{shape: [...], data: [numbers...]}, ...]`. It costs ~9 bytes per parameter in the
payload plus ~1.5 per byte in the frame, so our own clients may use the native encoding instead:
`{"encoding": "f32le", "shapes": [[...], ...], "data": <bin>}` where `data` is every tensor's
float32 little-endian bytes concatenated in order. Decoding it is zero-copy.

Everything here is pure and thread-safe; callers move big payloads off the event loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from disco.protocol import legacy
from disco.protocol.errors import ProtocolError
from disco.protocol.framing import msgpack_kind, unpackb_untrusted
from disco.weights import Shape, Weights, shapes_of, split_by_shapes

NATIVE_TAG = "f32le"
"""Value of the `encoding` field that marks the native encoding."""

MAX_NDIM = 32
"""Most dimensions a tensor may have (numpy's historic limit)."""

MAX_DIM = 2**31 - 1
"""Largest single dimension accepted: far beyond real models, small enough for numpy shapes."""

_F32LE = np.dtype("<f4")


class WeightEncoding(StrEnum):
    """How a peer encoded its weights; the server answers each client in the encoding it used."""

    LEGACY = "legacy"
    NATIVE = "native"


# ---------------------------------------------------------------------------------------------
# Shapes from the wire


def check_wire_shape(shape: object, index: int, label: str = "weight tensor") -> Shape:
    """Validate one tensor shape from the wire: an array of at most MAX_NDIM ints in 0..MAX_DIM.

    Errors name the shape as "<label> <index>".
    """
    # The error reasons' "<label> <index>" is built only on refusal (checked once per post).
    if not isinstance(shape, list):
        raise ProtocolError(
            f"{label} {index}: shape must be an array, got {msgpack_kind(shape)}"
        )
    if len(shape) > MAX_NDIM:
        raise ProtocolError(
            f"{label} {index}: shape has {len(shape)} dimensions, at most {MAX_NDIM} allowed"
        )
    for dim in shape:
        if type(dim) is not int or not 0 <= dim <= MAX_DIM:
            raise ProtocolError(
                f"{label} {index}: shape {_short(shape)} must hold integers in 0..{MAX_DIM}"
            )
    return tuple(shape)


def decode_flat_fields(
    obj: Mapping[str, Any], itemsize: int | None, what: str, shape_label: str = "weight tensor"
) -> tuple[list[Shape], bytes | bytearray]:
    """Validated `shapes` and `data` of a `{shapes, data}` map whose `data` holds every tensor's
    values back to back, `itemsize` bytes each (native weights, the peer-only payloads,
    compressed deltas); `itemsize=None` leaves the size of `data` to the caller.

    `what` names the payload in error reasons, `shape_label` each of its shapes.
    """
    shapes = obj.get("shapes")
    data = obj.get("data")
    if not isinstance(shapes, list):
        raise ProtocolError(f"{what}: 'shapes' must be an array, got {msgpack_kind(shapes)}")
    if not isinstance(data, bytes | bytearray):
        raise ProtocolError(f"{what}: 'data' must be msgpack bin, got {msgpack_kind(data)}")
    checked = [check_wire_shape(shape, index, shape_label) for index, shape in enumerate(shapes)]
    if itemsize is None:
        return checked, data
    expected = itemsize * sum(math.prod(shape) for shape in checked)
    if len(data) != expected:
        raise ProtocolError(f"{what}: 'data' holds {len(data)} bytes, the shapes need {expected}")
    return checked, data


def _short(value: object, limit: int = 80) -> str:
    """repr() cut to `limit` characters, so hostile input cannot bloat error reasons."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# Legacy encoding


def encode_legacy(weights: Sequence[npt.NDArray[Any]]) -> list[int]:
    """Encode as the 2.1.1 client does: byte-integers of msgpack `[{shape, data}, ...]`.

    Values go out as msgpack float64 (msgpack-lite would write integral ones as ints; both
    decode to the same JS numbers). For a frame, `legacy.pack_legacy_weights` gives the packed
    form of this list straight from numpy.
    """
    return list(legacy.encode_payload(weights))


def decode_legacy(payload: list[Any] | bytes | bytearray | legacy.ByteArray) -> Weights:
    """Decode legacy weights given as byte-integers (JS client) or as msgpack bin (Python client).

    Byte-integers are converted with `bytes(list)` at C speed; msgpack `true`/`false` in that
    array are taken as 1/0 (checking each element's type would double the cost, and such bytes
    then fail the msgpack or shape checks anyway). The payload is decoded by the vectorized
    codec (`disco.protocol.legacy`), or by `decode_legacy_reference` for valid msgpack outside
    its fast path; both accept and refuse the same payloads.
    """
    if isinstance(payload, list):
        try:
            raw: bytes | bytearray | npt.NDArray[np.uint8] = bytes(payload)
        except (ValueError, TypeError):
            raise ProtocolError("legacy weights must be an array of integers in 0..255") from None
    elif isinstance(payload, legacy.ByteArray):
        raw = payload.data  # already decoded by the server's frame decoder: no copy
    else:
        raw = payload
    try:
        tensors = legacy.decode_payload(raw)
    except legacy.Unhandled:
        return decode_legacy_reference(raw if isinstance(raw, bytes | bytearray) else raw.tobytes())
    out: Weights = []
    for index, (shape, values) in enumerate(tensors):
        checked = check_wire_shape(shape, index)
        _check_size(checked, values.size, index)
        out.append(values.reshape(checked))
    return out


def decode_legacy_reference(raw: bytes | bytearray) -> Weights:
    """Legacy payload bytes decoded generically (msgpack to Python objects, then numpy): the
    definition the vectorized codec is tested against, and its fallback."""
    decoded = unpackb_untrusted(raw, "legacy weights")
    if not isinstance(decoded, list):
        raise ProtocolError(
            "legacy weights must decode to an array of {shape, data} maps, "
            f"got {msgpack_kind(decoded)}"
        )
    return [_decode_legacy_tensor(entry, index) for index, entry in enumerate(decoded)]


def _check_size(shape: tuple[int, ...], count: int, index: int) -> None:
    size = math.prod(shape)
    if size != count:
        raise ProtocolError(
            f"weight tensor {index}: shape {list(shape)} needs {size} values, data has {count}"
        )


def _decode_legacy_tensor(entry: object, index: int) -> npt.NDArray[np.float32]:
    if not isinstance(entry, dict):
        raise ProtocolError(
            f"weight tensor {index}: expected a {{shape, data}} map, got {msgpack_kind(entry)}"
        )
    if "shape" not in entry or "data" not in entry:
        raise ProtocolError(f"weight tensor {index}: map needs both 'shape' and 'data'")
    shape = check_wire_shape(entry["shape"], index)
    data = entry["data"]
    if not isinstance(data, list):
        raise ProtocolError(
            f"weight tensor {index}: data must be an array, got {msgpack_kind(data)}"
        )
    _check_size(shape, len(data), index)
    try:
        # No dtype here: np.asarray(..., float64) would silently parse strings and map nil to NaN.
        values = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        values = None
    if values is None or values.ndim != 1 or values.dtype.kind not in "iuf":
        raise ProtocolError(f"weight tensor {index}: data must be an array of numbers")
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes Inf: check_finite
        return values.astype(np.float32).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Native encoding


def encode_native(weights: Sequence[npt.NDArray[Any]]) -> dict[str, Any]:
    """Encode as `{"encoding": "f32le", "shapes": [...], "data": <float32 LE bytes>}`."""
    # One copy: float32 LE C-contiguous tensors (the usual case) are joined straight from their
    # memory; only other dtypes / layouts / byte orders get converted first.
    parts: list[memoryview] = []
    with np.errstate(over="ignore"):  # values beyond float32 range become Inf, as in a cast
        for tensor in weights:
            array = np.ascontiguousarray(tensor, dtype=_F32LE).reshape(-1)
            if array.size:  # memoryview cannot cast an empty view; it adds no bytes anyway
                parts.append(array.data.cast("B"))
    shapes = [list(shape) for shape in shapes_of(weights)]
    return {"encoding": NATIVE_TAG, "shapes": shapes, "data": b"".join(parts)}


def decode_native(obj: Mapping[str, Any]) -> Weights:
    """Decode the native encoding without copying: the arrays are views of `obj["data"]`.

    Views over `bytes` are read-only; copy before modifying in place.
    """
    if obj.get("encoding") != NATIVE_TAG:
        raise ProtocolError(f"native weights need 'encoding': {NATIVE_TAG!r}")
    shapes, data = decode_flat_fields(obj, _F32LE.itemsize, "native weights")
    flat = cast("npt.NDArray[np.float32]", np.frombuffer(data, dtype=_F32LE))
    return split_by_shapes(flat, shapes)


# ---------------------------------------------------------------------------------------------
# Dispatch


def encode_weights(weights: Sequence[npt.NDArray[Any]], encoding: WeightEncoding) -> Any:
    """Encode in the given encoding (legacy: list of byte-ints; native: f32le map)."""
    if encoding is WeightEncoding.NATIVE:
        return encode_native(weights)
    return encode_legacy(weights)


def decode_weights(obj: object) -> tuple[Weights, WeightEncoding]:
    """Detect the encoding of a `weights` field and decode it.

    array -> legacy (byte-integers); bin -> legacy given as bytes; map with `encoding: "f32le"`
    -> native. Anything else raises ProtocolError naming what was received.
    """
    if isinstance(obj, list):
        return decode_legacy(obj), WeightEncoding.LEGACY
    if isinstance(obj, bytes | bytearray | legacy.ByteArray):
        return decode_legacy(obj), WeightEncoding.LEGACY
    if isinstance(obj, dict):
        encoding = obj.get("encoding")
        if encoding == NATIVE_TAG:
            return decode_native(obj), WeightEncoding.NATIVE
        raise ProtocolError(
            f"unsupported weights encoding {_short(encoding)}, expected {NATIVE_TAG!r}"
        )
    raise ProtocolError(
        "weights must be an array of byte-integers, msgpack bin, or an f32le map, "
        f"got {msgpack_kind(obj)}"
    )

"""Peer-to-peer messages of decentralized rounds: types 5 (Weights), 6 (Shares), 7 (PartialSums).

On the wire each is a msgpack map, as the 2.1.1 client sends them:

    {type: 5, peer, weights}    {type: 6, peer, weights}    {type: 7, peer, partials}

`peer` is the id of the *recipient* (that is what the JS client puts there); the receiver knows
the sender from the data channel the message came on, so it does not rely on the field.

The payload field holds one of these encodings:

- legacy: an array of byte-integers of msgpack `[{shape, data}]` (`disco.protocol.weights`).
  The only one JS peers understand: their `isPeerMessage` check requires an array of numbers
  and they throw on anything else, so JS peers only ever get this one.
- `{"encoding": "f32le", shapes, data}` (`disco.protocol.weights` native): clear-text weights
  between Python peers (4 bytes per parameter instead of ~13.5).
- `{"encoding": "f64le", shapes, data}`: DISCO-compatible shares and partial sums between Python
  peers, in float64 so that a share of +-100 keeps ~1e-14 of absolute precision.
- `{"encoding": "u32fp", scaleBits, shapes, data}`: fixed-point shares modulo 2^32 of the
  Python-only secure aggregation (`data`: uint32 little endian, one per parameter).

Python peers recognise each other by a `discoPython` field in their WebRTC offers and answers
(`PeerCapabilities`) and only then use the last three encodings; see docs/protocol.md,
"Peer-to-peer messages". Messages travel in DISCO's chunk framing (`disco.protocol.chunking`).

Every function here is pure; decoding validates everything it returns (ProtocolError otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack
import numpy as np
import numpy.typing as npt

from disco.protocol.errors import ProtocolError
from disco.protocol.framing import msgpack_kind, unpackb_untrusted
from disco.protocol.messages import wire_peer_id
from disco.protocol.types import MessageType
from disco.protocol.weights import (
    NATIVE_TAG,
    decode_flat_fields,
    decode_legacy,
    decode_native,
    encode_legacy,
    encode_native,
)
from disco.weights import Shape, shapes_of, split_by_shapes

PEER_MESSAGE_TYPES: Final = frozenset(
    {MessageType.WEIGHTS, MessageType.SHARES, MessageType.PARTIAL_SUMS}
)
F64_TAG: Final = "f64le"
FIXED_POINT_TAG: Final = "u32fp"
MAX_SCALE_BITS: Final = 30
"""Most fractional bits of the fixed-point encoding (sums of n values must fit in 32 bits)."""

CAPABILITY_KEY: Final = "discoPython"
"""Field of a WebRTC offer / answer signal by which a Python peer announces itself."""
CAPABILITY_VERSION: Final = 1


def payload_field(kind: MessageType) -> str:
    """Name of the payload field of a peer message type."""
    return "partials" if kind == MessageType.PARTIAL_SUMS else "weights"


@dataclass(frozen=True, eq=False)
class FloatPayload:
    """Real-valued tensors (weights, DISCO shares or partial sums), one array per tensor."""

    tensors: list[npt.NDArray[np.floating[Any]]]

    @property
    def shapes(self) -> list[Shape]:
        return shapes_of(self.tensors)


@dataclass(frozen=True, eq=False)
class FixedPointPayload:
    """Fixed-point values modulo 2^32 over all parameters (flat), with the model's shapes."""

    shapes: list[Shape]
    values: npt.NDArray[np.uint32]
    scale_bits: int


Payload = FloatPayload | FixedPointPayload


@dataclass(frozen=True, eq=False)
class PeerMessage:
    """One decoded peer message."""

    type: MessageType
    peer: int
    payload: Payload


@dataclass(frozen=True)
class PeerCapabilities:
    """What a Python peer tells another in its offer / answer (`discoPython` field).

    `native_secure_scale_bits`: the peer runs the fixed-point secure aggregation with that many
    fractional bits when every peer of a round can; None when it refuses to.
    """

    version: int = CAPABILITY_VERSION
    native_secure_scale_bits: int | None = None

    def to_wire(self) -> dict[str, Any]:
        """The value of the `discoPython` field."""
        native = (
            None
            if self.native_secure_scale_bits is None
            else {"scaleBits": self.native_secure_scale_bits}
        )
        return {"version": self.version, "nativeSecure": native}

    @classmethod
    def from_signal(cls, signal: Mapping[str, Any]) -> PeerCapabilities | None:
        """The capabilities a signal announces; None for JS peers (or anything malformed)."""
        raw = signal.get(CAPABILITY_KEY)
        if not isinstance(raw, Mapping):
            return None
        version = raw.get("version")
        if type(version) is not int or version < 1:
            return None
        native = raw.get("nativeSecure")
        bits = native.get("scaleBits") if isinstance(native, Mapping) else None
        if type(bits) is not int or not 0 <= bits <= MAX_SCALE_BITS:
            bits = None
        return cls(version, bits)


# ---------------------------------------------------------------------------------------------
# Encoding


def encode_float_payload(tensors: Sequence[npt.NDArray[Any]], encoding: str) -> Any:
    """Encode tensors as "legacy", "f32le" or "f64le" (see the module docstring)."""
    if encoding == "legacy":
        return encode_legacy(tensors)
    if encoding == NATIVE_TAG:
        return encode_native(tensors)
    if encoding == F64_TAG:
        data = b"".join(np.asarray(t, dtype="<f8").tobytes() for t in tensors)
        shapes = [list(shape) for shape in shapes_of(tensors)]
        return {"encoding": F64_TAG, "shapes": shapes, "data": data}
    raise ValueError(f"unknown float encoding {encoding!r}")


def encode_fixed_point_payload(payload: FixedPointPayload) -> dict[str, Any]:
    """Encode fixed-point values as a `u32fp` map."""
    return {
        "encoding": FIXED_POINT_TAG,
        "scaleBits": payload.scale_bits,
        "shapes": [list(shape) for shape in payload.shapes],
        "data": np.asarray(payload.values, dtype="<u4").tobytes(),
    }


def pack_payload(encoded_payload: Any) -> bytes:
    """msgpack bytes of an encoded payload, packed once for every recipient."""
    packed: bytes = msgpack.packb(encoded_payload, use_bin_type=True)
    return packed


def peer_message_bytes(kind: MessageType, peer: int, packed_payload: bytes) -> bytes:
    """The msgpack map `{type, peer, <payload field>}` around an already packed payload.

    Same bytes as packing the whole map (msgpack maps are their entries in order), without
    re-encoding a multi-megabyte payload for each recipient.
    """
    if kind not in PEER_MESSAGE_TYPES:
        raise ValueError(f"{kind!r} is not a peer-to-peer message type")
    head = msgpack.packb("type") + msgpack.packb(int(kind)) + msgpack.packb("peer")
    head += msgpack.packb(int(peer)) + msgpack.packb(payload_field(kind))
    return b"\x83" + head + packed_payload


def encode_peer_message(kind: MessageType, peer: int, encoded_payload: Any) -> bytes:
    """The msgpack bytes of a peer message whose payload is already encoded."""
    return peer_message_bytes(kind, peer, pack_payload(encoded_payload))


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_peer_message(data: bytes | bytearray) -> PeerMessage:
    """Decode and validate one reassembled peer message; ProtocolError on anything wrong."""
    message = unpackb_untrusted(data, "peer message")
    if not isinstance(message, dict):
        raise ProtocolError(f"peer message must be a msgpack map, got {msgpack_kind(message)}")
    code = message.get("type")
    if type(code) is not int or code not in PEER_MESSAGE_TYPES:
        raise ProtocolError(f"peer message has type {code!r}, expected 5, 6 or 7")
    kind = MessageType(code)
    peer = wire_peer_id(message.get("peer"))
    if peer is None:
        raise ProtocolError(f"peer message: 'peer' must be a peer id, got {message.get('peer')!r}")
    name = payload_field(kind)
    if name not in message:
        raise ProtocolError(f"peer message of type {code} has no '{name}' field")
    return PeerMessage(kind, peer, decode_payload(message[name]))


def decode_payload(obj: object) -> Payload:
    """Decode any of the four payload encodings."""
    if isinstance(obj, list | bytes | bytearray):
        return FloatPayload(list(decode_legacy(obj)))
    if not isinstance(obj, dict):
        raise ProtocolError(
            f"peer message payload must be an array or a map, got {msgpack_kind(obj)}"
        )
    encoding = obj.get("encoding")
    if encoding == NATIVE_TAG:
        return FloatPayload(list(decode_native(obj)))
    if encoding == F64_TAG:
        shapes, raw = decode_flat_fields(obj, 8, "peer payload", "peer payload shape")
        flat = np.frombuffer(raw, dtype="<f8")
        return FloatPayload(split_by_shapes(flat, shapes))
    if encoding == FIXED_POINT_TAG:
        bits = obj.get("scaleBits")
        if type(bits) is not int or not 0 <= bits <= MAX_SCALE_BITS:
            raise ProtocolError(
                f"u32fp payload: 'scaleBits' must be in 0..{MAX_SCALE_BITS}, got {bits!r}"
            )
        shapes, raw = decode_flat_fields(obj, 4, "peer payload", "peer payload shape")
        values = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
        return FixedPointPayload(shapes, values, bits)
    raise ProtocolError(f"unknown peer payload encoding {str(encoding)[:40]!r}")

"""Opt-in compressed updates for native clients: the change since the round's model, in fp16 or
int8, with error feedback on the client so quantization error does not accumulate.

A client that trained from round r's global model g sends Q(w - g + e) instead of w, where e is
what quantization dropped from its previous updates (error feedback: e becomes the new
quantization error once the update is accepted). The server rebuilds w' = g + Q⁻¹(...) and
treats it as any other update; it accepts compressed updates for its current round only (the
only model it keeps), so a client whose round moved on sends that update uncompressed.

Wire: the `weights` field of postWeightsToServer (8) is
- `{encoding: "f16-delta", shapes, data}`: float16 LE per parameter (2 bytes);
- `{encoding: "q8-delta", shapes, block, scales, data}`: the flat delta cut in blocks of `block`
  parameters, each with a float32 LE scale in `scales` (max |value| / 127) and int8 values in
  `data` (value ≈ int8 × scale): 1 + 4/block bytes per parameter (1.0625 with the default 64).

Pure functions, thread-safe; `ErrorFeedback` is the client's per-session state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from disco.protocol.errors import ProtocolError
from disco.protocol.framing import msgpack_kind
from disco.protocol.weights import decode_flat_fields
from disco.weights import Weights, flatten, shapes_of, split_by_shapes

Compression = Literal["fp16", "int8"]
COMPRESSIONS: tuple[Compression, ...] = ("fp16", "int8")
F16_TAG = "f16-delta"
Q8_TAG = "q8-delta"
TAGS = frozenset({F16_TAG, Q8_TAG})
DEFAULT_BLOCK = 64
"""Parameters per int8 scale: 1 + 4/64 = 1.0625 bytes per parameter."""
MAX_BLOCK = 1 << 20
F16_MAX = float(np.finfo(np.float16).max)


def is_compressed(obj: object) -> bool:
    """True when a `weights` field is a compressed delta."""
    return isinstance(obj, dict) and obj.get("encoding") in TAGS


def quantize(
    flat: npt.NDArray[np.float32], kind: Compression, block: int = DEFAULT_BLOCK
) -> tuple[dict[str, Any], npt.NDArray[np.float32]]:
    """(the wire fields for `flat`, what the receiver will decode: the dequantized values)."""
    if kind == "fp16":
        half = np.clip(flat, -F16_MAX, F16_MAX).astype("<f2")
        return {"encoding": F16_TAG, "data": half.tobytes()}, half.astype(np.float32)
    blocks = -(-flat.size // block)
    padded = np.zeros(blocks * block, dtype=np.float32)
    padded[: flat.size] = flat
    grid = padded.reshape(blocks, block)
    scales = (np.abs(grid).max(axis=1) / np.float32(127)).astype("<f4")
    safe = np.where(scales > 0, scales, np.float32(1))
    q = np.clip(np.rint(grid / safe[:, None]), -127, 127).astype(np.int8)
    dequantized = (q.astype(np.float32) * scales[:, None]).reshape(-1)[: flat.size]
    fields = {
        "encoding": Q8_TAG,
        "block": block,
        "scales": scales.tobytes(),
        "data": q.reshape(-1)[: flat.size].tobytes(),
    }
    return fields, dequantized


def encode_delta(
    delta: Sequence[npt.NDArray[Any]], kind: Compression, block: int = DEFAULT_BLOCK
) -> tuple[dict[str, Any], Weights]:
    """The `weights` field for a compressed delta, and the delta the server will rebuild."""
    shapes = shapes_of(delta)
    fields, sent = quantize(flatten(delta), kind, block)
    fields["shapes"] = [list(shape) for shape in shapes]
    return fields, split_by_shapes(sent, shapes)


def decode_delta(obj: Mapping[str, Any]) -> Weights:
    """A compressed delta as float32 tensors; ProtocolError for anything malformed."""
    tag = obj.get("encoding")
    if tag == F16_TAG:
        checked, data = decode_flat_fields(obj, 2, F16_TAG)
        flat = np.frombuffer(data, dtype="<f2").astype(np.float32)
    elif tag == Q8_TAG:
        checked, data = decode_flat_fields(obj, None, Q8_TAG)  # one byte each, plus the scales
        flat = _dequantize_q8(obj, data, sum(math.prod(shape) for shape in checked))
    else:
        raise ProtocolError(f"unsupported compressed encoding {str(tag)[:40]!r}")
    if not bool(np.isfinite(flat).all()):
        raise ProtocolError(f"{tag}: the delta holds NaN or Inf")
    return split_by_shapes(flat, checked)


def _dequantize_q8(
    obj: Mapping[str, Any], data: bytes | bytearray, total: int
) -> npt.NDArray[np.float32]:
    block, scales = obj.get("block"), obj.get("scales")
    if type(block) is not int or not 1 <= block <= MAX_BLOCK:
        raise ProtocolError(f"{Q8_TAG}: 'block' must be an integer in 1..{MAX_BLOCK}")
    if not isinstance(scales, bytes | bytearray):
        raise ProtocolError(f"{Q8_TAG}: 'scales' must be msgpack bin, got {msgpack_kind(scales)}")
    blocks = -(-total // block)
    if len(data) != total or len(scales) != 4 * blocks:
        raise ProtocolError(
            f"{Q8_TAG}: {len(data)} values and {len(scales) // 4} scales for {total} parameters "
            f"in blocks of {block} (expected {total} and {blocks})"
        )
    factors = np.frombuffer(scales, dtype="<f4").astype(np.float32)
    if not bool(np.isfinite(factors).all()):
        raise ProtocolError(f"{Q8_TAG}: the scales hold NaN or Inf")
    values = np.frombuffer(data, dtype=np.int8).astype(np.float32)
    padded = np.zeros(blocks * block, dtype=np.float32)
    padded[:total] = values
    grid = padded.reshape(blocks, block)
    grid *= factors[:, None]
    return grid.reshape(-1)[:total]


class ErrorFeedback:
    """A client's compression state: the quantization error not yet sent (see the module doc)."""

    def __init__(self, kind: Compression, block: int = DEFAULT_BLOCK) -> None:
        if kind not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {kind!r}")
        self.kind = kind
        self.block = block
        self.residual: Weights | None = None

    def encode(self, weights: Weights, base: Weights) -> tuple[dict[str, Any], Weights]:
        """(the `weights` field for `weights` trained from `base`, the residual to keep once
        the server accepted it: pass it to `accepted`)."""
        delta = [np.asarray(w, np.float32) - np.asarray(b, np.float32)
                 for w, b in zip(weights, base, strict=True)]  # fmt: skip
        if self.residual is not None and [r.shape for r in self.residual] == [
            d.shape for d in delta
        ]:
            delta = [d + r for d, r in zip(delta, self.residual, strict=True)]
        fields, sent = encode_delta(delta, self.kind, self.block)
        return fields, [d - s for d, s in zip(delta, sent, strict=True)]

    def accepted(self, residual: Weights) -> None:
        """The update was taken in: what it left out is added to the next one."""
        self.residual = residual

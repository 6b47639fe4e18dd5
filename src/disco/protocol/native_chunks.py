"""Native weights too big for one frame: the f32le encoding cut into chunks of parameters.

A chunk is the native map plus `chunk: {offset, total}`: `data` holds the float32 LE values of
parameters [offset, offset + len(data) / 4) of the flat model (every tensor in order, row-major),
`total` is the model's parameter count and `shapes` its tensor shapes (repeated in every chunk,
a few bytes). Chunks of one model travel in order, offset 0 first, each in its own frame: a
postWeightsToServer (8) upload, or a latestServerRound (11) answer. An upload's chunks may name
it (`chunk.upload`, checked by `check_upload_name`): an upload cut short by a lost connection
can then be resumed on a new one from where the server stopped (see
`disco.server.federated.uploads`).

Senders chunk native weights whose data exceeds `CHUNK_BYTES`, so memory stays bounded on both
sides (a chunk at a time is encoded, sent, received, folded); receivers accept any chunk size
that fits in a frame.

Pure functions, thread-safe.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from disco.protocol.errors import ProtocolError
from disco.protocol.framing import msgpack_kind
from disco.protocol.weights import NATIVE_TAG, check_wire_shape
from disco.weights import Shape, shapes_of

CHUNK_BYTES = 64 * 1024 * 1024
"""Native weights with more data than this are sent in chunks of this many bytes."""

MAX_PARAMETERS = 2**53 - 1
"""Largest offset or total accepted (exact as a JS number)."""

UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
"""What an upload's name (`chunk.upload`) may be: a client-chosen random id (a UUID's hex), long
enough that no one else guesses it."""

_F32LE = np.dtype("<f4")


@dataclass(frozen=True, slots=True, eq=False)
class Chunk:
    """Parameters [offset, offset + values.size) of a flat model of `total` parameters."""

    shapes: list[Shape]
    offset: int
    total: int
    values: npt.NDArray[np.float32]
    upload: str | None = None  # the upload's name, when it can be resumed

    @property
    def end(self) -> int:
        return self.offset + int(self.values.size)

    @property
    def last(self) -> bool:
        """True for the chunk that completes the model."""
        return self.end == self.total


def is_chunk(obj: object) -> bool:
    """True when a `weights` field is a native chunk (a map with a `chunk` entry)."""
    return isinstance(obj, dict) and "chunk" in obj


def chunked(weights: Sequence[npt.NDArray[Any]], chunk_bytes: int | None = None) -> bool:
    """True when native `weights` are too big for one frame and travel in chunks (of
    `chunk_bytes`, default `CHUNK_BYTES`)."""
    return chunked_parameters(sum(int(w.size) for w in weights), chunk_bytes)


def chunked_parameters(parameters: int, chunk_bytes: int | None = None) -> bool:
    """`chunked` for a model of `parameters` float32 values (a count the caller keeps)."""
    return 4 * parameters > (chunk_bytes or CHUNK_BYTES)


def encode_chunks(
    weights: Sequence[npt.NDArray[Any]],
    chunk_bytes: int | None = None,
    upload: str | None = None,
    start: int = 0,
) -> Iterator[dict[str, Any]]:
    """The native chunks of `weights`, lazily: only one chunk's bytes exist at a time (a chunk
    inside one float32 tensor is a view of it, one spanning tensors a chunk-sized copy).

    `upload`: the upload's name, carried by every chunk; `start`: the first parameter to send
    (a resumed upload's), the chunks then keep the boundaries of an upload started at 0."""
    shapes = shapes_of(weights)
    flats = [np.ascontiguousarray(w, dtype=_F32LE).reshape(-1) for w in weights]
    total = sum(int(f.size) for f in flats)
    if not 0 <= start <= total:
        raise ValueError(f"start {start} is outside a model of {total} parameters")
    step = max(1, (chunk_bytes or CHUNK_BYTES) // 4)
    if total and start == total:
        return  # nothing left to send
    tensor, inside = 0, start
    while tensor < len(flats) and inside >= flats[tensor].size and inside:
        inside -= int(flats[tensor].size)
        tensor += 1
    for boundary in range(start - start % step, total, step):
        offset = max(boundary, start)
        want = min(boundary + step, total) - offset
        parts: list[npt.NDArray[Any]] = []
        while want:
            flat = flats[tensor]
            take = min(want, int(flat.size) - inside)
            if take:
                parts.append(flat[inside : inside + take])
            inside += take
            want -= take
            if inside == flat.size:
                tensor, inside = tensor + 1, 0
        data = parts[0] if len(parts) == 1 else np.concatenate(parts)
        yield chunk_payload(shapes, offset, total, data, upload)
    if total == 0:
        yield chunk_payload(shapes, 0, 0, np.empty(0, dtype=_F32LE), upload)


def chunk_payload(
    shapes: Sequence[Sequence[int]],
    offset: int,
    total: int,
    values: npt.NDArray[Any],
    upload: str | None = None,
) -> dict[str, Any]:
    """One chunk as the `weights` field of a message (`upload`: the upload's name)."""
    data = np.ascontiguousarray(values, dtype=_F32LE)
    chunk: dict[str, Any] = {"offset": offset, "total": total}
    if upload is not None:
        chunk["upload"] = upload
    return {
        "encoding": NATIVE_TAG,
        "shapes": [[int(d) for d in shape] for shape in shapes],
        "chunk": chunk,
        "data": data.data.cast("B") if data.size else b"",
    }


def check_upload_name(value: object, where: str) -> str:
    """`value` when it is a valid upload name (`UPLOAD_ID`), else ProtocolError naming `where`
    (the one check of an upload name, in a chunk or in uploadProgress)."""
    if not isinstance(value, str) or not UPLOAD_ID.fullmatch(value):
        raise ProtocolError(f"{where}: 'upload' must be 16 to 64 letters, digits, '-' or '_'")
    return value


def decode_chunk(obj: Mapping[str, Any]) -> Chunk:
    """Validate a native chunk (its values are a zero-copy view of its `data`)."""
    if obj.get("encoding") != NATIVE_TAG:
        raise ProtocolError(f"a weights chunk needs 'encoding': {NATIVE_TAG!r}")
    shapes, data, chunk = obj.get("shapes"), obj.get("data"), obj.get("chunk")
    if not isinstance(shapes, list):
        raise ProtocolError(f"weights chunk: 'shapes' must be an array, got {msgpack_kind(shapes)}")
    if not isinstance(data, bytes | bytearray):
        raise ProtocolError(f"weights chunk: 'data' must be msgpack bin, got {msgpack_kind(data)}")
    if not isinstance(chunk, dict):
        raise ProtocolError(f"weights chunk: 'chunk' must be a map, got {msgpack_kind(chunk)}")
    checked = [check_wire_shape(shape, index) for index, shape in enumerate(shapes)]
    total = sum(math.prod(shape) for shape in checked)
    offset, claimed = chunk.get("offset"), chunk.get("total")
    for name, value in (("offset", offset), ("total", claimed)):
        if type(value) is not int or not 0 <= value <= MAX_PARAMETERS:
            raise ProtocolError(
                f"weights chunk: '{name}' must be an integer in 0..{MAX_PARAMETERS}"
            )
    if claimed != total:
        raise ProtocolError(f"weights chunk: 'total' is {claimed}, the shapes hold {total}")
    if len(data) % 4:
        raise ProtocolError(f"weights chunk: 'data' holds {len(data)} bytes, not whole float32s")
    end = cast(int, offset) + len(data) // 4
    if end > total or (not data and total):
        raise ProtocolError(
            f"weights chunk: parameters [{offset}, {end}) do not fit in a model of {total}"
        )
    upload = chunk.get("upload")
    if upload is not None:
        upload = check_upload_name(upload, "weights chunk")
    values = cast("npt.NDArray[np.float32]", np.frombuffer(data, dtype=_F32LE))
    return Chunk(checked, cast(int, offset), total, values, upload)

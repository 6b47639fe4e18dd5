"""DISCO's chunk framing on WebRTC data channels (docs/protocol.md, "Chunk framing").

A data channel carries messages of bounded size, so the 2.1.1 client cuts every peer message
into chunks of at most 16 KiB. Each chunk starts with a header:

    first chunk:  uint16 BE message id | uint8 chunk index (0) | uint8 total chunk count
    later chunks: uint16 BE message id | uint8 chunk index

so a message has at most 255 chunks, i.e. at most `max_message_size(chunk_size)` bytes
(4,177,154 with 16 KiB chunks). The JS client refuses to send anything bigger ("too big message
to even chunk it"); so do we (`MessageTooLarge`). Its receiver only concatenates the chunks, so
the chunk size is the sender's choice: 16 KiB towards JS peers, as they send, and bigger ones
between Python peers (aiortc accepts SCTP messages of 256 KiB).

Unlike the 2.1.1 sender, which drops the last 1-4 bytes of a message of 16381-16384 bytes, the
chunks made here always add up to the whole message. The receiver (`Reassembler`) is strict:
duplicate chunks, a second first chunk, an index beyond the announced count, or more buffered
data than a message may hold raise `ChunkError`, and the partial message is forgotten.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from disco.errors import DiscoError

DISCO_CHUNK_SIZE = 16 * 1024
"""Chunk size (header included) of the 2.1.1 client; safe for every WebRTC stack."""
FIRST_HEADER_SIZE = 4
HEADER_SIZE = 3
MAX_CHUNKS = 0xFF
MESSAGE_ID_LIMIT = 0x10000
"""Message ids are uint16: they wrap around (the JS client throws after 65535 messages)."""

_FIRST = struct.Struct(">HBB")
_LATER = struct.Struct(">HB")


class ChunkError(DiscoError, ValueError):
    """A chunk or message that does not follow DISCO's chunk framing."""


class MessageTooLarge(ChunkError):
    """The message needs more than 255 chunks."""


def max_message_size(chunk_size: int = DISCO_CHUNK_SIZE) -> int:
    """Largest message that fits in 255 chunks of `chunk_size` bytes (headers included)."""
    _check_chunk_size(chunk_size)
    return (chunk_size - FIRST_HEADER_SIZE) + (MAX_CHUNKS - 1) * (chunk_size - HEADER_SIZE)


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size <= FIRST_HEADER_SIZE:
        raise ValueError(f"chunk size must exceed {FIRST_HEADER_SIZE} bytes, got {chunk_size}")


def chunk_count(length: int, chunk_size: int = DISCO_CHUNK_SIZE) -> int:
    """Number of chunks a message of `length` bytes is cut into."""
    _check_chunk_size(chunk_size)
    first = chunk_size - FIRST_HEADER_SIZE
    if length <= first:
        return 1
    rest = length - first
    per_chunk = chunk_size - HEADER_SIZE
    return 1 + (rest + per_chunk - 1) // per_chunk


def chunk_message(
    message_id: int, payload: bytes | bytearray | memoryview, chunk_size: int = DISCO_CHUNK_SIZE
) -> list[bytes]:
    """Cut `payload` into DISCO chunks of at most `chunk_size` bytes (headers included).

    Raises MessageTooLarge when more than 255 chunks would be needed.
    """
    if not 0 <= message_id < MESSAGE_ID_LIMIT:
        raise ValueError(f"message id must be in 0..{MESSAGE_ID_LIMIT - 1}, got {message_id}")
    data = memoryview(payload).cast("B")
    total = chunk_count(len(data), chunk_size)
    if total > MAX_CHUNKS:
        raise MessageTooLarge(
            f"message of {len(data)} bytes needs {total} chunks of {chunk_size} bytes, "
            f"at most {MAX_CHUNKS} allowed ({max_message_size(chunk_size)} bytes)"
        )
    first = chunk_size - FIRST_HEADER_SIZE
    chunks = [_FIRST.pack(message_id, 0, total) + bytes(data[:first])]
    per_chunk = chunk_size - HEADER_SIZE
    for index in range(1, total):
        start = first + (index - 1) * per_chunk
        chunks.append(_LATER.pack(message_id, index) + bytes(data[start : start + per_chunk]))
    return chunks


@dataclass
class _Partial:
    """Chunks received so far of one message."""

    total: int | None = None
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class Reassembler:
    """Rebuilds messages from the chunks of one data channel (one per remote peer).

    `max_message_bytes` bounds the bytes buffered for incomplete messages (all of them
    together) and `max_pending` how many are being received at once, so a misbehaving peer
    cannot make us buffer without limit.
    """

    def __init__(
        self,
        max_message_bytes: int = max_message_size(DISCO_CHUNK_SIZE),
        max_pending: int = 16,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_pending = max_pending
        self._pending: dict[int, _Partial] = {}
        self._buffered = 0

    @property
    def pending(self) -> int:
        """Messages started but not complete."""
        return len(self._pending)

    def feed(self, chunk: bytes | bytearray | memoryview) -> bytes | None:
        """Take one chunk; return the message it completes, if any. Raises ChunkError."""
        data = bytes(chunk)
        if len(data) < HEADER_SIZE:
            raise ChunkError(
                f"chunk of {len(data)} bytes is shorter than a {HEADER_SIZE}-byte header"
            )
        message_id, index = _LATER.unpack_from(data)
        partial = self._pending.get(message_id)
        if partial is None:
            if len(self._pending) >= self.max_pending:
                raise ChunkError(f"more than {self.max_pending} messages are incomplete at once")
            partial = _Partial()
            self._pending[message_id] = partial
        try:
            body = self._accept(partial, message_id, index, data)
        except ChunkError:
            self._forget(message_id)
            raise
        partial.parts[index] = body
        partial.size += len(body)
        self._buffered += len(body)
        if partial.total is None or len(partial.parts) < partial.total:
            return None
        self._forget(message_id)
        return b"".join(partial.parts[i] for i in range(partial.total))

    def _forget(self, message_id: int) -> None:
        partial = self._pending.pop(message_id)
        self._buffered -= partial.size

    def _accept(self, partial: _Partial, message_id: int, index: int, data: bytes) -> bytes:
        """Validate one chunk against what is known of its message; return its payload."""
        if index in partial.parts:
            raise ChunkError(f"chunk {message_id}:{index} received twice")
        if index == 0:
            if len(data) < FIRST_HEADER_SIZE:
                raise ChunkError(f"first chunk of message {message_id} has no chunk count")
            total = data[3]
            if total == 0:
                raise ChunkError(f"message {message_id} announces 0 chunks")
            beyond = [i for i in partial.parts if i >= total]
            if beyond:
                raise ChunkError(
                    f"message {message_id} announces {total} chunks but chunk {beyond[0]} arrived"
                )
            partial.total = total
            body = data[FIRST_HEADER_SIZE:]
        else:
            if partial.total is not None and index >= partial.total:
                raise ChunkError(
                    f"chunk {message_id}:{index} is beyond the {partial.total} chunks announced"
                )
            body = data[HEADER_SIZE:]
        if self._buffered + len(body) > self.max_message_bytes:
            raise ChunkError(
                f"message {message_id}: incomplete messages exceed {self.max_message_bytes} bytes"
            )
        return body

    def reset(self) -> None:
        """Forget every incomplete message."""
        self._pending.clear()
        self._buffered = 0

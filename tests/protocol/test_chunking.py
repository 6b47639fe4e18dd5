"""DISCO chunk framing: headers as the 2.1.1 client writes them, round trips, malformed chunks."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disco.protocol.chunking import (
    DISCO_CHUNK_SIZE,
    FIRST_HEADER_SIZE,
    HEADER_SIZE,
    MAX_CHUNKS,
    ChunkError,
    MessageTooLarge,
    Reassembler,
    chunk_count,
    chunk_message,
    max_message_size,
)

PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)

FIRST_BODY = DISCO_CHUNK_SIZE - FIRST_HEADER_SIZE  # 16380
LATER_BODY = DISCO_CHUNK_SIZE - HEADER_SIZE  # 16381


def payload(size: int) -> bytes:
    """Distinct-looking bytes (a repeating 251-cycle), so misplaced slices show."""
    return bytes(i % 251 for i in range(size))


def reassemble(chunks: list[bytes], reassembler: Reassembler | None = None) -> list[bytes]:
    """Every message the chunks complete, in order."""
    r = reassembler or Reassembler()
    return [m for c in chunks if (m := r.feed(c)) is not None]


# --------------------------------------------------------------------------- headers


def test_headers_are_those_of_the_js_client() -> None:
    """First chunk: id (uint16 BE), index 0, count; later ones: id, index; 16 KiB at most."""
    chunks = chunk_message(0x1234, payload(FIRST_BODY + LATER_BODY + 10))
    assert [len(c) for c in chunks] == [DISCO_CHUNK_SIZE, DISCO_CHUNK_SIZE, HEADER_SIZE + 10]
    assert chunks[0][:4] == bytes([0x12, 0x34, 0, 3])
    assert chunks[1][:3] == bytes([0x12, 0x34, 1])
    assert chunks[2][:3] == bytes([0x12, 0x34, 2])
    assert b"".join([chunks[0][4:], chunks[1][3:], chunks[2][3:]]) == payload(
        FIRST_BODY + LATER_BODY + 10
    )


def test_small_and_empty_messages_are_one_chunk() -> None:
    assert chunk_message(7, b"abc") == [struct.pack(">HBB", 7, 0, 1) + b"abc"]
    assert chunk_message(7, b"") == [struct.pack(">HBB", 7, 0, 1)]
    assert reassemble(chunk_message(7, b"")) == [b""]


@pytest.mark.parametrize(
    ("size", "chunks"),
    [
        (0, 1),
        (FIRST_BODY, 1),
        # The 2.1.1 sender loses the last bytes of messages of 16381..16384 bytes (one chunk of
        # 16384 holding 16380); here they take two chunks and arrive whole.
        (FIRST_BODY + 1, 2),
        (DISCO_CHUNK_SIZE, 2),
        (FIRST_BODY + LATER_BODY, 2),
        (FIRST_BODY + LATER_BODY + 1, 3),
    ],
)
def test_boundaries_round_trip(size: int, chunks: int) -> None:
    data = payload(size)
    made = chunk_message(1, data)
    assert len(made) == chunks == chunk_count(size)
    assert all(len(c) <= DISCO_CHUNK_SIZE for c in made)
    assert reassemble(made) == [data]


def test_largest_message_takes_255_chunks_and_one_more_byte_is_refused() -> None:
    limit = max_message_size()
    assert limit == FIRST_BODY + (MAX_CHUNKS - 1) * LATER_BODY == 4_177_154
    data = payload(limit)
    made = chunk_message(65535, data)
    assert len(made) == MAX_CHUNKS
    assert made[0][3] == MAX_CHUNKS
    assert reassemble(made, Reassembler(max_message_bytes=limit)) == [data]
    with pytest.raises(MessageTooLarge, match="256 chunks"):
        chunk_message(0, payload(limit + 1))


def test_bigger_chunks_carry_bigger_messages() -> None:
    size = 64 * 1024
    assert max_message_size(size) == (size - 4) + 254 * (size - 3)
    data = payload(3 * size)
    made = chunk_message(2, data, size)
    assert len(made) == 4 and max(len(c) for c in made) == size
    assert reassemble(made, Reassembler(max_message_bytes=max_message_size(size))) == [data]


def test_message_id_and_chunk_size_are_checked() -> None:
    with pytest.raises(ValueError, match="message id"):
        chunk_message(65536, b"x")
    with pytest.raises(ValueError, match="message id"):
        chunk_message(-1, b"x")
    with pytest.raises(ValueError, match="chunk size"):
        chunk_message(0, b"x", chunk_size=4)


@PROPERTY
@given(
    sizes=st.lists(st.integers(0, 3 * 1024), min_size=1, max_size=4),
    chunk_size=st.integers(16, 700),  # 255 chunks of 16 bytes carry 3314 bytes
    order=st.randoms(use_true_random=False),
)
def test_interleaved_and_reordered_messages_round_trip(
    sizes: list[int], chunk_size: int, order: object
) -> None:
    """Chunks of several messages, shuffled (first chunks anywhere), rebuild every message."""
    messages = {i: payload(size)[::-1] + bytes([i]) for i, size in enumerate(sizes)}
    chunks = [c for i, m in messages.items() for c in chunk_message(i, m, chunk_size)]
    order.shuffle(chunks)  # type: ignore[attr-defined]
    reassembler = Reassembler(max_pending=len(sizes))
    got = reassemble(chunks, reassembler)
    assert sorted(got) == sorted(messages.values())
    assert reassembler.pending == 0


# --------------------------------------------------------------------------- malformed chunks


def test_too_short_chunks_are_refused() -> None:
    r = Reassembler()
    with pytest.raises(ChunkError, match="shorter"):
        r.feed(b"\x00\x01")
    with pytest.raises(ChunkError, match="no chunk count"):
        r.feed(b"\x00\x01\x00")


def test_duplicate_chunks_are_refused_and_the_message_forgotten() -> None:
    first, second, _ = chunk_message(3, payload(2 * DISCO_CHUNK_SIZE))
    r = Reassembler()
    assert r.feed(first) is None
    with pytest.raises(ChunkError, match="twice"):
        r.feed(first)
    assert r.pending == 0
    assert r.feed(second) is None  # a new partial message, not completed by the old chunks
    with pytest.raises(ChunkError, match="twice"):
        r.feed(second)


def test_zero_chunk_count_is_refused() -> None:
    with pytest.raises(ChunkError, match="0 chunks"):
        Reassembler().feed(struct.pack(">HBB", 1, 0, 0))


def test_index_beyond_announced_count_is_refused() -> None:
    r = Reassembler()
    r.feed(struct.pack(">HBB", 1, 0, 2) + b"a")
    with pytest.raises(ChunkError, match="beyond"):
        r.feed(struct.pack(">HB", 1, 2) + b"b")


def test_count_smaller_than_an_early_chunk_index_is_refused() -> None:
    r = Reassembler()
    r.feed(struct.pack(">HB", 1, 5) + b"b")
    with pytest.raises(ChunkError, match="announces 2 chunks but chunk 5"):
        r.feed(struct.pack(">HBB", 1, 0, 2) + b"a")


def test_oversized_messages_and_too_many_pending_are_refused() -> None:
    r = Reassembler(max_message_bytes=10, max_pending=2)
    r.feed(struct.pack(">HBB", 1, 0, 3) + b"12345")
    with pytest.raises(ChunkError, match="exceed 10 bytes"):
        r.feed(struct.pack(">HB", 1, 1) + b"123456")
    r.feed(struct.pack(">HBB", 5, 0, 2) + b"123456")  # the refused message's bytes were freed
    with pytest.raises(ChunkError, match="exceed 10 bytes"):  # all incomplete ones count
        r.feed(struct.pack(">HBB", 6, 0, 2) + b"12345")
    r.reset()
    r.feed(struct.pack(">HBB", 2, 0, 2) + b"x")
    r.feed(struct.pack(">HBB", 3, 0, 2) + b"y")
    with pytest.raises(ChunkError, match="more than 2 messages"):
        r.feed(struct.pack(">HBB", 4, 0, 2) + b"z")
    r.reset()
    assert r.pending == 0
    assert r.feed(struct.pack(">HBB", 4, 0, 1) + b"z") == b"z"

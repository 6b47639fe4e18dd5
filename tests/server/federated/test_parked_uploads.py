"""Uploads cut short are parked for their client to resume: one per client, a bounded number per
task, for a bounded time, never half-written, never claimed by a chunk that does not continue
them."""

from __future__ import annotations

import asyncio
import threading
from unittest.mock import patch

import numpy as np

from disco.protocol.native_chunks import Chunk
from disco.server.federated import uploads
from disco.server.federated.uploads import ParkedUploads, Upload

NAME = "0123456789abcdef0123456789abcdef"
TOTAL = 10
SHAPES = [(TOTAL,)]


def chunk(offset: int, count: int, name: str | None = NAME, total: int = TOTAL) -> Chunk:
    values = np.arange(offset, offset + count, dtype=np.float32)
    return Chunk([(total,)], offset, total, values, name)


async def started(received: int = 4, name: str | None = NAME, round: int = 0) -> Upload:
    upload = Upload(round, None, TOTAL, None, name=name)
    if received:
        await upload.receive(chunk(0, received, name))
    return upload


async def test_a_parked_upload_is_claimed_by_the_chunk_that_continues_it() -> None:
    parked = ParkedUploads(keep_s=60, capacity=4)
    upload = await started()
    parked.park("a", upload)
    assert parked.received("a", NAME) == 4
    assert parked.received("a", "f" * 32) == 0 and parked.received("b", NAME) == 0
    assert parked.claim("b", chunk(4, 2), 0) is None  # another client's
    assert parked.claim("a", chunk(6, 2), 0) is None  # not where it stopped
    assert parked.claim("a", chunk(4, 2, name="f" * 32), 0) is None  # another upload
    assert parked.claim("a", chunk(4, 2), 1) is None  # another round
    assert parked.claim("a", chunk(4, 2, total=12), 0) is None  # another model
    assert len(parked) == 1
    claimed = parked.claim("a", chunk(4, 2), 0)
    assert claimed is upload and len(parked) == 0
    await claimed.receive(chunk(4, 2))
    await claimed.receive(chunk(6, 4))
    staged = claimed.take()
    assert staged.load().tolist() == list(range(TOTAL))
    staged.close()


async def test_only_uploads_that_can_resume_are_parked() -> None:
    parked = ParkedUploads(keep_s=60, capacity=4)
    parked.park("unnamed", await started(name=None))
    parked.park("empty", await started(received=0))
    refused = await started()
    refused.abort()
    parked.park("refused", refused)
    assert len(parked) == 0
    off = ParkedUploads(keep_s=0, capacity=4)
    off.park("a", await started())
    assert len(off) == 0


async def test_one_upload_per_client_and_the_oldest_goes_first() -> None:
    parked = ParkedUploads(keep_s=60, capacity=2)
    first, second, third = await started(), await started(received=2), await started(received=6)
    parked.park("a", first)
    parked.park("a", second)  # the client's newer upload replaces its older one
    assert len(parked) == 1 and parked.received("a", NAME) == 2 and not first.resumable
    parked.park("b", await started())
    parked.park("c", third)  # over capacity: a's goes
    assert len(parked) == 2 and parked.received("a", NAME) == 0 and not second.resumable
    assert parked.received("c", NAME) == 6
    parked.close()
    assert len(parked) == 0 and not third.resumable


async def test_a_parked_upload_expires() -> None:
    parked = ParkedUploads(keep_s=0.05, capacity=2)
    upload = await started()
    parked.park("a", upload)
    assert parked.received("a", NAME) == 4
    for _ in range(100):  # bounded: 5 s at most
        if not len(parked):
            break
        await asyncio.sleep(0.05)
    assert len(parked) == 0 and not upload.resumable  # its file is closed


async def test_a_write_in_flight_ends_before_the_upload_is_parked() -> None:
    """The connection goes while a big chunk is being written in a worker thread: the upload is
    parked once the write is done (never half-written, its file never closed under it)."""
    parked = ParkedUploads(keep_s=60, capacity=2)
    upload = await started()
    release = threading.Event()
    real_add = upload.add

    def slow_add(c: Chunk) -> None:
        assert release.wait(10)
        real_add(c)

    with patch.object(uploads, "THREAD_BYTES", 0), patch.object(upload, "add", slow_add):
        receiving = asyncio.create_task(upload.receive(chunk(4, 3)))
        await asyncio.sleep(0.01)
        receiving.cancel()  # the connection's reader is cancelled mid-write
        parked.park("a", upload)
        assert len(parked) == 0  # not yet: the write is in flight
        release.set()
        for _ in range(100):  # bounded: 5 s at most
            if len(parked):
                break
            await asyncio.sleep(0.05)
    assert parked.received("a", NAME) == 7  # the chunk written whole, then parked
    claimed = parked.claim("a", chunk(7, 3), 0)
    assert claimed is not None
    await claimed.receive(chunk(7, 3))
    staged = claimed.take()
    assert staged.load().tolist() == list(range(TOTAL))
    staged.close()


async def test_an_abort_during_a_write_closes_the_file_after_it() -> None:
    upload = await started()
    release = threading.Event()
    real_add = upload.add
    written: list[bool] = []

    def slow_add(c: Chunk) -> None:
        assert release.wait(10)
        real_add(c)
        written.append(True)

    with patch.object(uploads, "THREAD_BYTES", 0), patch.object(upload, "add", slow_add):
        receiving = asyncio.create_task(upload.receive(chunk(4, 3)))
        await asyncio.sleep(0.01)
        receiving.cancel()
        upload.abort()
        assert upload.resumable  # the file stays open while the write runs
        release.set()
        for _ in range(100):  # bounded: 5 s at most
            if not upload.resumable:
                break
            await asyncio.sleep(0.05)
    assert written == [True] and not upload.resumable

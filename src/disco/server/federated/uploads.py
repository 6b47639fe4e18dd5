"""Updates received in chunks (`disco.protocol.native_chunks`): staged on disk, taken in whole.

A connection has at most one upload in progress. A chunk at offset 0 starts one (dropping an
unfinished one); the next chunks must follow in order. Each chunk is checked as it comes (the
model's shapes, no NaN/Inf) and written to an anonymous temporary file, so the server holds one
chunk at a time; once the last chunk is in, the whole update is submitted to the round engine
(`RoundEngine.submit_staged`), which folds it from the file. Nothing of an upload reaches the
round before it is complete: an upload refused is thrown away with its file, and the client
uploads again.

Resume: an upload whose chunks carry a name (`chunk.upload`) and that a lost connection cut
short is parked (`ParkedUploads`, one per task): kept `upload_resume_s` for its client, at most
one per client and `resumable_uploads` per task (the oldest go first). On a new connection, the
client asks how much the server holds (uploadProgress, type 15) and sends the rest: a chunk at
the parked upload's next offset, with its name, round and total, picks it up. Anything else at
an offset past 0 is refused as before. Parked uploads live in memory and in anonymous files: a
restart forgets them (the client is told 0 and starts again).

The server answers an upload once, like a one-frame postWeightsToServer: with the engine's
verdict after the last chunk, or as soon as a chunk is refused (`status: "invalid"`); the
remaining chunks of a refused upload are then dropped without answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from disco.errors import DiscoError
from disco.protocol.messages import PostStatus, PostWeightsChunk
from disco.protocol.native_chunks import Chunk
from disco.server.federated.contributions import StagedUpdate
from disco.server.federated.engine import SubmitResult

THREAD_BYTES = 1 << 20
"""Chunks bigger than this are checked and written in a worker thread."""


class ChunkRefused(DiscoError, ValueError):
    """A chunk that ends its upload; the message says why."""


class Upload:
    """One chunked update being received (see the module docstring).

    Chunks are written where they belong in the file (positional writes), big ones in a worker
    thread; a write in flight when the connection goes keeps the file open until it ends
    (`when_settled`), so the file is never closed under it nor parked half-written.
    """

    def __init__(
        self,
        round: int,
        num_samples: int | None,
        total: int,
        directory: Path | None,
        refused: bool = False,
        name: str | None = None,
    ) -> None:
        self.round = round
        self.num_samples = num_samples
        self.total = total
        self.name = name  # chunk.upload: set when the client can resume it
        self.received = 0
        self.refused = refused  # then it only swallows the rest of the upload
        self._file: IO[bytes] | None = (
            None if refused else tempfile.TemporaryFile(dir=directory)  # noqa: SIM115
        )
        self._writing: asyncio.Future[None] | None = None

    def add(self, chunk: Chunk) -> None:
        """Check and store the next chunk; ChunkRefused when it does not belong here."""
        if chunk.offset != self.received:
            raise ChunkRefused(
                f"chunk at parameter {chunk.offset}, expected {self.received} (chunks go in order)"
            )
        if not bool(np.isfinite(chunk.values).all()):
            raise ChunkRefused(
                f"weights hold NaN or Inf (parameters {chunk.offset}..{chunk.end - 1})"
            )
        assert self._file is not None
        _write_at(self._file.fileno(), chunk.values.data.cast("B"), 4 * chunk.offset)
        self.received = chunk.end

    async def receive(self, chunk: Chunk) -> None:
        """`add`, in a worker thread for a big chunk (the write outlives a cancelled caller)."""
        if chunk.values.nbytes <= THREAD_BYTES:
            self.add(chunk)
            return
        self._writing = asyncio.ensure_future(asyncio.to_thread(self.add, chunk))
        await asyncio.shield(self._writing)

    def when_settled(self, then: Callable[[], None]) -> None:
        """Call `then` once no write is in flight: now, or when the write ends."""
        writing = self._writing
        if writing is None or writing.done():
            then()
            return

        def settled(done: asyncio.Future[None]) -> None:
            if not done.cancelled():
                done.exception()  # retrieved: its caller may be gone (the refusal is moot)
            then()

        writing.add_done_callback(settled)

    @property
    def complete(self) -> bool:
        return self.received == self.total and self._file is not None

    @property
    def resumable(self) -> bool:
        """Named, started, incomplete and not refused: worth keeping for a new connection."""
        return (
            self.name is not None and self._file is not None and 0 < self.received < self.total
        )

    def take(self) -> StagedUpdate:
        """The complete update (its file now belongs to the caller)."""
        assert self._file is not None and self.complete
        staged = StagedUpdate(self._file, self.total)
        self._file = None
        return staged

    def abort(self) -> None:
        """Drop what was received (once no write is in flight); idempotent."""
        self.when_settled(self._close)

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


def _write_at(descriptor: int, data: memoryview, position: int) -> None:
    """All of `data` at `position` of the file (pwrite may write less than asked)."""
    while data:
        written = os.pwrite(descriptor, data, position)
        data, position = data[written:], position + written


@dataclass(slots=True)
class _Parked:
    upload: Upload
    expiry: asyncio.TimerHandle


class ParkedUploads:
    """A task's uploads cut short by a lost connection, kept for their clients to resume.

    At most one per client and `capacity` in all (the oldest is dropped first); each is dropped
    `keep_s` after it was parked. Used from the event loop only.
    """

    def __init__(self, keep_s: float, capacity: int) -> None:
        self.keep_s = keep_s
        self.capacity = capacity
        self._parked: dict[str, _Parked] = {}  # by client id, oldest first

    def __len__(self) -> int:
        return len(self._parked)

    def park(self, client_id: str, upload: Upload) -> None:
        """Keep `upload` for `client_id` (replacing one kept before), once its write in flight
        ended; an upload that cannot be resumed, or with parking off, is dropped instead."""
        self.discard(client_id)
        if upload.resumable and self.keep_s > 0 and self.capacity > 0:
            upload.when_settled(lambda: self._park(client_id, upload))
        else:
            upload.abort()

    def _park(self, client_id: str, upload: Upload) -> None:
        if client_id in self._parked or not upload.resumable:
            upload.abort()  # parked late (after a write) while the client went on: too old
            return
        while len(self._parked) >= self.capacity:
            self.discard(next(iter(self._parked)))
        expiry = asyncio.get_running_loop().call_later(self.keep_s, self.discard, client_id)
        self._parked[client_id] = _Parked(upload, expiry)

    def received(self, client_id: str, name: str) -> int:
        """Parameters held of `client_id`'s parked upload `name` (0 when none is)."""
        parked = self._parked.get(client_id)
        return parked.upload.received if parked and parked.upload.name == name else 0

    def claim(self, client_id: str, chunk: Chunk, round: int) -> Upload | None:
        """The parked upload `chunk` continues (taken out of the park), or None when there is
        none: the chunk must carry its name, round and total and start where it stopped."""
        parked = self._parked.get(client_id)
        if parked is None:
            return None
        upload = parked.upload
        if (chunk.upload, chunk.offset, chunk.total, round) != (
            upload.name, upload.received, upload.total, upload.round
        ):
            return None
        del self._parked[client_id]
        parked.expiry.cancel()
        return upload

    def discard(self, client_id: str) -> None:
        """Drop `client_id`'s parked upload, if any; idempotent."""
        parked = self._parked.pop(client_id, None)
        if parked is not None:
            parked.expiry.cancel()
            parked.upload.abort()

    def close(self) -> None:
        """Drop every parked upload."""
        for client_id in list(self._parked):
            self.discard(client_id)


def invalid(reason: str, round: int) -> SubmitResult:
    return SubmitResult(PostStatus.INVALID, round, reason)


@dataclass(frozen=True, slots=True)
class Uploader:
    """Who sends a chunk, and where its uploads go: the connection's client and its task's
    staging directory and parked uploads."""

    client_id: str
    directory: Path | None
    parked: ParkedUploads


async def receive_chunk(
    session_upload: Upload | None,
    message: PostWeightsChunk,
    shapes: list[tuple[int, ...]],
    server_round: int,
    uploader: Uploader,
) -> tuple[Upload | None, SubmitResult | None, Upload | None]:
    """Apply one chunk to a connection's upload state.

    Returns (the connection's upload from now on, a refusal to answer now or None, the upload
    this chunk completed, to `take` and submit, or None).
    """
    chunk = message.chunk
    upload = session_upload
    if chunk.offset == 0:
        if upload is not None:
            upload.abort()
        uploader.parked.discard(uploader.client_id)  # the client starts over
        if chunk.shapes != shapes:
            upload = Upload(message.round, None, chunk.total, None, refused=True)
            reason = f"the update's shapes {chunk.shapes} differ from the model's {shapes}"
            return (None if chunk.last else upload), invalid(reason[:300], server_round), None
        upload = Upload(
            message.round, message.num_samples, chunk.total, uploader.directory,
            name=chunk.upload,
        )
    elif upload is None:
        upload = uploader.parked.claim(uploader.client_id, chunk, message.round)
        if upload is None:
            upload = Upload(message.round, None, chunk.total, None, refused=True)
            reason = f"chunk at parameter {chunk.offset} without an upload started at 0"
            if chunk.upload is not None:
                reason += f" or an interrupted upload {chunk.upload!r} to resume there"
            return (None if chunk.last else upload), invalid(reason, server_round), None
    elif upload.refused:
        return (None if chunk.last else upload), None, None  # the rest of a refused upload
    try:
        if chunk.offset and (message.round, chunk.total, chunk.upload) != (
            upload.round, upload.total, upload.name
        ):
            raise ChunkRefused("a chunk of another upload arrived before this one was complete")
        await upload.receive(chunk)
    except ChunkRefused as error:
        upload.abort()
        upload.refused = True
        return (None if chunk.last else upload), invalid(str(error), server_round), None
    if upload.complete:
        return None, None, upload
    return upload, None, None

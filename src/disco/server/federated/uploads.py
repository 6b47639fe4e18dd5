"""Updates received in chunks (`disco.protocol.native_chunks`): staged on disk, taken in whole.

A connection has at most one upload in progress. A chunk at offset 0 starts one (dropping an
unfinished one); the next chunks must follow in order. Each chunk is checked as it comes (the
model's shapes, no NaN/Inf) and written to an anonymous temporary file, so the server holds one
chunk at a time; once the last chunk is in, the whole update is submitted to the round engine
(`RoundEngine.submit_staged`), which folds it from the file. Nothing of an upload reaches the
round before it is complete: an upload cut short (the connection drops, a chunk is refused) is
thrown away with its file, and the client uploads again.

The server answers an upload once, like a one-frame postWeightsToServer: with the engine's
verdict after the last chunk, or as soon as a chunk is refused (`status: "invalid"`); the
remaining chunks of a refused upload are then dropped without answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
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
    """One chunked update being received (see the module docstring)."""

    def __init__(
        self,
        round: int,
        num_samples: int | None,
        total: int,
        directory: Path | None,
        refused: bool = False,
    ) -> None:
        self.round = round
        self.num_samples = num_samples
        self.total = total
        self.received = 0
        self.refused = refused  # then it only swallows the rest of the upload
        self._file: IO[bytes] | None = (
            None if refused else tempfile.TemporaryFile(dir=directory)  # noqa: SIM115
        )

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
        if chunk.values.size:
            self._file.write(chunk.values.data)
        self.received = chunk.end

    @property
    def complete(self) -> bool:
        return self.received == self.total and self._file is not None

    def take(self) -> StagedUpdate:
        """The complete update (its file now belongs to the caller)."""
        assert self._file is not None and self.complete
        self._file.flush()
        staged = StagedUpdate(self._file, self.total)
        self._file = None
        return staged

    def abort(self) -> None:
        """Drop what was received; idempotent."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


def invalid(reason: str, round: int) -> SubmitResult:
    return SubmitResult(PostStatus.INVALID, round, reason)


async def receive_chunk(
    session_upload: Upload | None,
    message: PostWeightsChunk,
    shapes: list[tuple[int, ...]],
    server_round: int,
    directory: Path | None,
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
        if chunk.shapes != shapes:
            upload = Upload(message.round, None, chunk.total, None, refused=True)
            reason = f"the update's shapes {chunk.shapes} differ from the model's {shapes}"
            return (None if chunk.last else upload), invalid(reason[:300], server_round), None
        upload = Upload(message.round, message.num_samples, chunk.total, directory)
    elif upload is None:
        upload = Upload(message.round, None, chunk.total, None, refused=True)
        reason = f"chunk at parameter {chunk.offset} without an upload started at 0"
        return (None if chunk.last else upload), invalid(reason, server_round), None
    elif upload.refused:
        return (None if chunk.last else upload), None, None  # the rest of a refused upload
    try:
        if chunk.offset and (message.round, chunk.total) != (upload.round, upload.total):
            raise ChunkRefused("a chunk of another upload arrived before this one was complete")
        if chunk.values.nbytes > THREAD_BYTES:
            await asyncio.to_thread(upload.add, chunk)
        else:
            upload.add(chunk)
    except ChunkRefused as error:
        upload.abort()
        upload.refused = True
        return (None if chunk.last else upload), invalid(str(error), server_round), None
    if upload.complete:
        return None, None, upload
    return upload, None, None

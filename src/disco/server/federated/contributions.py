"""The contributions of one round, kept as the task's aggregator needs them.

- `FoldedUpdates` (FedAvg, plain or sample-weighted): each update is folded into a running sum
  (`disco.aggregation.running.RunningMean`) the moment it is accepted, so the server holds one
  model-sized accumulator whatever the number of clients. Each update is also written to the
  round's journal, which makes the engine's rules exact: a resend replaces the client's journal
  entry and the sum is folded again from the journal (floating-point subtraction would not give
  back the same sum), and so is a round whose sample counts stop being all-or-nothing, or that
  drops a departed client's update. A journal entry is a copy in memory while the update is
  small (at most `JOURNAL_ENTRY_BYTES`) and the round's in-memory entries stay within
  `JOURNAL_MEMORY_BYTES`; past that budget, and for every bigger update, it is an anonymous
  temporary file per client (page cache and disk, not process memory), deleted when the round
  ends. A thousand small updates then cost no file creation each (an anonymous file is a few
  system calls and a disk allocation), while big models keep nothing update-sized in memory
  beyond the accumulator.
- `KeptUpdates` (median, trimmed mean, centered clipping): these need every update at once, so
  the round keeps N decoded copies (N × 4 bytes × parameters, plus the method's temporaries:
  about as much again for the median's and trimmed mean's per-block sorts) and calls the
  aggregator at the end.

Both are used under the engine's lock; `put` and `aggregate` do CPU and file work and run in a
worker thread for big models.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Protocol

import numpy as np
from numpy.typing import NDArray

from disco.aggregation.running import BLOCK, RunningMean
from disco.aggregation.strategy import Aggregator
from disco.weights import Shape, Weights, flatten, split_by_shapes


class RoundUpdates(Protocol):
    """What the engine needs of a round's contributions."""

    def __len__(self) -> int: ...

    def __contains__(self, client: object) -> bool: ...

    def clients(self) -> set[str]: ...

    def put(self, client: str, weights: Weights, num_samples: int | None) -> None:
        """Add or replace `client`'s (validated, float32) update."""
        ...

    def put_staged(self, client: str, staged: StagedUpdate, num_samples: int | None) -> None:
        """Add or replace `client`'s update received in chunks (validated, in a file)."""
        ...

    def drop(self, client: str) -> None:
        """Take `client`'s update out of the round (its client left too long ago)."""
        ...

    def aggregate(self, previous: Weights) -> Weights:
        """The next global model (the round's updates are spent afterwards)."""
        ...

    def close(self) -> None:
        """Release what the round holds (files, arrays); idempotent."""
        ...


JOURNAL_ENTRY_BYTES = 1024 * 1024
"""Largest update (float32 bytes: 262,144 parameters) whose journal entry may stay in memory.
An anonymous file costs about 0.3 ms of CPU per update (creation, write, release) against
about 0.05 ms for the copy in memory, whose total the round's budget bounds anyway."""

JOURNAL_MEMORY_BYTES = 16 * 1024 * 1024
"""In-memory journal entries of one round, in bytes at most; further entries go to files."""


class StagedUpdate:
    """A complete flat float32 update whose ownership passes to the round that takes it in: a
    chunked upload (in an anonymous temporary file), or an update prepared ahead of the engine's
    lock (`stage`): written to its file when it is big, kept in memory (`values`) in any case
    so that it is folded from there."""

    def __init__(
        self,
        handle: IO[bytes] | None,
        size: int,
        values: NDArray[np.float32] | None = None,
        owned: bool = False,
    ) -> None:
        if handle is None and values is None:
            raise ValueError("a staged update needs its file or its values")
        self.handle = handle
        self.size = size
        self.values = values
        self.owned = owned
        """`values` is a float32 array of this update's own, not a view of anything else: the
        journal may keep it as it is (no copy per post)."""

    def blocks(self) -> Iterator[tuple[int, NDArray[np.float32]]]:
        """(start, values) blocks, from memory when kept, else read back from the file."""
        if self.values is not None:
            return iter([(0, self.values)])
        assert self.handle is not None  # one of the two (see __init__)
        return read_blocks(self.handle, self.size)

    def load(self) -> NDArray[np.float32]:
        """The whole update in memory."""
        if self.values is not None:
            return self.values
        out = np.empty(self.size, dtype=np.float32)
        for start, values in self.blocks():
            out[start : start + values.size] = values
        return out

    def close(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()


def stage(
    flat: NDArray[np.float32], directory: Path | None, owned: bool = False
) -> StagedUpdate:
    """Prepare a flat, validated update before the engine's lock is taken, so that folding
    under the lock is only the additions: a big one is written to its own anonymous temporary
    file; a small one (at most `JOURNAL_ENTRY_BYTES`) is kept as it is, its journal entry being
    decided under the lock (in memory within the round's budget, else a file). `owned`: `flat`
    is a float32 array nothing else refers to (see `StagedUpdate.owned`)."""
    if flat.nbytes <= JOURNAL_ENTRY_BYTES:
        return StagedUpdate(None, int(flat.size), flat, owned)
    handle = write_temporary(flat, directory)
    return StagedUpdate(handle, int(flat.size), flat)


def write_temporary(flat: NDArray[np.float32], directory: Path | None) -> IO[bytes]:
    """`flat` as float32 LE in a new anonymous temporary file (closed when dropped)."""
    handle = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115
    try:
        np.ascontiguousarray(flat, dtype="<f4").tofile(handle)
        handle.flush()
    except BaseException:
        handle.close()
        raise
    return handle


def read_blocks(handle: IO[bytes], size: int) -> Iterator[tuple[int, NDArray[np.float32]]]:
    """(start, values) blocks of `size` float32 LE values stored at the start of `handle`."""
    descriptor = handle.fileno()
    for start in range(0, size, BLOCK):
        count = min(BLOCK, size - start)
        raw = os.pread(descriptor, 4 * count, 4 * start)
        if len(raw) != 4 * count:
            raise OSError("a stored update is shorter than expected")
        yield start, np.frombuffer(raw, dtype="<f4").astype(np.float32, copy=False)


def sample_weight(count: int | None) -> float:
    """A sample count as a folding weight, rounded to float32 precision (as `mean` does): the
    weight × a float32 value is then exact in float64, so a single update comes out unchanged."""
    return 1.0 if count is None else float(np.float32(count))


def sample_counts(counts: Sequence[int | None]) -> list[float] | None:
    """All-or-nothing: the counts when every update has one, else None (plain mean)."""
    if all(count is not None for count in counts):
        return [float(count) for count in counts if count is not None]
    return None


class KeptUpdates:
    """Every update kept in memory until the aggregator combines them (robust methods)."""

    def __init__(self, aggregator: Aggregator, shapes: Sequence[Shape]) -> None:
        self._aggregator = aggregator
        self._shapes = list(shapes)
        self._updates: dict[str, tuple[Weights, int | None]] = {}

    def __len__(self) -> int:
        return len(self._updates)

    def __contains__(self, client: object) -> bool:
        return client in self._updates

    def clients(self) -> set[str]:
        return set(self._updates)

    def put(self, client: str, weights: Weights, num_samples: int | None) -> None:
        self._updates[client] = (weights, num_samples)

    def put_staged(self, client: str, staged: StagedUpdate, num_samples: int | None) -> None:
        try:
            self._updates[client] = (split_by_shapes(staged.load(), self._shapes), num_samples)
        finally:
            staged.close()

    def drop(self, client: str) -> None:
        self._updates.pop(client, None)

    def aggregate(self, previous: Weights) -> Weights:
        updates = [weights for weights, _ in self._updates.values()]
        counts = sample_counts([count for _, count in self._updates.values()])
        return self._aggregator(updates, counts, previous)

    def close(self) -> None:
        self._updates.clear()


class Journal:
    """Each client's flat float32 update: a copy in memory for small updates while the round's
    in-memory entries stay within `memory_bytes`, else an anonymous temporary file of its own."""

    def __init__(
        self,
        directory: Path | None,
        memory_bytes: int = JOURNAL_MEMORY_BYTES,
        entry_bytes: int = JOURNAL_ENTRY_BYTES,
    ) -> None:
        self.directory = directory
        self.memory_bytes = memory_bytes
        self.entry_bytes = entry_bytes
        self._files: dict[str, IO[bytes]] = {}
        self._kept: dict[str, NDArray[np.float32]] = {}
        self._kept_bytes = 0

    @property
    def kept_bytes(self) -> int:
        """Bytes of the entries held in memory."""
        return self._kept_bytes

    def in_memory(self, client: str) -> bool:
        """True when `client`'s entry is held in memory (False: in a file, or none)."""
        return client in self._kept

    def write(self, client: str, flat: NDArray[np.float32], owned: bool = False) -> None:
        """Store `flat` as `client`'s entry, replacing an earlier one: in memory when it is
        small and the budget allows, else in a new file. `owned`: `flat` is a float32 array
        given up by the caller, kept without a copy."""
        self.discard(client)
        nbytes = 4 * int(flat.size)
        if nbytes <= self.entry_bytes and self._kept_bytes + nbytes <= self.memory_bytes:
            # A copy unless owned: `flat` may be a view of a received frame, which must not be
            # kept alive, or an array its caller still uses.
            self._kept[client] = flat if owned else np.array(flat, dtype=np.float32, copy=True)
            self._kept_bytes += nbytes
            return
        self._files[client] = write_temporary(flat, self.directory)

    def adopt(self, client: str, handle: IO[bytes]) -> None:
        """Make an already written file `client`'s entry, replacing an earlier one."""
        self.discard(client)
        self._files[client] = handle

    def take(self, client: str, staged: StagedUpdate) -> None:
        """Make a staged update `client`'s entry: its file when it has one, else its values."""
        if staged.handle is not None:
            self.adopt(client, staged.handle)
        else:
            assert staged.values is not None
            self.write(client, staged.values, staged.owned)

    def blocks(self, client: str, size: int) -> Iterator[tuple[int, NDArray[np.float32]]]:
        """(start, values) blocks of `client`'s entry, from memory or read back from its file."""
        kept = self._kept.get(client)
        if kept is not None:
            return iter([(0, kept)])
        return read_blocks(self._files[client], size)

    def discard(self, client: str) -> None:
        kept = self._kept.pop(client, None)
        if kept is not None:
            self._kept_bytes -= 4 * int(kept.size)
        handle = self._files.pop(client, None)
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    def close(self) -> None:
        for client in [*self._files, *self._kept]:
            self.discard(client)


class FoldedUpdates:
    """A running (sample-weighted) mean plus the round's journal (see the module docstring)."""

    def __init__(
        self,
        shapes: Sequence[Shape],
        journal_dir: Path | None = None,
        journal_memory_bytes: int = JOURNAL_MEMORY_BYTES,
    ) -> None:
        self.shapes = list(shapes)
        self.size = sum(int(np.prod(shape, dtype=np.int64)) for shape in self.shapes)
        self.running = RunningMean(self.size)
        self.journal = Journal(journal_dir, journal_memory_bytes)
        self._counts: dict[str, int | None] = {}
        self._weighted = True  # the accumulator holds sample-weighted sums

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, client: object) -> bool:
        return client in self._counts

    def clients(self) -> set[str]:
        return set(self._counts)

    def put(self, client: str, weights: Weights, num_samples: int | None) -> None:
        flat = flatten(weights)
        self.journal.write(client, flat)
        weight = self._entered(client, num_samples)
        if weight is not None:
            self.running.fold(flat, 0, weight)
            self.running.counted(weight)

    def put_staged(self, client: str, staged: StagedUpdate, num_samples: int | None) -> None:
        self.journal.take(client, staged)
        weight = self._entered(client, num_samples)
        if weight is not None:
            for start, values in staged.blocks():
                self.running.fold(values, start, weight)
            self.running.counted(weight)

    def _entered(self, client: str, num_samples: int | None) -> float | None:
        """Book `client`'s new journal entry; the weight to fold it with, or None when the
        whole round was re-folded instead (a replacement, or a change of weighting)."""
        replaced = client in self._counts
        self._counts[client] = num_samples
        if replaced or (self._weighted and num_samples is None and len(self._counts) > 1):
            self.refold()
            return None
        if len(self._counts) == 1:
            self._weighted = num_samples is not None
        return sample_weight(num_samples) if self._weighted else 1.0

    def refold(self) -> None:
        """Fold every journal entry again (after a replacement or a change of weighting)."""
        self.running.reset()
        self._weighted = sample_counts(list(self._counts.values())) is not None
        for client, count in self._counts.items():
            weight = sample_weight(count) if self._weighted else 1.0
            for start, values in self.journal.blocks(client, self.size):
                self.running.fold(values, start, weight)
            self.running.counted(weight)

    def drop(self, client: str) -> None:
        """Forget `client`'s entry and fold the others again (exact, from the journal)."""
        if client not in self._counts:
            return
        del self._counts[client]
        self.journal.discard(client)
        self.refold()

    def aggregate(self, previous: Weights) -> Weights:
        return split_by_shapes(self.running.result(), self.shapes)

    def close(self) -> None:
        self.journal.close()
        self.running.reset()
        self._counts.clear()

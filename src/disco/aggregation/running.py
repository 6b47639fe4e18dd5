"""FedAvg folded one update at a time: memory of one model whatever the number of updates.

`RunningMean` keeps Σ wᵢ·xᵢ and Σ wᵢ (wᵢ = 1, or the update's sample count) in an accumulator of
the model's size; updates, or contiguous pieces of one, are added as they come and never kept.
The accumulator is float64 (the mean is then exact to float32 rounding, as `mean.mean`) up to
`FLOAT64_MAX_PARAMS` parameters; bigger models accumulate in float32 (8 bytes per parameter would
not fit beside the model), whose result is within N float32 roundings of the exact mean.

Replacing or removing an update is not possible here (subtracting is not exact in floating
point): the caller re-folds the updates it keeps elsewhere (the server's round journal).
Pure numpy, no I/O; big folds belong in a worker thread.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FLOAT64_MAX_PARAMS = 1 << 26
"""Largest model accumulated in float64 (512 MB of accumulator)."""

BLOCK = 1 << 18
"""Parameters per numpy pass: temporaries stay in cache whatever the model size."""


class RunningMean:
    """Σ wᵢ·xᵢ / Σ wᵢ over updates folded in with `fold` (see the module docstring)."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("size must be non-negative")
        self.size = size
        self.dtype = np.dtype(np.float64 if size <= FLOAT64_MAX_PARAMS else np.float32)
        self._acc: NDArray[np.floating] | None = None
        self.total = 0.0
        self.count = 0

    def fold(self, values: NDArray[np.float32], start: int = 0, weight: float = 1.0) -> None:
        """Add `weight` × `values` at `start` of the flat model (a whole update or a piece)."""
        stop = start + values.size
        if start < 0 or stop > self.size:
            raise ValueError(f"values [{start}, {stop}) fall outside a model of {self.size}")
        acc = self._accumulator()
        flat = values.reshape(-1)
        scratch = np.empty(min(BLOCK, flat.size), dtype=self.dtype)
        for offset in range(0, flat.size, BLOCK):
            piece = flat[offset : offset + BLOCK]
            target = acc[start + offset : start + offset + piece.size]
            if weight == 1.0:
                np.add(target, piece, out=target)
            else:
                part = scratch[: piece.size]
                np.multiply(piece, weight, out=part, dtype=self.dtype)  # not in float32
                np.add(target, part, out=target)

    def counted(self, weight: float = 1.0) -> None:
        """One more update (all its pieces folded) of this weight."""
        self.total += weight
        self.count += 1

    def result(self) -> NDArray[np.float32]:
        """The mean as a new float32 vector; the accumulator is then spent (call `reset`)."""
        if self.count == 0 or self.total <= 0:
            raise ValueError("no update was folded")
        acc = self._accumulator()
        self._acc = None
        if acc.dtype == np.float32:  # divide in place: no second model-sized buffer
            np.divide(acc, np.float32(self.total), out=acc)
            return acc.astype(np.float32, copy=False)
        out = np.empty(self.size, dtype=np.float32)
        for offset in range(0, self.size, BLOCK):
            piece = acc[offset : offset + BLOCK]
            np.divide(piece, self.total, out=piece)
            out[offset : offset + piece.size] = piece
        return out

    def reset(self) -> None:
        """Forget every update (the accumulator is zeroed when next used)."""
        self._acc = None
        self.total = 0.0
        self.count = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the accumulator right now."""
        return 0 if self._acc is None else int(self._acc.nbytes)

    def _accumulator(self) -> NDArray[np.floating]:
        if self._acc is None:
            self._acc = np.zeros(self.size, dtype=self.dtype)
        return self._acc

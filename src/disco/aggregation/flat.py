"""Structure checks of updates and their cut into aligned pieces that aggregators stream over.

Aggregators treat a model as one long vector (`disco.weights.flatten`) so they can stream over it
in cache-sized blocks with a fixed number of numpy calls per block, however many tensors the
model has.
"""

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from disco.weights import Shape, contiguous_view, first_non_finite, flatten, shapes_of

from .errors import AggregationError


def check_updates(
    updates: Sequence[Sequence[NDArray[Any]]], reference: Sequence[Shape] | None = None
) -> list[Shape]:
    """Check that `updates` is non-empty and every update has the same float tensors.

    The shapes must equal `reference` when given, otherwise those of the first update.
    Returns the common shapes. Finiteness is checked by the aggregators themselves, where it is
    cheaper (on results or on cache-resident blocks).
    """
    if len(updates) == 0:
        raise AggregationError("no updates to aggregate")
    expected: list[Shape] | None = list(reference) if reference is not None else None
    for i, update in enumerate(updates):
        if expected is not None and len(update) != len(expected):
            raise AggregationError(
                f"update {i} has {len(update)} tensors, expected {len(expected)}"
            )
        for j, tensor in enumerate(update):
            if not isinstance(tensor, np.ndarray):
                raise AggregationError(
                    f"update {i}, tensor {j}: expected a numpy array, got {type(tensor).__name__}"
                )
            if tensor.dtype.kind != "f":
                raise AggregationError(
                    f"update {i}, tensor {j}: expected floating point values, got {tensor.dtype}"
                )
            if expected is not None and tensor.shape != expected[j]:
                raise AggregationError(
                    f"update {i}, tensor {j}: shape {list(tensor.shape)} does not match "
                    f"{list(expected[j])}"
                )
        if expected is None:
            expected = shapes_of(update)
    assert expected is not None
    return expected


SMALL_TENSOR = 8192
"""Tensors with fewer values are merged with their small neighbours into one piece: copying
them costs less than the per-piece numpy calls (measured on models with many small tensors)."""
RUN_ELEMENTS = 65536
"""Largest piece made by merging small tensors."""


def _runs(shapes: Sequence[Shape]) -> list[tuple[int, int]]:
    """Group tensors into runs: each big tensor alone, small neighbours together."""
    runs: list[tuple[int, int]] = []
    first, total, open_small = 0, 0, False
    for j, shape in enumerate(shapes):
        size = math.prod(shape)
        small = size < SMALL_TENSOR
        if j > first and not (small and open_small and total + size <= RUN_ELEMENTS):
            runs.append((first, j))
            first, total = j, 0
        total += size
        open_small = small
    if first < len(shapes):
        runs.append((first, len(shapes)))
    return runs


@dataclass(frozen=True)
class Pieces:
    """Updates cut into aligned 1-D float32 pieces, so aggregators can stream over them.

    pieces[i][r] is run r of update i; run r starts at offsets[r] of the flat model vector.
    Pieces are views of the inputs where possible: a big C-contiguous tensor is never copied,
    and small neighbouring tensors are copied together (see SMALL_TENSOR, RUN_ELEMENTS).
    """

    pieces: list[list[NDArray[np.float32]]]
    offsets: list[int]
    size: int

    def blocks(self, block: int) -> Iterator[tuple[int, int, int, int]]:
        """(run, start, stop, flat_start) for blocks of at most `block` values."""
        for run, offset in enumerate(self.offsets):
            length = self.pieces[0][run].size
            for start in range(0, length, block):
                stop = min(length, start + block)
                yield run, start, stop, offset + start


def pieces_of(updates: Sequence[Sequence[NDArray[Any]]], shapes: Sequence[Shape]) -> Pieces:
    """Cut updates (already checked to have `shapes`) into aligned pieces."""
    runs = _runs(shapes)
    sizes = [math.prod(s) for s in shapes]
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + size)
    offsets = [starts[first] for first, _ in runs]
    pieces: list[list[NDArray[np.float32]]] = []
    for update in updates:
        whole = contiguous_view(update)
        if whole is not None:
            pieces.append([whole[starts[a] : starts[b]] for a, b in runs])
        else:
            pieces.append([flatten(update[a:b]) for a, b in runs])
    return Pieces(pieces=pieces, offsets=offsets, size=starts[-1])


def aggregation_bytes(updates: Sequence[Sequence[NDArray[Any]]]) -> int:
    """Bytes an aggregator must read for `updates` (for throughput figures in benchmarks)."""
    return sum(int(t.nbytes) for update in updates for t in update)


def non_finite_error(updates: Sequence[Sequence[NDArray[Any]]]) -> AggregationError | None:
    """An error naming the first update and tensor that hold NaN or infinity, if any."""
    for i, update in enumerate(updates):
        j = first_non_finite(update)
        if j is not None:
            return AggregationError(
                f"update {i}, tensor {j}: contains non-finite values (NaN or infinity)"
            )
    return None

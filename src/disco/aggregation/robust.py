"""Byzantine-robust aggregators: coordinate-wise median, trimmed mean, centered clipping.

All of them ignore sample counts on purpose: counts are reported by the clients themselves, so a
malicious client could claim a huge count to outweigh everyone else.

Median and trimmed mean sort a (block, n) stack of coordinates at a time, which bounds memory to
`STACK_BYTES` whatever the model size. Measured for 50 clients x 1e6 parameters: ~140 ms with
a row sort, ~5x faster than np.median's partition along the client axis.
"""

import math
import numbers
from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from disco.weights import Weights, flatten, shapes_of, split_by_shapes

from .errors import AggregationError
from .flat import Pieces, check_updates, non_finite_error, pieces_of

STACK_BYTES = 1 << 20
"""Size of the per-block stack of client values for median and trimmed mean."""
BLOCK = 32768
"""Coordinates per block in centered clipping (float64 scratch stays in L2)."""


def _real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AggregationError(f"{name} must be a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise AggregationError(f"{name} must be finite, got {result}")
    return result


def _stacked_blocks(
    updates: Sequence[Weights], pieces: Pieces, sort: bool
) -> Iterator[tuple[int, int, NDArray[np.float32]]]:
    """Yield (flat_start, flat_stop, stack) with stack[c, i] = coordinate flat_start+c of update i.

    Rows are sorted when `sort`; a block with a non-finite value raises, naming the update.
    """
    runs = pieces.pieces
    n = len(runs)
    block = max(1, min(pieces.size, STACK_BYTES // (4 * n)))
    buffer = np.empty((block, n), dtype=np.float32)
    for run, start, stop, at in pieces.blocks(block):
        stack = buffer[: stop - start]
        for i, update in enumerate(runs):
            stack[:, i] = update[run][start:stop]
        if not np.isfinite(stack).all():
            error = non_finite_error(updates)
            raise error if error is not None else AggregationError("non-finite values")
        if sort:
            stack.sort(axis=1)
        yield at, at + stop - start, stack


def coordinate_median(updates: Sequence[Weights]) -> Weights:
    """Median of every coordinate across updates (mean of the two middle values when even)."""
    shapes = check_updates(updates)
    n = len(updates)
    pieces = pieces_of(updates, shapes)
    out = np.empty(pieces.size, dtype=np.float32)
    low, high = (n - 1) // 2, n // 2
    for start, stop, stack in _stacked_blocks(updates, pieces, sort=n > 2):
        # float64 halves: the midpoint of two float32 values cannot overflow.
        out[start:stop] = (stack[:, low].astype(np.float64) + stack[:, high]) * 0.5
    return split_by_shapes(out, shapes)


def trimmed_count(n: int, trim_ratio: float) -> int:
    """How many values are dropped at each end: floor(trim_ratio * n), keeping at least one."""
    ratio = _real(trim_ratio, "trim_ratio")
    if not 0.0 <= ratio < 0.5:
        raise AggregationError(f"trim_ratio must be in [0, 0.5), got {ratio}")
    # The tiny slack makes e.g. 0.29 * 100 drop 29 despite 0.29 * 100 == 28.999999999999996.
    return min(math.floor(ratio * n + 1e-9), (n - 1) // 2)


def trimmed_mean(updates: Sequence[Weights], trim_ratio: float = 0.1) -> Weights:
    """Per coordinate, drop the k largest and k smallest values and average the rest.

    k = floor(trim_ratio * n); trim_ratio in [0, 0.5) so at least one value always remains.
    """
    shapes = check_updates(updates)
    n = len(updates)
    k = trimmed_count(n, trim_ratio)
    pieces = pieces_of(updates, shapes)
    out = np.empty(pieces.size, dtype=np.float32)
    for start, stop, stack in _stacked_blocks(updates, pieces, sort=k > 0):
        kept = stack[:, k : n - k].sum(axis=1, dtype=np.float64)
        out[start:stop] = kept / (n - 2 * k)
    return split_by_shapes(out, shapes)


def tau_from_percentile(
    distances: Sequence[float] | NDArray[np.float64], percentile: float
) -> float:
    """The `percentile` quantile (a fraction in [0, 1]) of `distances`, linearly interpolated.

    Same rule as DISCO's `computeQuantile` (and numpy's default "linear" method): position
    (n - 1) * percentile in the sorted distances, interpolating between neighbours.
    """
    q = _real(percentile, "tau percentile")
    if not 0.0 <= q <= 1.0:
        raise AggregationError(f"tau percentile must be in [0, 1], got {q}")
    values = np.asarray(distances, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise AggregationError("need a non-empty 1-D list of distances")
    if not np.isfinite(values).all() or (values < 0).any():
        raise AggregationError("distances must be finite and non-negative")
    return float(np.quantile(values, q))


def centered_clipping(
    updates: Sequence[Weights],
    previous: Weights,
    tau: float | None = None,
    iterations: int = 1,
    *,
    tau_percentile: float | None = None,
) -> Weights:
    """Centered clipping (Karimireddy, He & Jaggi 2021, "Learning from History for Byzantine
    Robust Optimization").

    Starting from v = `previous` (the current global model, or momentum), repeat `iterations`
    times:  v <- v + mean_i( (x_i - v) * min(1, tau / ||x_i - v||) ),  where ||.|| is the
    Euclidean norm over all parameters of the model (DISCO's `frobeniusNorm`). An update
    farther than tau from v thus moves v by at most tau / n, whatever its size.

    Give either a fixed `tau`, or `tau_percentile` (a fraction in [0, 1]): then, as in DISCO's
    `avgClippingWeights`, tau is that quantile of the distances ||x_i - v|| (recomputed at each
    iteration). DISCO runs one iteration and returns v + mean(clipped); this matches it for
    iterations=1, without the 2.1.1 client's per-tensor indexing slip (it scaled tensor j of
    every update by the norm of update j).
    """
    if (tau is None) == (tau_percentile is None):
        raise AggregationError("give exactly one of tau and tau_percentile")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise AggregationError(f"iterations must be a positive integer, got {iterations!r}")
    fixed: float | None = None
    quantile = 0.0
    if tau is not None:
        fixed = _real(tau, "tau")
        if fixed < 0:
            raise AggregationError(f"tau must be non-negative, got {fixed}")
    else:
        assert tau_percentile is not None
        quantile = tau_percentile
        tau_from_percentile([0.0], quantile)  # validate before the heavy work

    shapes = check_updates(updates, reference=shapes_of(previous))
    check_updates([previous], reference=shapes)
    pieces = pieces_of(updates, shapes)
    center = flatten(previous).astype(np.float64)
    if not np.isfinite(center).all():
        raise AggregationError("previous model contains non-finite values (NaN or infinity)")
    for _ in range(iterations):
        distances = _distances(pieces, center)
        if not np.isfinite(distances).all():
            error = non_finite_error(updates)
            raise error if error is not None else AggregationError("non-finite distances")
        threshold = fixed if fixed is not None else tau_from_percentile(distances, quantile)
        scales = np.ones_like(distances)
        far = distances > threshold
        scales[far] = threshold / distances[far]
        _step(pieces, center, scales)
    return split_by_shapes(center.astype(np.float32), shapes)


def _distances(pieces: Pieces, center: NDArray[np.float64]) -> NDArray[np.float64]:
    """||x_i - center|| for every update, streamed in blocks (float64, cannot overflow)."""
    squares = np.zeros(len(pieces.pieces), dtype=np.float64)
    block = max(1, min(pieces.size, BLOCK))
    scratch_buf = np.empty(block, dtype=np.float64)
    for run, start, stop, at in pieces.blocks(block):
        scratch = scratch_buf[: stop - start]
        center_block = center[at : at + stop - start]
        for i, update in enumerate(pieces.pieces):
            np.subtract(update[run][start:stop], center_block, out=scratch)
            squares[i] += float(np.dot(scratch, scratch))
    distances: NDArray[np.float64] = np.sqrt(squares)
    return distances


def _step(pieces: Pieces, center: NDArray[np.float64], scales: NDArray[np.float64]) -> None:
    """center += mean_i((x_i - center) * scales[i]), in place, block by block."""
    n = len(pieces.pieces)
    block = max(1, min(pieces.size, BLOCK))
    scratch_buf = np.empty(block, dtype=np.float64)
    acc_buf = np.empty(block, dtype=np.float64)
    for run, start, stop, at in pieces.blocks(block):
        scratch = scratch_buf[: stop - start]
        acc = acc_buf[: stop - start]
        center_block = center[at : at + stop - start]
        acc.fill(0.0)
        for i, update in enumerate(pieces.pieces):
            np.subtract(update[run][start:stop], center_block, out=scratch)
            if scales[i] != 1.0:
                np.multiply(scratch, scales[i], out=scratch)
            np.add(acc, scratch, out=acc)
        np.divide(acc, n, out=acc)
        np.add(center_block, acc, out=center_block)

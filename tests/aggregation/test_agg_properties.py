"""Property tests (hypothesis, derandomized so runs are reproducible)."""

from random import Random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from disco.aggregation import (
    centered_clipping,
    coordinate_median,
    from_fixed_point,
    mean,
    tau_from_percentile,
    to_fixed_point,
    trimmed_mean,
)

SETTINGS = settings(derandomize=True, max_examples=60, deadline=None)
VALUES = st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)


@st.composite
def update_sets(draw: st.DrawFn, min_n: int = 1, max_n: int = 12) -> list[list[np.ndarray]]:
    """n updates sharing random tensor shapes."""
    shapes = draw(
        st.lists(
            st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple), min_size=1, max_size=3
        )
    )
    n = draw(st.integers(min_n, max_n))
    return [
        [draw(arrays(np.float32, shape, elements=VALUES)) for shape in shapes] for _ in range(n)
    ]


def stacked(updates: list[list[np.ndarray]], j: int) -> np.ndarray:
    return np.stack([u[j] for u in updates]).astype(np.float64)


def tolerance(updates: list[list[np.ndarray]]) -> float:
    """Absolute error allowed for float32 results: a few ulps of the largest magnitude."""
    largest = max((float(np.abs(t).max()) for u in updates for t in u if t.size), default=0.0)
    return 4e-7 * largest + 1e-30


@SETTINGS
@given(update_sets(max_n=1), st.integers(1, 20), st.none() | st.floats(0.1, 1e6))
def test_mean_of_identical_updates_is_that_update(
    single: list[list[np.ndarray]], n: int, count: float | None
) -> None:
    updates = single * n
    counts = None if count is None else [count * (i + 1) for i in range(n)]
    # relative precision, except for subnormals (weights below 1e-38 may flush towards 0)
    for got, want in zip(mean(updates, counts), single[0], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-37)


@SETTINGS
@given(update_sets(), st.randoms(use_true_random=False))
def test_aggregators_are_permutation_invariant(
    updates: list[list[np.ndarray]], random: Random
) -> None:
    order = list(range(len(updates)))
    random.shuffle(order)
    shuffled = [updates[i] for i in order]
    atol = tolerance(updates)
    for got, want in zip(mean(shuffled), mean(updates), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    for got, want in zip(coordinate_median(shuffled), coordinate_median(updates), strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(trimmed_mean(shuffled, 0.2), trimmed_mean(updates, 0.2), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    previous = updates[0]
    clipped = centered_clipping(shuffled, previous, tau_percentile=0.5)
    reference = centered_clipping(updates, previous, tau_percentile=0.5)
    for got, want in zip(clipped, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)


@SETTINGS
@given(update_sets())
def test_trimmed_mean_with_ratio_zero_is_the_mean(updates: list[list[np.ndarray]]) -> None:
    atol = tolerance(updates)
    for j, (got, want) in enumerate(zip(trimmed_mean(updates, 0.0), mean(updates), strict=True)):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
        np.testing.assert_allclose(got, stacked(updates, j).mean(axis=0), rtol=0, atol=atol)


@SETTINGS
@given(update_sets(), st.floats(0.0, 0.49))
def test_median_and_trimmed_mean_stay_within_the_range_of_inputs(
    updates: list[list[np.ndarray]], ratio: float
) -> None:
    for aggregate in (coordinate_median(updates), trimmed_mean(updates, ratio)):
        for j, tensor in enumerate(aggregate):
            values = stacked(updates, j)
            assert (tensor >= values.min(axis=0).astype(np.float32)).all()
            assert (tensor <= values.max(axis=0).astype(np.float32)).all()


@SETTINGS
@given(update_sets(min_n=2), st.floats(0.0, 1.0))
def test_centered_clipping_step_is_at_most_tau(
    updates: list[list[np.ndarray]], percentile: float
) -> None:
    previous = updates[0]
    flat_previous = np.concatenate([t.ravel() for t in previous]).astype(np.float64)
    distances = [
        float(np.linalg.norm(np.concatenate([t.ravel() for t in u]) - flat_previous))
        for u in updates
    ]
    tau = tau_from_percentile(distances, percentile)
    out = centered_clipping(updates, previous, tau_percentile=percentile)
    step = np.linalg.norm(np.concatenate([t.ravel() for t in out]) - flat_previous)
    assert step <= tau * (1 + 1e-6) + np.sqrt(flat_previous.size) * tolerance(updates)


@SETTINGS
@given(
    arrays(np.float64, st.integers(0, 50), elements=st.floats(-30000, 30000)),
    st.integers(0, 16),
)
def test_fixed_point_round_trip_error_bound(values: np.ndarray, bits: int) -> None:
    decoded = from_fixed_point(to_fixed_point(values, bits), bits)
    assert np.all(np.abs(decoded - values) <= 2.0 ** -(bits + 1))

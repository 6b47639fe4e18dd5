"""Median, trimmed mean and centered clipping: known answers and robustness bounds."""

import numpy as np
import pytest

from disco.aggregation import (
    AggregationError,
    centered_clipping,
    coordinate_median,
    mean,
    tau_from_percentile,
    trimmed_mean,
)
from disco.aggregation.robust import STACK_BYTES, trimmed_count


def f32(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def one(values: list[float]) -> list[list[np.ndarray]]:
    """One single-coordinate update per value."""
    return [[f32([v])] for v in values]


# --- median ------------------------------------------------------------------------------


def test_median_odd_count_per_coordinate() -> None:
    updates = [
        [f32([1, 9]), f32([[0]])],
        [f32([5, 2]), f32([[7]])],
        [f32([3, 4]), f32([[1]])],
    ]
    out = coordinate_median(updates)
    np.testing.assert_array_equal(out[0], [3, 4])
    np.testing.assert_array_equal(out[1], [[1]])
    assert out[1].shape == (1, 1) and out[1].dtype == np.float32


def test_median_even_count_averages_the_two_middle_values() -> None:
    np.testing.assert_array_equal(coordinate_median(one([20, 1, 10, 2]))[0], [6])
    np.testing.assert_array_equal(coordinate_median(one([1, 2]))[0], [1.5])
    np.testing.assert_array_equal(coordinate_median(one([7]))[0], [7])


def test_median_of_float32_extremes_does_not_overflow() -> None:
    big = float(np.finfo(np.float32).max)
    np.testing.assert_array_equal(coordinate_median(one([big, big]))[0], [big])


def test_median_spans_several_stack_blocks() -> None:
    rng = np.random.default_rng(3)
    n = 6
    size = STACK_BYTES // (4 * n) * 2 + 17
    updates = [[rng.standard_normal(size, dtype=np.float32)] for _ in range(n)]
    expected = np.median(np.stack([u[0] for u in updates]).astype(np.float64), axis=0)
    np.testing.assert_allclose(coordinate_median(updates)[0], expected, rtol=1e-7)


# --- trimmed mean --------------------------------------------------------------------------


def test_trimmed_mean_known_answers() -> None:
    # n=5, ratio 0.2 -> drop 1 at each end: (2+3+4)/3
    np.testing.assert_array_equal(trimmed_mean(one([100, 2, 1, 4, 3]), 0.2)[0], [3])
    # n=4, ratio 0.25 -> drop 1 at each end: (2+3)/2
    np.testing.assert_array_equal(trimmed_mean(one([3, 100, 1, 2]), 0.25)[0], [2.5])
    # n=5, ratio 0.1 -> floor(0.5) = 0 dropped: the plain mean
    np.testing.assert_array_equal(trimmed_mean(one([100, 2, 1, 4, 3]), 0.1)[0], [22])


def test_trimmed_mean_per_coordinate() -> None:
    updates = [[f32([1, 50])], [f32([2, -50])], [f32([3, 0])], [f32([-90, 1])], [f32([4, 2])]]
    # coordinate 0 sorted: -90 1 2 3 4 -> 2; coordinate 1: -50 0 1 2 50 -> 1
    np.testing.assert_array_equal(trimmed_mean(updates, 0.2)[0], [2, 1])


def test_trimmed_count_rule() -> None:
    assert trimmed_count(10, 0.1) == 1
    assert trimmed_count(9, 0.1) == 0
    assert trimmed_count(100, 0.29) == 29  # 0.29 * 100 == 28.999999999999996 in floats
    assert trimmed_count(3, 0.49) == 1
    assert trimmed_count(1000, 0.4999999999999) == 499  # always keeps one value


@pytest.mark.parametrize("ratio", [0.5, -0.1, float("nan"), "0.1", True])
def test_trimmed_mean_rejects_bad_ratios(ratio: object) -> None:
    with pytest.raises(AggregationError, match="trim_ratio"):
        trimmed_mean(one([1, 2, 3]), ratio)  # type: ignore[arg-type]


@pytest.mark.parametrize("aggregate", [coordinate_median, trimmed_mean])
def test_sorting_aggregators_reject_non_finite_values(aggregate: object) -> None:
    updates = [[f32([1]), f32([2])], [f32([1]), f32([np.nan])], [f32([1]), f32([2])]]
    with pytest.raises(AggregationError, match="update 1, tensor 1: contains non-finite"):
        aggregate(updates)  # type: ignore[operator]


# --- centered clipping --------------------------------------------------------------------


def test_tau_from_percentile_matches_discos_linear_quantile() -> None:
    distances = [4.0, 1.0, 3.0, 2.0]
    assert tau_from_percentile(distances, 0.75) == pytest.approx(3.25)  # pos 2.25 -> 3 + 0.25
    assert tau_from_percentile(distances, 0.5) == pytest.approx(2.5)
    assert tau_from_percentile(distances, 0.0) == 1.0
    assert tau_from_percentile(distances, 1.0) == 4.0
    assert tau_from_percentile([7.0], 0.3) == 7.0


@pytest.mark.parametrize(
    ("distances", "percentile"),
    [([1.0], 1.5), ([1.0], -0.1), ([], 0.5), ([1.0, float("nan")], 0.5), ([-1.0], 0.5)],
)
def test_tau_from_percentile_rejects_bad_input(distances: list[float], percentile: float) -> None:
    with pytest.raises(AggregationError):
        tau_from_percentile(distances, percentile)


def test_centered_clipping_known_answer_uses_the_whole_model_norm() -> None:
    previous = [f32([0]), f32([0])]
    far = [f32([3]), f32([4])]  # distance 5 over both tensors together
    near = [f32([0]), f32([0])]  # distance 0
    # tau 2.5 halves `far` -> (1.5, 2); mean with (0, 0) -> (0.75, 1)
    out = centered_clipping([far, near], previous, 2.5)
    np.testing.assert_allclose(np.concatenate(out), [0.75, 1.0])
    # iteration 2 from v=(0.75, 1): far is 3.75 away -> scaled by 2/3 to (1.5, 2);
    # near is 1.25 away -> kept (-0.75, -1); v += mean = (0.375, 0.5) -> (1.125, 1.5)
    out2 = centered_clipping([far, near], previous, 2.5, iterations=2)
    np.testing.assert_allclose(np.concatenate(out2), [1.125, 1.5])


def test_centered_clipping_with_percentile_like_disco() -> None:
    previous = [f32([0, 0])]
    updates = [[f32([3, 4])], [f32([0, 0])], [f32([6, 8])]]  # distances 5, 0, 10
    # tau = median distance = 5: (3,4) kept, (6,8) scaled to (3,4) -> mean (2, 8/3)
    out = centered_clipping(updates, previous, tau_percentile=0.5)
    np.testing.assert_allclose(out[0], [2.0, 8.0 / 3.0], rtol=1e-6)
    # tau at the maximum distance clips nothing: the plain mean
    plain = centered_clipping(updates, previous, tau_percentile=1.0)
    np.testing.assert_allclose(plain[0], mean(updates)[0], rtol=1e-6)


def test_centered_clipping_with_tau_zero_keeps_the_previous_model() -> None:
    previous = [f32([1, 2])]
    out = centered_clipping([[f32([5, 5])], [f32([1, 2])]], previous, 0.0)
    np.testing.assert_array_equal(out[0], [1, 2])


def test_centered_clipping_validation() -> None:
    previous = [f32([0, 0])]
    updates = [[f32([1, 1])]]
    with pytest.raises(AggregationError, match="exactly one of tau and tau_percentile"):
        centered_clipping(updates, previous)
    with pytest.raises(AggregationError, match="exactly one of tau and tau_percentile"):
        centered_clipping(updates, previous, 1.0, tau_percentile=0.5)
    with pytest.raises(AggregationError, match="iterations"):
        centered_clipping(updates, previous, 1.0, iterations=0)
    with pytest.raises(AggregationError, match="tau must be non-negative"):
        centered_clipping(updates, previous, -1.0)
    with pytest.raises(AggregationError, match="tau percentile must be in"):
        centered_clipping(updates, previous, tau_percentile=2.0)
    with pytest.raises(AggregationError, match=r"update 0, tensor 0: shape \[2\] does not match"):
        centered_clipping(updates, [f32([0, 0, 0])], 1.0)
    with pytest.raises(AggregationError, match="previous model contains non-finite"):
        centered_clipping(updates, [f32([0, np.inf])], 1.0)
    with pytest.raises(AggregationError, match="update 1, tensor 0: contains non-finite"):
        centered_clipping([[f32([1, 1])], [f32([np.nan, 1])]], previous, 1.0)


def test_one_byzantine_update_moves_robust_aggregates_only_a_bounded_distance() -> None:
    rng = np.random.default_rng(7)
    size = 1000
    previous = [rng.standard_normal(size, dtype=np.float32)]
    honest = [[previous[0] + rng.normal(0.0, 0.01, size).astype(np.float32)] for _ in range(9)]
    byzantine = [np.full(size, 1e6, dtype=np.float32)]
    updates = [*honest, byzantine]
    honest_mean = mean(honest)[0].astype(np.float64)

    def distance(weights: list[np.ndarray]) -> float:
        return float(np.linalg.norm(weights[0].astype(np.float64) - honest_mean))

    assert distance(mean(updates)) > 1e6  # plain FedAvg is dragged ~1e5 per coordinate

    distances = [float(np.linalg.norm(u[0] - previous[0])) for u in updates]
    tau = tau_from_percentile(distances, 0.75)
    assert tau < 0.5  # honest updates sit ~0.32 from the previous model
    clipped = centered_clipping(updates, previous, tau_percentile=0.75)
    # every clipped step has norm <= tau, so the aggregate stays within tau of `previous`
    step = np.linalg.norm(clipped[0].astype(np.float64) - previous[0])
    assert step <= tau + 1e-4
    assert distance(clipped) < 0.05
    # Same tau without the attacker: h = prev + S/9 and clipped = prev + (S + c)/10 with
    # ||c|| <= tau, so ||clipped - h|| = ||c - (h - prev)|| / 10 <= 2 tau / 10.
    honest_only = centered_clipping(honest, previous, tau)
    gap = np.linalg.norm(clipped[0].astype(np.float64) - honest_only[0])
    assert gap <= 0.2 * tau + 1e-5

    assert distance(coordinate_median(updates)) < 0.1
    assert distance(trimmed_mean(updates, 0.1)) < 0.1


def test_robust_aggregators_handle_empty_tensors() -> None:
    a = [np.zeros((0,), dtype=np.float32), f32([1])]
    b = [np.zeros((0,), dtype=np.float32), f32([5])]
    c = [np.zeros((0,), dtype=np.float32), f32([3])]
    for out in (
        coordinate_median([a, b, c]),
        trimmed_mean([a, b, c], 0.34),
        centered_clipping([a, b, c], c, 10.0),
    ):
        assert out[0].shape == (0,)
        np.testing.assert_array_equal(out[1], [3])

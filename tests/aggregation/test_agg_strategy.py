"""Strategy classes: parameters checked in the constructor, the shared `Aggregator` call."""

import numpy as np
import pytest

from disco.aggregation import (
    DEFAULT_CLIPPING_ITERATIONS,
    DEFAULT_TAU_PERCENTILE,
    DEFAULT_TRIM_RATIO,
    AggregationError,
    Aggregator,
    AggregatorName,
    CenteredClipping,
    Mean,
    Median,
    Strategy,
    StrategyParameterError,
    TrimmedMean,
    aggregator_name,
    centered_clipping,
)


def f32(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


UPDATES = [[f32([0.0, 0.0])], [f32([1.0, 2.0])], [f32([2.0, 4.0])], [f32([100.0, 100.0])]]
PREVIOUS = [f32([1.0, 1.0])]


def test_mean_is_weighted_by_sample_counts() -> None:
    strategy: Aggregator = Mean()
    # (0*1 + 100*3) / 4 on coordinate 0 of updates 0 and 3
    np.testing.assert_array_equal(strategy([UPDATES[0], UPDATES[3]], [1, 3], PREVIOUS)[0], [75, 75])


def test_robust_strategies_ignore_sample_counts() -> None:
    # the median stays 1.5 / 3 whatever the (client-reported) counts say
    np.testing.assert_array_equal(Median()(UPDATES, [1000, 1, 1, 1], PREVIOUS)[0], [1.5, 3.0])
    np.testing.assert_array_equal(TrimmedMean(0.25)(UPDATES, None, PREVIOUS)[0], [1.5, 3.0])
    expected = centered_clipping(UPDATES, PREVIOUS, tau_percentile=0.5)
    clipped = CenteredClipping(tau_percentile=0.5)(UPDATES, [1, 1, 1, 1000], PREVIOUS)
    np.testing.assert_array_equal(clipped[0], expected[0])


def test_defaults_and_names() -> None:
    assert CenteredClipping() == CenteredClipping(DEFAULT_TAU_PERCENTILE, 1)
    assert CenteredClipping().iterations == DEFAULT_CLIPPING_ITERATIONS == 1
    assert TrimmedMean().trim_ratio == DEFAULT_TRIM_RATIO
    strategies: list[Strategy] = [Mean(), Median(), TrimmedMean(), CenteredClipping()]
    assert [s.name for s in strategies] == list(AggregatorName)
    # only FedAvg can fold updates into a running sum as they arrive (the server's rounds)
    assert [s.folds for s in strategies] == [True, False, False, False]
    assert Mean() != Median()  # equality compares the method, not only the parameters


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("mean", AggregatorName.MEAN),
        ("average", AggregatorName.MEAN),
        ("fedavg", AggregatorName.MEAN),
        ("secure", AggregatorName.MEAN),
        ("median", AggregatorName.MEDIAN),
        ("trimmed_mean", AggregatorName.TRIMMED_MEAN),
        ("centered_clipping", AggregatorName.CENTERED_CLIPPING),
    ],
)
def test_aggregator_names(spelling: str, name: AggregatorName) -> None:
    assert aggregator_name(spelling) is name


@pytest.mark.parametrize("value", ["krum", "Mean", 3, None, True])
def test_unknown_aggregator_names_are_refused(value: object) -> None:
    with pytest.raises(AggregationError, match="must be one of"):
        aggregator_name(value)


@pytest.mark.parametrize(
    ("build", "parameter", "message"),
    [
        (lambda: TrimmedMean(0.5), "trim_ratio", r"must be in \[0.0, 0.5\)"),
        (lambda: TrimmedMean(-0.1), "trim_ratio", "must be in"),
        (lambda: TrimmedMean(float("nan")), "trim_ratio", "must be in"),
        (lambda: TrimmedMean("0.2"), "trim_ratio", "must be a number"),
        (lambda: CenteredClipping(tau_percentile=0), "tau_percentile", r"\(0.0, 1.0\]"),
        (lambda: CenteredClipping(tau_percentile=1.5), "tau_percentile", "must be in"),
        (lambda: CenteredClipping(tau_percentile=True), "tau_percentile", "must be a number"),
        (lambda: CenteredClipping(iterations=0), "iterations", "positive integer"),
        (lambda: CenteredClipping(iterations=1.5), "iterations", "positive integer"),
    ],
)
def test_constructors_check_their_parameters(build: object, parameter: str, message: str) -> None:
    assert callable(build)
    with pytest.raises(StrategyParameterError, match=message) as error:
        build()
    assert error.value.parameter == parameter
    assert str(error.value).startswith(parameter)


def test_integral_floats_are_iterations() -> None:
    assert CenteredClipping(iterations=2.0) == CenteredClipping(iterations=2)  # type: ignore[arg-type]

"""Choosing the aggregator from trainingInformation."""

from typing import Any

import numpy as np
import pytest

from disco.aggregation import (
    DEFAULT_TAU_PERCENTILE,
    AggregationError,
    AggregationStrategy,
    aggregator_for,
    centered_clipping,
)


def f32(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


UPDATES = [[f32([0.0, 0.0])], [f32([1.0, 2.0])], [f32([2.0, 4.0])], [f32([100.0, 100.0])]]
PREVIOUS = [f32([1.0, 1.0])]


@pytest.mark.parametrize(
    "info",
    [
        {},
        {"byzantineRobustAggregator": False, "tauPercentile": 0},  # DISCO: robustness off
        {"aggregator": "mean"},
        {"aggregator": "fedavg"},
        {"aggregator": "secure"},
        {"aggregator": None, "byzantineRobustAggregator": None},
        {"byzantineRobustAggregator": "mean"},
    ],
)
def test_fedavg_by_default(info: dict[str, Any]) -> None:
    strategy = aggregator_for(info)
    assert strategy == AggregationStrategy(name="mean")
    # weighted by sample counts: (0*1 + 100*3) / 4 on coordinate 0 of updates 0 and 3
    out = strategy([UPDATES[0], UPDATES[3]], [1, 3], PREVIOUS)
    np.testing.assert_array_equal(out[0], [75, 75])


def test_byzantine_true_is_centered_clipping_with_discos_fields() -> None:
    strategy = aggregator_for({"byzantineRobustAggregator": True, "tauPercentile": 0.5})
    assert strategy == AggregationStrategy(name="centered_clipping", tau_percentile=0.5)
    expected = centered_clipping(UPDATES, PREVIOUS, tau_percentile=0.5)
    np.testing.assert_array_equal(strategy(UPDATES, [1, 1, 1, 1000], PREVIOUS)[0], expected[0])


def test_byzantine_true_without_percentile_uses_the_default() -> None:
    strategy = aggregator_for({"byzantineRobustAggregator": True})
    assert strategy.name == "centered_clipping"
    assert strategy.tau_percentile == DEFAULT_TAU_PERCENTILE
    assert strategy.iterations == 1


def test_byzantine_object_overrides_top_level_fields() -> None:
    info = {
        "byzantineRobustAggregator": {"tauPercentile": 0.3, "iterations": 3},
        "tauPercentile": 0.9,
        "clippingIterations": 2,
    }
    assert aggregator_for(info) == AggregationStrategy(
        name="centered_clipping", tau_percentile=0.3, iterations=3
    )
    assert aggregator_for({"byzantineRobustAggregator": {}, "clippingIterations": 2}) == (
        AggregationStrategy(name="centered_clipping", iterations=2)
    )


def test_named_robust_aggregators() -> None:
    median = aggregator_for({"aggregator": "median"})
    assert median.name == "median"
    # sample counts are ignored by robust methods: the median stays 1.5 / 3
    np.testing.assert_array_equal(median(UPDATES, [1000, 1, 1, 1], PREVIOUS)[0], [1.5, 3.0])
    trimmed = aggregator_for({"byzantineRobustAggregator": "trimmed_mean", "trimRatio": 0.25})
    assert trimmed == AggregationStrategy(name="trimmed_mean", trim_ratio=0.25)
    np.testing.assert_array_equal(trimmed(UPDATES, None, PREVIOUS)[0], [1.5, 3.0])
    assert aggregator_for({"aggregator": "mean", "byzantineRobustAggregator": True}).name == (
        "centered_clipping"
    )
    assert aggregator_for({"aggregator": "median", "byzantineRobustAggregator": "median"}).name == (
        "median"
    )


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"aggregator": "krum"}, "aggregator must be one of"),
        ({"aggregator": 3}, "aggregator must be one of"),
        ({"byzantineRobustAggregator": 1}, "must be a boolean, a string or an object"),
        ({"byzantineRobustAggregator": "bogus"}, "byzantineRobustAggregator must be one of"),
        (
            {"aggregator": "median", "byzantineRobustAggregator": True},
            "'median' conflicts with byzantineRobustAggregator 'centered_clipping'",
        ),
        ({"byzantineRobustAggregator": True, "tauPercentile": 0}, r"tauPercentile must be in"),
        ({"byzantineRobustAggregator": True, "tauPercentile": 1.5}, r"tauPercentile must be in"),
        ({"byzantineRobustAggregator": True, "tauPercentile": True}, "must be a number"),
        ({"byzantineRobustAggregator": True, "tauPercentile": "0.5"}, "must be a number"),
        (
            {"byzantineRobustAggregator": {"tauPercentile": -1}},
            r"byzantineRobustAggregator.tauPercentile must be in",
        ),
        ({"byzantineRobustAggregator": True, "clippingIterations": 0}, "positive integer"),
        ({"byzantineRobustAggregator": {"iterations": 1.5}}, "positive integer"),
        ({"aggregator": "trimmed_mean", "trimRatio": 0.5}, r"trimRatio must be in \[0.0, 0.5\)"),
        ({"aggregator": "trimmed_mean", "trimRatio": float("nan")}, "trimRatio must be in"),
    ],
)
def test_invalid_settings_are_refused(info: dict[str, Any], message: str) -> None:
    with pytest.raises(AggregationError, match=message):
        aggregator_for(info)


def test_training_information_must_be_an_object() -> None:
    with pytest.raises(AggregationError, match="trainingInformation must be an object"):
        aggregator_for(None)  # type: ignore[arg-type]

"""The aggregation strategy a task's typed settings choose, and the settings it refuses.

The strategy is constructed while the task is validated: every refusal below happens in
`parse_task`, naming the field, so a task that cannot aggregate never reaches a server.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from disco.aggregation import (
    DEFAULT_TAU_PERCENTILE,
    AggregatorName,
    CenteredClipping,
    Mean,
    Median,
    TrimmedMean,
)
from disco.tasks.defaults import default_tasks, titanic_task
from disco.tasks.schema import TaskValidationError, TrainingInformation, parse_task

BASE: dict[str, Any] = titanic_task()  # DISCO's own task: FedAvg, no aggregator fields


def settings(**fields: Any) -> TrainingInformation:
    raw = copy.deepcopy(BASE)
    raw["trainingInformation"].update(fields)
    return parse_task(raw).training_information


def f32(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


UPDATES = [[f32([0.0, 0.0])], [f32([1.0, 2.0])], [f32([2.0, 4.0])], [f32([100.0, 100.0])]]
PREVIOUS = [f32([1.0, 1.0])]


@pytest.mark.parametrize(
    "fields",
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
def test_fedavg_by_default(fields: dict[str, Any]) -> None:
    info = settings(**fields)
    assert info.strategy() == Mean()
    assert info.aggregator is AggregatorName.MEAN
    out = info.strategy()([UPDATES[0], UPDATES[3]], [1, 3], PREVIOUS)
    np.testing.assert_array_equal(out[0], [75, 75])


def test_byzantine_true_is_centered_clipping_with_discos_fields() -> None:
    info = settings(byzantineRobustAggregator=True, tauPercentile=0.5)
    assert info.strategy() == CenteredClipping(tau_percentile=0.5)
    assert info.clipping_quantile == 0.5


def test_byzantine_true_without_percentile_uses_the_default() -> None:
    strategy = settings(byzantineRobustAggregator=True).strategy()
    assert isinstance(strategy, CenteredClipping)
    assert strategy.tau_percentile == DEFAULT_TAU_PERCENTILE
    assert strategy.iterations == 1


def test_byzantine_object_overrides_top_level_fields() -> None:
    info = settings(
        byzantineRobustAggregator={"tauPercentile": 0.3, "iterations": 3},
        tauPercentile=0.9,
        clippingIterations=2,
    )
    assert info.strategy() == CenteredClipping(tau_percentile=0.3, iterations=3)
    assert info.clipping_quantile == 0.3
    assert settings(byzantineRobustAggregator={}, clippingIterations=2).strategy() == (
        CenteredClipping(iterations=2)
    )


def test_named_robust_aggregators() -> None:
    assert settings(aggregator="median").strategy() == Median()
    assert settings(byzantineRobustAggregator="median").strategy() == Median()
    assert settings(byzantineRobustAggregator="trimmed_mean", trimRatio=0.25).strategy() == (
        TrimmedMean(trim_ratio=0.25)
    )
    assert settings(aggregator="mean", byzantineRobustAggregator=True).aggregator is (
        AggregatorName.CENTERED_CLIPPING
    )
    assert settings(aggregator="median", byzantineRobustAggregator="median").aggregator is (
        AggregatorName.MEDIAN
    )


def test_the_settings_are_served_as_sent() -> None:
    fields = {
        "aggregator": "fedavg",
        "byzantineRobustAggregator": {"tauPercentile": 0.3, "iterations": 2, "later": "kept"},
        "trimRatio": 0.2,
    }
    raw = copy.deepcopy(BASE)
    raw["trainingInformation"].update(fields)
    assert parse_task(raw).to_json() == raw


def test_discos_own_tasks_keep_fedavg() -> None:
    for task, _ in default_tasks():
        assert task.training_information.strategy() == Mean()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"aggregator": "bogus"}, "trainingInformation.aggregator: must be one of"),
        ({"aggregator": "krum"}, "trainingInformation.aggregator: must be one of"),
        ({"aggregator": 3}, "trainingInformation.aggregator: must be one of"),
        (
            {"byzantineRobustAggregator": 1},
            "trainingInformation.byzantineRobustAggregator: must be a boolean, an aggregator name",
        ),
        (
            {"byzantineRobustAggregator": "bogus"},
            "trainingInformation.byzantineRobustAggregator: must be one of",
        ),
        (
            {"aggregator": "median", "byzantineRobustAggregator": True},
            "trainingInformation.aggregator: 'median' conflicts with byzantineRobustAggregator "
            "'centered_clipping'",
        ),
        (
            {"byzantineRobustAggregator": True, "tauPercentile": 0},
            "trainingInformation.tauPercentile: must be in (0.0, 1.0]",
        ),
        (
            {"byzantineRobustAggregator": True, "tauPercentile": 1.5},
            "trainingInformation.tauPercentile: must be <= 1",
        ),
        (
            {"byzantineRobustAggregator": True, "tauPercentile": True},
            "trainingInformation.tauPercentile: must be a number",
        ),
        (
            {"byzantineRobustAggregator": True, "tauPercentile": "0.5"},
            "trainingInformation.tauPercentile: must be a number",
        ),
        (
            {"byzantineRobustAggregator": {"tauPercentile": -1}},
            "trainingInformation.byzantineRobustAggregator.tauPercentile: must be >= 0",
        ),
        (
            {"byzantineRobustAggregator": {"tauPercentile": 0}},
            "trainingInformation.byzantineRobustAggregator.tauPercentile: must be in (0.0, 1.0]",
        ),
        (
            {"byzantineRobustAggregator": True, "clippingIterations": 0},
            "trainingInformation.clippingIterations: must be a positive integer",
        ),
        (
            {"byzantineRobustAggregator": {"iterations": 1.5}},
            "trainingInformation.byzantineRobustAggregator.iterations: must be a positive integer",
        ),
        (
            {"aggregator": "trimmed_mean", "trimRatio": 0.5},
            "trainingInformation.trimRatio: must be in [0.0, 0.5)",
        ),
        (
            {"aggregator": "trimmed_mean", "trimRatio": 7},
            "trainingInformation.trimRatio: must be in [0.0, 0.5)",
        ),
        # A strategy parameter is checked even when another method is chosen: it is
        # only there for its strategy, so a bad one is a mistake, not something to ignore.
        ({"trimRatio": 7}, "trainingInformation.trimRatio: must be in [0.0, 0.5)"),
        ({"clippingIterations": -1}, "trainingInformation.clippingIterations: must be a"),
        (
            {"aggregator": "trimmed_mean", "trimRatio": float("nan")},
            "trainingInformation.trimRatio: must be a finite number",
        ),
    ],
)
def test_invalid_settings_are_refused_naming_the_field(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(TaskValidationError) as error:
        settings(**fields)
    assert message in str(error.value)
    assert len(error.value.problems) == 1


def test_quorum_defaults() -> None:
    assert settings().min_participants_or(None) == 2
    assert settings().min_participants_or(4) == 4  # a server's own default for tasks that omit it
    assert settings(minNbOfParticipants=2).min_participants_or(4) == 2
    assert settings(minNbOfParticipants=3.0).min_participants_or(4) == 3


@pytest.mark.parametrize("value", [0, True, 2.5, "2"])
def test_invalid_quorums_are_refused(value: object) -> None:
    with pytest.raises(TaskValidationError, match=r"trainingInformation\.minNbOfParticipants"):
        settings(minNbOfParticipants=value)

"""Aggregation strategies: small callable classes in Flower's style, one per method.

Each strategy holds its parameters, checks them in its constructor (`StrategyParameterError`
naming the parameter) and aggregates with the `Aggregator` call signature, the one signature every
caller uses. Which strategy a task gets is decided by its typed settings
(`disco.tasks.schema.TrainingInformation.strategy()`), which construct it when a task is
validated, so a bad parameter refuses the task instead of failing a round.

Robust strategies ignore `sample_counts`: they are reported by the clients, so an attacker
controls them.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Final, Protocol, TypeAlias

from disco.weights import Weights

from .errors import AggregationError
from .mean import mean
from .robust import centered_clipping, coordinate_median, trimmed_mean

DEFAULT_TAU_PERCENTILE: Final = 0.75
"""Clip updates farther than the third quartile of the distances (DISCO's code comment speaks
of a "third percentile"): honest rounds are barely biased and fewer than a quarter of
Byzantine clients cannot move the radius beyond the honest distances. DISCO itself has no
default: it averages plainly unless 0 < tauPercentile < 1."""
DEFAULT_CLIPPING_ITERATIONS: Final = 1
"""DISCO runs one clipping iteration per round."""
DEFAULT_TRIM_RATIO: Final = 0.1


Updates: TypeAlias = Sequence[Weights]
"""One round's updates, one per contribution."""
SampleCounts: TypeAlias = Sequence[float] | None
"""Samples behind each update, as their clients report them (None: unweighted)."""


class Aggregator(Protocol):
    """Aggregates client updates into the next global model; `previous` is the current one."""

    def __call__(
        self, updates: Updates, sample_counts: SampleCounts, previous: Weights
    ) -> Weights: ...


class AggregatorName(StrEnum):
    """The aggregation methods, by the canonical name a task may give."""

    MEAN = "mean"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed_mean"
    CENTERED_CLIPPING = "centered_clipping"  # DISCO's byzantineRobustAggregator, arXiv:2012.10333


AGGREGATOR_SPELLINGS: Final[dict[str, AggregatorName]] = {
    **{name.value: name for name in AggregatorName},
    "average": AggregatorName.MEAN,
    "fedavg": AggregatorName.MEAN,
    # Secure aggregation's peers compute the plain mean of their updates.
    "secure": AggregatorName.MEAN,
}
"""Every name a task may use for a method (canonical names and aliases)."""


def aggregator_name(value: object) -> AggregatorName:
    """The method a name stands for; AggregationError for anything else."""
    if not isinstance(value, str) or value not in AGGREGATOR_SPELLINGS:
        raise AggregationError(f"must be one of {sorted(AGGREGATOR_SPELLINGS)}, got {value!r}")
    return AGGREGATOR_SPELLINGS[value]


class StrategyParameterError(AggregationError):
    """A strategy parameter outside its domain; `parameter` is the constructor argument."""

    def __init__(self, parameter: str, problem: str) -> None:
        self.parameter = parameter
        self.problem = problem
        super().__init__(f"{parameter} {problem}")


def _fraction(value: object, parameter: str, low: float, high: float, high_open: bool) -> float:
    interval = f"[{low}, {high})" if high_open else f"({low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise StrategyParameterError(parameter, f"must be a number in {interval}, got {value!r}")
    number = float(value)
    inside = low <= number < high if high_open else low < number <= high
    if not math.isfinite(number) or not inside:
        raise StrategyParameterError(parameter, f"must be in {interval}, got {value!r}")
    return number


def _positive_integer(value: object, parameter: str) -> int:
    """A whole number >= 1 (2.0 too: JSON has one number type)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not float(value).is_integer()
        or value < 1
    ):
        raise StrategyParameterError(parameter, f"must be a positive integer, got {value!r}")
    return int(float(value))


class Strategy(ABC):
    """An aggregation method with its parameters, callable as an `Aggregator`."""

    name: ClassVar[AggregatorName]
    folds: ClassVar[bool] = False
    """True when updates can be folded into a running sum as they arrive (`running`) instead
    of being kept until the round ends: FedAvg; the robust methods need them all."""

    @abstractmethod
    def __call__(self, updates: Updates, sample_counts: SampleCounts, previous: Weights) -> Weights:
        """The next global model from this round's updates."""


@dataclass(frozen=True)
class Mean(Strategy):
    """FedAvg: the mean of the updates, weighted by sample counts when given."""

    name: ClassVar[AggregatorName] = AggregatorName.MEAN
    folds: ClassVar[bool] = True

    def __call__(self, updates: Updates, sample_counts: SampleCounts, previous: Weights) -> Weights:
        return mean(updates, sample_counts)


@dataclass(frozen=True)
class Median(Strategy):
    """The coordinate-wise median of the updates."""

    name: ClassVar[AggregatorName] = AggregatorName.MEDIAN

    def __call__(self, updates: Updates, sample_counts: SampleCounts, previous: Weights) -> Weights:
        return coordinate_median(updates)


@dataclass(frozen=True)
class TrimmedMean(Strategy):
    """Per coordinate, the mean without the `trim_ratio` largest and smallest values."""

    name: ClassVar[AggregatorName] = AggregatorName.TRIMMED_MEAN
    trim_ratio: float = DEFAULT_TRIM_RATIO

    def __post_init__(self) -> None:
        ratio = _fraction(self.trim_ratio, "trim_ratio", 0.0, 0.5, high_open=True)
        object.__setattr__(self, "trim_ratio", ratio)

    def __call__(self, updates: Updates, sample_counts: SampleCounts, previous: Weights) -> Weights:
        return trimmed_mean(updates, self.trim_ratio)


@dataclass(frozen=True)
class CenteredClipping(Strategy):
    """Centered clipping around the current model with the `tau_percentile` quantile radius."""

    name: ClassVar[AggregatorName] = AggregatorName.CENTERED_CLIPPING
    tau_percentile: float = DEFAULT_TAU_PERCENTILE
    iterations: int = DEFAULT_CLIPPING_ITERATIONS

    def __post_init__(self) -> None:
        tau = _fraction(self.tau_percentile, "tau_percentile", 0.0, 1.0, high_open=False)
        object.__setattr__(self, "tau_percentile", tau)
        object.__setattr__(self, "iterations", _positive_integer(self.iterations, "iterations"))

    def __call__(self, updates: Updates, sample_counts: SampleCounts, previous: Weights) -> Weights:
        return centered_clipping(
            updates, previous, iterations=self.iterations, tau_percentile=self.tau_percentile
        )

"""Choose an aggregator from a task's `trainingInformation`.

Accepted fields (anything else is ignored):

* `aggregator`: "mean" (aliases "average", "fedavg", and "secure", whose peers' arithmetic
  also yields the mean), "median", "trimmed_mean" or "centered_clipping".
* `byzantineRobustAggregator`: false / absent = no robust aggregation; true = centered
  clipping; a string = one of the names above; an object = centered clipping whose
  `tauPercentile` / `iterations` keys override the fields below (newer DISCO's shape).
  It wins over an `aggregator` of "mean"; naming two different robust methods is an error.
* `tauPercentile`: fraction in (0, 1] of the distance quantile used as clipping radius
  (default `DEFAULT_TAU_PERCENTILE`). DISCO has no default: it averages plainly unless
  0 < tauPercentile < 1, so a DISCO task that turns robustness on always sets it.
* `clippingIterations`: positive integer, default 1 (DISCO runs one).
* `trimRatio`: in [0, 0.5) for "trimmed_mean", default 0.1.

Invalid values raise AggregationError: call `aggregator_for` when a task is accepted, so a bad
task is refused there instead of failing a round.
"""

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .errors import AggregationError
from .mean import mean
from .robust import centered_clipping, coordinate_median, trimmed_mean
from .types import Weights

AggregatorName = Literal["mean", "median", "trimmed_mean", "centered_clipping"]

DEFAULT_TAU_PERCENTILE = 0.75
"""Clip updates farther than the third quartile of the distances (DISCO's code comment speaks
of a "third percentile"): honest rounds are barely biased and fewer than a quarter of
Byzantine clients cannot move the radius beyond the honest distances."""
DEFAULT_TRIM_RATIO = 0.1

_NAMES: dict[str, AggregatorName] = {
    "mean": "mean",
    "average": "mean",
    "fedavg": "mean",
    "secure": "mean",
    "median": "median",
    "trimmed_mean": "trimmed_mean",
    "centered_clipping": "centered_clipping",
}


class Aggregator(Protocol):
    """Aggregates client updates; `previous` is the current global model."""

    def __call__(
        self,
        updates: Sequence[Weights],
        sample_counts: Sequence[float] | None,
        previous: Weights,
    ) -> Weights: ...


@dataclass(frozen=True)
class AggregationStrategy:
    """A chosen aggregator and its parameters; callable as an `Aggregator`."""

    name: AggregatorName = "mean"
    tau_percentile: float = DEFAULT_TAU_PERCENTILE
    iterations: int = 1
    trim_ratio: float = DEFAULT_TRIM_RATIO

    @property
    def folds(self) -> bool:
        """True when updates can be folded into a running sum as they arrive (`running`)
        instead of being kept until the round ends: FedAvg; the robust methods need them all."""
        return self.name == "mean"

    def __call__(
        self,
        updates: Sequence[Weights],
        sample_counts: Sequence[float] | None,
        previous: Weights,
    ) -> Weights:
        """Robust methods ignore `sample_counts` (client-reported, so attacker-controlled)."""
        if self.name == "mean":
            return mean(updates, sample_counts)
        if self.name == "median":
            return coordinate_median(updates)
        if self.name == "trimmed_mean":
            return trimmed_mean(updates, self.trim_ratio)
        return centered_clipping(
            updates, previous, iterations=self.iterations, tau_percentile=self.tau_percentile
        )


def _name(value: object, field: str) -> AggregatorName:
    if not isinstance(value, str) or value not in _NAMES:
        raise AggregationError(f"{field} must be one of {sorted(_NAMES)}, got {value!r}")
    return _NAMES[value]


def _fraction(value: object, field: str, low: float, high: float, high_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AggregationError(f"{field} must be a number, got {value!r}")
    number = float(value)
    inside = low <= number < high if high_open else low < number <= high
    if not math.isfinite(number) or not inside:
        interval = f"[{low}, {high})" if high_open else f"({low}, {high}]"
        raise AggregationError(f"{field} must be in {interval}, got {value!r}")
    return number


def _iterations(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise AggregationError(f"{field} must be a positive integer, got {value!r}")
    return int(value)


def aggregator_for(training_information: Mapping[str, Any]) -> AggregationStrategy:
    """The aggregator a task asks for (FedAvg by default); see the module docstring."""
    info = training_information
    if not isinstance(info, Mapping):
        raise AggregationError(f"trainingInformation must be an object, got {info!r}")
    requested: AggregatorName = "mean"
    if info.get("aggregator") is not None:
        requested = _name(info["aggregator"], "aggregator")

    robust = info.get("byzantineRobustAggregator")
    overrides: Mapping[str, Any] = {}
    robust_name: AggregatorName | None = None
    if isinstance(robust, bool):
        robust_name = "centered_clipping" if robust else None
    elif isinstance(robust, str):
        robust_name = _name(robust, "byzantineRobustAggregator")
    elif isinstance(robust, Mapping):
        robust_name, overrides = "centered_clipping", robust
    elif robust is not None:
        raise AggregationError(
            f"byzantineRobustAggregator must be a boolean, a string or an object, got {robust!r}"
        )
    if robust_name is not None and robust_name != "mean":
        if requested != "mean" and requested != robust_name:
            raise AggregationError(
                f"aggregator {requested!r} conflicts with byzantineRobustAggregator {robust_name!r}"
            )
        requested = robust_name

    # Only the chosen method's parameters are validated: a DISCO task may carry unused ones
    # (e.g. tauPercentile 0 with robustness off), and that must not make it unusable.
    if requested == "centered_clipping":
        tau_field = "byzantineRobustAggregator.tauPercentile"
        tau = overrides.get("tauPercentile")
        if tau is None:
            tau_field, tau = "tauPercentile", info.get("tauPercentile")
        iterations_field = "byzantineRobustAggregator.iterations"
        iterations = overrides.get("iterations")
        if iterations is None:
            iterations_field, iterations = "clippingIterations", info.get("clippingIterations")
        return AggregationStrategy(
            name=requested,
            tau_percentile=(
                DEFAULT_TAU_PERCENTILE
                if tau is None
                else _fraction(tau, tau_field, 0.0, 1.0, high_open=False)
            ),
            iterations=1 if iterations is None else _iterations(iterations, iterations_field),
        )
    if requested == "trimmed_mean":
        trim = info.get("trimRatio")
        return AggregationStrategy(
            name=requested,
            trim_ratio=(
                DEFAULT_TRIM_RATIO
                if trim is None
                else _fraction(trim, "trimRatio", 0.0, 0.5, high_open=True)
            ),
        )
    return AggregationStrategy(name=requested)

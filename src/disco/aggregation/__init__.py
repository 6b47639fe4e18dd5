"""Pure-numpy aggregation of model updates: FedAvg, robust aggregators, secure-sum arithmetic.

Everything here is synchronous CPU work without I/O; callers on an event loop should run the
heavy functions in a worker thread (asyncio.to_thread). Models are `disco.weights.Weights`.
"""

from .errors import AggregationError
from .flat import aggregation_bytes, check_updates
from .mean import mean
from .robust import (
    centered_clipping,
    coordinate_median,
    tau_from_percentile,
    trimmed_mean,
)
from .secure import (
    fixed_point_limit,
    from_fixed_point,
    make_masked_shares,
    make_shares,
    mean_from_fixed_point_sum,
    sum_masked_shares,
    sum_shares,
    to_fixed_point,
)
from .strategy import (
    AGGREGATOR_SPELLINGS,
    DEFAULT_CLIPPING_ITERATIONS,
    DEFAULT_TAU_PERCENTILE,
    DEFAULT_TRIM_RATIO,
    Aggregator,
    AggregatorName,
    CenteredClipping,
    Mean,
    Median,
    Strategy,
    StrategyParameterError,
    TrimmedMean,
    aggregator_name,
)

__all__ = [
    "AGGREGATOR_SPELLINGS",
    "DEFAULT_CLIPPING_ITERATIONS",
    "DEFAULT_TAU_PERCENTILE",
    "DEFAULT_TRIM_RATIO",
    "AggregationError",
    "Aggregator",
    "AggregatorName",
    "CenteredClipping",
    "Mean",
    "Median",
    "Strategy",
    "StrategyParameterError",
    "TrimmedMean",
    "aggregation_bytes",
    "aggregator_name",
    "centered_clipping",
    "check_updates",
    "coordinate_median",
    "fixed_point_limit",
    "from_fixed_point",
    "make_masked_shares",
    "make_shares",
    "mean",
    "mean_from_fixed_point_sum",
    "sum_masked_shares",
    "sum_shares",
    "tau_from_percentile",
    "to_fixed_point",
    "trimmed_mean",
]

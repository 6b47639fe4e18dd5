"""The single error type of the aggregation package."""


class AggregationError(ValueError):
    """Inputs that cannot be aggregated (empty, mismatched shapes, non-finite, bad parameters)."""

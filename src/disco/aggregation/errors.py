"""The single error type of the aggregation package."""

from disco.errors import DiscoError


class AggregationError(DiscoError, ValueError):
    """Inputs that cannot be aggregated (empty, mismatched shapes, non-finite, bad parameters)."""

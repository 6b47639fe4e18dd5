"""The secure-aggregation error type."""


class SecAggError(ValueError):
    """A secure-aggregation message, key or share that cannot be used; the message says why."""

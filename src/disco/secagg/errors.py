"""The secure-aggregation error type."""

from disco.errors import DiscoError


class SecAggError(DiscoError, ValueError):
    """A secure-aggregation message, key or share that cannot be used; the message says why."""

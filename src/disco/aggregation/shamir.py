"""Shamir secret sharing over the prime field GF(2^521 - 1), for secure-aggregation seeds.

A secret is an integer below the field prime (a 32-byte seed or private key fits whole, so one
share per secret and holder). `split` draws a random polynomial of degree `threshold - 1` whose
constant term is the secret and evaluates it at each holder's point (a positive integer, the
holder's index in the round); any `threshold` shares give the secret back by Lagrange
interpolation at 0 (`combine`), fewer reveal nothing about it. The prime is the Mersenne prime
2^521 - 1 so that a share is a fixed 66-byte big-endian string (`share_to_bytes`).
Coefficients come from `secrets` (the OS CSPRNG).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping

from .errors import AggregationError

PRIME = 2**521 - 1
"""The field's modulus (a Mersenne prime above every 256-bit secret)."""
SHARE_BYTES = 66
"""A field element as fixed-length big-endian bytes (521 bits round up to 66 bytes)."""


def split(secret: int, points: Iterable[int], threshold: int) -> dict[int, int]:
    """Shares of `secret` for each point (distinct positive integers), `threshold` to rebuild."""
    xs = list(points)
    if not 0 <= secret < PRIME:
        raise AggregationError("the secret must be a field element (0 <= secret < 2^521 - 1)")
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise AggregationError("share points must be distinct positive integers")
    if not 1 <= threshold <= len(xs):
        raise AggregationError(f"threshold must be in [1, {len(xs)}], got {threshold}")
    coefficients = [secret] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares: dict[int, int] = {}
    for x in xs:
        value = 0
        for coefficient in reversed(coefficients):  # Horner
            value = (value * x + coefficient) % PRIME
        shares[x] = value
    return shares


def combine(shares: Mapping[int, int]) -> int:
    """The secret from `threshold` (or more, consistent) shares {point: value}.

    With fewer shares than the threshold the result is a uniformly random field element, not an
    error: callers verify the secret against a commitment (a public key, a hash).
    """
    if not shares:
        raise AggregationError("no shares to combine")
    xs = list(shares)
    if any(not 0 < x < PRIME for x in xs):
        raise AggregationError("share points must be positive integers")
    secret = 0
    for i, xi in enumerate(xs):
        numerator, denominator = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                numerator = numerator * -xj % PRIME
                denominator = denominator * (xi - xj) % PRIME
        value = shares[xi]
        if not 0 <= value < PRIME:
            raise AggregationError("a share is not a field element")
        secret = (secret + value * numerator * pow(denominator, -1, PRIME)) % PRIME
    return secret


def share_to_bytes(value: int) -> bytes:
    """A field element as SHARE_BYTES big-endian bytes."""
    if not 0 <= value < PRIME:
        raise AggregationError("not a field element")
    return value.to_bytes(SHARE_BYTES, "big")


def share_from_bytes(data: bytes) -> int:
    """The field element encoded by `share_to_bytes`; refuses other lengths and values."""
    if len(data) != SHARE_BYTES:
        raise AggregationError(f"a share is {SHARE_BYTES} bytes, got {len(data)}")
    value = int.from_bytes(data, "big")
    if value >= PRIME:
        raise AggregationError("a share is not a field element")
    return value

"""The fixed facts of one secure-aggregation round, shared by the server and every participant.

A round's participants are numbered 1..n (the server assigns the numbers in random order). Each
one masks with, and secret-shares its seeds among, its neighbours in a circulant graph of degree
k (SecAgg+, Bell et al. 2020): the k/2 numbers before and after it modulo n, or everybody when
k >= n - 1 (the original SecAgg). A seed is rebuilt from any `threshold` shares among the
participant's neighbourhood (its neighbours and itself).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from disco.aggregation.masking import DEFAULT_FRACTIONAL_BITS

from .errors import SecAggError
from .keys import Curve, check_public_key

DEFAULT_THRESHOLD_FRACTION = 2 / 3
"""Fraction of a neighbourhood whose shares rebuild a seed: more than half, so that the server
cannot obtain both seeds of one participant from two disjoint groups."""
SESSION_BYTES = 16


def default_degree(n: int) -> int:
    """Neighbours per participant: everybody up to 32 participants, then ~6·log2(n) (even)."""
    if n <= 32:
        return max(0, n - 1)
    return min(n - 1, 2 * math.ceil(3 * math.log2(n)))


def threshold_for(neighbourhood: int, fraction: float) -> int:
    """Shares needed among a neighbourhood of this size (at least 1, at most all)."""
    if not 0.5 < fraction <= 1:
        raise SecAggError(f"the threshold fraction must be in (0.5, 1], got {fraction}")
    return min(neighbourhood, max(1, math.ceil(fraction * neighbourhood - 1e-9)))


def neighbours(index: int, n: int, degree: int) -> list[int]:
    """Participant `index`'s neighbours (1-based numbers) in the circulant graph of the round."""
    if not 1 <= index <= n:
        raise SecAggError(f"participant {index} is not in a round of {n}")
    if degree >= n - 1:
        return [j for j in range(1, n + 1) if j != index]
    half = degree // 2
    around = {(index - 1 + d) % n + 1 for d in range(-half, half + 1) if d != 0}
    return sorted(around)


@dataclass(frozen=True, slots=True)
class PublicKeys:
    """A participant's two public keys: for share encryption and for pairwise masks."""

    cipher: bytes
    mask: bytes


@dataclass(frozen=True, slots=True)
class Roster:
    """The round: session id, curve, participants' keys, graph degree, threshold, encoding."""

    session: bytes
    curve: Curve
    keys: Mapping[int, PublicKeys]
    degree: int
    threshold: int
    vector_length: int
    fractional_bits: int = DEFAULT_FRACTIONAL_BITS
    _graph: dict[int, list[int]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.keys)
        if sorted(self.keys) != list(range(1, n + 1)):
            raise SecAggError("participants must be numbered 1..n")
        if len(self.session) != SESSION_BYTES:
            raise SecAggError(f"a session id is {SESSION_BYTES} bytes")
        if not 0 <= self.degree <= max(0, n - 1):
            raise SecAggError(f"the graph degree must be in [0, {max(0, n - 1)}]")
        if self.degree < n - 1 and self.degree % 2:
            raise SecAggError("a sparse graph's degree must be even")
        if not 1 <= self.threshold <= self.degree + 1:
            raise SecAggError(f"the threshold must be in [1, {self.degree + 1}]")
        if self.vector_length < 1:
            raise SecAggError("the vector length must be positive")
        for keys in self.keys.values():
            check_public_key(self.curve, keys.cipher)
            check_public_key(self.curve, keys.mask)
        for index in self.keys:
            self._graph[index] = neighbours(index, n, self.degree)

    @property
    def size(self) -> int:
        """Participants in the round."""
        return len(self.keys)

    def neighbours(self, index: int) -> list[int]:
        """`index`'s neighbours."""
        try:
            return self._graph[index]
        except KeyError:
            raise SecAggError(f"participant {index} is not in the round") from None

    def holders(self, index: int) -> list[int]:
        """Who holds shares of `index`'s seeds: its neighbours and itself."""
        return sorted([*self.neighbours(index), index])

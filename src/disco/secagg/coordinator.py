"""The server's side of a secure-aggregation round, as a pure state machine (no I/O, no clock).

Stages: ADVERTISING (collect public keys) -> SHARING (collect sealed shares, relay them) ->
MASKING (sum the masked vectors as they come) -> UNMASKING (collect revealed shares, rebuild
the survivors' self-mask seeds and the dropped participants' mask keys, remove their masks) ->
DONE, or ABORTED with a reason. The caller (the server) closes each stage when every expected
member answered or when its deadline passed; `close_*` then either moves on or raises
`RoundAborted` when fewer than `threshold` members are left, so a round never waits for a
dropped member past a deadline and never publishes a partial sum.

The server only ever holds: public keys, shares sealed for others, masked vectors (uniform
modulo 2^64 given any participant's self mask) and their sum, and the shares needed to unmask
that sum: never an individual vector in the clear (semi-honest server; see the README).
Everything a member sends is checked before it is used: a malformed message is refused with
SecAggError and leaves the round and the other members untouched.
"""

from __future__ import annotations

import hmac
import itertools
import secrets
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from disco.aggregation import masking, shamir
from disco.aggregation.errors import AggregationError
from disco.errors import DiscoError

from .errors import SecAggError
from .keys import Curve, KeyPair, Purpose, check_public_key, commitment, derive, sealed_length
from .participant import SHARE_PLAINTEXT_BYTES
from .roster import (
    DEFAULT_THRESHOLD_FRACTION,
    SESSION_BYTES,
    PublicKeys,
    Roster,
    default_degree,
    threshold_for,
)

COMMITMENT_BYTES = 32
MAX_RECONSTRUCTION_TRIES = 64
"""Share subsets tried per seed when some revealed shares are wrong (bounded work)."""


class Stage(StrEnum):
    """Where a round is."""

    ADVERTISING = "advertising"
    SHARING = "sharing"
    MASKING = "masking"
    UNMASKING = "unmasking"
    DONE = "done"
    ABORTED = "aborted"


class RoundAborted(DiscoError):
    """The round cannot complete (too few members left); the reason is for the members."""


class Coordinator:
    """One secure-aggregation round on the server (see the module docstring)."""

    def __init__(
        self,
        vector_length: int,
        *,
        min_members: int = 2,
        threshold_fraction: float = DEFAULT_THRESHOLD_FRACTION,
        fractional_bits: int = masking.DEFAULT_FRACTIONAL_BITS,
        degree: int | None = None,
    ) -> None:
        if vector_length < 1:
            raise SecAggError("the vector length must be positive")
        threshold_for(2, threshold_fraction)  # validates the fraction
        self.vector_length = vector_length
        self.min_members = max(1, min_members)
        self.threshold_fraction = threshold_fraction
        self.fractional_bits = fractional_bits
        self._degree = degree
        self.stage = Stage.ADVERTISING
        self.reason = ""
        self._offers: dict[str, dict[Curve, PublicKeys]] = {}
        self._roster: Roster | None = None
        self._members: dict[str, int] = {}
        self._ids: dict[int, str] = {}
        self._sealed: dict[int, Mapping[int, bytes]] = {}
        self._commitments: dict[int, bytes] = {}
        self._sharers: set[int] = set()
        self._sum: masking.Masked | None = None
        self._masked: set[int] = set()
        self._dropped: set[int] = set()
        self._reveals: dict[int, Mapping[int, bytes]] = {}

    # -- reads --------------------------------------------------------------------------------

    @property
    def roster(self) -> Roster:
        """The round's roster (after `start`)."""
        if self._roster is None:
            raise SecAggError("the round has not started")
        return self._roster

    def index_of(self, member: str) -> int | None:
        """A member's number in the round, None when it is not in the round."""
        return self._members.get(member)

    def member(self, index: int) -> str:
        """The member with this number."""
        return self._ids[index]

    def advertised(self) -> set[str]:
        """Members that offered keys."""
        return set(self._offers)

    def expected(self) -> set[str]:
        """Members the current stage still waits for."""
        if self.stage is Stage.ADVERTISING:
            return set()
        if self.stage is Stage.SHARING:
            waiting = set(self._ids) - self._sharers
        elif self.stage is Stage.MASKING:
            waiting = self._sharers - self._masked
        elif self.stage is Stage.UNMASKING:
            waiting = self._masked - set(self._reveals)
        else:
            return set()
        return {self._ids[i] for i in waiting}

    def complete(self) -> bool:
        """Every member the current stage waits for has answered."""
        return self.stage in (Stage.SHARING, Stage.MASKING, Stage.UNMASKING) and not self.expected()

    def survivors(self) -> tuple[list[int], list[int]]:
        """(U2, U1 \\ U2): members whose masked vector counts, and who dropped after sharing."""
        return sorted(self._masked), sorted(self._dropped)

    def sharers(self) -> list[int]:
        """U1: members whose shares were relayed."""
        return sorted(self._sharers)

    # -- stage 0: keys ------------------------------------------------------------------------

    def advertise(self, member: str, offer: Mapping[Curve, PublicKeys]) -> None:
        """Record a member's public keys (replacing an earlier offer of the same member)."""
        if self.stage is not Stage.ADVERTISING:
            raise SecAggError("keys are only accepted before the round starts")
        if not offer:
            raise SecAggError("no public keys offered")
        checked: dict[Curve, PublicKeys] = {}
        for curve, keys in offer.items():
            check_public_key(curve, keys.cipher)
            check_public_key(curve, keys.mask)
            if keys.cipher == keys.mask:
                raise SecAggError("the cipher and mask keys must differ")
            checked[Curve(curve)] = keys
        self._offers[member] = checked

    def withdraw(self, member: str) -> None:
        """A member left before the round started."""
        if self.stage is Stage.ADVERTISING:
            self._offers.pop(member, None)

    def start(self) -> Roster:
        """Close the key stage: pick the curve most members offer (X25519 on a tie), number the
        members who offered it in random order, fix the graph and the threshold."""
        if self.stage is not Stage.ADVERTISING:
            raise SecAggError("the round has already started")
        counts = {c: sum(c in offer for offer in self._offers.values()) for c in Curve}
        curve = max(Curve, key=lambda c: (counts[c], c is Curve.X25519))
        members = [m for m, offer in self._offers.items() if curve in offer]
        if len(members) < max(2, self.min_members):
            self._abort(
                f"only {len(members)} members offered keys, the round needs "
                f"{max(2, self.min_members)}"
            )
        order = list(members)
        for i in range(len(order) - 1, 0, -1):  # Fisher-Yates with the CSPRNG
            j = secrets.randbelow(i + 1)
            order[i], order[j] = order[j], order[i]
        n = len(order)
        degree = default_degree(n) if self._degree is None else min(self._degree, n - 1)
        if degree < n - 1 and degree % 2:
            degree -= 1
        roster = Roster(
            session=secrets.token_bytes(SESSION_BYTES),
            curve=curve,
            keys={i + 1: self._offers[m][curve] for i, m in enumerate(order)},
            degree=degree,
            threshold=threshold_for(degree + 1, self.threshold_fraction),
            vector_length=self.vector_length,
            fractional_bits=self.fractional_bits,
        )
        self._roster = roster
        self._members = {m: i + 1 for i, m in enumerate(order)}
        self._ids = {i: m for m, i in self._members.items()}
        self.stage = Stage.SHARING
        return roster

    # -- stage 1: shares ----------------------------------------------------------------------

    def _index(self, member: str, stage: Stage) -> int:
        if self.stage is not stage:
            raise SecAggError(f"the round is {self.stage}, not {stage}")
        index = self._members.get(member)
        if index is None:
            raise SecAggError("not a member of this round")
        return index

    def submit_shares(self, member: str, sealed: Mapping[int, bytes], commitment: bytes) -> None:
        """A member's shares, one sealed box per neighbour, and its commitment to b."""
        index = self._index(member, Stage.SHARING)
        roster = self.roster
        if index in self._sharers:
            raise SecAggError("shares already received")
        expected = set(roster.neighbours(index))
        if set(sealed) != expected:
            raise SecAggError(
                f"shares must go to exactly the neighbours {sorted(expected)}, got {sorted(sealed)}"
            )
        size = sealed_length(SHARE_PLAINTEXT_BYTES)
        for j, box in sealed.items():
            if not isinstance(box, bytes) or len(box) != size:
                raise SecAggError(f"the share for participant {j} is not {size} bytes")
        if not isinstance(commitment, bytes) or len(commitment) != COMMITMENT_BYTES:
            raise SecAggError(f"the seed commitment must be {COMMITMENT_BYTES} bytes")
        self._sealed[index] = dict(sealed)
        self._commitments[index] = commitment
        self._sharers.add(index)

    def close_sharing(self) -> dict[int, dict[int, bytes]]:
        """Fix U1 and return, for each member of U1, the boxes sealed for it {sender: box}.

        Members whose neighbourhood within U1 is below the threshold are left out of U1 (their
        seeds could not be rebuilt); RoundAborted when fewer than `threshold` remain."""
        self._require(Stage.SHARING)
        roster = self.roster
        sharers = set(self._sharers)
        while True:
            weak = {i for i in sharers if len(set(roster.holders(i)) & sharers) < roster.threshold}
            if not weak:
                break
            sharers -= weak
        if len(sharers) < max(roster.threshold, 2):
            self._abort(
                f"only {len(sharers)} of {roster.size} members shared their keys, "
                f"fewer than the threshold {max(roster.threshold, 2)}"
            )
        self._sharers = sharers
        relay: dict[int, dict[int, bytes]] = {j: {} for j in sharers}
        for sender in sharers:
            for recipient, box in self._sealed[sender].items():
                if recipient in sharers:
                    relay[recipient][sender] = box
        self._sealed.clear()
        self.stage = Stage.MASKING
        return relay

    # -- stage 2: masked vectors --------------------------------------------------------------

    def submit_masked(self, member: str, vector: bytes | NDArray[Any]) -> None:
        """A member's masked vector (uint64, or its little-endian bytes), added to the sum."""
        index = self._index(member, Stage.MASKING)
        if index not in self._sharers:
            raise SecAggError("only members whose shares were relayed may send a masked vector")
        if index in self._masked:
            raise SecAggError("masked vector already received")
        if isinstance(vector, bytes):
            if len(vector) != 8 * self.vector_length:
                raise SecAggError(
                    f"the masked vector must be {8 * self.vector_length} bytes, got {len(vector)}"
                )
            array = np.frombuffer(vector, dtype="<u8").astype(np.uint64, copy=False)
        else:
            array = np.asarray(vector)
            if array.dtype != np.uint64 or array.shape != (self.vector_length,):
                raise SecAggError(
                    f"the masked vector must be {self.vector_length} uint64 values, got "
                    f"{array.dtype} {list(array.shape)}"
                )
        if self._sum is None:
            self._sum = np.zeros(self.vector_length, dtype=np.uint64)
        masking.add_into(self._sum, array)
        self._masked.add(index)

    def close_masking(self) -> tuple[list[int], list[int]]:
        """Fix U2 (who sent a masked vector) and the dropped U1 \\ U2; RoundAborted below t."""
        self._require(Stage.MASKING)
        threshold = max(self.roster.threshold, 2)
        if len(self._masked) < threshold:
            self._abort(
                f"only {len(self._masked)} members sent their masked update, fewer than the "
                f"threshold {threshold}"
            )
        self._dropped = self._sharers - self._masked
        self.stage = Stage.UNMASKING
        return self.survivors()

    # -- stage 3: unmasking -------------------------------------------------------------------

    def submit_reveal(self, member: str, shares: Mapping[int, bytes]) -> None:
        """A survivor's revealed shares {participant: 66-byte share}, checked before use."""
        index = self._index(member, Stage.UNMASKING)
        if index not in self._masked:
            raise SecAggError("only members whose masked update counts may reveal shares")
        if index in self._reveals:
            raise SecAggError("shares already revealed")
        roster = self.roster
        wanted = {j for j in self._masked | self._dropped if index in roster.holders(j)}
        if not set(shares) <= wanted:
            raise SecAggError(f"unexpected shares for participants {sorted(set(shares) - wanted)}")
        for j, share in shares.items():
            if not isinstance(share, bytes):
                raise SecAggError(f"the share for participant {j} is not bytes")
            try:
                shamir.share_from_bytes(share)
            except AggregationError as error:
                raise SecAggError(f"the share for participant {j}: {error}") from None
        self._reveals[index] = dict(shares)

    def close_unmasking(self) -> NDArray[np.float64]:
        """Rebuild the seeds, remove every mask and return the decoded sum of U2's vectors."""
        self._require(Stage.UNMASKING)
        roster = self.roster
        assert self._sum is not None  # close_masking needs at least two masked vectors
        self_seeds: list[bytes] = []
        for j in sorted(self._masked):
            secret = self._rebuild(j, self._seed_ok)
            self_seeds.append(secret.to_bytes(masking.SEED_BYTES, "big"))
        dropped_pairs: list[tuple[int, int, bytes]] = []
        for d in sorted(self._dropped):
            secret = self._rebuild(d, self._key_ok)
            key = KeyPair.from_secret(roster.curve, secret)
            for i in roster.neighbours(d):
                if i in self._masked:
                    shared = key.agree(roster.keys[i].mask)
                    dropped_pairs.append((i, d, derive(shared, roster.session, Purpose.MASK, i, d)))
        total = masking.unmask(self._sum, self_seeds, dropped_pairs)
        self.stage = Stage.DONE
        self._reveals.clear()
        return masking.decode(total, roster.fractional_bits)

    def _seed_ok(self, index: int, secret: int) -> bool:
        if secret >= 2 ** (8 * masking.SEED_BYTES):
            return False
        seed = secret.to_bytes(masking.SEED_BYTES, "big")
        return hmac.compare_digest(
            commitment(self.roster.session, index, seed), self._commitments[index]
        )

    def _key_ok(self, index: int, secret: int) -> bool:
        try:
            key = KeyPair.from_secret(self.roster.curve, secret)
        except SecAggError:
            return False
        return hmac.compare_digest(key.public, self.roster.keys[index].mask)

    def _rebuild(self, index: int, verify: Callable[[int, int], bool]) -> int:
        """A secret of `index` from the revealed shares; tries subsets when some are wrong."""
        roster = self.roster
        shares = {
            holder: shamir.share_from_bytes(reveal[index])
            for holder, reveal in self._reveals.items()
            if index in reveal
        }
        if len(shares) < roster.threshold:
            self._abort(
                f"only {len(shares)} shares of participant {index}'s secret were revealed, "
                f"fewer than the threshold {roster.threshold}"
            )
        points = sorted(shares)
        for tries, subset in enumerate(itertools.combinations(points, roster.threshold)):
            if tries >= MAX_RECONSTRUCTION_TRIES:
                break
            secret = shamir.combine({x: shares[x] for x in subset})
            if verify(index, secret):
                return secret
        self._abort(f"the revealed shares of participant {index} are inconsistent")

    # -- aborting -----------------------------------------------------------------------------

    def _require(self, stage: Stage) -> None:
        if self.stage is not stage:
            raise SecAggError(f"the round is {self.stage}, not {stage}")

    def _abort(self, reason: str) -> NoReturn:
        self.stage = Stage.ABORTED
        self.reason = reason
        self._sum = None
        self._sealed.clear()
        self._reveals.clear()
        raise RoundAborted(reason)

    def abort(self, reason: str) -> None:
        """Give the round up from outside (e.g. the task is closing)."""
        if self.stage not in (Stage.DONE, Stage.ABORTED):
            self.stage = Stage.ABORTED
            self.reason = reason
            self._sum = None

"""One participant's side of a secure-aggregation round, as a pure state machine (no I/O).

Steps, each answering one server message (see docs/protocol.md for the wire):
1. `advertisement()`: fresh public keys (cipher + mask) for every curve this side offers.
2. `share(roster, index)`: draws the self-mask seed b, Shamir-shares b and the mask private key
   among its neighbourhood and returns each neighbour's share encrypted (AES-GCM) under the
   cipher key agreed with that neighbour, plus a commitment to b.
3. `receive(sealed, sharers)`: decrypts the shares relayed to it (a share that does not decrypt
   is dropped: that sender simply cannot be helped) and learns who shared (U1).
4. `masked(vector)`: the fixed-point vector plus the self mask and the pairwise masks with its
   neighbours in U1.
5. `reveal(survivors, dropped)`: the b-shares of surviving neighbours and the key-shares of
   dropped ones, never both for the same participant (that would unmask its vector), and only
   when the server names at least `threshold` survivors.
A participant object serves one round; make a new one for the next.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from disco.aggregation import masking, shamir
from disco.aggregation.errors import AggregationError

from .errors import SecAggError
from .keys import Curve, KeyPair, Purpose, commitment, decrypt, derive, encrypt
from .roster import PublicKeys, Roster

SHARE_PLAINTEXT_BYTES = 2 * shamir.SHARE_BYTES
"""A relayed share: the b-share then the mask-key share."""


@dataclass(frozen=True, slots=True)
class Shares:
    """What `share` returns: sealed shares by recipient and the commitment to b."""

    sealed: dict[int, bytes]
    commitment: bytes


class Participant:
    """A participant of one secure-aggregation round (see the module docstring)."""

    def __init__(self, curves: Iterable[Curve] = (Curve.X25519, Curve.P256)) -> None:
        self._keys = {curve: (KeyPair.generate(curve), KeyPair.generate(curve)) for curve in curves}
        if not self._keys:
            raise SecAggError("a participant offers at least one curve")
        self._roster: Roster | None = None
        self._index = 0
        self._seed = b""
        self._own: tuple[int, int] = (0, 0)
        self._received: dict[int, tuple[int, int]] = {}
        self._sharers: set[int] = set()
        self._revealed = False

    def advertisement(self) -> dict[Curve, PublicKeys]:
        """Public keys to send, by curve."""
        return {
            c: PublicKeys(cipher.public, mask.public) for c, (cipher, mask) in self._keys.items()
        }

    @property
    def index(self) -> int:
        """This participant's number in the round (0 before `share`)."""
        return self._index

    def _check_roster(self) -> Roster:
        if self._roster is None:
            raise SecAggError("no roster yet")
        return self._roster

    def share(self, roster: Roster, index: int) -> Shares:
        """Step 2: shares of b and of the mask key for each neighbour, sealed for it."""
        if self._roster is not None:
            raise SecAggError("this participant already shared its seeds")
        if roster.curve not in self._keys:
            raise SecAggError(
                f"the round uses {roster.curve}, which this participant did not offer"
            )
        cipher, mask_key = self._keys[roster.curve]
        mine = roster.keys.get(index)
        if mine != PublicKeys(cipher.public, mask_key.public):
            raise SecAggError(f"the roster's keys for participant {index} are not this one's")
        self._roster, self._index = roster, index
        self._seed = secrets.token_bytes(masking.SEED_BYTES)
        holders = roster.holders(index)
        b_shares = shamir.split(int.from_bytes(self._seed, "big"), holders, roster.threshold)
        key_shares = shamir.split(mask_key.secret(), holders, roster.threshold)
        self._own = (b_shares[index], key_shares[index])
        sealed: dict[int, bytes] = {}
        for j in roster.neighbours(index):
            key = derive(
                cipher.agree(roster.keys[j].cipher), roster.session, Purpose.SHARE, index, j
            )
            plaintext = shamir.share_to_bytes(b_shares[j]) + shamir.share_to_bytes(key_shares[j])
            sealed[j] = encrypt(key, plaintext, roster.session, index, j)
        return Shares(sealed, commitment(roster.session, index, self._seed))

    def receive(self, sealed: Mapping[int, bytes], sharers: Collection[int]) -> list[int]:
        """Step 3: keep the shares relayed from neighbours; U1 = `sharers`. Returns the senders
        whose share did not decrypt or parse (they are ignored)."""
        roster = self._check_roster()
        cipher, _ = self._keys[roster.curve]
        neighbours = set(roster.neighbours(self._index))
        self._sharers = {j for j in sharers if j in roster.keys}
        self._sharers.add(self._index)
        refused: list[int] = []
        for sender, box in sealed.items():
            if sender not in neighbours or sender not in self._sharers:
                refused.append(sender)
                continue
            try:
                key = derive(
                    cipher.agree(roster.keys[sender].cipher),
                    roster.session,
                    Purpose.SHARE,
                    sender,
                    self._index,
                )
                plain = decrypt(key, box, roster.session, sender, self._index)
                if len(plain) != SHARE_PLAINTEXT_BYTES:
                    raise SecAggError("a relayed share has the wrong length")
                b = shamir.share_from_bytes(plain[: shamir.SHARE_BYTES])
                k = shamir.share_from_bytes(plain[shamir.SHARE_BYTES :])
            except (SecAggError, AggregationError):
                refused.append(sender)
                continue
            self._received[sender] = (b, k)
        return refused

    def masked(self, vector: NDArray[np.floating[Any]]) -> masking.Masked:
        """Step 4: the masked fixed-point encoding of `vector` (length = the roster's)."""
        roster = self._check_roster()
        if not self._sharers:
            raise SecAggError("masking needs the list of participants who shared (step 3)")
        flat = np.asarray(vector, dtype=np.float64).reshape(-1)
        if flat.size != roster.vector_length:
            raise SecAggError(
                f"the vector has {flat.size} values, the round {roster.vector_length}"
            )
        try:
            encoded = masking.encode(flat, roster.fractional_bits, summands=roster.size)
        except AggregationError as error:
            raise SecAggError(str(error)) from None
        _, mask_key = self._keys[roster.curve]
        pair_seeds = {
            j: derive(
                mask_key.agree(roster.keys[j].mask), roster.session, Purpose.MASK, self._index, j
            )
            for j in roster.neighbours(self._index)
            if j in self._sharers
        }
        return masking.mask(encoded, self._seed, pair_seeds, self._index)

    def reveal(self, survivors: Collection[int], dropped: Collection[int]) -> dict[int, bytes]:
        """Step 5: {participant: share} — b-shares of surviving neighbours (and itself), mask-key
        shares of dropped neighbours. Refuses inconsistent requests (see the module docstring)."""
        roster = self._check_roster()
        if self._revealed:
            raise SecAggError("this participant already revealed its shares")
        alive, gone = set(survivors), set(dropped)
        if alive & gone:
            raise SecAggError("a participant cannot be both a survivor and dropped")
        if self._index not in alive:
            raise SecAggError("this participant is not among the survivors")
        if not alive | gone <= self._sharers:
            raise SecAggError("survivors and dropped participants must all have shared")
        if len(alive) < roster.threshold:
            raise SecAggError(
                f"only {len(alive)} survivors, fewer than the threshold {roster.threshold}"
            )
        self._revealed = True
        held = {**self._received, self._index: self._own}
        answer: dict[int, bytes] = {}
        for j in alive:
            if j in held:
                answer[j] = shamir.share_to_bytes(held[j][0])
        for j in gone:
            if j in held:
                answer[j] = shamir.share_to_bytes(held[j][1])
        return answer

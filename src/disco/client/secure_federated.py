"""A federated participant of a task with secure aggregation (`aggregationStrategy: "secure"`).

Per round it joins the server's secure round with fresh keys and answers the server's stage
messages with `disco.secagg.Participant` (docs/protocol.md, types 20-27). What it masks is
[n·w, n] (its weights times its sample count, then the count), so the server learns only
Σ n_i·w_i and Σ n_i: the sample-weighted mean. Outcomes:
- "aggregated": it fetches the new global model;
- "aborted" (too few members left): it keeps its local weights and goes on to the next round;
- a refused join because the server's round moved: it joins the new round with the same update
  (like a plain client re-posting a stale update).
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
from numpy.typing import NDArray

from disco.client.federated import FederatedError, FederatedSession
from disco.client.session import Exchange
from disco.protocol.errors import ProtocolError
from disco.protocol.secagg import (
    SECAGG_REPLY_TYPES,
    SecAggOutcome,
    SecAggRelay,
    SecAggRoster,
    SecAggStatus,
    SecAggUnmask,
    parse_secagg_reply,
    secagg_join,
    secagg_masked,
    secagg_reveal,
    secagg_shares,
)
from disco.secagg import Curve, Participant, PublicKeys, Roster, SecAggError
from disco.weights import Weights

log = logging.getLogger("disco.client.secure_federated")

MAX_REJOINS = 3


def weighted_vector(weights: Weights, num_samples: int) -> NDArray[np.float64]:
    """[n·w (all tensors flattened), n]: what a participant masks."""
    flat = np.concatenate([np.asarray(w, np.float64).reshape(-1) for w in weights])
    return np.concatenate([flat * float(num_samples), [float(num_samples)]])


def roster_from(message: SecAggRoster) -> tuple[Roster, int]:
    """The Roster and this member's number from a secAggRoster message."""
    keys = {i: PublicKeys(c, m) for i, (c, m) in message.participants.items()}
    roster = Roster(  # checks numbering, session, degree and threshold (SecAggError)
        session=message.session,
        curve=Curve(message.curve),
        keys=keys,
        degree=message.degree,
        threshold=message.threshold,
        vector_length=message.vector_length,
        fractional_bits=message.fractional_bits,
    )
    return roster, message.index


class SecureFederatedCommunicator:
    """`Communicator` for secure federated rounds (module docstring)."""

    def __init__(
        self,
        session: FederatedSession,
        round_timeout_s: float = 120.0,
        curves: tuple[Curve, ...] = (Curve.X25519, Curve.P256),
    ) -> None:
        self.session = session
        self.round_timeout_s = round_timeout_s
        self.curves = curves
        self.last_outcome: SecAggOutcome | None = None  # None: the last round timed out

    async def exchange(
        self, weights: Weights, round_: int, num_samples: int, epsilon: float | None = None
    ) -> Exchange:
        """One secure round for `round_` (rejoining a newer round if the server moved on)."""
        deadline = time.monotonic() + self.round_timeout_s
        vector = weighted_vector(weights, max(1, int(num_samples)))
        join_round = round_
        for _ in range(MAX_REJOINS + 1):
            async with self.session.lock:
                outcome = await self._one_round(vector, join_round, num_samples, epsilon, deadline)
            self.last_outcome = outcome
            if outcome is None:
                log.warning(
                    "secure round %d did not finish within %.0f s", join_round, self.round_timeout_s
                )
                return Exchange(None, 0, join_round)
            if outcome.status is SecAggStatus.AGGREGATED:
                if outcome.weights is not None:
                    return Exchange(outcome.weights, outcome.participants, outcome.round)
                new_round, global_weights = await self.session.latest()
                return Exchange(global_weights, outcome.participants, new_round)
            if outcome.status is SecAggStatus.ABORTED:
                log.warning(
                    "secure round %d abandoned by the server: %s",
                    join_round,
                    outcome.error or "no reason",
                )
                return Exchange(None, 0, outcome.round)
            if outcome.round != join_round:  # refused: the server moved on; join its round
                join_round = outcome.round
                continue
            raise FederatedError(
                f"the server refused to aggregate securely: {outcome.error or 'no reason'}"
            )
        return Exchange(None, 0, join_round)

    async def _one_round(
        self,
        vector: NDArray[np.float64],
        round_: int,
        num_samples: int,
        epsilon: float | None,
        deadline: float,
    ) -> SecAggOutcome | None:
        """Join, then answer the stage messages until the outcome (None: the deadline)."""
        participant = await asyncio.to_thread(Participant, self.curves)  # key generation
        keys = {str(c): (k.cipher, k.mask) for c, k in participant.advertisement().items()}
        await self.session.send(secagg_join(round_, keys, num_samples, epsilon))
        session_id: bytes | None = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                raw = await self.session.receive(left)
            except FederatedError as error:
                if "in time" in str(error):
                    return None
                raise
            if raw.get("type") not in SECAGG_REPLY_TYPES:
                continue  # e.g. a late roundStatus of a plain wait: not part of this round
            try:
                message = parse_secagg_reply(raw)
            except ProtocolError as error:
                raise FederatedError(f"malformed answer from the server: {error.reason}") from None
            try:
                if isinstance(message, SecAggRoster):
                    roster, index = roster_from(message)
                    if roster.vector_length != vector.size:
                        raise SecAggError(
                            f"the round aggregates {roster.vector_length} values, this model "
                            f"has {vector.size}"
                        )
                    session_id = roster.session
                    shares = await asyncio.to_thread(participant.share, roster, index)
                    await self.session.send(
                        secagg_shares(session_id, shares.sealed, shares.commitment)
                    )
                elif isinstance(message, SecAggRelay) and message.session == session_id:
                    # decryption and mask expansion are CPU work (AES and numpy release the GIL)
                    refused = await asyncio.to_thread(
                        participant.receive, message.shares, list(message.sharers)
                    )
                    if refused:
                        log.warning("shares from participants %s did not decrypt", refused)
                    masked = await asyncio.to_thread(participant.masked, vector)
                    await self.session.send(secagg_masked(session_id, masked.tobytes()))
                elif isinstance(message, SecAggUnmask) and message.session == session_id:
                    revealed = participant.reveal(list(message.survivors), list(message.dropped))
                    await self.session.send(secagg_reveal(session_id, revealed))
                elif isinstance(message, SecAggOutcome):
                    if message.status is SecAggStatus.REFUSED and session_id is not None:
                        log.warning("the server refused a message of this member: %s",
                                    message.error)
                        continue  # dropped from the round; its outcome still comes
                    return message
            except (SecAggError, ValueError) as error:
                # Stop taking part; the server counts this member as dropped.
                log.warning("leaving secure round %d: %s", round_, error)
                session_id = None

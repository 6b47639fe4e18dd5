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
from typing import Any

import numpy as np
from numpy.typing import NDArray

from disco.client.federated import FederatedError, FederatedSession
from disco.client.session import Exchange
from disco.protocol.secagg import secagg_join, secagg_masked, secagg_reveal, secagg_shares
from disco.protocol.types import MessageType
from disco.protocol.weights import decode_weights
from disco.secagg import Curve, Participant, PublicKeys, Roster, SecAggError
from disco.weights import Weights

log = logging.getLogger("disco.client.secure_federated")

MAX_REJOINS = 3


def weighted_vector(weights: Weights, num_samples: int) -> NDArray[np.float64]:
    """[n·w (all tensors flattened), n]: what a participant masks."""
    flat = np.concatenate([np.asarray(w, np.float64).reshape(-1) for w in weights])
    return np.concatenate([flat * float(num_samples), [float(num_samples)]])


def roster_from(message: dict[str, Any]) -> tuple[Roster, int]:
    """The Roster and this member's number from a secAggRoster message."""
    try:
        keys = {int(i): PublicKeys(bytes(c), bytes(m)) for i, c, m in message["participants"]}
        roster = Roster(
            session=bytes(message["session"]),
            curve=Curve(message["curve"]),
            keys=keys,
            degree=int(message["degree"]),
            threshold=int(message["threshold"]),
            vector_length=int(message["vectorLength"]),
            fractional_bits=int(message["fractionalBits"]),
        )
        return roster, int(message["index"])
    except (KeyError, TypeError, ValueError) as error:
        raise SecAggError(f"malformed roster: {error}") from None


def _pairs(value: Any) -> dict[int, bytes]:
    return {int(i): bytes(b) for i, b in value}


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
        self.last_outcome: dict[str, Any] = {}

    async def exchange(
        self, weights: Weights, round_: int, num_samples: int, epsilon: float | None = None
    ) -> Exchange:
        """One secure round for `round_` (rejoining a newer round if the server moved on)."""
        deadline = time.monotonic() + self.round_timeout_s
        vector = weighted_vector(weights, max(1, int(num_samples)))
        join_round = round_
        outcome: dict[str, Any] = {}
        for _ in range(MAX_REJOINS + 1):
            async with self.session.lock:
                outcome = await self._one_round(vector, join_round, num_samples, epsilon, deadline)
            self.last_outcome = outcome
            status = outcome.get("status")
            server_round = int(outcome.get("round", join_round))
            if status == "aggregated":
                participants = int(outcome.get("participants", 0))
                if outcome.get("weights") is not None:
                    weights, _ = decode_weights(outcome["weights"])
                    return Exchange(weights, participants, server_round)
                new_round, global_weights = await self.session.latest()
                return Exchange(global_weights, participants, new_round)
            if status == "aborted":
                log.warning(
                    "secure round %d abandoned by the server: %s",
                    join_round,
                    outcome.get("error", "no reason"),
                )
                return Exchange(None, 0, server_round)
            if status == "refused" and server_round != join_round:
                join_round = server_round  # the server moved on: contribute to its round
                continue
            if status == "timeout":
                log.warning(
                    "secure round %d did not finish within %.0f s", join_round, self.round_timeout_s
                )
                return Exchange(None, 0, join_round)
            raise FederatedError(
                f"the server refused to aggregate securely: {outcome.get('error', 'no reason')}"
            )
        return Exchange(None, 0, join_round)

    async def _one_round(
        self,
        vector: NDArray[np.float64],
        round_: int,
        num_samples: int,
        epsilon: float | None,
        deadline: float,
    ) -> dict[str, Any]:
        """Join, then answer the stage messages until the outcome (or the deadline)."""
        participant = await asyncio.to_thread(Participant, self.curves)  # key generation
        keys = {str(c): (k.cipher, k.mask) for c, k in participant.advertisement().items()}
        await self.session.send(secagg_join(round_, keys, num_samples, epsilon))
        session_id: bytes | None = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return {"status": "timeout", "round": round_}
            try:
                message = await self.session.receive(left)
            except FederatedError as error:
                if "in time" in str(error):
                    return {"status": "timeout", "round": round_}
                raise
            kind = message.get("type")
            try:
                if kind == MessageType.SECAGG_ROSTER:
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
                elif kind == MessageType.SECAGG_RELAY and session_id is not None:
                    # decryption and mask expansion are CPU work (AES and numpy release the GIL)
                    refused = await asyncio.to_thread(
                        participant.receive, _pairs(message["shares"]), message["sharers"]
                    )
                    if refused:
                        log.warning("shares from participants %s did not decrypt", refused)
                    masked = await asyncio.to_thread(participant.masked, vector)
                    await self.session.send(secagg_masked(session_id, masked.tobytes()))
                elif kind == MessageType.SECAGG_UNMASK and session_id is not None:
                    revealed = participant.reveal(message["survivors"], message["dropped"])
                    await self.session.send(secagg_reveal(session_id, revealed))
                elif kind == MessageType.SECAGG_OUTCOME:
                    if message.get("status") == "refused" and session_id is not None:
                        log.warning(
                            "the server refused a message of this member: %s", message.get("error")
                        )
                        continue  # dropped from the round; its outcome still comes
                    return message
            except (SecAggError, KeyError, TypeError, ValueError) as error:
                # Stop taking part; the server counts this member as dropped.
                log.warning("leaving secure round %d: %s", round_, error)
                session_id = None

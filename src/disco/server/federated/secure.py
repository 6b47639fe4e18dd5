"""Secure federated rounds of one task: the `disco.secagg.Coordinator` driven over WebSockets.

A round of a task with `aggregationStrategy: "secure"` (native clients only):
1. Members send secAggJoin (20) for the server's current round. The round starts once at least
   `min_participants` joined and either every expected member joined (the members of the last
   secure round still connected) or `deadline_s` passed since the quorum.
2. Each member gets the roster (21) and answers with its sealed shares (22); the relay (23)
   goes out once all shared or the stage deadline passed; members answer with their masked
   vector (24); the unmask request (25) goes to the survivors, who answer with shares (26).
   Every stage closes when everyone it waits for answered (a member that disconnects is not
   waited for) or after `deadline_s`: a dropout never stalls a round past its deadlines.
3. The unmasked sum is [Σ n_i·w_i, Σ n_i]: the new global model is their quotient (the sample
   weighted mean), published through the round engine like any aggregate. Every member then
   gets secAggOutcome (27) "aggregated" with the new round; with fewer than the threshold left
   at any stage the round is abandoned: "aborted" with the reason, model and round unchanged,
   and members simply join again (the next attempt starts from step 1).
A message that does not fit the round (wrong session, malformed share, vector of the wrong
length) gets secAggOutcome "refused" with the reason; the round goes on for everyone else and
that member counts as dropped from that stage on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from disco.protocol.framing import pack
from disco.protocol.secagg import (
    SecAggJoin,
    SecAggMasked,
    SecAggMessage,
    SecAggReveal,
    SecAggShares,
    SecAggStatus,
    secagg_outcome,
    secagg_relay,
    secagg_roster,
    secagg_unmask,
)
from disco.protocol.weights import encode_native
from disco.secagg import Coordinator, Curve, PublicKeys, RoundAborted, SecAggError, Stage
from disco.secagg.roster import DEFAULT_THRESHOLD_FRACTION
from disco.server.federated.engine import RoundEngine
from disco.weights import Weights, WeightsError

log = logging.getLogger("disco.server.federated.secure")

Push = Callable[[str, bytes], Awaitable[None]]
"""Sends a frame to a connected client of the task (no-op when it is gone)."""


@dataclass(frozen=True)
class SecureSettings:
    """Parameters of a task's secure rounds."""

    min_participants: int
    deadline_s: float
    threshold: float = DEFAULT_THRESHOLD_FRACTION
    degree: int | None = None


class SecureRounds:
    """The secure rounds of one task (module docstring)."""

    def __init__(self, task_id: str, engine: RoundEngine, settings: SecureSettings, push: Push):
        self.task_id = task_id
        self.engine = engine
        self.settings = settings
        self._push = push
        self._joined: dict[str, SecAggJoin] = {}
        self._connected: set[str] = set()
        self._last_members: set[str] = set()
        self._coordinator: Coordinator | None = None
        self._started_at: float | None = None  # loop time the running secure round started
        self._members: dict[str, SecAggJoin] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._given_up: set[str] = set()  # members whose message this stage was refused
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self.last_outcome: dict[str, object] = {}
        self.completed = 0
        self.aborted = 0
        self._closed = False

    @property
    def vector_length(self) -> int:
        """Weights plus the sample count."""
        return self.engine.parameters + 1

    def status(self) -> dict[str, object]:
        """For the task status page."""
        coordinator = self._coordinator
        return {
            "stage": "waiting" if coordinator is None else str(coordinator.stage),
            "joined": len(self._joined),
            "members": len(self._members),
            "threshold": self.settings.threshold,
            "completedRounds": self.completed,
            "abortedRounds": self.aborted,
            "lastOutcome": dict(self.last_outcome),
        }

    # -- connections --------------------------------------------------------------------------

    def connect(self, client: str) -> None:
        """A client connected to the task."""
        self._connected.add(client)

    def disconnect(self, client: str) -> None:
        """A client left: never wait for it (this may close the current stage at once)."""
        self._connected.discard(client)
        self._joined.pop(client, None)
        self._spawn(self._evaluate())

    # -- messages -----------------------------------------------------------------------------

    async def handle(self, client: str, message: SecAggMessage) -> bytes | None:
        """Act on one secure-aggregation message; a refusal frame or None."""
        log.debug("task %s: %s from %s", self.task_id, type(message).__name__, client)
        async with self._lock:
            reply = self._accept(client, message)
        self._spawn(self._evaluate())  # a refusal may also leave nobody to wait for
        return reply

    def _accept(self, client: str, message: SecAggMessage) -> bytes | None:
        """Hand the message to the coordinator (lock held); a refusal frame or None."""
        if self._closed:
            return self._refusal("the task is shutting down")
        try:
            if isinstance(message, SecAggJoin):
                return self._join(client, message)
            coordinator = self._coordinator
            if coordinator is None or message.session != coordinator.roster.session:
                return self._refusal("no secure round with this session is running")
            if isinstance(message, SecAggShares):
                coordinator.submit_shares(client, message.shares, message.commitment)
            elif isinstance(message, SecAggMasked):
                coordinator.submit_masked(client, message.masked)
            elif isinstance(message, SecAggReveal):
                coordinator.submit_reveal(client, message.shares)
        except SecAggError as error:
            if not isinstance(message, SecAggJoin):
                self._given_up.add(client)
            log.warning(
                "task %s: secure-aggregation message of %s refused: %s", self.task_id, client, error
            )
            return self._refusal(str(error))
        return None

    def _refusal(self, reason: str) -> bytes:
        return pack(secagg_outcome(self.engine.round, SecAggStatus.REFUSED, reason))

    def _join(self, client: str, message: SecAggJoin) -> bytes | None:
        current = self.engine.round
        if message.round != current:
            return self._refusal(f"round {message.round} is not the server's round {current}")
        if client in self._members:
            return self._refusal("already a member of the running secure round")
        offer = {Curve(c): PublicKeys(cipher, mask) for c, (cipher, mask) in message.keys.items()}
        Coordinator(1).advertise(client, offer)  # validates the keys now (SecAggError)
        self._joined[client] = message
        return None

    # -- stages -------------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> None:
        if self._closed:
            return
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s: a secure round step failed", self.task_id,
                      exc_info=task.exception())

    def _arm(self, stage: Stage | None) -> None:
        """(Re)start the deadline of the current stage (None: of the joining phase)."""
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(
            self.settings.deadline_s, lambda: self._spawn(self._evaluate(deadline=stage))
        )

    def _disarm(self) -> None:
        self._given_up = set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expected_joins(self) -> set[str]:
        return (self._last_members & self._connected) | set(self._joined)

    async def _evaluate(self, deadline: Stage | bool | None = False) -> None:
        """Move the round on when its stage is complete or its deadline passed."""
        frames: list[tuple[str, bytes]] = []
        finished: np.ndarray | None = None
        async with self._lock:
            if self._closed:
                return
            coordinator = self._coordinator
            try:
                if coordinator is None:
                    quorum = len(self._joined) >= max(2, self.settings.min_participants)
                    everyone = set(self._joined) >= self._expected_joins()
                    if quorum and (everyone or deadline is None):
                        frames = self._start()
                    elif quorum and self._timer is None:
                        self._arm(None)
                    return_now = True
                else:
                    return_now = False
                if not return_now and coordinator is not None:
                    timed_out = deadline is coordinator.stage
                    waiting = (coordinator.expected() & self._connected) - self._given_up
                    if coordinator.complete() or not waiting or timed_out:
                        stage = coordinator.stage
                        if stage is Stage.SHARING:
                            frames = self._relay(coordinator)
                        elif stage is Stage.MASKING:
                            frames = self._unmask_requests(coordinator)
                        elif stage is Stage.UNMASKING:
                            finished = await asyncio.to_thread(coordinator.close_unmasking)
            except RoundAborted as aborted:
                frames = self._abort(str(aborted))
            if finished is not None:
                frames = await self._finish(finished)
            again = self._coordinator is None and bool(self._joined) and bool(frames)
        for client, frame in frames:
            await self._push(client, frame)
        if again:  # a round ended: members that joined meanwhile may make the next quorum
            self._spawn(self._evaluate())

    def _start(self) -> list[tuple[str, bytes]]:
        coordinator = Coordinator(
            self.vector_length,
            min_members=self.settings.min_participants,
            threshold_fraction=self.settings.threshold,
            degree=self.settings.degree,
        )
        for client, join in self._joined.items():
            offer = {Curve(c): PublicKeys(ci, m) for c, (ci, m) in join.keys.items()}
            coordinator.advertise(client, offer)
        self._members = dict(self._joined)
        self._joined.clear()
        self._coordinator = coordinator
        self._started_at = asyncio.get_running_loop().time()
        roster = coordinator.start()  # RoundAborted when too few share a curve
        self._arm(Stage.SHARING)
        keys = {i: (k.cipher, k.mask) for i, k in roster.keys.items()}
        deadline_ms = int(self.settings.deadline_s * 1000)
        log.info(
            "task %s: secure round %d starts with %d members (threshold %d)",
            self.task_id,
            self.engine.round,
            roster.size,
            roster.threshold,
        )
        return [
            (
                client,
                pack(
                    secagg_roster(
                        round=self.engine.round,
                        session=roster.session,
                        curve=str(roster.curve),
                        index=index,
                        participants=keys,
                        degree=roster.degree,
                        threshold=roster.threshold,
                        vector_length=roster.vector_length,
                        fractional_bits=roster.fractional_bits,
                        deadline_ms=deadline_ms,
                    )
                ),
            )
            for client in self._members
            if (index := coordinator.index_of(client)) is not None
        ]

    def _relay(self, coordinator: Coordinator) -> list[tuple[str, bytes]]:
        relay = coordinator.close_sharing()
        self._arm(Stage.MASKING)
        sharers = coordinator.sharers()
        session = coordinator.roster.session
        deadline_ms = int(self.settings.deadline_s * 1000)
        return [
            (coordinator.member(j), pack(secagg_relay(session, boxes, sharers, deadline_ms)))
            for j, boxes in relay.items()
        ]

    def _unmask_requests(self, coordinator: Coordinator) -> list[tuple[str, bytes]]:
        survivors, dropped = coordinator.close_masking()
        self._arm(Stage.UNMASKING)
        frame = pack(
            secagg_unmask(
                coordinator.roster.session, survivors, dropped, int(self.settings.deadline_s * 1000)
            )
        )
        return [(coordinator.member(i), frame) for i in survivors]

    def _abort(self, reason: str) -> list[tuple[str, bytes]]:
        self._disarm()
        self.aborted += 1
        self.last_outcome = {
            "status": SecAggStatus.ABORTED.value,
            "round": self.engine.round,
            "reason": reason,
        }
        log.warning(
            "task %s: secure round %d abandoned: %s", self.task_id, self.engine.round, reason
        )
        frame = pack(secagg_outcome(self.engine.round, SecAggStatus.ABORTED, reason))
        members = list(self._members)
        self._last_members = set(members)
        self._coordinator = None
        self._members = {}
        return [(m, frame) for m in members]

    async def _finish(self, total: np.ndarray) -> list[tuple[str, bytes]]:
        """Publish Σ n_i·w_i / Σ n_i as the next global model; tell every member."""
        self._disarm()
        coordinator = self._coordinator
        assert coordinator is not None
        survivors, _ = coordinator.survivors()
        samples = float(total[-1])
        if not samples > 0:
            return self._abort("the survivors' sample counts do not add up to a positive total")
        flat = total[:-1] / samples
        weights: Weights = []
        offset = 0
        for shape in self.engine.shapes:
            size = int(np.prod(shape, dtype=np.int64))
            weights.append(flat[offset : offset + size].reshape(shape).astype(np.float32))
            offset += size
        try:
            new_round = await self.engine.publish(weights, len(survivors), self._started_at)
        except WeightsError as error:
            return self._abort(f"the aggregate is unusable: {error}")
        self.completed += 1
        self.last_outcome = {
            "status": SecAggStatus.AGGREGATED.value,
            "round": new_round,
            "participants": len(survivors),
        }
        published = self.engine.current()[1]
        payload = (
            await asyncio.to_thread(encode_native, published)
            if self.engine.parameters > 100_000
            else encode_native(published)
        )
        frame = pack(
            secagg_outcome(
                new_round,
                SecAggStatus.AGGREGATED,
                participants=len(survivors),
                weights_payload=payload,
            )
        )
        members = list(self._members)
        self._last_members = set(members)
        self._coordinator = None
        self._members = {}
        frames = [(m, frame) for m in members]
        stale = [c for c, j in self._joined.items() if j.round != new_round]
        for client in stale:  # joined during the round for the old model: must retrain
            del self._joined[client]
            frames.append(
                (
                    client,
                    self._refusal(
                        f"round {new_round - 1} was aggregated meanwhile; join round {new_round}"
                    ),
                )
            )
        return frames

    async def close(self) -> None:
        """Stop: no new stage starts; members of a running round are told it is abandoned."""
        async with self._lock:
            frames = self._abort("the task is shutting down") if self._coordinator else []
            self._closed = True
            self._disarm()
        for client, frame in frames:
            with contextlib.suppress(Exception):
                await self._push(client, frame)
        pending = list(self._background)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

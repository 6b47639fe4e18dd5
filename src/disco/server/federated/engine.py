"""The federated round engine of one task: global model, round number and contributions.

Pure asyncio and numpy, no sockets, so every rule below is unit-testable without a server.

Rules
- Round tags. A contribution tagged round `t` while the engine is at round `r` is accepted when
  `r - max_staleness <= t <= r` and then counts for round `r` (the 2.1.1 JS client keeps posting
  the last server round it adopted, so a client one aggregation behind still contributes).
  `t > r` is refused (`FUTURE`: no client can have seen that round), `t < r - max_staleness`
  is refused (`STALE`); both results carry the current round so the client can catch up.
- Validation. Weights whose tensor count or shapes differ from the model, or that hold NaN/Inf,
  are refused (`INVALID`) and never reach the model; nothing else about the engine changes.
- One contribution per client per round: a resend for the same round replaces the previous one.
- Participants of round `r`: connected clients (see `join`/`leave`) whose last contribution
  counted for round `r` or `r - 1`. A connection that never posts is an observer and is never
  waited for; a client that leaves is no longer waited for.
- Departed contributors. A contribution counts only while its client is connected, or left
  less than `deadline_s` ago: that long after leaving (and not back), its update is taken out
  of the round (an update from a client that quit minutes ago is never averaged in). Live
  figures (`statistics`, `round_status`: participants) count connected clients only.
- A round aggregates once at least `min_participants` clients contributed AND either every
  participant contributed or `deadline_s` passed since that quorum was reached.
- Aggregation runs the task's aggregator (in a worker thread when parameters × contributions
  exceed `thread_threshold`), then `persist(weights, round + 1)`, and only then publishes the new
  round: a client told round `r + 1` can fetch that model over HTTP at once. A persistence failure
  is logged and the round still advances in memory (training must not stall on a full disk).
  An aggregator failure (or a non-finite / misshapen result) is logged, the round's contributions
  are dropped and the model and round stay as they were; clients simply post again.

Concurrency
- One `asyncio.Lock` serialises every state change; aggregation and persistence run while it is
  held. A submission arriving meanwhile waits for the lock and is then judged against the new
  round: with `max_staleness >= 1` it counts for the next round; with `max_staleness == 0` it is
  refused as `STALE` with the new round number (the client retries from the new model).
  Nothing is ever dropped silently.
- Aggregation runs in its own task: a submitter that gets cancelled (its connection closing)
  cannot interrupt a round half-way. `submit` waits for an aggregation its contribution
  triggered, so the submitter's next request already sees the new round.
- Reads (`current`, `statistics`, `round_status`, `wait_for_round`, `wait_changed`) never take
  the lock: they answer at once with the last completed round, even while an aggregation is
  running. `wait_changed` wakes whenever a figure of `round_status` may have changed (a
  contribution, a participant joining or leaving, the deadline armed, an aggregation starting
  or ending): pushed rounds (the hub's waiting latestServerRound) are built on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from disco.aggregation.strategy import Aggregator, Strategy
from disco.protocol.messages import PostStatus, RoundStatus, ServerStatistics, WaitingFor
from disco.server.federated.contributions import (
    JOURNAL_ENTRY_BYTES,
    FoldedUpdates,
    KeptUpdates,
    RoundUpdates,
    StagedUpdate,
    stage,
)
from disco.weights import (
    Shape,
    Weights,
    WeightsError,
    as_float32,
    check_finite,
    check_shapes,
    flatten,
    num_parameters,
    shapes_of,
)

log = logging.getLogger("disco.server.federated")

Persist = Callable[[Weights, int], Awaitable[Weights | None]]
"""Stores a new global model and its round number (the hub offloads the disk write); may return
the stored copy (equal values, e.g. views of the store's bytes), which the engine then keeps
instead of its own, so a model is held once, not twice."""


@dataclass(frozen=True, slots=True)
class RoundReport:
    """How a completed round went, for the server's metrics (seconds: wall-clock)."""

    round: int  # the round aggregated (the model published is round + 1)
    contributions: int
    round_s: float  # from the round's start (previous publication, or engine creation)
    aggregation_s: float
    persistence_s: float


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What became of a contribution; `round` is the engine's round once it was handled."""

    status: PostStatus  # the wire's post acknowledgement status
    round: int
    reason: str = ""
    aggregated: bool = False  # the round this contribution counted for has been aggregated

    @property
    def accepted(self) -> bool:
        """True when the contribution counts (or counted) for a round."""
        return self.status is PostStatus.ACCEPTED


def _validated(weights: Sequence[NDArray[Any]], shapes: Sequence[Shape]) -> Weights:
    """The weights as float32 when they fit the model's `shapes` and are finite (else raises)."""
    check_shapes(weights, shapes)
    converted = as_float32(weights)
    check_finite(converted)
    return converted


class RoundEngine:
    """Rounds of one federated task (rules and concurrency in the module docstring)."""

    def __init__(
        self,
        task_id: str,
        initial_weights: Sequence[NDArray[Any]],
        round: int = 0,
        *,
        min_participants: int,
        deadline_s: float,
        max_staleness: int,
        aggregator: Aggregator,
        persist: Persist,
        thread_threshold: int = 100_000,
        journal_dir: Path | None = None,
        on_round: Callable[[RoundReport], None] | None = None,
    ) -> None:
        if min_participants < 1:
            raise ValueError("min_participants must be at least 1")
        if deadline_s <= 0:
            raise ValueError("deadline_s must be positive")
        if max_staleness < 0:
            raise ValueError("max_staleness must be non-negative")
        if round < 0:
            raise ValueError("round must be non-negative")
        self.task_id = task_id
        self.min_participants = min_participants
        self.deadline_s = deadline_s
        self.max_staleness = max_staleness
        self.thread_threshold = thread_threshold
        self._aggregator = aggregator
        self._persist = persist
        self._weights = as_float32(initial_weights)
        self._shapes = shapes_of(self._weights)
        self._params = num_parameters(self._weights)
        self._round = round
        self._on_round = on_round
        self._round_started = time.monotonic()

        self._lock = asyncio.Lock()
        self._queued = 0  # submissions whose task waits for the lock (see `_submit`)
        self._journal_dir = journal_dir
        self._folds = isinstance(aggregator, Strategy) and aggregator.folds
        self._contributions: RoundUpdates = self._new_round_updates()
        self._connected: set[str] = set()
        self._last_counted: dict[str, int] = {}  # client -> round its last contribution counted for
        # Kept up to date on every change so that no request costs O(clients) (a round of N
        # posts would cost O(N²)): `participants()` and the participants still awaited.
        self._participants: set[str] = set()
        self._awaited: set[str] = set()  # participants without a contribution this round
        self._contributors: set[str] = set()
        # Contributors of this round that left (their update expires `deadline_s` after).
        self._departed: set[str] = set()
        self._expiries: dict[str, asyncio.TimerHandle] = {}
        self._aggregations = 0
        self._aggregated_contributions = 0
        self._last_round_contributions = 0
        self._advanced = asyncio.Event()
        self._changed = asyncio.Event()
        self._aggregating: int | None = None  # contributions being aggregated, if any
        self._opened_at: float | None = None  # loop time of the round's first accepted update
        self._aggregating_since: float | None = None  # that time, for the round being aggregated
        self._deadline: asyncio.TimerHandle | None = None
        self._evaluation: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- reads (never block) -----------------------------------------------------------------

    @property
    def round(self) -> int:
        """The current round: the number of the model `current()` returns."""
        return self._round

    @property
    def shapes(self) -> list[Shape]:
        """The model's tensor shapes, in order."""
        return list(self._shapes)

    @property
    def parameters(self) -> int:
        """Scalars in the model."""
        return self._params

    def current(self) -> tuple[int, Weights]:
        """The current round and global weights (do not modify the arrays)."""
        return self._round, self._weights

    def participants(self) -> set[str]:
        """Connected clients whose last contribution counted for this round or the previous one."""
        return set(self._participants)

    def contributors(self) -> set[str]:
        """Clients whose contribution counts for the current round so far."""
        return self._contributions.clients()

    def statistics(self) -> ServerStatistics:
        """Participation figures for pullServerStatistics."""
        average = (
            self._aggregated_contributions / self._aggregations if self._aggregations else 0.0
        )
        return ServerStatistics(
            round=self._round,
            # participants ∪ contributors = awaited participants + contributors (disjoint)
            current_participants=self._live_participants(),
            total_participants=len(self._contributors),
            average_participants=average,
            last_round_participants=self._last_round_contributions,
        )

    @property
    def journal_dir(self) -> Path | None:
        """Where the round's files (journal, chunked uploads) go; None: the system's temp dir."""
        return self._journal_dir

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    def round_status(self) -> RoundStatus:
        """Where the current round stands (see `disco.protocol.messages.RoundStatus`)."""
        participants = self._live_participants()
        contributions = len(self._contributions)
        waiting_for: WaitingFor = "contributions"
        left: float | None = None
        if self._aggregating is not None:
            waiting_for, contributions = "aggregation", self._aggregating
        elif contributions < self.min_participants:
            waiting_for = "participants"
        else:
            left = self.deadline_left_s()
        return RoundStatus(
            round=self._round,
            participants=participants,
            contributions=contributions,
            min_participants=self.min_participants,
            waiting_for=waiting_for,
            deadline_ms=None if left is None else round(left * 1000),
        )

    def aggregating(self) -> tuple[int, float] | None:
        """While a round is aggregated (and its model persisted): the number of contributions
        and the seconds since its first one was accepted; None otherwise (the round history)."""
        if self._aggregating is None:
            return None
        since = self._aggregating_since
        elapsed = 0.0 if since is None else asyncio.get_running_loop().time() - since
        return self._aggregating, max(0.0, elapsed)

    def _live_participants(self) -> int:
        """Connected participants of the round: awaited ones + connected contributors."""
        return len(self._awaited) + len(self._contributions) - len(self._departed)

    def deadline_left_s(self) -> float | None:
        """Seconds before the armed deadline aggregates the round; None when none is armed."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline.when() - asyncio.get_running_loop().time())

    def deadline_at(self) -> float | None:
        """Event-loop time the armed deadline fires at (None when none is armed)."""
        return None if self._deadline is None else self._deadline.when()

    async def wait_changed(self) -> None:
        """Return at the next change of the round's status (see the module docstring).

        Take `changed()` before reading the state, then await it, to never miss a change."""
        await self._changed.wait()

    def changed(self) -> asyncio.Event:
        """The event set at the next change of the round's status (a fresh one after each)."""
        return self._changed

    def advanced(self) -> asyncio.Event:
        """The event set when the round next moves or the engine closes (a fresh one after)."""
        return self._advanced

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for_round(self, round: int, timeout_s: float) -> int:
        """Wait until the engine reaches `round` or `timeout_s` seconds pass; the round reached."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._round < round and not self._closed:
            left = deadline - loop.time()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), left)
        return self._round

    # -- membership --------------------------------------------------------------------------

    def join(self, client_id: str) -> None:
        """A client connected; it only becomes a participant once it contributes (or when it
        comes back after contributing to this round or the previous one)."""
        self._connected.add(client_id)
        if client_id in self._departed:  # back in time: its update counts again
            self._departed.discard(client_id)
            expiry = self._expiries.pop(client_id, None)
            if expiry is not None:
                expiry.cancel()
            self._notify()
        last = self._last_counted.get(client_id)
        if last is not None and last >= self._round - 1:
            self._participants.add(client_id)
            if client_id not in self._contributions:
                self._awaited.add(client_id)
            self._notify()

    def leave(self, client_id: str) -> None:
        """A client disconnected: never wait for it again (this may complete the round)."""
        self._connected.discard(client_id)
        was_participant = client_id in self._participants
        self._participants.discard(client_id)
        self._awaited.discard(client_id)
        if client_id in self._contributions and not self._closed:
            self._departed.add(client_id)
            previous = self._expiries.pop(client_id, None)
            if previous is not None:
                previous.cancel()
            self._expiries[client_id] = asyncio.get_running_loop().call_later(
                self.deadline_s, self._expire, client_id, self._round
            )
            was_participant = True
        if was_participant:
            self._notify()
        if not self._closed and self._contributions:
            self._kick()

    def _expire(self, client_id: str, round: int) -> None:
        """`deadline_s` after a contributor left: take its update out (unless it is back)."""
        self._expiries.pop(client_id, None)
        if not self._closed and round == self._round and client_id in self._departed:
            self._spawn(self._drop_departed(client_id, round), f"federated-expire-{self.task_id}")

    async def _drop_departed(self, client_id: str, round: int) -> None:
        async with self._lock:
            if self._closed or round != self._round or client_id not in self._departed:
                return
            updates = self._contributions
            if self._params * len(updates) > self.thread_threshold:
                await asyncio.to_thread(updates.drop, client_id)
            else:
                updates.drop(client_id)
            self._departed.discard(client_id)
            if self._last_counted.get(client_id) == round:
                del self._last_counted[client_id]
            if not self._quorum():
                self._cancel_deadline()
            log.info("task %s: the update of %s is dropped from round %d: it left %g s ago",
                     self.task_id, client_id, round, self.deadline_s,
                     extra={"task": self.task_id, "client": client_id, "round": round})
            self._notify()

    def _forget_departures(self) -> None:
        """A new round: departures of the last one no longer matter."""
        self._departed.clear()
        for expiry in self._expiries.values():
            expiry.cancel()
        self._expiries.clear()

    # -- contributions -----------------------------------------------------------------------

    async def submit(
        self,
        client_id: str,
        weights: Sequence[NDArray[Any]],
        round: int,
        num_samples: int | None = None,
    ) -> SubmitResult:
        """Offer a client's weights tagged with the round it trained from (rules: module doc)."""
        if self._closed:
            return SubmitResult(PostStatus.CLOSED, self._round, "the task is shutting down")
        if num_samples is not None and num_samples <= 0:
            num_samples = None
        try:
            if self._folds:  # written to its journal file now, folded under the lock
                if self._params > self.thread_threshold:
                    staged = await asyncio.to_thread(self._validated_staged, weights)
                else:
                    staged = self._validated_staged(weights)
                return await self._submit(
                    client_id, round,
                    lambda updates: updates.put_staged(client_id, staged, num_samples),
                    staged.close,
                )  # fmt: skip
            if self._params > self.thread_threshold:
                checked = await asyncio.to_thread(_validated, weights, self._shapes)
            else:
                checked = _validated(weights, self._shapes)
        except WeightsError as error:
            return SubmitResult(PostStatus.INVALID, self._round, str(error))
        return await self._submit(
            client_id, round, lambda updates: updates.put(client_id, checked, num_samples)
        )

    def stage(self, weights: Sequence[NDArray[Any]]) -> StagedUpdate | None:
        """`submit`'s checks and staging, done by the caller (thread-safe: it reads only the
        model's shapes), for `submit_staged`: the WebSocket handler does it in the worker
        thread that decoded the frame, one thread hop per post instead of two. None when this
        engine keeps whole updates rather than folding them (then `submit` the weights).
        Raises WeightsError for an update `submit` would refuse as invalid."""
        return self._validated_staged(weights) if self._folds else None

    def _validated_staged(self, weights: Sequence[NDArray[Any]]) -> StagedUpdate:
        """`_validated`, flattened and staged: finiteness is checked once on the flat vector,
        per tensor only to name the culprit."""
        check_shapes(weights, self._shapes)
        converted = as_float32(weights)
        owned = self._params * 4 <= JOURNAL_ENTRY_BYTES
        if owned:
            # Small: one concatenating copy costs a few µs, less than proving the tensors are
            # consecutive views of one buffer (`flatten`'s zero-copy path); the copy is ours,
            # so the journal keeps it as it is. (The `reshape` method, not `np.ravel`: no
            # Python-level wrapper per tensor.)
            flat = np.concatenate([tensor.reshape(-1) for tensor in converted])
        else:
            flat = flatten(converted)
        if not bool(np.isfinite(flat).all()):
            check_finite(converted)
        return stage(flat, self._journal_dir, owned)

    async def submit_delta(
        self,
        client_id: str,
        delta: Sequence[NDArray[Any]],
        round: int,
        num_samples: int | None = None,
    ) -> SubmitResult:
        """`submit` for a compressed update: the model of `round` plus `delta`. Only the current
        round's model is kept, so any other round is refused (STALE / FUTURE: the client sends
        that update uncompressed, or again from the new model)."""
        try:
            check_shapes(delta, self._shapes)
        except WeightsError as error:
            return SubmitResult(PostStatus.INVALID, self._round, str(error))
        if num_samples is not None and num_samples <= 0:
            num_samples = None

        def put(updates: RoundUpdates) -> None:
            rebuilt = [
                np.add(base, part, dtype=np.float32)
                for base, part in zip(self._weights, delta, strict=True)
            ]
            check_finite(rebuilt)  # finite delta + finite model can still overflow
            updates.put(client_id, rebuilt, num_samples)

        return await self._submit(client_id, round, put, exact_round=True)

    async def submit_staged(
        self, client_id: str, staged: StagedUpdate, round: int, num_samples: int | None = None
    ) -> SubmitResult:
        """`submit` for an update already checked (shapes, NaN/Inf) and stored in `staged`,
        which this call owns (closed unless taken in): received in chunks and checked chunk by
        chunk, or checked and staged by `stage`."""
        if num_samples is not None and num_samples <= 0:
            num_samples = None
        if staged.size != self._params:
            staged.close()
            return SubmitResult(
                PostStatus.INVALID, self._round,
                f"expected {self._params} parameters, got {staged.size}",
            )  # fmt: skip
        return await self._submit(
            client_id, round,
            lambda updates: updates.put_staged(client_id, staged, num_samples), staged.close,
        )  # fmt: skip

    async def _submit(
        self,
        client_id: str,
        round: int,
        put: Callable[[RoundUpdates], None],
        discard: Callable[[], None] | None = None,
        exact_round: bool = False,
    ) -> SubmitResult:
        """Take an update in with `put` if its round tag allows (only the current round with
        `exact_round`), else `discard` it; `put` may refuse it with WeightsError."""
        if self._params <= self.thread_threshold and not self._lock.locked() and not self._queued:
            # Fast path: the lock is free and nobody queues for it, and taking a small update in
            # never awaits, so it cannot be interrupted half-way: no task, no shield.
            result, evaluation = self._take_in(client_id, round, put, exact_round)
            if not result.accepted and discard is not None:
                discard()
        else:
            # The locked part runs in a task of its own: a submitter cancelled half-way (its
            # connection closing) must not release the lock while the update is being folded
            # in. Counted in `_queued` until it is done, so that no fast path overtakes it
            # (once it holds the lock, the lock being taken is enough).
            accept = self._spawn_result(self._accept(client_id, round, put, discard, exact_round))
            self._queued += 1
            accept.add_done_callback(self._unqueue)
            result, evaluation = await asyncio.shield(accept)
        if evaluation is not None:
            await asyncio.shield(evaluation)
        if not result.accepted:
            return result
        return SubmitResult(
            PostStatus.ACCEPTED, self._round, aggregated=self._round > result.round
        )

    async def _accept(
        self,
        client_id: str,
        round: int,
        put: Callable[[RoundUpdates], None],
        discard: Callable[[], None] | None,
        exact_round: bool,
    ) -> tuple[SubmitResult, asyncio.Task[None] | None]:
        """Judge the round tag and take the update in (under the lock); the result (`round`:
        the round it counts for) and the evaluation it triggered, if any."""
        async with self._lock:
            result, evaluation = await self._take_in_locked(client_id, round, put, exact_round)
        if not result.accepted and discard is not None:
            discard()
        return result, evaluation

    def _unqueue(self, _: asyncio.Task[Any]) -> None:
        self._queued -= 1

    def _judge(self, round: int, exact_round: bool) -> SubmitResult | None:
        """The refusal of a contribution tagged `round` (lock held), or None: it counts."""
        if self._closed:
            return SubmitResult(PostStatus.CLOSED, self._round, "the task is shutting down")
        current = self._round
        if round > current:
            return SubmitResult(
                PostStatus.FUTURE,
                current,
                f"round {round} is ahead of the server's round {current}",
            )
        if exact_round and round < current:
            return SubmitResult(
                PostStatus.STALE,
                current,
                f"a compressed update of round {round} needs that round's model; the server "
                f"is at round {current}: send it uncompressed",
            )
        if round < current - self.max_staleness:
            return SubmitResult(
                PostStatus.STALE,
                current,
                f"round {round} is too old: the server is at round {current} and accepts "
                f"rounds {max(0, current - self.max_staleness)}..{current}",
            )
        return None

    def _take_in(
        self, client_id: str, round: int, put: Callable[[RoundUpdates], None], exact_round: bool
    ) -> tuple[SubmitResult, asyncio.Task[None] | None]:
        """Judge and take a contribution in without awaiting (lock held or free: see
        `_submit`); the result and the evaluation it triggered, if any."""
        refusal = self._judge(round, exact_round)
        if refusal is not None:
            return refusal, None
        self._opening()
        try:
            put(self._contributions)
        except WeightsError as error:
            return SubmitResult(PostStatus.INVALID, self._round, str(error)), None
        return self._counted(client_id)

    async def _take_in_locked(
        self, client_id: str, round: int, put: Callable[[RoundUpdates], None], exact_round: bool
    ) -> tuple[SubmitResult, asyncio.Task[None] | None]:
        """`_take_in` with the lock held, folding a big update in a worker thread."""
        if self._params <= self.thread_threshold:
            return self._take_in(client_id, round, put, exact_round)
        refusal = self._judge(round, exact_round)
        if refusal is not None:
            return refusal, None
        self._opening()
        try:
            await asyncio.to_thread(put, self._contributions)
        except WeightsError as error:
            return SubmitResult(PostStatus.INVALID, self._round, str(error)), None
        return self._counted(client_id)

    def _opening(self) -> None:
        """A contribution is about to be taken in: the round is open from its first one."""
        if self._opened_at is None:
            self._opened_at = asyncio.get_running_loop().time()

    def _counted(self, client_id: str) -> tuple[SubmitResult, asyncio.Task[None] | None]:
        """Book `client_id`'s contribution to the current round (taken in); may complete it."""
        current = self._round
        self._last_counted[client_id] = current
        self._contributors.add(client_id)
        if client_id in self._connected:
            self._participants.add(client_id)
        self._awaited.discard(client_id)
        evaluation = self._kick() if self._complete() else None
        if evaluation is None:
            self._update_deadline()
        self._notify()
        return SubmitResult(PostStatus.ACCEPTED, current), evaluation

    def _new_round_updates(self) -> RoundUpdates:
        """Where a round keeps its contributions: folded into a running mean when the
        aggregator allows it (`folds`), else kept for the aggregator (see `contributions`)."""
        if self._folds:
            return FoldedUpdates(self._shapes, self._journal_dir)
        return KeptUpdates(self._aggregator, self._shapes)

    # -- round completion --------------------------------------------------------------------

    def _quorum(self) -> bool:
        return len(self._contributions) >= self.min_participants

    def _complete(self) -> bool:
        """Quorum reached and nobody left to wait for."""
        return self._quorum() and not self._awaited

    def _update_deadline(self) -> None:
        """Run the deadline while the quorum is reached but someone is still awaited."""
        if self._quorum() and self._deadline is None:
            self._deadline = asyncio.get_running_loop().call_later(
                self.deadline_s, self._on_deadline, self._round
            )
            self._notify()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self, round: int) -> None:
        self._deadline = None
        if not self._closed and round == self._round:
            self._spawn(self._evaluate(deadline_of=round), f"federated-deadline-{self.task_id}")

    def _kick(self) -> asyncio.Task[None]:
        """Schedule one evaluation of the round (reusing one that has not started yet)."""
        pending = self._evaluation
        if pending is not None and not pending.done():
            return pending
        task = self._spawn(self._evaluate(), f"federated-round-{self.task_id}")
        self._evaluation = task
        return task

    def _spawn_result(
        self, coro: Coroutine[Any, Any, tuple[SubmitResult, asyncio.Task[None] | None]]
    ) -> asyncio.Task[tuple[SubmitResult, asyncio.Task[None] | None]]:
        task = asyncio.get_running_loop().create_task(coro, name=f"federated-submit-{self.task_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _evaluate(self, deadline_of: int | None = None) -> None:
        """Aggregate when the rule says so; otherwise (re)arm the deadline.

        `deadline_of` is the round whose deadline passed: it only counts while that round is
        still the current one (the round may have completed while this task waited).
        """
        async with self._lock:
            if self._closed:
                return
            if self._complete() or (deadline_of == self._round and self._quorum()):
                await self._aggregate_locked()
            else:
                self._update_deadline()

    async def _aggregate_locked(self) -> None:
        """Combine the round's contributions, persist, then publish round + 1."""
        self._cancel_deadline()
        round_ = self._round
        contributions = self._contributions
        self._contributions = self._new_round_updates()
        self._forget_departures()
        self._awaited = set(self._participants)  # nobody has contributed to the next try yet
        self._aggregating = len(contributions)
        self._aggregating_since, self._opened_at = self._opened_at, None
        self._notify()
        try:
            await self._aggregate_contributions(round_, contributions)
        finally:
            contributions.close()
            self._aggregating = None
            self._aggregating_since = None
            self._notify()

    async def _aggregate_contributions(self, round_: int, contributions: RoundUpdates) -> None:
        count = len(contributions)
        started = time.monotonic()
        try:
            if self._params * count > self.thread_threshold:
                new = await asyncio.to_thread(self._combine, contributions)
            else:
                new = self._combine(contributions)
        except Exception:
            log.exception(
                "task %s: aggregating round %d of %d updates failed; the model is unchanged",
                self.task_id, round_, count, extra=self._log_fields(round_),
            )
            return
        await self._install(new, round_, count, "", time.monotonic() - started)

    async def _install(
        self, new: Weights, round_: int, contributions: int, how: str, aggregation_s: float = 0.0
    ) -> None:
        """Persist `new` as the model of round + 1, then publish it (lock held)."""
        persisting = time.monotonic()
        try:
            stored = await self._persist(new, round_ + 1)
        except Exception:
            log.exception("task %s: could not persist the model of round %d", self.task_id,
                          round_ + 1, extra=self._log_fields(round_ + 1))
            stored = None
        persisted = time.monotonic()
        if stored is not None and [tuple(w.shape) for w in stored] == self._shapes:
            new = as_float32(stored)
        self._weights = new
        self._round = round_ + 1
        # Participants of the new round: those whose contribution counted for the round just
        # aggregated (the others' last contribution is now two rounds old). O(N) once a round.
        last = self._last_counted
        self._participants = {c for c in self._participants if last.get(c, -1) >= round_}
        self._awaited = set(self._participants)
        self._aggregations += 1
        self._aggregated_contributions += contributions
        self._last_round_contributions = contributions
        self._forget_departed()
        log.info("task %s: round %d aggregated %sfrom %d updates", self.task_id, round_, how,
                 contributions, extra=self._log_fields(round_))
        report = RoundReport(round_, contributions, persisted - self._round_started,
                             aggregation_s, persisted - persisting)  # fmt: skip
        self._round_started = persisted
        advanced, self._advanced = self._advanced, asyncio.Event()
        advanced.set()
        if self._on_round is not None:
            try:
                self._on_round(report)
            except Exception:
                log.exception("task %s: reporting round %d failed", self.task_id, round_)

    def _log_fields(self, round: int) -> dict[str, object]:
        """Structured fields of a round's log line (no client: the round is everyone's)."""
        return {"task": self.task_id, "round": round, "client": None}

    async def publish(
        self, weights: Sequence[NDArray[Any]], contributions: int, started_at: float | None = None
    ) -> int:
        """Install a model aggregated elsewhere (a secure round) as the next round's model:
        validated like any aggregate, persisted (with its round-history entry: `contributions`,
        and the seconds since `started_at`, a loop time), then published. Returns the new round.

        Raises WeightsError (misshapen or non-finite weights; nothing changes) and
        RuntimeError when the engine is closed."""
        checked = _validated(weights, self._shapes)
        for tensor in checked:
            tensor.flags.writeable = False
        async with self._lock:
            if self._closed:
                raise RuntimeError("the task is shutting down")
            self._cancel_deadline()
            self._contributions.close()
            self._contributions = self._new_round_updates()
            self._forget_departures()
            self._aggregating, self._aggregating_since = contributions, started_at
            try:
                await self._install(checked, self._round, contributions, "securely ")
            finally:
                self._aggregating = self._aggregating_since = None
            self._notify()
            return self._round

    def _combine(self, contributions: RoundUpdates) -> Weights:
        """Aggregate the round and check the result (may run in a worker thread)."""
        result = contributions.aggregate(self._weights)
        try:
            checked = _validated(result, self._shapes)
        except WeightsError as error:
            raise RuntimeError(f"the aggregator returned unusable weights: {error}") from None
        for tensor in checked:  # shared with every reader until the next round: freeze it
            tensor.flags.writeable = False
        return checked

    def _forget_departed(self) -> None:
        """Drop bookkeeping of gone clients that can no longer be participants."""
        floor = self._round - 1
        for client in [
            c for c, r in self._last_counted.items() if r < floor and c not in self._connected
        ]:
            del self._last_counted[client]

    # -- life cycle --------------------------------------------------------------------------

    async def close(self) -> None:
        """Let a running aggregation finish, then refuse everything; idempotent."""
        self._cancel_deadline()
        async with self._lock:
            self._closed = True
            self._cancel_deadline()
            self._forget_departures()
            self._notify()
        advanced, self._advanced = self._advanced, asyncio.Event()
        advanced.set()  # wake waiters: they return the round reached
        pending = list(self._background)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

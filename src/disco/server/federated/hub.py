"""Federated state of the whole server: one `TaskChannel` (round engine + metadata + live
connections + encoded-model cache) per task, created on the first connection to that task.

The round engine knows nothing of sockets or the task store; this module wires it to both:
the engine starts from the store's current model and round, persists each new global model
through `TaskStore.update_model` in a worker thread (which also makes it what the HTTP model
routes serve), and aggregates with the task's strategy (`disco.aggregation.strategy`).

Life cycle: `FederatedHub(store, settings)`, `await hub.start()` at server start-up,
`await hub.close()` at shut-down (asks every connection to close with 1001, then lets running
aggregations and their persistence finish).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from disco.aggregation.errors import AggregationError
from disco.aggregation.strategy import aggregator_for
from disco.protocol.errors import CloseCode, ProtocolError
from disco.protocol.framing import pack
from disco.protocol.messages import MAX_ID_CHARS, latest_round_reply, statistics_reply
from disco.protocol.weights import WeightEncoding, encode_weights
from disco.server.federated.engine import RoundEngine, Weights
from disco.server.federated.metadata import MetadataBoard
from disco.server.settings import Settings
from disco.tasks.store import StoredTask, TaskNotFoundError, TaskStore

log = logging.getLogger("disco.server.federated")


class TaskUnavailable(Exception):
    """The task exists but cannot be trained federatedly (e.g. an invalid aggregator)."""


@dataclass(frozen=True)
class CloseRequest:
    """Why the server ends a connection: the WebSocket close code and reason to send."""

    code: int
    reason: str


@dataclass(eq=False)
class Session:
    """One live connection of `client_id` to a task.

    `encoding` is what latestServerRound answers in: fixed by `?encoding=` when the client gave
    one, else the encoding of the client's last postWeightsToServer (legacy until it posts, so
    the 2.1.1 JS client gets what it can decode).
    """

    channel: TaskChannel
    client_id: str
    encoding: WeightEncoding = WeightEncoding.LEGACY
    encoding_fixed: bool = False
    close_request: CloseRequest | None = None
    _close_event: asyncio.Event = field(default_factory=asyncio.Event)

    def request_close(self, code: int, reason: str) -> None:
        """Ask the connection's handler to close (the first request wins)."""
        if self.close_request is None:
            self.close_request = CloseRequest(int(code), reason)
            self._close_event.set()

    async def wait_close_request(self) -> CloseRequest:
        """Wait until someone calls `request_close`."""
        await self._close_event.wait()
        assert self.close_request is not None
        return self.close_request

    def posted(self, encoding: WeightEncoding) -> None:
        """Answer in the encoding the client posts in, unless it asked for one explicitly."""
        if not self.encoding_fixed:
            self.encoding = encoding


class LatestFrames:
    """The latestServerRound answer, encoded once per round and per encoding.

    Encoding (legacy especially: ~9 bytes and a Python float per parameter) runs in a worker
    thread for models over `thread_threshold` parameters; concurrent requests for the same
    round share one encoding job. Only the current round's frames are kept.
    """

    def __init__(self, thread_threshold: int) -> None:
        self.thread_threshold = thread_threshold
        self._round = -1
        self._jobs: dict[WeightEncoding, asyncio.Task[bytes]] = {}

    async def get(self, round: int, weights: Weights, encoding: WeightEncoding) -> bytes:
        """The packed `{type: 11, round, weights}` frame for this round's model."""
        if round != self._round:
            self._round = round
            self._jobs = {}
        job = self._jobs.get(encoding)
        if job is None or (job.done() and (job.cancelled() or job.exception() is not None)):
            job = asyncio.get_running_loop().create_task(
                self._encode(round, weights, encoding), name=f"encode-round-{round}-{encoding}"
            )
            self._jobs[encoding] = job
        return await asyncio.shield(job)

    async def _encode(self, round: int, weights: Weights, encoding: WeightEncoding) -> bytes:
        size = sum(int(w.size) for w in weights)
        if size > self.thread_threshold:
            return await asyncio.to_thread(_latest_frame, round, weights, encoding)
        return _latest_frame(round, weights, encoding)


def _latest_frame(round: int, weights: Weights, encoding: WeightEncoding) -> bytes:
    return pack(latest_round_reply(round, encode_weights(weights, encoding)))


class TaskChannel:
    """Everything federated about one task."""

    def __init__(self, task_id: str, engine: RoundEngine, thread_threshold: int) -> None:
        self.task_id = task_id
        self.engine = engine
        self.metadata = MetadataBoard()
        self.sessions: dict[str, Session] = {}
        self._frames = LatestFrames(thread_threshold)

    async def latest_frame(self, encoding: WeightEncoding) -> bytes:
        """Answer to latestServerRound: the current round and global model."""
        round_, weights = self.engine.current()
        return await self._frames.get(round_, weights, encoding)

    def statistics_frame(self) -> bytes:
        """Answer to pullServerStatistics."""
        stats = self.engine.statistics()
        return pack(
            statistics_reply(
                round=stats.round,
                current_participants=stats.current_participants,
                total_participants=stats.total_participants,
                average_participants=stats.average_participants,
                last_round_participants=stats.last_round_participants,
            )
        )


def min_participants(training_information: dict[str, Any], default: int) -> int:
    """`minNbOfParticipants` when it is a positive integer, else the server's default."""
    value = training_information.get("minNbOfParticipants")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return default
    return int(value) if value >= 1 else default


class FederatedHub:
    """All federated tasks of the server (see the module docstring)."""

    def __init__(self, store: TaskStore, settings: Settings) -> None:
        self._store = store
        self.settings = settings
        self._channels: dict[str, TaskChannel] = {}
        self._creating: dict[str, asyncio.Task[TaskChannel | None]] = {}
        self._closing = False

    @property
    def max_frame_bytes(self) -> int:
        """Largest frame a client may send."""
        return self.settings.max_frame_bytes

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to load up front: engines are created on each task's first connection."""
        self._closing = False

    async def close(self) -> None:
        """Close every connection (1001), then let running rounds and persistence finish."""
        self._closing = True
        for job in list(self._creating.values()):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await job
        channels = list(self._channels.values())
        for channel in channels:
            for session in list(channel.sessions.values()):
                session.request_close(CloseCode.GOING_AWAY, "server shutting down")
        await asyncio.gather(*(channel.engine.close() for channel in channels))

    # -- tasks ----------------------------------------------------------------------------

    def channels(self) -> dict[str, TaskChannel]:
        """The channels created so far, by task id (for status pages and tests)."""
        return dict(self._channels)

    async def channel(self, task_id: str) -> TaskChannel | None:
        """The task's channel, created from the store on first use; None for an unknown task.

        Raises TaskUnavailable when the task exists but its settings make training impossible.
        """
        existing = self._channels.get(task_id)
        if existing is not None:
            return existing
        job = self._creating.get(task_id)
        if job is None:
            job = asyncio.get_running_loop().create_task(self._create(task_id))
            self._creating[task_id] = job
            job.add_done_callback(lambda _: self._creating.pop(task_id, None))
        return await asyncio.shield(job)

    async def _create(self, task_id: str) -> TaskChannel | None:
        try:
            stored = await asyncio.to_thread(self._store.get, task_id)
        except TaskNotFoundError:
            return None
        engine = self._engine(stored)
        channel = TaskChannel(task_id, engine, self.settings.aggregation_thread_threshold)
        self._channels[task_id] = channel
        return channel

    def _engine(self, stored: StoredTask) -> RoundEngine:
        task_id = stored.task_id
        info = stored.task.to_json().get("trainingInformation", {})
        try:
            aggregator = aggregator_for(info)
        except AggregationError as error:
            raise TaskUnavailable(f"task '{task_id}' cannot aggregate: {error}") from None
        store = self._store

        async def persist(weights: Weights, round: int) -> None:
            await asyncio.to_thread(store.update_model, task_id, weights, round)

        return RoundEngine(
            task_id,
            stored.weights(),
            stored.round,
            min_participants=min_participants(info, self.settings.default_min_participants),
            deadline_s=self.settings.round_deadline_s,
            max_staleness=self.settings.max_staleness,
            aggregator=aggregator,
            persist=persist,
            thread_threshold=self.settings.aggregation_thread_threshold,
        )

    def task_status(self, task_id: str) -> dict[str, Any] | None:
        """Round and participation of a task with a running engine, for GET /tasks/{id}/status.

        None when no client connected to the task since start-up (the store's round is then
        the current one).
        """
        channel = self._channels.get(task_id)
        if channel is None:
            return None
        stats = channel.engine.statistics()
        return {
            "round": stats.round,
            "currentNumberOfParticipants": stats.current_participants,
            "totalNumberOfParticipants": stats.total_participants,
            "averageNumberOfParticipants": stats.average_participants,
        }

    # -- connections ----------------------------------------------------------------------

    def attach(
        self, channel: TaskChannel, client_id: str, encoding: WeightEncoding | None = None
    ) -> Session:
        """Register a connection; ProtocolError (1008) when `client_id` is already connected."""
        if self._closing:
            raise ProtocolError("server shutting down", CloseCode.GOING_AWAY)
        if len(client_id) > MAX_ID_CHARS:
            raise ProtocolError(
                f"clientID longer than {MAX_ID_CHARS} characters", CloseCode.POLICY_VIOLATION
            )
        if client_id in channel.sessions:
            raise ProtocolError("clientID already connected", CloseCode.POLICY_VIOLATION)
        session = Session(
            channel,
            client_id,
            encoding=encoding or WeightEncoding.LEGACY,
            encoding_fixed=encoding is not None,
        )
        channel.sessions[client_id] = session
        channel.engine.join(client_id)
        return session

    def detach(self, session: Session) -> None:
        """The connection is gone; idempotent."""
        channel = session.channel
        if channel.sessions.get(session.client_id) is session:
            del channel.sessions[session.client_id]
            channel.engine.leave(session.client_id)

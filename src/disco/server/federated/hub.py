"""Federated state of the whole server: one `TaskChannel` (round engine + metadata + live
connections + encoded-model cache) per task, created on the first connection to that task.

The round engine knows nothing of sockets or the task store; this module wires it to both:
the engine starts from the store's current model and round, persists each new global model
through `TaskStore.commit_model` in a worker thread (which also makes it what the HTTP model
routes serve), and aggregates with the strategy and quorum of the task's typed settings
(`TrainingInformation.strategy()`, `min_participants_or`).

Identity: a task has at most one live connection per clientID, and everything a connection
posts (weights, metadata) is filed under the clientID of its URL, never under a field of the
message. A second connection for a connected clientID waits `duplicate_client_grace_s` for the
first to go (a client reconnecting right after its socket died abruptly gets in), then is
refused (1008, "clientID already connected; ..."). A first connection that died silently (no
FIN, no RST) is dropped by the WebSocket keepalive (`ws_ping_interval_s` + `ws_ping_timeout_s`),
after which the clientID is free again. Reconnecting resumes: the engine keeps a client's
contribution to the current round across connections, and the client may post again.

Life cycle: `FederatedHub(store, settings)`, `await hub.start()` at server start-up,
`await hub.close()` at shut-down (asks every connection to close with 1001, then lets running
aggregations and their persistence finish).

Live pages: `on_change(task_id, change)` (the server's event bus, `disco.server.events`) is told
when connections come and go and whenever the round engine's status changes ("round" when a
round completed); `live_status` is what the dashboard shows of a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from disco.aggregation.strategy import Aggregator
from disco.privacy import CentralGaussian
from disco.protocol.errors import CloseCode, ProtocolError
from disco.protocol.framing import pack, pack_with_encoded
from disco.protocol.legacy import pack_legacy_weights
from disco.protocol.messages import (
    MAX_ID_CHARS,
    latest_round_reply,
    round_status,
    statistics_reply,
)
from disco.protocol.native_chunks import chunked, chunked_parameters, encode_chunks
from disco.protocol.weights import WeightEncoding, encode_weights
from disco.server.federated.engine import RoundEngine, RoundReport
from disco.server.federated.metadata import MetadataBoard
from disco.server.federated.push import Send, StatusBoard, Wait
from disco.server.federated.secure import SecureRounds, SecureSettings
from disco.server.federated.uploads import ParkedUploads, Upload
from disco.server.metrics import ServerMetrics
from disco.server.settings import Settings
from disco.server.ws_transport import FrameWriter, ServerFrame
from disco.tasks.store import CompletedRound, StoredTask, TaskNotFoundError, TaskStore
from disco.weights import Weights

log = logging.getLogger("disco.server.federated")


DUPLICATE_CLIENT = "clientID already connected"
"""Start of the close reason given to a second live connection for one clientID."""


DECODING_SLOTS = 2
"""Big frames decoded at the same time: decoding is CPU work (more than the cores gains nothing)
and each one holds temporaries the size of its frame."""


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
    _departed: asyncio.Event = field(default_factory=asyncio.Event)
    _wait: Wait | None = None
    upload: Upload | None = None  # a chunked update being received (see `uploads`)

    def start_wait(self, after_round: int, send: Send) -> None:
        """Answer a waiting latestServerRound when the round is past `after_round` (see
        `push`), replacing a pending one."""
        self.cancel_wait()
        self._wait = self.channel.status.wait(self, after_round, send)

    def cancel_wait(self) -> None:
        """Drop the pending waiting request, if any (it sends nothing more)."""
        if self._wait is not None:
            self._wait.cancel()
            self._wait = None

    @property
    def waiting(self) -> bool:
        """True while a waiting latestServerRound is pending (its answer not sent yet)."""
        return self._wait is not None and self._wait.active

    sender: Send | None = None  # set by the connection's handler
    writer: FrameWriter | None = None  # the connection's direct frame writer, if its server has one

    async def send(self, frame: bytes) -> None:
        """Push a frame to this connection (e.g. a secure-aggregation stage message); nothing
        when the handler has not set `sender` yet or the client is gone."""
        if self.sender is not None:
            await self.sender(frame)

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

    def mark_departed(self) -> None:
        """Called by the hub once the connection is detached (wakes `wait_departed`)."""
        self._departed.set()

    async def wait_departed(self) -> None:
        """Wait until the hub detaches this connection."""
        await self._departed.wait()

    def posted(self, encoding: WeightEncoding) -> None:
        """Answer in the encoding the client posts in, unless it asked for one explicitly."""
        if not self.encoding_fixed:
            self.encoding = encoding


class LatestFrames:
    """The latestServerRound answer, encoded once per round and per encoding.

    Encoding (legacy especially: ~9 bytes and a Python float per parameter) runs in a worker
    thread for models over `thread_threshold` parameters; concurrent requests for the same
    round share one encoding job. `prepare` starts a job ahead of the first request (the hub
    does so while a new model is being persisted, before it is published), so frames of the two
    newest rounds are kept: the one clients read and the one being prepared.
    """

    KEPT_ROUNDS = 2

    def __init__(self, thread_threshold: int) -> None:
        self.thread_threshold = thread_threshold
        self._jobs: dict[tuple[int, WeightEncoding], asyncio.Task[bytes]] = {}

    def prepare(
        self, round: int, weights: Weights, encoding: WeightEncoding
    ) -> asyncio.Task[bytes]:
        """The encoding job for this round's model, started now unless one exists (a failed
        job is retried); older rounds' frames are dropped."""
        key = (round, encoding)
        job = self._jobs.get(key)
        if job is None or (job.done() and (job.cancelled() or job.exception() is not None)):
            job = asyncio.get_running_loop().create_task(
                self._encode(round, weights, encoding), name=f"encode-round-{round}-{encoding}"
            )
            job.add_done_callback(_log_encoding_failure)
            self._jobs[key] = job
            newest = max(r for r, _ in self._jobs)
            for old in [k for k in self._jobs if k[0] <= newest - self.KEPT_ROUNDS]:
                del self._jobs[old]
        return job

    async def get(self, round: int, weights: Weights, encoding: WeightEncoding) -> bytes:
        """The packed `{type: 11, round, weights}` frame for this round's model."""
        job = self.prepare(round, weights, encoding)
        if job.done() and not job.cancelled() and job.exception() is None:
            return job.result()  # encoded already: no shield future per asker (a crowd asks)
        return await asyncio.shield(job)

    async def _encode(self, round: int, weights: Weights, encoding: WeightEncoding) -> bytes:
        size = sum(int(w.size) for w in weights)
        if size > self.thread_threshold:
            return await asyncio.to_thread(_latest_frame, round, weights, encoding)
        return _latest_frame(round, weights, encoding)


def _log_encoding_failure(job: asyncio.Task[bytes]) -> None:
    """Retrieve a failed job's exception (a prepared job may have no awaiter) and log it."""
    if not job.cancelled() and job.exception() is not None:
        log.error("encoding the global model failed (%s)", job.get_name(), exc_info=job.exception())


def _next_chunk_frame(round: int, chunks: Iterator[dict[str, Any]]) -> bytes | None:
    payload = next(chunks, None)
    return None if payload is None else pack(latest_round_reply(round, payload))


def _latest_frame(round: int, weights: Weights, encoding: WeightEncoding) -> bytes:
    if encoding is WeightEncoding.LEGACY:  # numpy-built, the same bytes as the generic packing
        return pack_with_encoded(latest_round_reply(round, None), "weights",
                                 pack_legacy_weights(weights))  # fmt: skip
    return pack(latest_round_reply(round, encode_weights(weights, encoding)))


class TaskChannel:
    """Everything federated about one task."""

    def __init__(
        self,
        task_id: str,
        engine: RoundEngine,
        thread_threshold: int,
        metrics: ServerMetrics | None = None,
        parked: ParkedUploads | None = None,
    ) -> None:
        self.task_id = task_id
        self.engine = engine
        self.metrics = metrics or ServerMetrics()
        self.metadata = MetadataBoard()
        # uploads cut short, kept for their clients to resume (none kept by default)
        self.parked = parked if parked is not None else ParkedUploads(keep_s=0, capacity=0)
        self.sessions: dict[str, Session] = {}
        self.status = StatusBoard(engine)  # the waits of pushed rounds (see `push`)
        self._frames = LatestFrames(thread_threshold)
        self._server_frames: dict[WeightEncoding, ServerFrame] = {}
        self.secure: SecureRounds | None = None
        self.central: CentralGaussian | None = None
        self.reported_epsilon: dict[str, float] = {}  # client-side DP ε each client reported

    async def push(self, client_id: str, frame: bytes) -> None:
        """Send a frame to a connected client of the task (nothing when it is gone)."""
        session = self.sessions.get(client_id)
        if session is not None:
            await session.send(frame)

    def report_epsilon(self, client_id: str, epsilon: float | None) -> None:
        """Remember the client-side DP ε a client says it has spent."""
        if epsilon is not None:
            self.reported_epsilon[client_id] = float(epsilon)

    def privacy_status(self, delta: float | None) -> dict[str, Any] | None:
        """ε spent so far: the largest a client reported, and the server's own (central DP)."""
        report: dict[str, Any] = {}
        if self.reported_epsilon:
            report["clientEpsilon"] = max(self.reported_epsilon.values())
            report["clientsReporting"] = len(self.reported_epsilon)
            if delta is not None:
                report["delta"] = delta
        central = self.central
        if central is not None:
            report["central"] = {
                "epsilon": central.epsilon,
                "delta": central.delta,
                "rounds": central.account.rounds,
                "noiseMultiplier": central.noise_multiplier,
                "clippingRadius": central.clipping_radius,
                "adaptiveClipping": central.adaptive,
            }
        return report or None

    async def latest_frame(self, encoding: WeightEncoding) -> bytes:
        """Answer to latestServerRound: the current round and global model."""
        round_, weights = self.engine.current()
        return await self._frames.get(round_, weights, encoding)

    async def answer_frame(self, encoding: WeightEncoding) -> ServerFrame | None:
        """The answer to latestServerRound as one frame for many connections; None when the
        model is answered in chunks (`send_latest`)."""
        if self.chunked(encoding):
            return None
        return self._server_frame(encoding, await self.latest_frame(encoding))

    def chunked(self, encoding: WeightEncoding) -> bool:
        """True when the model is answered in chunks (native clients, model over a frame)."""
        return encoding is WeightEncoding.NATIVE and chunked_parameters(self.engine.parameters)

    async def send_latest(
        self, encoding: WeightEncoding, send: Send, write: FrameWriter | None = None
    ) -> None:
        """Send the answer to latestServerRound: one frame, or the model's chunks one frame at
        a time (each built from the model's arrays when it is sent: memory stays one chunk).
        A one-frame answer goes through `write` (the connection's direct writer) when it takes
        it: the wire frame is built once per round and encoding for the whole crowd."""
        round_, weights = self.engine.current()
        if not self.chunked(encoding):  # the parameter count, not a sum per answer
            payload = await self._frames.get(round_, weights, encoding)
            if write is not None and write(self._server_frame(encoding, payload)):
                return
            await send(payload)
            return
        chunks = encode_chunks(weights)
        while (frame := await asyncio.to_thread(_next_chunk_frame, round_, chunks)) is not None:
            await send(frame)

    def _server_frame(self, encoding: WeightEncoding, payload: bytes) -> ServerFrame:
        """`payload` (this encoding's answer) as a `ServerFrame`, kept while it is the answer."""
        kept = self._server_frames.get(encoding)
        if kept is None or kept.payload is not payload:
            kept = self._server_frames[encoding] = ServerFrame(payload)
        return kept

    def prepare_frames(self, round: int, weights: Weights) -> None:
        """Start encoding the model of `round` (about to be published) in the encodings its
        askers use: connections that contributed to the round just aggregated or the one before
        (they ask right after it advances) and those that fixed their encoding; observers stay
        lazy. Run while the model is persisted, this takes the encoding (~0.25 s per 1e6
        parameters in legacy) off the time clients wait for the new round."""
        askers = self.engine.participants()
        encodings = {
            session.encoding
            for client, session in self.sessions.items()
            if session.encoding_fixed or client in askers
        }
        for encoding in sorted(encodings):
            if not (encoding is WeightEncoding.NATIVE and chunked(weights)):  # sent as chunks
                self._frames.prepare(round, weights, encoding)

    def statistics_frame(self) -> bytes:
        """Answer to pullServerStatistics."""
        return pack(statistics_reply(self.engine.statistics()))


def central_aggregator(central: CentralGaussian) -> Aggregator:
    """The engine's aggregator for central DP: clipped, noised mean of the updates' differences
    to the current model (sample counts are ignored: they would change the sensitivity)."""
    rng = np.random.default_rng()

    def aggregate(
        updates: Sequence[Weights], sample_counts: Sequence[float] | None, previous: Weights
    ) -> Weights:
        return central.aggregate(updates, previous, rng)

    return aggregate


class FederatedHub:
    """All federated tasks of the server (see the module docstring)."""

    def __init__(
        self,
        store: TaskStore,
        settings: Settings,
        *,
        on_change: Callable[[str, str], None] | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self._store = store
        self.settings = settings
        self._on_change = on_change
        self.metrics = metrics or ServerMetrics()
        self._channels: dict[str, TaskChannel] = {}
        self._creating: dict[str, asyncio.Task[TaskChannel | None]] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._finishing: set[asyncio.Task[None]] = set()  # see `_finish_later`
        self._closing = False
        self.decoding = asyncio.Semaphore(DECODING_SLOTS)

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
        await asyncio.gather(
            *(channel.secure.close() for channel in channels if channel.secure is not None)
        )
        await asyncio.gather(*(channel.engine.close() for channel in channels))
        await asyncio.gather(*self._finishing)
        for channel in channels:
            channel.parked.close()
        for watcher in list(self._watchers):
            watcher.cancel()

    # -- tasks ----------------------------------------------------------------------------

    def channels(self) -> dict[str, TaskChannel]:
        """The channels created so far, by task id (for status pages and tests)."""
        return dict(self._channels)

    async def channel(self, task_id: str) -> TaskChannel | None:
        """The task's channel, created from the store on first use; None for an unknown task."""
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
        central = self._central(stored)
        engine = self._engine(stored, central)
        channel = TaskChannel(
            task_id, engine, self.settings.aggregation_thread_threshold, self.metrics,
            ParkedUploads(self.settings.upload_resume_s, self.settings.resumable_uploads),
        )
        channel.central = central
        info = stored.task.training_information
        if info.federated_secure:
            options = info.secure_aggregation_settings
            channel.secure = SecureRounds(
                task_id,
                engine,
                SecureSettings(
                    min_participants=engine.min_participants,
                    deadline_s=self.settings.round_deadline_s,
                    threshold=(
                        float(options.threshold)
                        if options is not None and options.threshold is not None
                        else SecureSettings.threshold
                    ),
                    degree=(
                        int(options.degree)
                        if options is not None and options.degree is not None
                        else None
                    ),
                ),
                channel.push,
            )
        self._channels[task_id] = channel
        if self._on_change is not None:
            watcher = asyncio.get_running_loop().create_task(
                self._watch(engine, self._on_change), name=f"federated-watch-{task_id}"
            )
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
        return channel

    @staticmethod
    async def _watch(engine: RoundEngine, on_change: Callable[[str, str], None]) -> None:
        """Tell `on_change` of every change of the engine's round status until it closes."""
        seen = engine.round
        while not engine.closed:
            await engine.changed().wait()
            change, seen = ("round" if engine.round != seen else "status"), engine.round
            on_change(engine.task_id, change)

    def _changed(self, task_id: str, change: str) -> None:
        if self._on_change is not None:
            self._on_change(task_id, change)

    @staticmethod
    def _central(stored: StoredTask) -> CentralGaussian | None:
        """The task's central DP mechanism (`privacy.central`), or None."""
        privacy = stored.task.training_information.privacy
        if privacy is None or privacy.central is None:
            return None
        c = privacy.central
        options: dict[str, Any] = {}
        if c.target_quantile is not None:
            options["target_quantile"] = float(c.target_quantile)
        if c.clipping_learning_rate is not None:
            options["clipping_learning_rate"] = float(c.clipping_learning_rate)
        if c.count_noise is not None:
            options["count_noise"] = float(c.count_noise)
        if privacy.delta is not None:
            options["delta"] = float(privacy.delta)
        return CentralGaussian(  # the task's schema checked these values
            noise_multiplier=float(c.noise_multiplier),
            clipping_radius=float(c.clipping_radius),
            adaptive=bool(c.adaptive_clipping),
            **options,
        )

    def _engine(self, stored: StoredTask, central: CentralGaussian | None = None) -> RoundEngine:
        task_id = stored.task_id
        info = stored.task.training_information
        aggregator: Aggregator = info.strategy()
        if central is not None:
            aggregator = central_aggregator(central)
        store = self._store

        async def persist(weights: Weights, round: int) -> Weights:
            # The engine publishes `weights` as `round` right after this returns: encode the
            # answers to latestServerRound meanwhile (see TaskChannel.prepare_frames).
            channel = self._channels.get(task_id)
            completed = None
            if channel is not None:
                channel.prepare_frames(round, weights)
                aggregating = channel.engine.aggregating()
                if aggregating is not None:
                    completed = CompletedRound(round, time.time(), *aggregating)
            stored, finish = await asyncio.to_thread(
                store.commit_model, task_id, weights, round, completed
            )
            self._finish_later(task_id, finish)  # model.json: after the round is published
            return stored.weights()  # the engine keeps these views: one copy of the model

        metrics = self.metrics

        def report(done: RoundReport) -> None:
            metrics.round_completed(task_id, done.round_s, done.aggregation_s, done.persistence_s)

        return RoundEngine(
            task_id,
            stored.weights(),
            stored.round,
            min_participants=info.min_participants_or(self.settings.default_min_participants),
            deadline_s=self.settings.round_deadline_s,
            max_staleness=self.settings.max_staleness,
            aggregator=aggregator,
            persist=persist,
            thread_threshold=self.settings.aggregation_thread_threshold,
            journal_dir=self.settings.data_dir,
            on_round=report,
        )

    def _finish_later(self, task_id: str, finish: Callable[[], None]) -> None:
        """Run a committed model's `finish` (model.json, old weight files) in a worker thread
        without holding up the round's publication; `close` waits for it."""

        async def run() -> None:
            try:
                await asyncio.to_thread(finish)
            except Exception:
                log.exception("task %s: finishing the stored model failed", task_id)

        job = asyncio.get_running_loop().create_task(run(), name=f"store-finish-{task_id}")
        self._finishing.add(job)
        job.add_done_callback(self._finishing.discard)

    def task_status(self, task_id: str) -> dict[str, Any] | None:
        """Round and participation of a task with a running engine, for GET /tasks/{id}/status.

        None when no client connected to the task since start-up (the store's round is then
        the current one).
        """
        channel = self._channels.get(task_id)
        if channel is None:
            return None
        stats = channel.engine.statistics()
        report: dict[str, Any] = {
            "round": stats.round,
            "currentNumberOfParticipants": stats.current_participants,
            "totalNumberOfParticipants": stats.total_participants,
            "averageNumberOfParticipants": stats.average_participants,
        }
        privacy = channel.privacy_status(self._delta(task_id))
        if privacy is not None:
            report["privacy"] = privacy
        if channel.secure is not None:
            report["secureAggregation"] = channel.secure.status()
        return report

    def _delta(self, task_id: str) -> float | None:
        """The δ of the task's client-side DP account, when it names one."""
        try:
            privacy = self._store.get(task_id).task.training_information.privacy
        except TaskNotFoundError:
            return None
        if privacy is None:
            return None
        if privacy.differential_privacy is not None:
            return float(privacy.differential_privacy.delta)
        return None if privacy.delta is None else float(privacy.delta)

    def live_status(self, task_id: str) -> dict[str, Any] | None:
        """What the dashboard shows of a task's federated side; None before any connection."""
        channel = self._channels.get(task_id)
        if channel is None:
            return None
        status = round_status(channel.engine.round_status())  # the roundStatus fields
        del status["type"]
        return {**status, "connected": len(channel.sessions)}

    # -- connections ----------------------------------------------------------------------

    def duplicate_reason(self) -> str:
        """Why a second connection for a connected clientID is refused, and when to retry."""
        interval, timeout = self.settings.ws_ping_interval_s, self.settings.ws_ping_timeout_s
        if interval is None or timeout is None:
            return f"{DUPLICATE_CLIENT}; retry once that connection is closed"
        return (
            f"{DUPLICATE_CLIENT}; retry once that connection is closed "
            f"(a dead one is dropped within {interval + timeout:g} s)"
        )

    async def attach_when_free(
        self,
        channel: TaskChannel,
        client_id: str,
        encoding: WeightEncoding | None = None,
        grace_s: float | None = None,
    ) -> Session:
        """`attach`, waiting up to `grace_s` (default `settings.duplicate_client_grace_s`) for a
        connection still registered under `client_id` to go first.

        A client that lost its socket abruptly usually reconnects before the server has
        processed the old socket's end (its handler may be busy with a request): without the
        wait it would be refused. A connection that is really alive is still refused (1008), with
        a reason saying when to retry: one that died silently is dropped by the keepalive.
        """
        loop = asyncio.get_running_loop()
        grace = self.settings.duplicate_client_grace_s if grace_s is None else grace_s
        deadline = loop.time() + grace
        while True:
            previous = channel.sessions.get(client_id)
            if previous is None or self._closing:
                return self.attach(channel, client_id, encoding)
            left = deadline - loop.time()
            if left <= 0:
                raise ProtocolError(self.duplicate_reason(), CloseCode.POLICY_VIOLATION)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(previous.wait_departed(), left)

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
            raise ProtocolError(DUPLICATE_CLIENT, CloseCode.POLICY_VIOLATION)
        session = Session(
            channel,
            client_id,
            encoding=encoding or WeightEncoding.LEGACY,
            encoding_fixed=encoding is not None,
        )
        channel.sessions[client_id] = session
        channel.engine.join(client_id)
        self._changed(channel.task_id, "connections")
        if channel.secure is not None:
            channel.secure.connect(client_id)
        return session

    def detach(self, session: Session) -> None:
        """The connection is gone; idempotent."""
        channel = session.channel
        session.cancel_wait()
        if session.upload is not None:  # cut short: kept for the client to resume, if it can be
            if self._closing:
                session.upload.abort()
            else:
                channel.parked.park(session.client_id, session.upload)
            session.upload = None
        if channel.sessions.get(session.client_id) is session:
            del channel.sessions[session.client_id]
            channel.engine.leave(session.client_id)
            self._changed(channel.task_id, "connections")
            if channel.secure is not None:
                channel.secure.disconnect(session.client_id)
        session.mark_departed()

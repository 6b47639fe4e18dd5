"""A federated participant's connection to the server (compact native weight encoding).

Unlike the JS client, which never waits for aggregation, the Python participant waits (up to a
timeout) for the round it contributed to be aggregated, so every round trains from the newest
global model. The wait is pushed, not polled, and rides on the post itself: a post with
`awaitRound` is answered, once accepted, by the next round's model the moment the server's
round moves (two frames a round; a refused post is acknowledged at once), and meanwhile
roundStatus frames say what the round waits for (passed to `on_status`, e.g. for the CLI's
"waiting for participants").

An update too big for one frame goes in chunks, under a random upload name: when the connection
is lost mid-upload, the session reconnects, asks the server how much it holds (uploadProgress)
and sends the rest (up to `upload_resumes` times per upload; see docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection

from disco.client.connection import ServerConnection
from disco.client.session import Exchange
from disco.errors import DiscoError
from disco.protocol.compression import Compression, ErrorFeedback
from disco.protocol.errors import ProtocolError
from disco.protocol.framing import pack, unpack_message
from disco.protocol.messages import (
    PostAck,
    PostStatus,
    RoundStatus,
    ServerStatistics,
    client_connected,
    latest_server_round,
    parse_latest_round_reply,
    parse_post_ack,
    parse_round_status,
    parse_statistics_reply,
    parse_upload_progress,
    post_weights,
    pull_server_statistics,
    upload_progress,
)
from disco.protocol.native_chunks import chunked, decode_chunk, encode_chunks, is_chunk
from disco.protocol.types import MessageType
from disco.protocol.weights import encode_native
from disco.weights import Weights, split_by_shapes

log = logging.getLogger("disco.client.federated")

StatusCallback = Callable[[RoundStatus], None]
"""Called with each roundStatus the server sends while this participant waits for a round."""

T = TypeVar("T")


class FederatedError(DiscoError, RuntimeError):
    """The server closed the connection or refused a message; the reason is in the message."""


class AnswerTimeout(FederatedError):
    """The server's answer did not come in time (the connection is still open)."""


class ConnectionLost(FederatedError):
    """The connection ended without the server refusing anything (a network failure, a server
    going away or restarting): worth connecting again."""


_LOST_CODES = frozenset({1001, 1006, 1012, 1013})
"""Close codes of a connection lost rather than closed on purpose (going away, abnormal closure,
service restart, try again later)."""


def _closed_error(closed: websockets.ConnectionClosed) -> FederatedError:
    """The error for a closed connection: ConnectionLost unless the server closed it on purpose."""
    code = closed.rcvd.code if closed.rcvd else None
    reason = closed.rcvd.reason if closed.rcvd else "no reason"
    message = f"the server closed the connection ({code or 'none'}: {reason})"
    if code is None or code in _LOST_CODES:
        return ConnectionLost(message)
    return FederatedError(message)


class FederatedSession:
    """One open `/federated/{task}/{client}` connection."""

    def __init__(
        self,
        server: str | ServerConnection,
        task_id: str,
        client_id: str | None = None,
        answer_timeout_s: float = 30.0,
        on_status: StatusCallback | None = None,
        compression: Compression | None = None,
        upload_resumes: int = 3,
    ) -> None:
        self.server = ServerConnection.of(server)
        self.upload_resumes = upload_resumes  # reconnections per chunked upload
        self.task_id = task_id
        self.client_id = client_id or str(uuid.uuid4())
        self.answer_timeout_s = answer_timeout_s
        self.on_status = on_status
        self.compression = compression
        self._feedback = ErrorFeedback(compression) if compression is not None else None
        self._base: tuple[int, Weights] | None = None  # the last global model received
        self._ws: ClientConnection | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> FederatedSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        path = f"/federated/{self.task_id}/{self.client_id}"
        url = self.server.websocket_url(path)
        try:
            self._ws = await self.server.open_websocket(
                path + "?encoding=native", compression=None, max_size=None, open_timeout=10
            )
        except (OSError, websockets.InvalidHandshake, TimeoutError) as error:
            raise FederatedError(f"cannot connect to {url}: {error}") from None
        await self._request(
            client_connected(), MessageType.CLIENT_CONNECTED
        )

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    @property
    def lock(self) -> asyncio.Lock:
        """Held by whoever is in a conversation with the server (one at a time)."""
        return self._lock

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message (hold `lock` around a multi-message conversation)."""
        if self._ws is None:
            raise FederatedError("not connected")
        try:
            await self._ws.send(pack(message))
        except websockets.ConnectionClosed as closed:
            raise FederatedError(f"the server closed the connection ({closed})") from None

    async def receive(self, timeout_s: float) -> dict[str, Any]:
        """The next message from the server; FederatedError on timeout or close."""
        if self._ws is None:
            raise FederatedError("not connected")
        try:
            frame = await asyncio.wait_for(self._ws.recv(), max(0.0, timeout_s))
        except TimeoutError:
            raise FederatedError("no message from the server in time") from None
        except websockets.ConnectionClosed as closed:
            reason = closed.rcvd.reason if closed.rcvd else "no reason"
            raise FederatedError(f"the server closed the connection ({reason})") from None
        if isinstance(frame, str):
            raise FederatedError("the server sent a text frame")
        return unpack_message(frame)

    async def _request(
        self,
        message: dict[str, Any],
        answer: MessageType | tuple[MessageType, ...],
        timeout_s: float | None = None,
        frames: Iterator[dict[str, Any]] | None = None,
        after_round: int | None = None,
    ) -> dict[str, Any]:
        """Send a message (or each message of `frames`: a chunked upload) and wait for the
        answer of type `answer` (or of one of these types; one request at a time); with
        `after_round`, only a latestServerRound answer past that round answers.

        roundStatus frames met on the way go to `on_status`; other frames are skipped (a late
        answer to an abandoned waiting request, say). A latestServerRound answer sent in chunks
        is assembled into `reply["assembled"]`. AnswerTimeout after `timeout_s` (default
        `answer_timeout_s`)."""
        answers = answer if isinstance(answer, tuple) else (answer,)
        if self._ws is None:
            raise FederatedError("not connected")
        ws = self._ws
        async with self._lock:
            try:
                if frames is None:
                    await ws.send(pack(message))
                else:  # one frame at a time: memory stays one chunk
                    while (frame := await asyncio.to_thread(_next_frame, frames)) is not None:
                        await ws.send(frame)
                deadline = time.monotonic() + (timeout_s or self.answer_timeout_s)
                while True:
                    reply = await self._receive(ws, deadline, answers)
                    if reply["type"] in answers and _answers(after_round, reply):
                        if is_chunk(reply.get("weights")):
                            reply["assembled"] = await self._assemble(ws, deadline, reply)
                        return reply
                    if reply.get("error"):
                        raise FederatedError(f"the server refused: {reply['error']}")
            except websockets.ConnectionClosed as closed:
                raise _closed_error(closed) from None

    async def _receive(
        self, ws: ClientConnection, deadline: float, answers: tuple[MessageType, ...]
    ) -> dict[str, Any]:
        """The next frame that is not a roundStatus (those go to `on_status`); AnswerTimeout,
        naming every awaited type, past `deadline`."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                awaited = " or ".join(answer.name for answer in answers)
                raise AnswerTimeout(f"no answer of type {awaited} in time")
            try:
                frame = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                continue
            if isinstance(frame, str):
                raise FederatedError("the server sent a text frame")
            reply = unpack_message(frame)
            if reply["type"] != MessageType.ROUND_STATUS:
                return reply
            if self.on_status is not None:
                self.on_status(_parsed(parse_round_status, reply))

    async def _assemble(
        self, ws: ClientConnection, deadline: float, first: dict[str, Any]
    ) -> Weights:
        """The model of a latestServerRound answer sent in chunks (`first` is its first)."""
        chunk = decode_chunk(first["weights"])
        if chunk.offset != 0:
            raise FederatedError(f"the model's first chunk starts at parameter {chunk.offset}")
        flat = np.empty(chunk.total, dtype=np.float32)
        while True:
            flat[chunk.offset : chunk.end] = chunk.values
            if chunk.last:
                return split_by_shapes(flat, chunk.shapes)
            expected = chunk.end
            reply = await self._receive(ws, deadline, (MessageType.LATEST_SERVER_ROUND,))
            if reply["type"] != MessageType.LATEST_SERVER_ROUND or not is_chunk(
                reply.get("weights")
            ):
                raise FederatedError("the model's chunks were interrupted by another message")
            chunk = decode_chunk(reply["weights"])
            if chunk.offset != expected:
                raise FederatedError(
                    f"model chunk at parameter {chunk.offset}, expected {expected}"
                )

    async def latest(self) -> tuple[int, Weights]:
        """The server's current round and global weights."""
        reply = await self._request(latest_server_round(), MessageType.LATEST_SERVER_ROUND)
        return self._received(reply)

    def _received(self, reply: dict[str, Any]) -> tuple[int, Weights]:
        """A latestServerRound answer's round and model (the base of compressed updates)."""
        received = _latest_answer(reply)
        self._base = received
        return received

    async def latest_after(self, round_: int, timeout_s: float) -> tuple[int, Weights] | None:
        """The global model once the server's round is past `round_` (pushed by the server the
        moment it moves); None when `timeout_s` passes first."""
        try:
            reply = await self._request(
                latest_server_round(after_round=round_), MessageType.LATEST_SERVER_ROUND,
                timeout_s, after_round=round_,
            )
        except AnswerTimeout:
            return None
        return self._received(reply)

    async def statistics(self) -> ServerStatistics:
        """The server's participation figures (its round among them)."""
        reply = await self._request(pull_server_statistics(), MessageType.PULL_SERVER_STATISTICS)
        return _parsed(parse_statistics_reply, reply)

    async def post(
        self, weights: Weights, round_: int, num_samples: int | None = None,
        epsilon: float | None = None,
    ) -> PostAck:
        """Send this client's weights for `round_` (in chunks when they exceed a frame, see
        `disco.protocol.native_chunks`); the server's acknowledgement. `epsilon`: the
        client-side DP ε spent once this update is out (reported with one-frame updates)."""
        outcome = await self._post(weights, round_, num_samples, epsilon, None)
        if not isinstance(outcome, PostAck):  # only an acknowledgement answers a plain post
            raise FederatedError("the server answered a post with a model")
        return outcome

    async def post_and_wait(
        self, weights: Weights, round_: int, num_samples: int | None, timeout_s: float,
        epsilon: float | None = None,
    ) -> PostAck | tuple[int, Weights] | None:
        """Post with `awaitRound` (one request, see docs/protocol.md): the next round and
        global model once the update was accepted and the round moved past `round_`; the
        acknowledgement of a refused post; None when `timeout_s` passes first (then whether
        the update counted is unknown)."""
        try:
            return await self._post(weights, round_, num_samples, epsilon, timeout_s)
        except AnswerTimeout:
            return None

    async def _post(
        self, weights: Weights, round_: int, num_samples: int | None, epsilon: float | None,
        wait_s: float | None,
    ) -> PostAck | tuple[int, Weights]:
        """One post (with `awaitRound` when `wait_s` is given: answered by the next round's
        model, or the acknowledgement of a refusal)."""
        samples = None if num_samples is None else int(num_samples)
        waits = wait_s is not None
        answers: tuple[MessageType, ...] = (MessageType.POST_WEIGHTS_TO_SERVER,)
        if waits:
            answers = (*answers, MessageType.LATEST_SERVER_ROUND)
        after = round_ if waits else None
        base = self._base
        if self._feedback is not None and base is not None and base[0] == round_:
            fields, residual = self._feedback.encode(weights, base[1])
            reply = await self._request(
                post_weights(fields, round_, samples, await_round=waits), answers, wait_s,
                after_round=after,
            )
            outcome = self._outcome(reply)
            if not isinstance(outcome, PostAck) or outcome.accepted:
                self._feedback.accepted(residual)
            if not isinstance(outcome, PostAck) or outcome.status not in (
                PostStatus.STALE, PostStatus.FUTURE
            ):
                return outcome
            # The server no longer has our base model: this once, send the whole update.
        if chunked(weights):
            reply = await self._upload(weights, round_, samples, waits, wait_s)
        else:
            message = post_weights(encode_native(weights), round_, samples, epsilon, waits)
            reply = await self._request(message, answers, wait_s, after_round=after)
        return self._outcome(reply)

    async def _upload(
        self, weights: Weights, round_: int, samples: int | None, waits: bool,
        wait_s: float | None,
    ) -> dict[str, Any]:
        """A chunked upload and its answer, resumed on a new connection where the server
        stopped when the connection is lost (`upload_resumes` times at most). A connection
        lost once every chunk was out is not resumed unless the server says it lacks some:
        whether it counted the update is unknown, and a second upload could count twice."""
        answers: tuple[MessageType, ...] = (MessageType.POST_WEIGHTS_TO_SERVER,)
        if waits:
            answers = (*answers, MessageType.LATEST_SERVER_ROUND)
        after = round_ if waits else None
        name = uuid.uuid4().hex
        total = sum(int(w.size) for w in weights)
        start = 0
        for resumes in range(self.upload_resumes + 1):
            sent = [False]

            def frames(start: int = start, sent: list[bool] = sent) -> Iterator[dict[str, Any]]:
                for payload in encode_chunks(weights, upload=name, start=start):
                    yield post_weights(payload, round_, samples, await_round=waits)
                sent[0] = True  # asked for a frame past the last: every chunk is out

            try:
                return await self._request({}, answers, wait_s, frames=frames(), after_round=after)
            except ConnectionLost as lost:
                if resumes == self.upload_resumes:
                    raise
                log.warning("upload interrupted (%s); reconnecting to resume it", lost)
                await self.close()
                await self.connect()
                reply = await self._request(upload_progress(name), MessageType.UPLOAD_PROGRESS)
                held = _parsed(parse_upload_progress, reply).received
                if sent[0] and not 0 < held < total:
                    raise FederatedError(
                        f"{lost}: after the whole update was sent, so whether it was counted "
                        "is unknown"
                    ) from None
                start = held if 0 < held < total else 0
                log.info("resuming the upload at parameter %d of %d", start, total)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _outcome(self, reply: dict[str, Any]) -> PostAck | tuple[int, Weights]:
        """A post's answer: its acknowledgement, or (awaitRound) the next round's model."""
        if reply["type"] == MessageType.LATEST_SERVER_ROUND:
            return self._received(reply)
        return _parsed(parse_post_ack, reply)

    async def contribute(
        self, weights: Weights, round_: int, num_samples: int | None, timeout_s: float,
        epsilon: float | None = None,
    ) -> Exchange:
        """Post for `round_` and wait until the server aggregated past it (or time out), in
        one request."""
        outcome = await self.post_and_wait(weights, round_, num_samples, timeout_s, epsilon)
        if isinstance(outcome, PostAck) and outcome.status in (PostStatus.STALE, PostStatus.FUTURE):
            # The server moved on (or we are ahead): contribute to its current round instead.
            round_ = outcome.round
            outcome = await self.post_and_wait(weights, round_, num_samples, timeout_s, epsilon)
        if isinstance(outcome, PostAck):
            if not outcome.accepted:
                raise FederatedError(
                    f"the server refused the update ({outcome.status}): {outcome.error}"
                )
            # A server without awaitRound acknowledged it: wait with a latestServerRound.
            outcome = await self.latest_after(round_, timeout_s)
        stats = await self.statistics()  # who contributed to the model (the CLI shows it)
        participants = stats.last_round_participants
        if outcome is not None:
            server_round, global_weights = outcome
            return Exchange(global_weights, participants, server_round)
        log.warning(
            "round %d was not aggregated within %.0f s; keeping local weights", round_, timeout_s
        )
        return Exchange(None, participants, stats.round)


def _answers(after_round: int | None, reply: dict[str, Any]) -> bool:
    """A wait past `after_round` is only answered by a latestServerRound past that round."""
    if after_round is None or reply["type"] != MessageType.LATEST_SERVER_ROUND:
        return True
    return int(reply.get("round", -1)) > after_round


def _next_frame(messages: Iterator[dict[str, Any]]) -> bytes | None:
    """The next message packed (in a worker thread: chunks are tens of MB), None at the end."""
    message = next(messages, None)
    return None if message is None else pack(message)


def _latest_answer(reply: dict[str, Any]) -> tuple[int, Weights]:
    """Round and model of a latestServerRound answer: assembled from chunks, or decoded."""
    assembled = reply.get("assembled")
    if assembled is not None:
        return int(reply["round"]), cast(Weights, assembled)
    latest = _parsed(parse_latest_round_reply, reply)
    return latest.round, latest.weights


def _parsed(parse: Callable[[dict[str, Any]], T], reply: dict[str, Any]) -> T:
    """`parse(reply)`, a malformed answer of the server raising FederatedError."""
    try:
        return parse(reply)
    except ProtocolError as error:
        raise FederatedError(f"malformed answer from the server: {error.reason}") from None


class FederatedCommunicator:
    """`Communicator` for federated rounds: post, wait for aggregation, adopt the global model."""

    def __init__(self, session: FederatedSession, round_timeout_s: float = 120.0) -> None:
        self.session = session
        self.round_timeout_s = round_timeout_s

    async def exchange(
        self, weights: Weights, round_: int, num_samples: int, epsilon: float | None = None
    ) -> Exchange:
        return await self.session.contribute(
            weights, round_, num_samples, self.round_timeout_s, epsilon
        )

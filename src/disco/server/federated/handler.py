"""One federated client's WebSocket: read its requests in order, answer each, close on abuse.

Replies (every frame binary msgpack):
- clientConnected (0) -> `{type: 0}`.
- postWeightsToServer (8) -> the post acknowledgement `{type: 8, round, status[, error]}`
  (`protocol.messages.post_ack`; statuses in `PostStatus`): `round` is the server's round (a
  refused client learns where to resume). The connection stays open on refusal: the 2.1.1 JS
  client never waits for an answer to 8 and ignores this one, so a JS client posting NaN keeps
  training and later adopts the server's model, while its update never enters the model.
  With `awaitRound: true` (native clients: post and wait in one request, half the frames of
  a round) an accepted post gets no acknowledgement: it is answered as the waiting
  latestServerRound `{type: 11, afterRound: round}` would be; a refused one is acknowledged.
- latestServerRound (11) -> `{type: 11, round, weights}`: the current global model, legacy
  encoding for clients that post legacy weights (the JS client), native for clients that post
  native weights or connected with `?encoding=native` (`?encoding=legacy` forces legacy).
  With `afterRound: r` (native clients) the answer waits until the round is past `r`, with
  roundStatus (14) frames meanwhile, while this loop keeps reading (see `push`).
- pullServerStatistics (13) -> `{type: 13, statistics: {...}}`.
- uploadProgress (15, native clients) `{type: 15, upload}` -> `{type: 15, upload, received}`:
  how much of that chunked upload the server holds, to resume it after a lost connection
  (see `uploads`).
- postMetadata (9) -> no answer (the JS client expects none); getMetadataMap (10) -> the
  request's fields plus `metadataMap: [[clientId, value], ...]`.

Closing: a text frame -> 1003; undecodable msgpack, a message that is not a valid federated
request (unknown or non-federated type, missing or mistyped fields, undecodable weights) ->
1007; a frame over `max_frame_bytes` -> 1009 (uvicorn's `ws_max_size` enforces it first);
an unknown task or a clientID already connected to the task -> 1008 (after
`duplicate_client_grace_s` for the other connection to go, see `hub`); server shutdown -> 1001.
Nothing a client sends affects other connections. The messages and close codes are described
in docs/protocol.md.

Logging: each refused input is one warning line without a traceback (a protocol error and the
close it causes, an invalid or future update, a frame the WebSocket layer refused); stale
updates, a normal race, are info. Tracebacks are kept for faults of the server itself.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket

from disco.protocol.errors import CloseCode, ProtocolError
from disco.protocol.framing import pack
from disco.protocol.legacy import unpack_frame
from disco.protocol.messages import (
    ClientConnected,
    FederatedMessage,
    GetMetadataMap,
    LatestServerRound,
    PostCompressedDelta,
    PostMetadata,
    PostStatus,
    PostWeights,
    PostWeightsChunk,
    PullServerStatistics,
    UploadProgress,
    federated_connected,
    metadata_map_reply,
    parse_federated,
    post_ack,
    upload_progress,
)
from disco.protocol.secagg import (
    SecAggJoin,
    SecAggMasked,
    SecAggReveal,
    SecAggShares,
    SecAggStatus,
    secagg_outcome,
)
from disco.protocol.weights import WeightEncoding
from disco.server import websocket as ws
from disco.server.enrollment import AccessRefused, Gate
from disco.server.federated.contributions import StagedUpdate
from disco.server.federated.engine import SubmitResult
from disco.server.federated.hub import CloseRequest, FederatedHub, Session, TaskChannel
from disco.server.federated.push import Send
from disco.server.federated.uploads import Uploader, receive_chunk
from disco.server.logs import log_context
from disco.server.websocket import safe_text
from disco.weights import WeightsError

log = logging.getLogger("disco.server.federated")

PARSE_THREAD_BYTES = 64 * 1024
"""Frames larger than this are decoded in a worker thread (weights decoding is CPU work); a
plain update they carry is also checked and staged there (`decode_and_stage`)."""

SECAGG_MESSAGES = (SecAggJoin, SecAggShares, SecAggMasked, SecAggReveal)
_CLIENT_FAULTS = frozenset({PostStatus.INVALID, PostStatus.FUTURE})
_POSTS = (PostWeights, PostCompressedDelta, PostWeightsChunk)
"""The updates (a tuple built once: `A | B | C` in `isinstance` builds a union per post)."""


def requested_encoding(value: str | None) -> WeightEncoding | None:
    """The `?encoding=` query parameter; ProtocolError (1008) for an unknown value."""
    if value is None:
        return None
    try:
        return WeightEncoding(value)
    except ValueError:
        raise ProtocolError(
            f"unknown encoding {value[:40]!r}: use 'legacy' or 'native'",
            CloseCode.POLICY_VIOLATION,
        ) from None


def post_reply(result: SubmitResult) -> bytes:
    """Answer to postWeightsToServer (see the module docstring)."""
    return pack(post_ack(result.round, result.status, None if result.accepted else result.reason))


async def _answer_post(
    channel: TaskChannel,
    session: Session,
    round: int,
    result: SubmitResult,
    await_round: bool,
    send: Send | None,
) -> bytes | None:
    """The answer to an update, counting it and logging a refusal: its acknowledgement, or for
    an accepted post with `awaitRound` none, the wait for the round past `round` starting
    instead (the answer is the next round's latestServerRound frame)."""
    channel.metrics.contribution(channel.task_id, result.status)
    if result.accepted:
        if await_round:
            return await _answer_latest(channel, session, round, send)
        return post_reply(result)
    # Invalid or future updates are client faults; stale/closed ones are normal races.
    level = logging.WARNING if result.status in _CLIENT_FAULTS else logging.INFO
    log.log(
        level,
        "task %s: update of %s for round %d refused (%s): %s",
        channel.task_id, safe_text(session.client_id), round, result.status, result.reason,
        extra={"round": round},
    )
    return post_reply(result)


async def _answer_latest(
    channel: TaskChannel, session: Session, after: int | None, send: Send | None
) -> bytes | None:
    """Answer latestServerRound (waiting when `after` is given and the round is not past it
    yet), replacing the connection's pending wait; None when answered through `send`."""
    session.cancel_wait()
    waits = after is not None and channel.engine.round <= after
    if waits or channel.chunked(session.encoding):
        if send is None:
            raise RuntimeError("this latestServerRound is answered through `send`")
        if after is not None and waits:
            session.start_wait(after, send)
        else:
            await channel.send_latest(session.encoding, send)
        return None
    return await channel.latest_frame(session.encoding)


def decode_frame(frame: bytes | bytearray, max_frame_bytes: int) -> FederatedMessage:
    """Envelope check then field validation (ProtocolError with the close code to use); legacy
    weights are decoded by the vectorized codec (`disco.protocol.legacy`), in the frame's own
    buffer when it is a bytearray: the frame is not used after this."""
    return parse_federated(unpack_frame(frame, max_frame_bytes, consume=True))


def decode_and_stage(
    frame: bytes | bytearray, max_frame_bytes: int, channel: TaskChannel
) -> tuple[FederatedMessage, StagedUpdate | None]:
    """`decode_frame`, and for a plain update to a task that takes plain updates, the engine's
    checks and staging too (`RoundEngine.stage`), in the same worker thread: one hop per big
    post instead of two. The staged update is None when the message is not one, the engine
    does not stage, or the update is invalid (`submit` then refuses it as usual)."""
    message = decode_frame(frame, max_frame_bytes)
    if not isinstance(message, PostWeights) or channel.secure is not None:
        return message, None
    try:
        return message, channel.engine.stage(message.weights)
    except WeightsError:
        return message, None


async def handle(
    channel: TaskChannel,
    session: Session,
    message: FederatedMessage,
    send: Send | None = None,
    staged: StagedUpdate | None = None,
) -> bytes | None:
    """Act on one request; the reply frame, or None when the request has no answer (yet: a
    waiting latestServerRound is answered later through `send`). `staged`: a PostWeights's
    update as `decode_and_stage` staged it, owned by this call."""
    if isinstance(message, ClientConnected):
        return pack(federated_connected())
    if isinstance(message, SECAGG_MESSAGES):
        if channel.secure is None:
            return pack(secagg_outcome(
                channel.engine.round, SecAggStatus.REFUSED,
                "this task does not aggregate securely: post weights (type 8) instead",
            ))
        if isinstance(message, SecAggJoin):
            channel.report_epsilon(session.client_id, message.epsilon)
        return await channel.secure.handle(session.client_id, message)
    if isinstance(message, _POSTS) and message.await_round:
        session.cancel_wait()  # a post that waits replaces a pending wait, accepted or not
    if isinstance(message, PostWeights):
        session.posted(message.encoding)
        if channel.secure is not None:
            if staged is not None:  # pragma: no cover - decode_and_stage stages none for these
                staged.close()
            refused = SubmitResult(
                PostStatus.INVALID, channel.engine.round,
                "this task aggregates securely: plain updates are refused (join its secure "
                "rounds with secAggJoin, type 20)",
            )
            return post_reply(refused)
        channel.report_epsilon(session.client_id, message.epsilon)
        if staged is not None:
            result = await channel.engine.submit_staged(
                session.client_id, staged, message.round, message.num_samples
            )
        else:
            result = await channel.engine.submit(
                session.client_id, message.weights, message.round, message.num_samples
            )
        return await _answer_post(
            channel, session, message.round, result, message.await_round, send
        )
    if isinstance(message, PostCompressedDelta):
        session.posted(WeightEncoding.NATIVE)
        result = await channel.engine.submit_delta(
            session.client_id, message.delta, message.round, message.num_samples
        )
        return await _answer_post(
            channel, session, message.round, result, message.await_round, send
        )
    if isinstance(message, PostWeightsChunk):
        session.posted(WeightEncoding.NATIVE)
        engine = channel.engine
        uploader = Uploader(session.client_id, engine.journal_dir, channel.parked)
        session.upload, refusal, complete = await receive_chunk(
            session.upload, message, engine.shapes, engine.round, uploader
        )
        if refusal is not None:
            return await _answer_post(channel, session, message.round, refusal, False, send)
        if complete is None:
            return None  # more chunks to come (or the rest of a refused upload)
        result = await engine.submit_staged(
            session.client_id, complete.take(), complete.round, complete.num_samples
        )
        # The last chunk's awaitRound decides (the upload's answer follows its last chunk).
        return await _answer_post(
            channel, session, complete.round, result, message.await_round, send
        )
    if isinstance(message, LatestServerRound):
        return await _answer_latest(channel, session, message.after_round, send)
    if isinstance(message, PullServerStatistics):
        return channel.statistics_frame()
    if isinstance(message, UploadProgress):
        live = session.upload
        if live is not None and not live.refused and live.name == message.upload:
            received = live.received
        else:
            received = channel.parked.received(session.client_id, message.upload)
        return pack(upload_progress(message.upload, received))
    if isinstance(message, PostMetadata):
        channel.metadata.put(
            message.round, message.metadata_id, session.client_id, message.metadata
        )
        return None
    if isinstance(message, GetMetadataMap):
        return pack(
            metadata_map_reply(
                task_id=message.task_id,
                client_id=message.client_id,
                round=message.round,
                metadata_id=message.metadata_id,
                metadata_map=channel.metadata.get(message.round, message.metadata_id),
            )
        )
    raise ProtocolError(f"unsupported federated message {type(message).__name__}")


def _connection(task_id: str, client_id: str) -> str:
    """How log lines name a connection (client-controlled parts escaped)."""
    return f"task {safe_text(task_id)}: client {safe_text(client_id)}"


async def serve_federated(
    websocket: WebSocket,
    task_id: str,
    client_id: str,
    hub: FederatedHub | None,
    gate: Gate | None = None,
) -> None:
    """Serve one `/federated/{task}/{client}` (or `/feai/...`) connection until either side ends.

    `gate`: the connection's participant token, checked (and `client_id` bound to it) when the
    task requires enrollment; revoking the token closes the connection (1008).
    Every log line of the connection carries its task and client (`disco.server.logs`).
    """
    with log_context(task=task_id, client=client_id):
        await _serve_connection(websocket, task_id, client_id, hub, gate)


async def _serve_connection(
    websocket: WebSocket,
    task_id: str,
    client_id: str,
    hub: FederatedHub | None,
    gate: Gate | None,
) -> None:
    if not await ws.accept(websocket):
        return
    if hub is None:
        await ws.close(websocket, CloseCode.INTERNAL_ERROR, "federated learning is not running")
        return
    connection = _connection(task_id, client_id)
    try:
        grant = None if gate is None else gate.admit(task_id, client_id)
    except AccessRefused as refusal:
        await ws.refuse(websocket, log, connection, refusal.close_code, refusal.reason)
        return
    try:
        encoding = requested_encoding(websocket.query_params.get("encoding"))
        channel = await hub.channel(task_id)
        if channel is None:
            raise ProtocolError(f"unknown task '{task_id}'", CloseCode.POLICY_VIOLATION)
        session = await hub.attach_when_free(channel, client_id, encoding)
    except ProtocolError as error:
        await ws.refuse(websocket, log, connection, error.close_code, error.reason)
        return
    except Exception:
        log.exception("task %s: cannot start federated training", task_id)
        await ws.close(websocket, CloseCode.INTERNAL_ERROR, "internal error")
        return

    release = (
        None if gate is None or grant is None else gate.hold(grant, session.request_close)
    )
    hub.metrics.connected(task_id, "federated")
    reader = asyncio.create_task(
        _serve(websocket, hub, channel, session, connection), name="federated-read"
    )
    closing = asyncio.create_task(session.wait_close_request(), name="federated-closing")
    try:
        await asyncio.wait((reader, closing), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if release is not None:
            release()
        hub.detach(session)
        hub.metrics.disconnected(task_id, "federated")
        for task in (reader, closing):
            task.cancel()
        await asyncio.gather(reader, closing, return_exceptions=True)
    if reader.done() and not reader.cancelled() and reader.exception() is None:
        request = reader.result()
    else:
        request = session.close_request
    if request is not None:
        await ws.close(websocket, request.code, request.reason)


async def _serve(
    websocket: WebSocket,
    hub: FederatedHub,
    channel: TaskChannel,
    session: Session,
    connection: str,
) -> CloseRequest | None:
    """Answer requests in order; None when the client left, else how to close."""

    write = ws.frame_writer(websocket)

    async def push(frame: bytes) -> None:
        await ws.send_frame(websocket, frame, write)

    session.sender = push  # for frames other connections' requests cause (secure rounds)
    session.writer = write  # a round's answer, built once, written to a crowd of waits

    try:
        async for frame in ws.binary_frames(websocket, log, lambda: connection):
            staged = None
            if len(frame) > PARSE_THREAD_BYTES:
                async with hub.decoding:  # at most a few big frames decoded at once
                    parsed, staged = await asyncio.to_thread(
                        decode_and_stage, frame, hub.max_frame_bytes, channel
                    )
            else:
                parsed = decode_frame(frame, hub.max_frame_bytes)
            # Drop our references to the frame: legacy weights are decoded copies, so it can go
            # now instead of after the round took the update in (native ones are views of it).
            del frame
            reply = await handle(channel, session, parsed, push, staged)
            if reply is not None and not await ws.send_frame(websocket, reply, write):
                return None
    except ProtocolError as error:
        ws.log_refusal(log, connection, error.close_code, error.reason)
        return CloseRequest(error.close_code, error.reason)
    except Exception:
        log.exception("task %s: failed to serve %s", channel.task_id, session.client_id)
        return CloseRequest(CloseCode.INTERNAL_ERROR, "internal error")
    return None

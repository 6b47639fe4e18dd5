"""Typed, validated messages of the federated and decentralized WebSocket channels.

`parse_federated` / `parse_decentralized` turn a decoded frame (see `framing.unpack_message`)
into a frozen dataclass, checking at the edge every field the server will rely on, so that the
rest of the server never sees a malformed value. Unknown extra fields are ignored, as the JS
client does. Field names on the wire are those of the 2.1.1 client (taskId, clientId, ...).
The server's answers are read the same way by the Python client (`parse_post_ack`,
`parse_latest_round_reply`, `parse_statistics_reply`, `parse_signaling_reply`).

The builders return plain dicts ready for `framing.pack`, for both directions; every frame the
server sends is built by one of them. The messages are described in docs/protocol.md.

Decoding `PostWeights` decodes the weights (up to ~0.1 s for 1e6 legacy parameters), so the
caller runs `parse_federated` in a thread for big frames; every function here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, cast

from disco.protocol.compression import decode_delta, is_compressed
from disco.protocol.errors import ProtocolError
from disco.protocol.framing import msgpack_kind
from disco.protocol.native_chunks import Chunk, check_upload_name, decode_chunk, is_chunk
from disco.protocol.secagg import SECAGG_TYPES, SecAggMessage, parse_secagg
from disco.protocol.types import MessageType
from disco.protocol.weights import WeightEncoding, decode_weights
from disco.weights import Weights

MAX_ROUND = 2**31 - 1
"""Largest round number accepted (msgpack-lite writes integers above 2**31 as floats)."""

MAX_PEER_ID = 2**53 - 1
"""Largest peer id accepted: JS numbers are exact up to 2**53."""

MAX_SAMPLES = 2**53 - 1
"""Largest sample count a client may report."""

MAX_ID_CHARS = 1024
"""Longest taskId / clientId / metadataId accepted; real ids are short (UUIDs, names)."""

WIRE_NAMES: dict[MessageType, str] = {
    MessageType.CLIENT_CONNECTED: "clientConnected",
    MessageType.PEER_ID: "PeerID",
    MessageType.SIGNAL_FOR_PEER: "SignalForPeer",
    MessageType.PEER_IS_READY: "PeerIsReady",
    MessageType.PEERS_FOR_ROUND: "PeersForRound",
    MessageType.WEIGHTS: "Weights",
    MessageType.SHARES: "Shares",
    MessageType.PARTIAL_SUMS: "PartialSums",
    MessageType.POST_WEIGHTS_TO_SERVER: "postWeightsToServer",
    MessageType.POST_METADATA: "postMetadata",
    MessageType.GET_METADATA_MAP: "getMetadataMap",
    MessageType.LATEST_SERVER_ROUND: "latestServerRound",
    MessageType.PULL_ROUND_AND_FETCH_WEIGHTS: "pullRoundAndFetchWeights",
    MessageType.PULL_SERVER_STATISTICS: "pullServerStatistics",
    MessageType.ROUND_STATUS: "roundStatus",
    MessageType.UPLOAD_PROGRESS: "uploadProgress",
    MessageType.SECAGG_JOIN: "secAggJoin",
    MessageType.SECAGG_ROSTER: "secAggRoster",
    MessageType.SECAGG_SHARES: "secAggShares",
    MessageType.SECAGG_RELAY: "secAggRelay",
    MessageType.SECAGG_MASKED: "secAggMasked",
    MessageType.SECAGG_UNMASK: "secAggUnmask",
    MessageType.SECAGG_REVEAL: "secAggReveal",
    MessageType.SECAGG_OUTCOME: "secAggOutcome",
}
"""Names of the type codes in the JS client, used in error reasons."""


# ---------------------------------------------------------------------------------------------
# Client -> server messages


@dataclass(frozen=True, slots=True)
class ClientConnected:
    """type 0: the client opened the channel and waits for the server's greeting."""


@dataclass(frozen=True, slots=True, eq=False)
class PostWeights:
    """type 8: a client's weights after its local training for `round`.

    `num_samples` is optional (numSamples / nbSamples; Python clients may send it for a
    sample-weighted average); `encoding` tells which encoding to answer this client in.
    `await_round` (wire `awaitRound: true`, native clients only; on every kind of type 8): an
    accepted post is not acknowledged but answered as a waiting latestServerRound with
    `afterRound` = `round` would be; a refused one is acknowledged as usual.
    """

    weights: Weights
    encoding: WeightEncoding
    round: int
    num_samples: int | None = None
    epsilon: float | None = None  # client-side DP ε spent after this update (ours, optional)
    await_round: bool = False  # wire `awaitRound`: post and wait in one request


@dataclass(frozen=True, slots=True, eq=False)
class PostWeightsChunk:
    """type 8 whose `weights` is a native chunk (`disco.protocol.native_chunks`): one piece of
    an update too big for one frame. The server answers once per upload (see the handler)."""

    chunk: Chunk
    round: int
    num_samples: int | None = None
    await_round: bool = False  # read from the upload's last chunk


@dataclass(frozen=True, slots=True, eq=False)
class PostCompressedDelta:
    """type 8 whose `weights` is a compressed delta (`disco.protocol.compression`): the update
    is the server's model of `round` plus `delta` (dequantized here, float32)."""

    delta: Weights
    round: int
    num_samples: int | None = None
    await_round: bool = False


@dataclass(frozen=True, slots=True)
class LatestServerRound:
    """type 11: asks for the server's current round and global weights.

    With `after_round` (wire `afterRound`, sent by native clients only) it is a waiting request:
    answered once the server's round is past `after_round`, with roundStatus (14) frames
    meanwhile. The 2.1.1 client never sends it and is answered at once.
    """

    after_round: int | None = None


@dataclass(frozen=True, slots=True)
class PullServerStatistics:
    """type 13: asks for participation statistics."""


@dataclass(frozen=True, slots=True)
class UploadProgress:
    """type 15 (ours, native clients): how much of the chunked upload named `upload` the server
    holds; asked after a lost connection, to resume the upload where it stopped. The server's
    answer carries `received`, the parameters it holds (0: none, start again at 0)."""

    upload: str
    received: int = 0


@dataclass(frozen=True, slots=True)
class PostMetadata:
    """type 9: stores a string under (task, round, metadataId) for this client."""

    task_id: str
    client_id: str
    round: int
    metadata_id: str
    metadata: str


@dataclass(frozen=True, slots=True)
class GetMetadataMap:
    """type 10: asks for every client's value stored under (task, round, metadataId)."""

    task_id: str
    client_id: str
    round: int
    metadata_id: str


@dataclass(frozen=True, slots=True)
class SignalForPeer:
    """type 2: a WebRTC signal, forwarded untouched by the server.

    `peer` is the recipient when a client sends it, the sender when the server forwards it.
    """

    peer: int
    signal: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PeerIsReady:
    """type 3: the peer is ready for the next decentralized round."""


FederatedMessage = (
    ClientConnected
    | PostWeights
    | PostWeightsChunk
    | PostCompressedDelta
    | LatestServerRound
    | PullServerStatistics
    | UploadProgress
    | PostMetadata
    | GetMetadataMap
    | SecAggMessage
)
DecentralizedMessage = ClientConnected | SignalForPeer | PeerIsReady


# ---------------------------------------------------------------------------------------------
# Server -> client messages (as the Python client reads them)


class PostStatus(StrEnum):
    """`status` of the post acknowledgement: what became of a postWeightsToServer."""

    ACCEPTED = "accepted"
    STALE = "stale"  # tagged with a round older than the server's round - max_staleness
    FUTURE = "future"  # tagged with a round the server has not reached
    INVALID = "invalid"  # wrong tensor count / shapes, or NaN / Inf
    CLOSED = "closed"  # the task is shutting down


@dataclass(frozen=True, slots=True)
class PostAck:
    """type 8 from the server (extension): `round` is the server's round once the update was
    handled; `error` says why when the update was refused (empty when accepted)."""

    round: int
    status: PostStatus
    error: str = ""

    @property
    def accepted(self) -> bool:
        return self.status is PostStatus.ACCEPTED


@dataclass(frozen=True, slots=True, eq=False)
class LatestRoundReply:
    """type 11 from the server: its round and global weights, in the encoding they came in."""

    round: int
    weights: Weights
    encoding: WeightEncoding


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """Participation figures, in the terms of the JS client's FederatedInformant.

    `current_participants`: participants of the current round; `total_participants`: distinct
    clients that ever contributed; `average_participants`: mean contributions per aggregated
    round (0 before any); `last_round_participants` (extension): contributions behind the
    current global model.
    """

    round: int
    current_participants: int
    total_participants: int
    average_participants: float
    last_round_participants: int = 0


@dataclass(frozen=True, slots=True)
class PeerIdAssigned:
    """type 1 from the server: the peer id the server gave this connection."""

    id: int


@dataclass(frozen=True, slots=True)
class RoundPeers:
    """type 4 from the server: the other peers of the round starting now, or (extension, when
    `update`) those of the current round still connected after one of them left."""

    peers: tuple[int, ...]
    update: bool = False


@dataclass(frozen=True, slots=True)
class SignalUndeliverable:
    """type 1 with `error` from the server (extension): the signal for `peer` was not
    delivered; `peer` is None when the server's frame does not name a valid id."""

    peer: int | None
    reason: str


WaitingFor = Literal["participants", "contributions", "aggregation"]
"""What a round waits for: more contributors than it has (below the quorum), the other
participants of the round (quorum reached, until the deadline), or the aggregation itself."""

WAITING_FOR: tuple[WaitingFor, ...] = ("participants", "contributions", "aggregation")


@dataclass(frozen=True, slots=True)
class RoundStatus:
    """type 14 (server -> native client with a pending waiting latestServerRound): where the
    current round stands. `deadline_ms` is the time left before the round aggregates without
    the awaited participants; None unless `waiting_for == "contributions"`."""

    round: int
    participants: int
    contributions: int
    min_participants: int
    waiting_for: WaitingFor
    deadline_ms: int | None = None

    def describe(self) -> str:
        """One line for people, e.g. "waiting for participants: 1 of 2 (round 3)"."""
        if self.waiting_for == "participants":
            text = f"waiting for participants: {self.contributions} of {self.min_participants}"
        elif self.waiting_for == "contributions":
            left = "" if self.deadline_ms is None else f", {self.deadline_ms / 1000:.0f} s left"
            text = f"waiting for contributions: {self.contributions} of {self.participants}{left}"
        else:
            text = f"aggregating {self.contributions} contributions"
        return f"{text} (round {self.round})"


SignalingReply = PeerIdAssigned | SignalForPeer | RoundPeers | SignalUndeliverable


# ---------------------------------------------------------------------------------------------
# Field validation


def _label(code: MessageType) -> str:
    return f"{WIRE_NAMES[code]} (type {int(code)})"


def _field(msg: Mapping[str, Any], key: str, code: MessageType) -> Any:
    if key not in msg:
        raise ProtocolError(f"{_label(code)} message has no '{key}' field")
    return msg[key]


def _int_field(msg: Mapping[str, Any], key: str, code: MessageType, maximum: int) -> int:
    return _check_int(_field(msg, key, code), key, code, maximum)


def _check_int(value: object, key: str, code: MessageType, maximum: int) -> int:
    if type(value) is not int:  # bool is an int subclass, but `true` is not a round number
        raise ProtocolError(
            f"{_label(code)}: '{key}' must be an integer, got {msgpack_kind(value)}"
        )
    if not 0 <= value <= maximum:
        raise ProtocolError(f"{_label(code)}: '{key}' must be in 0..{maximum}, got {value}")
    return value


def wire_peer_id(value: object) -> int | None:
    """A peer id from the wire, None when `value` is not one.

    msgpack-lite writes integral JS numbers as msgpack ints, but integral floats are accepted
    too; bools are not numbers here.
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is int and 0 <= value <= MAX_PEER_ID:
        return value
    return None


def _str_field(
    msg: Mapping[str, Any], key: str, code: MessageType, max_chars: int | None = MAX_ID_CHARS
) -> str:
    value = _field(msg, key, code)
    if not isinstance(value, str):
        raise ProtocolError(f"{_label(code)}: '{key}' must be a string, got {msgpack_kind(value)}")
    if max_chars is not None and len(value) > max_chars:
        raise ProtocolError(
            f"{_label(code)}: '{key}' is {len(value)} characters long, at most {max_chars} allowed"
        )
    return value


def _num_samples(msg: Mapping[str, Any], code: MessageType) -> int | None:
    """Read the optional sample count; nil counts as absent, two different values are an error."""
    found = {
        key: _check_int(msg[key], key, code, MAX_SAMPLES)
        for key in ("numSamples", "nbSamples")
        if msg.get(key) is not None
    }
    values = set(found.values())
    if len(values) > 1:
        raise ProtocolError(f"{_label(code)}: 'numSamples' and 'nbSamples' disagree")
    return values.pop() if values else None


def _message_code(msg: Mapping[str, Any]) -> int:
    code = msg.get("type")
    if type(code) is not int:
        raise ProtocolError("message has no integer 'type' field")
    return code


def _not_on_channel(code: int, channel: str) -> ProtocolError:
    name = f"{WIRE_NAMES[MessageType(code)]} (type {code})" if code in WIRE_NAMES else str(code)
    return ProtocolError(f"message type {name} is not allowed on the {channel} channel")


# ---------------------------------------------------------------------------------------------
# Parsers


def parse_federated(
    msg: Mapping[str, Any], max_vector_bytes: int = 2**31
) -> FederatedMessage:
    """Validate a decoded frame received on the federated channel.

    Raises ProtocolError (close code 1007) for a type not sent by clients on this channel, a
    missing field or a field of the wrong type or range. `max_vector_bytes` bounds a
    secure-aggregation masked vector (the frame size limit bounds it anyway).
    """
    code = _message_code(msg)
    if code in SECAGG_TYPES:
        return parse_secagg(msg, max_vector_bytes)
    if code == MessageType.CLIENT_CONNECTED:
        return ClientConnected()
    if code == MessageType.POST_WEIGHTS_TO_SERVER:
        t = MessageType.POST_WEIGHTS_TO_SERVER
        round_ = _int_field(msg, "round", t, MAX_ROUND)
        num_samples = _num_samples(msg, t)
        epsilon = msg.get("epsilon")
        if epsilon is not None and (
            isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not epsilon >= 0
        ):
            raise ProtocolError(f"{_label(t)}: 'epsilon' must be a non-negative number")
        wait = msg.get("awaitRound")
        if wait is None:
            wait = False
        elif type(wait) is not bool:
            raise ProtocolError(
                f"{_label(t)}: 'awaitRound' must be a boolean, got {msgpack_kind(wait)}"
            )
        payload = _field(msg, "weights", t)
        if is_chunk(payload):
            return PostWeightsChunk(decode_chunk(payload), round_, num_samples, wait)
        if is_compressed(payload):
            return PostCompressedDelta(decode_delta(payload), round_, num_samples, wait)
        weights, encoding = decode_weights(payload)
        return PostWeights(
            weights, encoding, round_, num_samples, None if epsilon is None else float(epsilon),
            wait,
        )
    if code == MessageType.LATEST_SERVER_ROUND:
        after = msg.get("afterRound")
        if after is None:
            return LatestServerRound()
        t = MessageType.LATEST_SERVER_ROUND
        return LatestServerRound(_check_int(after, "afterRound", t, MAX_ROUND))
    if code == MessageType.PULL_SERVER_STATISTICS:
        return PullServerStatistics()
    if code == MessageType.UPLOAD_PROGRESS:
        return UploadProgress(_upload_id(msg))
    if code == MessageType.POST_METADATA:
        t = MessageType.POST_METADATA
        return PostMetadata(
            task_id=_str_field(msg, "taskId", t),
            client_id=_str_field(msg, "clientId", t),
            round=_int_field(msg, "round", t, MAX_ROUND),
            metadata_id=_str_field(msg, "metadataId", t),
            metadata=_str_field(msg, "metadata", t, max_chars=None),
        )
    if code == MessageType.GET_METADATA_MAP:
        t = MessageType.GET_METADATA_MAP
        return GetMetadataMap(
            task_id=_str_field(msg, "taskId", t),
            client_id=_str_field(msg, "clientId", t),
            round=_int_field(msg, "round", t, MAX_ROUND),
            metadata_id=_str_field(msg, "metadataId", t),
        )
    raise _not_on_channel(code, "federated")


def parse_decentralized(msg: Mapping[str, Any]) -> DecentralizedMessage:
    """Validate a decoded frame received on the decentralized (signaling) channel.

    `signal` must be a map (simple-peer signals always are; anything else would make the
    receiving JS client throw) and is otherwise kept untouched.
    """
    code = _message_code(msg)
    if code == MessageType.CLIENT_CONNECTED:
        return ClientConnected()
    if code == MessageType.SIGNAL_FOR_PEER:
        t = MessageType.SIGNAL_FOR_PEER
        peer = _int_field(msg, "peer", t, MAX_PEER_ID)
        signal = _field(msg, "signal", t)
        if not isinstance(signal, dict):
            raise ProtocolError(f"{_label(t)}: 'signal' must be a map, got {msgpack_kind(signal)}")
        return SignalForPeer(peer, signal)
    if code == MessageType.PEER_IS_READY:
        return PeerIsReady()
    raise _not_on_channel(code, "decentralized")


# ---------------------------------------------------------------------------------------------
# Parsers: server -> client (the Python client)


def _expect(msg: Mapping[str, Any], code: MessageType) -> None:
    got = _message_code(msg)
    if got != code:
        raise ProtocolError(f"expected {_label(code)} from the server, got type {got}")


def parse_post_ack(msg: Mapping[str, Any]) -> PostAck:
    """Read the server's answer to postWeightsToServer (ProtocolError when malformed)."""
    t = MessageType.POST_WEIGHTS_TO_SERVER
    _expect(msg, t)
    round_ = _int_field(msg, "round", t, MAX_ROUND)
    raw = _field(msg, "status", t)
    try:
        status = PostStatus(raw)
    except ValueError:
        raise ProtocolError(f"{_label(t)}: unknown status {str(raw)[:40]!r}") from None
    error = msg.get("error")
    if error is not None and not isinstance(error, str):
        raise ProtocolError(f"{_label(t)}: 'error' must be a string, got {msgpack_kind(error)}")
    return PostAck(round_, status, error or "")


def parse_latest_round_reply(msg: Mapping[str, Any]) -> LatestRoundReply:
    """Read the server's answer to latestServerRound, decoding its weights."""
    t = MessageType.LATEST_SERVER_ROUND
    _expect(msg, t)
    round_ = _int_field(msg, "round", t, MAX_ROUND)
    weights, encoding = decode_weights(_field(msg, "weights", t))
    return LatestRoundReply(round_, weights, encoding)


def parse_statistics_reply(msg: Mapping[str, Any]) -> ServerStatistics:
    """Read the server's answer to pullServerStatistics.

    `lastRoundParticipants` (this server's extension) counts as 0 when absent.
    """
    t = MessageType.PULL_SERVER_STATISTICS
    _expect(msg, t)
    stats = _field(msg, "statistics", t)
    if not isinstance(stats, dict):
        raise ProtocolError(f"{_label(t)}: 'statistics' must be a map, got {msgpack_kind(stats)}")
    average = _field(stats, "averageNumberOfParticipants", t)
    if isinstance(average, bool) or not isinstance(average, int | float) or not average >= 0:
        raise ProtocolError(
            f"{_label(t)}: 'averageNumberOfParticipants' must be a non-negative number"
        )
    return ServerStatistics(
        round=_int_field(stats, "round", t, MAX_ROUND),
        current_participants=_int_field(stats, "currentNumberOfParticipants", t, MAX_SAMPLES),
        total_participants=_int_field(stats, "totalNumberOfParticipants", t, MAX_SAMPLES),
        average_participants=float(average),
        last_round_participants=(
            _int_field(stats, "lastRoundParticipants", t, MAX_SAMPLES)
            if "lastRoundParticipants" in stats
            else 0
        ),
    )


def _upload_id(msg: Mapping[str, Any]) -> str:
    t = MessageType.UPLOAD_PROGRESS
    return check_upload_name(_field(msg, "upload", t), _label(t))


def parse_upload_progress(msg: Mapping[str, Any]) -> UploadProgress:
    """Read the server's answer to uploadProgress (ProtocolError when malformed)."""
    t = MessageType.UPLOAD_PROGRESS
    _expect(msg, t)
    return UploadProgress(_upload_id(msg), _int_field(msg, "received", t, MAX_SAMPLES))


def parse_round_status(msg: Mapping[str, Any]) -> RoundStatus:
    """Validate a roundStatus frame received by a client (ProtocolError when malformed)."""
    t = MessageType.ROUND_STATUS
    _expect(msg, t)
    waiting_for = _field(msg, "waitingFor", t)
    if waiting_for not in WAITING_FOR:
        raise ProtocolError(f"{_label(t)}: 'waitingFor' must be one of {list(WAITING_FOR)}")
    deadline = msg.get("deadlineMs")
    deadline_ms = None if deadline is None else _check_int(deadline, "deadlineMs", t, MAX_SAMPLES)
    return RoundStatus(
        round=_int_field(msg, "round", t, MAX_ROUND),
        participants=_int_field(msg, "participants", t, MAX_SAMPLES),
        contributions=_int_field(msg, "contributions", t, MAX_SAMPLES),
        min_participants=_int_field(msg, "minParticipants", t, MAX_SAMPLES),
        waiting_for=cast(WaitingFor, waiting_for),
        deadline_ms=deadline_ms,
    )


def parse_signaling_reply(msg: Mapping[str, Any]) -> SignalingReply | None:
    """Read a frame of the signaling channel from the server; None for a type the client has no
    use for. Peer ids may be integral floats (see `wire_peer_id`); ProtocolError when malformed.
    """
    code = _message_code(msg)
    if code == MessageType.PEER_ID:
        t = MessageType.PEER_ID
        if "error" in msg:
            return SignalUndeliverable(wire_peer_id(msg.get("peer")), str(msg["error"]))
        id_ = wire_peer_id(_field(msg, "id", t))
        if id_ is None:
            raise ProtocolError(f"{_label(t)}: 'id' must be a peer id, got {msg['id']!r}")
        return PeerIdAssigned(id_)
    if code == MessageType.SIGNAL_FOR_PEER:
        t = MessageType.SIGNAL_FOR_PEER
        peer = wire_peer_id(_field(msg, "peer", t))
        signal = _field(msg, "signal", t)
        if peer is None or not isinstance(signal, dict):
            raise ProtocolError(f"{_label(t)}: needs a peer id 'peer' and a map 'signal'")
        return SignalForPeer(peer, signal)
    if code == MessageType.PEERS_FOR_ROUND:
        t = MessageType.PEERS_FOR_ROUND
        raw = _field(msg, "peers", t)
        peers = [wire_peer_id(p) for p in raw] if isinstance(raw, list) else [None]
        ids = tuple(p for p in peers if p is not None)
        if len(ids) != len(peers):
            raise ProtocolError(f"{_label(t)}: 'peers' must be an array of peer ids")
        return RoundPeers(ids, msg.get("update") is True)
    return None


# ---------------------------------------------------------------------------------------------
# Builders: server -> client


def federated_connected() -> dict[str, Any]:
    """Greeting the federated client waits for after its clientConnected."""
    return {"type": int(MessageType.CLIENT_CONNECTED)}


def latest_round_reply(round: int, weights_payload: Any) -> dict[str, Any]:
    """Answer to latestServerRound; `weights_payload` comes from `weights.encode_weights`."""
    return {
        "type": int(MessageType.LATEST_SERVER_ROUND),
        "round": round,
        "weights": weights_payload,
    }


def statistics_reply(stats: ServerStatistics) -> dict[str, Any]:
    """Answer to pullServerStatistics, with the keys the JS FederatedInformant reads.

    `lastRoundParticipants` (contributions behind the current global model) is ours; the JS
    informant ignores keys it does not know.
    """
    return {
        "type": int(MessageType.PULL_SERVER_STATISTICS),
        "statistics": {
            "round": stats.round,
            "currentNumberOfParticipants": stats.current_participants,
            "totalNumberOfParticipants": stats.total_participants,
            "averageNumberOfParticipants": stats.average_participants,
            "lastRoundParticipants": stats.last_round_participants,
        },
    }


def metadata_map_reply(
    *,
    task_id: str,
    client_id: str,
    round: int,
    metadata_id: str,
    metadata_map: Iterable[tuple[str, str | None]],
) -> dict[str, Any]:
    """Answer to getMetadataMap: the request's fields plus `metadataMap: [[clientId, value]...]`."""
    return {
        "type": int(MessageType.GET_METADATA_MAP),
        "taskId": task_id,
        "clientId": client_id,
        "round": round,
        "metadataId": metadata_id,
        "metadataMap": [[key, value] for key, value in metadata_map],
    }


def round_status(status: RoundStatus) -> dict[str, Any]:
    """roundStatus (14): sent to a native client while its waiting latestServerRound is pending."""
    return {
        "type": int(MessageType.ROUND_STATUS),
        "round": status.round,
        "participants": status.participants,
        "contributions": status.contributions,
        "minParticipants": status.min_participants,
        "waitingFor": status.waiting_for,
        "deadlineMs": status.deadline_ms,
    }


def upload_progress(upload: str, received: int | None = None) -> dict[str, Any]:
    """uploadProgress (15): the client's question (no `received`) or the server's answer."""
    message: dict[str, Any] = {"type": int(MessageType.UPLOAD_PROGRESS), "upload": upload}
    if received is not None:
        message["received"] = received
    return message


def post_ack(round: int, status: PostStatus, error: str | None = None) -> dict[str, Any]:
    """Answer to postWeightsToServer (extension, ignored by the 2.1.1 client).

    `error` (the reason) goes with every status but `accepted`.
    """
    reply: dict[str, Any] = {
        "type": int(MessageType.POST_WEIGHTS_TO_SERVER),
        "round": round,
        "status": str(status),
    }
    if status is not PostStatus.ACCEPTED:
        reply["error"] = error or str(status)
    return reply


def peer_id(id: int) -> dict[str, Any]:
    """Answer to clientConnected on the decentralized channel: the peer's numeric id."""
    return {"type": int(MessageType.PEER_ID), "id": id}


def signal_from(peer: int, signal: Any) -> dict[str, Any]:
    """A signal forwarded to its target; `peer` is the sender's id."""
    return {"type": int(MessageType.SIGNAL_FOR_PEER), "peer": peer, "signal": signal}


def peers_for_round(peers: Iterable[int]) -> dict[str, Any]:
    """Tells a ready peer the ids of the other ready peers of this round."""
    return {"type": int(MessageType.PEERS_FOR_ROUND), "peers": [int(p) for p in peers]}


def peer_list_update(peers: Iterable[int]) -> dict[str, Any]:
    """The opt-in mid-round update (`?peerUpdates=1`): the round's peers still connected.

    Only for peers that opted in: the 2.1.1 client would take it for its next round's list.
    """
    return {**peers_for_round(peers), "update": True}


def signal_error(sender: int, target: object, reason: str) -> dict[str, Any]:
    """Reply to a signal that cannot be delivered: `{type: 1, id: <sender>, peer, error}`.

    A PeerID frame on purpose: the 2.1.1 client ignores a repeated PeerID once connected, while
    it throws on any frame that fails its checks (e.g. a SignalForPeer without `signal`).
    `target` is echoed as the client sent it.
    """
    return {"type": int(MessageType.PEER_ID), "id": sender, "peer": target, "error": reason}


def error_reply(code: MessageType | int, reason: str) -> dict[str, Any]:
    """`{"type": <request type>, "error": reason}`: a request was refused, the channel stays open.

    For clients of this project only: the 2.1.1 JS client ignores `error` and would treat the
    reply as a normal answer (e.g. decode missing weights and fail), so for legacy clients the
    server closes the connection with the ProtocolError's code and reason instead.
    """
    return {"type": int(code), "error": reason}


# ---------------------------------------------------------------------------------------------
# Builders: client -> server (used by the Python client and by tests)


def client_connected() -> dict[str, Any]:
    """First message on either channel."""
    return {"type": int(MessageType.CLIENT_CONNECTED)}


def post_weights(
    weights_payload: Any, round: int, num_samples: int | None = None,
    epsilon: float | None = None, await_round: bool = False,
) -> dict[str, Any]:
    """postWeightsToServer; `numSamples` and `epsilon` (client-side DP spent) only when known;
    `await_round`: post and wait for the next round in one request (see `PostWeights`)."""
    message: dict[str, Any] = {
        "type": int(MessageType.POST_WEIGHTS_TO_SERVER),
        "weights": weights_payload,
        "round": round,
    }
    if num_samples is not None:
        message["numSamples"] = num_samples
    if epsilon is not None:
        message["epsilon"] = float(epsilon)
    if await_round:
        message["awaitRound"] = True
    return message


def latest_server_round(after_round: int | None = None) -> dict[str, Any]:
    """Asks for the server's round and global weights; with `after_round`, once the server's
    round is past it (a waiting request, see `LatestServerRound`)."""
    message: dict[str, Any] = {"type": int(MessageType.LATEST_SERVER_ROUND)}
    if after_round is not None:
        message["afterRound"] = after_round
    return message


def pull_server_statistics() -> dict[str, Any]:
    """Asks for participation statistics."""
    return {"type": int(MessageType.PULL_SERVER_STATISTICS)}


def post_metadata(
    *, task_id: str, client_id: str, round: int, metadata_id: str, metadata: str
) -> dict[str, Any]:
    """postMetadata with the 2.1.1 client's field names."""
    return {
        "type": int(MessageType.POST_METADATA),
        "taskId": task_id,
        "clientId": client_id,
        "round": round,
        "metadataId": metadata_id,
        "metadata": metadata,
    }


def get_metadata_map(
    *, task_id: str, client_id: str, round: int, metadata_id: str
) -> dict[str, Any]:
    """getMetadataMap request with the 2.1.1 client's field names."""
    return {
        "type": int(MessageType.GET_METADATA_MAP),
        "taskId": task_id,
        "clientId": client_id,
        "round": round,
        "metadataId": metadata_id,
    }


def signal_for_peer(peer: int, signal: Mapping[str, Any]) -> dict[str, Any]:
    """A WebRTC signal for `peer`, relayed by the server."""
    return {"type": int(MessageType.SIGNAL_FOR_PEER), "peer": peer, "signal": dict(signal)}


def peer_is_ready() -> dict[str, Any]:
    """The peer is ready for the next decentralized round."""
    return {"type": int(MessageType.PEER_IS_READY)}

"""Messages of federated secure aggregation (types 20-27, native clients only; docs/protocol.md).

Client -> server: secAggJoin (20), secAggShares (22), secAggMasked (24), secAggReveal (26).
Server -> client: secAggRoster (21), secAggRelay (23), secAggUnmask (25), secAggOutcome (27).
Each has a builder here; client messages are read by `parse_secagg` (the server), server
messages by `parse_secagg_reply` (the Python client).
Binary fields are msgpack `bin`; pairs {participant number: bytes} travel as lists of
`[number, bytes]` (JS msgpack decoders turn integer map keys into strings). Parsers check every
field's type and bound here; whether a key, share or vector fits the round is the
coordinator's check (`disco.secagg`). The 2.1.1 JS client never sends or receives these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from disco.protocol.errors import ProtocolError
from disco.protocol.framing import msgpack_kind
from disco.protocol.types import MessageType
from disco.protocol.weights import decode_weights
from disco.weights import Weights

MAX_MEMBERS = 10_000
"""Largest round (and number of pairs in a message) accepted."""
MAX_KEY_BYTES = 133
"""Longest raw public key (P-521's uncompressed point; we use 32 or 65 bytes)."""
MAX_BOX_BYTES = 1024
"""Longest sealed share or revealed share."""
CURVES = ("x25519", "p256")

SECAGG_TYPES = frozenset(
    {
        MessageType.SECAGG_JOIN,
        MessageType.SECAGG_SHARES,
        MessageType.SECAGG_MASKED,
        MessageType.SECAGG_REVEAL,
    }
)
"""Secure-aggregation types a client may send."""

SECAGG_REPLY_TYPES = frozenset(
    {
        MessageType.SECAGG_ROSTER,
        MessageType.SECAGG_RELAY,
        MessageType.SECAGG_UNMASK,
        MessageType.SECAGG_OUTCOME,
    }
)
"""Secure-aggregation types the server sends."""


@dataclass(frozen=True, slots=True)
class SecAggJoin:
    """type 20: join the secure round of `round` with public keys per curve; `epsilon` is the
    client-side DP ε the participant will have spent after this round (reported, optional)."""

    round: int
    keys: dict[str, tuple[bytes, bytes]]  # curve -> (cipher key, mask key)
    num_samples: int | None = None
    epsilon: float | None = None


@dataclass(frozen=True, slots=True)
class SecAggShares:
    """type 22: sealed shares for each neighbour, and the commitment to the self-mask seed."""

    session: bytes
    shares: dict[int, bytes]
    commitment: bytes


@dataclass(frozen=True, slots=True, eq=False)
class SecAggMasked:
    """type 24: the masked fixed-point vector (little-endian uint64)."""

    session: bytes
    masked: bytes


@dataclass(frozen=True, slots=True)
class SecAggReveal:
    """type 26: revealed shares {participant: share}."""

    session: bytes
    shares: dict[int, bytes]


SecAggMessage = SecAggJoin | SecAggShares | SecAggMasked | SecAggReveal

class SecAggStatus(StrEnum):
    """`status` of secAggOutcome (type 27): how a member's secure round ended."""

    AGGREGATED = "aggregated"  # the model is new
    ABORTED = "aborted"  # the round was abandoned: model unchanged, `error` says why
    REFUSED = "refused"  # a message of this member was not accepted, `error` says why


OUTCOME_STATUSES = tuple(status.value for status in SecAggStatus)
"""The wire spellings of `SecAggStatus`."""


@dataclass(frozen=True, slots=True)
class SecAggRoster:
    """type 21: the round's members and their keys on the round's curve, this member's number,
    the share graph's degree, the threshold and the fixed-point encoding."""

    round: int
    session: bytes
    curve: str
    index: int
    participants: dict[int, tuple[bytes, bytes]]  # number -> (cipher key, mask key)
    degree: int
    threshold: int
    vector_length: int
    fractional_bits: int
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class SecAggRelay:
    """type 23: the shares sealed for this member, and every member who shared."""

    session: bytes
    shares: dict[int, bytes]
    sharers: tuple[int, ...]
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class SecAggUnmask:
    """type 25: reveal b-shares of `survivors` and key shares of `dropped`."""

    session: bytes
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    deadline_ms: int


@dataclass(frozen=True, slots=True, eq=False)
class SecAggOutcome:
    """type 27: how the member's secure round ended (`OUTCOME_STATUSES`); with "aggregated",
    `weights` is the new global model of `round` when the server sent it along."""

    round: int
    status: SecAggStatus
    participants: int = 0
    error: str = ""
    session: bytes | None = None
    weights: Weights | None = None


SecAggReply = SecAggRoster | SecAggRelay | SecAggUnmask | SecAggOutcome


def _name(code: MessageType) -> str:
    return f"{code.name.lower()} (type {int(code)})"


def _get(msg: Mapping[str, Any], key: str, code: MessageType) -> Any:
    if key not in msg:
        raise ProtocolError(f"{_name(code)} message has no '{key}' field")
    return msg[key]


def _int(value: object, key: str, code: MessageType, maximum: int) -> int:
    if type(value) is not int or not 0 <= value <= maximum:
        raise ProtocolError(
            f"{_name(code)}: '{key}' must be an integer in 0..{maximum}, got {msgpack_kind(value)}"
        )
    return value


def _bytes(value: object, key: str, code: MessageType, maximum: int) -> bytes:
    if not isinstance(value, bytes) or len(value) > maximum:
        raise ProtocolError(
            f"{_name(code)}: '{key}' must be binary of at most {maximum} bytes, got "
            f"{msgpack_kind(value)}"
        )
    return value


def _pairs(value: object, key: str, code: MessageType) -> dict[int, bytes]:
    if not isinstance(value, list) or len(value) > MAX_MEMBERS:
        raise ProtocolError(f"{_name(code)}: '{key}' must be a list of [number, bytes] pairs")
    pairs: dict[int, bytes] = {}
    for item in value:
        if not isinstance(item, list) or len(item) != 2:
            raise ProtocolError(f"{_name(code)}: '{key}' must be a list of [number, bytes] pairs")
        index = _int(item[0], key, code, MAX_MEMBERS)
        if index in pairs:
            raise ProtocolError(f"{_name(code)}: '{key}' names participant {index} twice")
        pairs[index] = _bytes(item[1], key, code, MAX_BOX_BYTES)
    return pairs


def parse_secagg(msg: Mapping[str, Any], max_vector_bytes: int) -> SecAggMessage:
    """Validate a client's secure-aggregation message (ProtocolError, close 1007, if malformed)."""
    code = MessageType(msg["type"])
    if code == MessageType.SECAGG_JOIN:
        round_ = _int(_get(msg, "round", code), "round", code, 2**31 - 1)
        raw = _get(msg, "keys", code)
        if not isinstance(raw, dict) or not raw:
            raise ProtocolError(f"{_name(code)}: 'keys' must be a non-empty map")
        keys: dict[str, tuple[bytes, bytes]] = {}
        for curve, pair in raw.items():
            if curve not in CURVES or not isinstance(pair, dict):
                raise ProtocolError(f"{_name(code)}: 'keys' maps a curve of {CURVES} to a map")
            keys[curve] = (
                _bytes(_get(pair, "cipher", code), "cipher", code, MAX_KEY_BYTES),
                _bytes(_get(pair, "mask", code), "mask", code, MAX_KEY_BYTES),
            )
        samples = msg.get("numSamples")
        epsilon = msg.get("epsilon")
        if epsilon is not None and (
            isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or epsilon < 0
        ):
            raise ProtocolError(f"{_name(code)}: 'epsilon' must be a non-negative number")
        return SecAggJoin(
            round_,
            keys,
            None if samples is None else _int(samples, "numSamples", code, 2**53 - 1),
            None if epsilon is None else float(epsilon),
        )
    session = _bytes(_get(msg, "session", code), "session", code, 64)
    if code == MessageType.SECAGG_SHARES:
        return SecAggShares(
            session,
            _pairs(_get(msg, "shares", code), "shares", code),
            _bytes(_get(msg, "commitment", code), "commitment", code, 64),
        )
    if code == MessageType.SECAGG_MASKED:
        return SecAggMasked(
            session, _bytes(_get(msg, "masked", code), "masked", code, max_vector_bytes)
        )
    if code == MessageType.SECAGG_REVEAL:
        return SecAggReveal(session, _pairs(_get(msg, "shares", code), "shares", code))
    raise ProtocolError(f"message type {int(code)} is not a client secure-aggregation message")


def _numbers(value: object, key: str, code: MessageType) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_MEMBERS:
        raise ProtocolError(f"{_name(code)}: '{key}' must be a list of participant numbers")
    return tuple(_int(v, key, code, MAX_MEMBERS) for v in value)


def parse_secagg_reply(msg: Mapping[str, Any]) -> SecAggReply:
    """Validate a server's secure-aggregation message (ProtocolError if malformed or not one);
    whether it fits the member's round is `disco.secagg.Participant`'s check."""
    raw = msg.get("type")
    try:
        code = MessageType(raw) if type(raw) is int else None
    except ValueError:
        code = None
    if code is None:
        raise ProtocolError(f"unknown message type {str(raw)[:20]}")
    if code not in SECAGG_REPLY_TYPES:
        raise ProtocolError(
            f"message type {int(code)} is not a server secure-aggregation message"
        )
    if code == MessageType.SECAGG_OUTCOME:
        status = _get(msg, "status", code)
        if status not in OUTCOME_STATUSES:
            raise ProtocolError(f"{_name(code)}: 'status' must be one of {OUTCOME_STATUSES}")
        error = msg.get("error", "")
        if not isinstance(error, str):
            raise ProtocolError(f"{_name(code)}: 'error' must be a string")
        session = msg.get("session")
        weights = msg.get("weights")
        return SecAggOutcome(
            _int(_get(msg, "round", code), "round", code, 2**31 - 1),
            SecAggStatus(status),
            _int(msg.get("participants", 0), "participants", code, MAX_MEMBERS),
            error,
            None if session is None else _bytes(session, "session", code, 64),
            None if weights is None else decode_weights(weights)[0],
        )
    session_id = _bytes(_get(msg, "session", code), "session", code, 64)
    deadline = _int(_get(msg, "deadlineMs", code), "deadlineMs", code, 2**31 - 1)
    if code == MessageType.SECAGG_ROSTER:
        curve = _get(msg, "curve", code)
        if curve not in CURVES:
            raise ProtocolError(f"{_name(code)}: 'curve' must be one of {CURVES}")
        listed = _get(msg, "participants", code)
        if not isinstance(listed, list) or not 0 < len(listed) <= MAX_MEMBERS:
            raise ProtocolError(f"{_name(code)}: 'participants' must be a list of [n, key, key]")
        participants: dict[int, tuple[bytes, bytes]] = {}
        for item in listed:
            if not isinstance(item, list) or len(item) != 3:
                raise ProtocolError(
                    f"{_name(code)}: 'participants' must be a list of [n, key, key]"
                )
            number = _int(item[0], "participants", code, MAX_MEMBERS)
            if number in participants:
                raise ProtocolError(f"{_name(code)}: 'participants' names {number} twice")
            participants[number] = (
                _bytes(item[1], "participants", code, MAX_KEY_BYTES),
                _bytes(item[2], "participants", code, MAX_KEY_BYTES),
            )
        return SecAggRoster(
            round=_int(_get(msg, "round", code), "round", code, 2**31 - 1),
            session=session_id,
            curve=curve,
            index=_int(_get(msg, "index", code), "index", code, MAX_MEMBERS),
            participants=participants,
            degree=_int(_get(msg, "degree", code), "degree", code, MAX_MEMBERS),
            threshold=_int(_get(msg, "threshold", code), "threshold", code, MAX_MEMBERS),
            vector_length=_int(
                _get(msg, "vectorLength", code), "vectorLength", code, 2**31 - 1
            ),
            fractional_bits=_int(
                _get(msg, "fractionalBits", code), "fractionalBits", code, 63
            ),
            deadline_ms=deadline,
        )
    if code == MessageType.SECAGG_RELAY:
        return SecAggRelay(
            session_id,
            _pairs(_get(msg, "shares", code), "shares", code),
            _numbers(_get(msg, "sharers", code), "sharers", code),
            deadline,
        )
    if code == MessageType.SECAGG_UNMASK:
        return SecAggUnmask(
            session_id,
            _numbers(_get(msg, "survivors", code), "survivors", code),
            _numbers(_get(msg, "dropped", code), "dropped", code),
            deadline,
        )
    raise AssertionError(f"unhandled secure-aggregation reply type {int(code)}")


# -- builders: client -> server ------------------------------------------------------------


def secagg_join(
    round: int,
    keys: Mapping[str, tuple[bytes, bytes]],
    num_samples: int | None = None,
    epsilon: float | None = None,
) -> dict[str, Any]:
    """Join the secure round `round` with these public keys {curve: (cipher, mask)}."""
    message: dict[str, Any] = {
        "type": int(MessageType.SECAGG_JOIN),
        "round": round,
        "keys": {curve: {"cipher": c, "mask": m} for curve, (c, m) in keys.items()},
    }
    if num_samples is not None:
        message["numSamples"] = int(num_samples)
    if epsilon is not None:
        message["epsilon"] = float(epsilon)
    return message


def _pair_list(pairs: Mapping[int, bytes]) -> list[list[Any]]:
    return [[int(i), bytes(b)] for i, b in sorted(pairs.items())]


def secagg_shares(session: bytes, shares: Mapping[int, bytes], commitment: bytes) -> dict[str, Any]:
    """Sealed shares for the neighbours, and the seed commitment."""
    return {
        "type": int(MessageType.SECAGG_SHARES),
        "session": session,
        "shares": _pair_list(shares),
        "commitment": commitment,
    }


def secagg_masked(session: bytes, masked: bytes) -> dict[str, Any]:
    """The masked vector."""
    return {"type": int(MessageType.SECAGG_MASKED), "session": session, "masked": masked}


def secagg_reveal(session: bytes, shares: Mapping[int, bytes]) -> dict[str, Any]:
    """Revealed shares."""
    return {
        "type": int(MessageType.SECAGG_REVEAL),
        "session": session,
        "shares": _pair_list(shares),
    }


# -- builders: server -> client ------------------------------------------------------------


def secagg_roster(
    *,
    round: int,
    session: bytes,
    curve: str,
    index: int,
    participants: Mapping[int, tuple[bytes, bytes]],
    degree: int,
    threshold: int,
    vector_length: int,
    fractional_bits: int,
    deadline_ms: int,
) -> dict[str, Any]:
    """The round's roster, sent to each member with its own number."""
    return {
        "type": int(MessageType.SECAGG_ROSTER),
        "round": round,
        "session": session,
        "curve": curve,
        "index": index,
        "participants": [[i, c, m] for i, (c, m) in sorted(participants.items())],
        "degree": degree,
        "threshold": threshold,
        "vectorLength": vector_length,
        "fractionalBits": fractional_bits,
        "deadlineMs": deadline_ms,
    }


def secagg_relay(
    session: bytes, shares: Mapping[int, bytes], sharers: Iterable[int], deadline_ms: int
) -> dict[str, Any]:
    """The shares sealed for this member, and who shared (U1)."""
    return {
        "type": int(MessageType.SECAGG_RELAY),
        "session": session,
        "shares": _pair_list(shares),
        "sharers": sorted(int(i) for i in sharers),
        "deadlineMs": deadline_ms,
    }


def secagg_unmask(
    session: bytes, survivors: Sequence[int], dropped: Sequence[int], deadline_ms: int
) -> dict[str, Any]:
    """Ask a survivor for its shares: b-shares of `survivors`, key shares of `dropped`."""
    return {
        "type": int(MessageType.SECAGG_UNMASK),
        "session": session,
        "survivors": [int(i) for i in survivors],
        "dropped": [int(i) for i in dropped],
        "deadlineMs": deadline_ms,
    }


def secagg_outcome(
    round: int,
    status: SecAggStatus,
    error: str = "",
    session: bytes | None = None,
    participants: int = 0,
    weights_payload: Any = None,
) -> dict[str, Any]:
    """How the member's secure round ended: "aggregated" (the model of `round` is new, and
    `weights` carries it, natively encoded, saving a latestServerRound request), "aborted"
    (model unchanged, `error` says why) or "refused" (a message was not accepted)."""
    message: dict[str, Any] = {
        "type": int(MessageType.SECAGG_OUTCOME),
        "round": round,
        "status": SecAggStatus(status).value,
        "participants": participants,
    }
    if weights_payload is not None:
        message["weights"] = weights_payload
    if error:
        message["error"] = error
    if session is not None:
        message["session"] = session
    return message

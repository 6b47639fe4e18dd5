"""What every aggregation round needs: the peers' interface, the outcome, bounded send/receive.

The round functions (`clear_text`, `secure`) only see `RoundPeer`s, so they run the same over
WebRTC links (`webrtc.PeerLink`) and over in-memory fakes in unit tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from disco.errors import DiscoError
from disco.protocol.peer_messages import (
    PeerCapabilities,
    PeerMessage,
    encode_float_payload,
    pack_payload,
    peer_message_bytes,
)
from disco.protocol.types import MessageType
from disco.protocol.weights import NATIVE_TAG
from disco.weights import Weights, num_parameters, split_by_shapes

log = logging.getLogger("disco.client.decentralized")

T = TypeVar("T")

THREAD_PARAMETERS = 100_000
"""Above this many parameters, encoding and arithmetic leave the event loop."""


class RoundPeer(Protocol):
    """One other participant of a round, reachable over an open channel."""

    @property
    def remote_id(self) -> int: ...

    @property
    def capabilities(self) -> PeerCapabilities | None: ...

    @property
    def is_python(self) -> bool: ...

    async def wait_open(self, timeout_s: float) -> bool: ...

    def check_sendable(self, size: int) -> None: ...

    async def send(self, message: bytes) -> None: ...

    async def receive(self, kind: MessageType, timeout_s: float) -> PeerMessage: ...


@dataclass(frozen=True)
class RoundOutcome:
    """What a round produced: the aggregate (None when it failed) and how many contributed."""

    weights: Weights | None
    participants: int
    mode: str
    failure: str | None = None
    left_out: tuple[int, ...] = ()  # peers whose contribution is missing (clear text)


class RoundFailed(DiscoError, RuntimeError):
    """The round cannot produce an aggregate; the message says why."""


def remaining(deadline: float) -> float:
    """Seconds left until `deadline` (event-loop time), never negative."""
    return max(0.0, deadline - asyncio.get_running_loop().time())


async def offload(size: int, function: Callable[..., T], *args: Any) -> T:
    """Run `function(*args)` in a thread when `size` (parameters) is big, else inline."""
    if size >= THREAD_PARAMETERS:
        return await asyncio.to_thread(function, *args)
    return function(*args)


def to_weights(flat: npt.NDArray[Any], shapes: Sequence[Sequence[int]]) -> Weights:
    """A flat vector as float32 tensors (fresh, writable arrays)."""
    return [np.array(t, dtype=np.float32) for t in split_by_shapes(flat, shapes)]


def float_encoding_for(peer: RoundPeer, python_encoding: str) -> str:
    """Legacy for JS peers (the only encoding they accept), `python_encoding` for Python peers."""
    return python_encoding if peer.is_python else "legacy"


async def packed_float_payloads(
    tensors: Sequence[npt.NDArray[Any]], encodings: set[str]
) -> dict[str, bytes]:
    """Each needed encoding of the same tensors, packed once."""

    def build() -> dict[str, bytes]:
        return {e: pack_payload(encode_float_payload(tensors, e)) for e in sorted(encodings)}

    return await offload(num_parameters(tensors), build)


async def send_all(
    kind: MessageType, messages: Mapping[int, bytes], peers: Sequence[RoundPeer], deadline: float
) -> dict[int, str]:
    """Send `messages[peer id]` to every peer concurrently; failures by peer id."""

    async def one(peer: RoundPeer) -> None:
        packet = messages[peer.remote_id]
        peer.check_sendable(len(packet))
        await asyncio.wait_for(peer.send(packet), remaining(deadline))

    results = await asyncio.gather(*(one(p) for p in peers), return_exceptions=True)
    failures: dict[int, str] = {}
    for peer, result in zip(peers, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, asyncio.CancelledError):
                raise result
            failures[peer.remote_id] = describe(result)
            log.warning(
                "sending type %d to peer %d failed: %s",
                kind,
                peer.remote_id,
                failures[peer.remote_id],
            )
    return failures


async def receive_all(
    kind: MessageType, peers: Sequence[RoundPeer], deadline: float
) -> tuple[dict[int, PeerMessage], dict[int, str]]:
    """One message of type `kind` from every peer (until `deadline`): received, failures."""
    results = await asyncio.gather(
        *(p.receive(kind, remaining(deadline)) for p in peers), return_exceptions=True
    )
    received: dict[int, PeerMessage] = {}
    failures: dict[int, str] = {}
    for peer, result in zip(peers, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, asyncio.CancelledError):
                raise result
            failures[peer.remote_id] = describe(result)
        else:
            received[peer.remote_id] = result
    return received, failures


def float_messages(
    kind: MessageType,
    payloads: Mapping[int, Sequence[npt.NDArray[Any]]],
    peers: Sequence[RoundPeer],
    python_encoding: str = NATIVE_TAG,
) -> dict[int, bytes]:
    """Per-peer messages of real tensors (one distinct payload per peer, e.g. shares)."""
    out: dict[int, bytes] = {}
    for peer in peers:
        encoding = float_encoding_for(peer, python_encoding)
        packed = pack_payload(encode_float_payload(payloads[peer.remote_id], encoding))
        out[peer.remote_id] = peer_message_bytes(kind, peer.remote_id, packed)
    return out


def describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

"""Clear-text decentralized round: everyone sends its weights to everyone, each averages.

As the 2.1.1 `ClearText` client: `{type: 5, peer, weights}` to every peer of the round, then the
plain mean of one's own weights and those received (not weighted by sample counts, so that every
peer ends the round with the same model). Unlike the JS client, which fails the whole round when
one peer is missing, a peer that does not connect or deliver before the deadline (or sends
weights of the wrong shape, or NaN) is left out and the others are averaged. Each peer is
served as soon as its data channel opens: a slow peer does not hold the others back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import cast

from disco.aggregation import AggregationError, mean
from disco.client.decentralized.rounds import (
    RoundOutcome,
    RoundPeer,
    describe,
    float_encoding_for,
    offload,
    packed_float_payloads,
    remaining,
)
from disco.client.decentralized.webrtc import PeerGone
from disco.protocol.peer_messages import FloatPayload, PeerMessage, peer_message_bytes
from disco.protocol.types import MessageType
from disco.protocol.weights import NATIVE_TAG
from disco.weights import (
    Weights,
    WeightsError,
    check_finite,
    check_shapes,
    num_parameters,
    shapes_of,
)

log = logging.getLogger("disco.client.decentralized")

MODE = "clear-text"


async def clear_text_round(
    own: Weights, peers: Sequence[RoundPeer], deadline: float
) -> RoundOutcome:
    """Exchange weights with `peers` until `deadline` (loop time); average what arrived."""
    if not peers:
        return RoundOutcome([t.copy() for t in own], 1, MODE)
    payloads: dict[str, asyncio.Task[dict[str, bytes]]] = {}

    def packed(encoding: str) -> asyncio.Task[dict[str, bytes]]:
        """Each encoding is computed once, when the first peer needing it is connected."""
        if encoding not in payloads:
            payloads[encoding] = asyncio.ensure_future(packed_float_payloads(own, {encoding}))
        return payloads[encoding]

    async def with_peer(peer: RoundPeer) -> PeerMessage:
        if not await peer.wait_open(remaining(deadline)):
            raise PeerGone("did not connect in time")
        encoding = float_encoding_for(peer, NATIVE_TAG)
        payload = (await packed(encoding))[encoding]
        message = peer_message_bytes(MessageType.WEIGHTS, peer.remote_id, payload)
        peer.check_sendable(len(message))
        await asyncio.wait_for(peer.send(message), remaining(deadline))
        return await peer.receive(MessageType.WEIGHTS, remaining(deadline))

    try:
        results = await asyncio.gather(*(with_peer(p) for p in peers), return_exceptions=True)
    finally:
        for task in payloads.values():
            task.cancel()
    shapes = shapes_of(own)
    updates: list[Weights] = [own]
    failures: dict[int, str] = {}
    for peer, result in zip(peers, results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):
            failures[peer.remote_id] = describe(result)
            continue
        if not isinstance(result.payload, FloatPayload):
            failures[peer.remote_id] = "fixed-point payload in a clear-text round"
            continue
        try:
            check_shapes(result.payload.tensors, shapes)
            check_finite(result.payload.tensors)
        except WeightsError as error:
            failures[peer.remote_id] = str(error)
            continue
        updates.append(cast(Weights, result.payload.tensors))
    for peer_id, reason in failures.items():
        log.warning("clear-text round: no usable weights from peer %d: %s", peer_id, reason)
    left_out = tuple(sorted(failures))
    if len(updates) == 1:
        return RoundOutcome(None, 1, MODE, "no weights arrived from any peer", left_out)
    try:
        averaged = await offload(num_parameters(own) * len(updates), mean, updates)
    except AggregationError as error:
        return RoundOutcome(None, len(updates), MODE, f"cannot average: {error}", left_out)
    failure = f"peers {list(left_out)} left out" if left_out else None
    return RoundOutcome(averaged, len(updates), MODE, failure, left_out)

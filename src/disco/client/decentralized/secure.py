"""Secure aggregation among decentralized peers: additive secret shares in two phases.

Both modes run the same two phases with the n peers of a round (n - 1 others plus oneself):

1. split one's update into n additive shares, keep one, send the i-th to peer i (type 6);
2. add the kept share to the n - 1 received ones and send that partial sum to every peer
   (type 7); the sum of the n partial sums is the sum of the n updates, so each peer ends the
   round with the same mean = sum / n.

DISCO-compatible mode (any JS peer in the round; `sec_agg.js` / `secret_shares.js` of 2.1.1):
real-valued shares, n - 1 uniform in (-maxShareValue, maxShareValue) (task's `maxShareValue`,
default 100), the last = update - their sum. Python computes in float64 (JS in float32: ~1e-5
absolute error on the mean with shares of +-100). Privacy is weak: shares are bounded, so a
share reveals that the update lies within maxShareValue·(n - 1) of it, and a coordinate
larger than maxShareValue shows through; it only blurs the updates.

Native mode (every peer of the round is a Python peer that offers it, with the same scale):
fixed-point integers modulo 2^32. Each update coordinate x becomes round(x·2^s) (s = scale_bits,
default 16) as a two's-complement int32; n - 1 shares are uniform uint32 masks from the OS CSPRNG
(`secrets.token_bytes`) and the last is x - sum(masks) mod 2^32. Every share alone, and any n - 1
of a peer's shares together, are uniform and independent of x (a one-time pad mod 2^32); partial
sums are uniform too except for their total, which is the sum the round reveals anyway.

- Precision: each coordinate is rounded once, so the mean is within 2^-(s+1) (7.6e-6 for
  s = 16) of the exact mean of the float32 updates; sums mod 2^32 are exact.
- Range / overflow: the sum of n encoded values must stay within int32, so every |x| must be at
  most (2^31 - 1) / n / 2^s: 16383 for n = 2, 8191 for n = 4, ~327 for n = 100 with s = 16; with
  n up to 2^15 peers, |x| <= 1 still fits. Larger values make the round fail (never wrap silently).
- Threat model: honest-but-curious peers and server. A coalition of up to n - 2 peers learns
  nothing about the others' updates beyond the mean (n - 1 colluders learn the last update from
  the mean, as with any exact aggregate). Not covered: malicious peers (a peer can send garbage
  and bias the mean; there is no integrity check), dropouts (a missing share or partial sum makes
  the round fail: no recovery), and an active signaling server, which relays the SDP carrying the
  DTLS fingerprints and could therefore intercept the data channels, or strip the capability flag
  and force DISCO-compatible mode (use `secure_mode="native"` to refuse that downgrade).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from disco.aggregation import (
    AggregationError,
    make_masked_shares,
    make_shares,
    mean_from_fixed_point_sum,
    sum_masked_shares,
    sum_shares,
    to_fixed_point,
)
from disco.aggregation.secure import DEFAULT_MAX_SHARE_VALUE, DEFAULT_SCALE_BITS
from disco.client.decentralized.rounds import (
    RoundFailed,
    RoundOutcome,
    RoundPeer,
    float_messages,
    offload,
    receive_all,
    send_all,
    to_weights,
)
from disco.client.options import SecureMode
from disco.protocol.peer_messages import (
    F64_TAG,
    FixedPointPayload,
    FloatPayload,
    PeerMessage,
    encode_fixed_point_payload,
    pack_payload,
    peer_message_bytes,
)
from disco.protocol.types import MessageType
from disco.weights import Shape, Weights, flatten, shapes_of, split_by_shapes

log = logging.getLogger("disco.client.decentralized")

DISCO_MODE = "secure-disco"
NATIVE_MODE = "secure-native"

__all__ = [
    "DEFAULT_MAX_SHARE_VALUE",
    "DEFAULT_SCALE_BITS",
    "DISCO_MODE",
    "NATIVE_MODE",
    "SecureMode",
    "choose_secure_mode",
    "disco_secure_round",
    "native_secure_round",
    "secure_round",
]


def choose_secure_mode(peers: Sequence[RoundPeer], preference: SecureMode, scale_bits: int) -> str:
    """NATIVE_MODE when every peer offers native mode with our scale, else DISCO_MODE.

    Every Python peer of the round sees the same peers (the server announces each to all) and
    advertises what it accepts, so all peers of a round reach the same decision.
    Raises RoundFailed when `preference` is "native" and some peer cannot do it.
    """
    if preference == "disco":
        return DISCO_MODE
    unable = [
        p.remote_id
        for p in peers
        if p.capabilities is None or p.capabilities.native_secure_scale_bits != scale_bits
    ]
    if not unable:
        return NATIVE_MODE
    if preference == "native":
        raise RoundFailed(
            f"native secure aggregation required, but peers {unable} do not offer it "
            f"(JS peers, or Python peers with another scale or mode)"
        )
    return DISCO_MODE


async def secure_round(
    own: Weights,
    peers: Sequence[RoundPeer],
    deadline: float,
    *,
    preference: SecureMode = "auto",
    max_share_value: float = DEFAULT_MAX_SHARE_VALUE,
    scale_bits: int = DEFAULT_SCALE_BITS,
) -> RoundOutcome:
    """Run the secure round in the mode the peers agree on; RoundOutcome(None, ...) on failure."""
    try:
        mode = choose_secure_mode(peers, preference, scale_bits)
    except RoundFailed as error:
        return RoundOutcome(None, len(peers) + 1, NATIVE_MODE, str(error))
    if mode == NATIVE_MODE:
        return await native_secure_round(own, peers, deadline, scale_bits)
    return await disco_secure_round(own, peers, deadline, max_share_value)


def _require_all(phase: str, received: dict[int, PeerMessage], failures: dict[int, str]) -> None:
    if failures:
        details = "; ".join(f"peer {p}: {reason}" for p, reason in sorted(failures.items()))
        raise RoundFailed(f"{phase}: {details}")


def _float_flat(message: PeerMessage, shapes: list[Shape]) -> npt.NDArray[np.float64]:
    payload = message.payload
    if not isinstance(payload, FloatPayload):
        raise RoundFailed(f"peer {message.peer}: fixed-point payload in DISCO-compatible mode")
    if payload.shapes != shapes:
        raise RoundFailed(f"a peer sent tensors of shapes {payload.shapes}, expected {shapes}")
    return flatten(payload.tensors, np.float64)


def _fixed_values(
    message: PeerMessage, shapes: list[Shape], scale_bits: int
) -> npt.NDArray[np.uint32]:
    payload = message.payload
    if not isinstance(payload, FixedPointPayload):
        raise RoundFailed("real-valued payload in native secure mode")
    if payload.scale_bits != scale_bits:
        raise RoundFailed(f"a peer uses {payload.scale_bits} fractional bits, we use {scale_bits}")
    if payload.shapes != shapes:
        raise RoundFailed(f"a peer sent shapes {payload.shapes}, expected {shapes}")
    return payload.values


async def disco_secure_round(
    own: Weights, peers: Sequence[RoundPeer], deadline: float, max_share_value: float
) -> RoundOutcome:
    """DISCO-compatible secure aggregation (real shares), interoperable with JS SecAgg peers."""
    n = len(peers) + 1
    shapes = shapes_of(own)
    secret = flatten(own, np.float64)
    size = int(secret.size) * n
    try:
        shares = await offload(size, make_shares, secret, n, max_share_value)
        by_peer = {p.remote_id: split_by_shapes(shares[i + 1], shapes) for i, p in enumerate(peers)}
        messages = await offload(size, float_messages, MessageType.SHARES, by_peer, peers, F64_TAG)
        _require_all(
            "sending shares", {}, await send_all(MessageType.SHARES, messages, peers, deadline)
        )
        received, failures = await receive_all(MessageType.SHARES, peers, deadline)
        _require_all("receiving shares", received, failures)
        parts = [shares[0], *(_float_flat(received[p.remote_id], shapes) for p in peers)]
        partial = await offload(size, sum_shares, parts)

        partial_tensors = split_by_shapes(partial, shapes)
        messages = await offload(
            size,
            float_messages,
            MessageType.PARTIAL_SUMS,
            {p.remote_id: partial_tensors for p in peers},
            peers,
            F64_TAG,
        )
        _require_all(
            "sending partial sums",
            {},
            await send_all(MessageType.PARTIAL_SUMS, messages, peers, deadline),
        )
        received, failures = await receive_all(MessageType.PARTIAL_SUMS, peers, deadline)
        _require_all("receiving partial sums", received, failures)
        partials = [partial, *(_float_flat(received[p.remote_id], shapes) for p in peers)]
        total = await offload(size, sum_shares, partials)
    except (RoundFailed, AggregationError) as error:
        return RoundOutcome(None, n, DISCO_MODE, str(error))
    return RoundOutcome(to_weights(total / n, shapes), n, DISCO_MODE)


async def native_secure_round(
    own: Weights, peers: Sequence[RoundPeer], deadline: float, scale_bits: int
) -> RoundOutcome:
    """Fixed-point secure aggregation modulo 2^32 with CSPRNG masks (Python peers only)."""
    n = len(peers) + 1
    shapes = shapes_of(own)
    size = sum(int(t.size) for t in own) * n
    try:
        encoded = await offload(size, to_fixed_point, flatten(own, np.float64), scale_bits, n)
        shares = await offload(size, make_masked_shares, encoded, n)

        def share_messages() -> dict[int, bytes]:
            return {
                p.remote_id: peer_message_bytes(
                    MessageType.SHARES,
                    p.remote_id,
                    pack_payload(
                        encode_fixed_point_payload(
                            FixedPointPayload(shapes, shares[i + 1], scale_bits)
                        )
                    ),
                )
                for i, p in enumerate(peers)
            }

        messages = await offload(size, share_messages)
        _require_all(
            "sending shares", {}, await send_all(MessageType.SHARES, messages, peers, deadline)
        )
        received, failures = await receive_all(MessageType.SHARES, peers, deadline)
        _require_all("receiving shares", received, failures)
        parts = [
            shares[0],
            *(_fixed_values(received[p.remote_id], shapes, scale_bits) for p in peers),
        ]
        partial = await offload(size, sum_masked_shares, parts)

        packed = pack_payload(
            encode_fixed_point_payload(FixedPointPayload(shapes, partial, scale_bits))
        )
        messages = {
            p.remote_id: peer_message_bytes(MessageType.PARTIAL_SUMS, p.remote_id, packed)
            for p in peers
        }
        _require_all(
            "sending partial sums",
            {},
            await send_all(MessageType.PARTIAL_SUMS, messages, peers, deadline),
        )
        received, failures = await receive_all(MessageType.PARTIAL_SUMS, peers, deadline)
        _require_all("receiving partial sums", received, failures)
        partials = [
            partial,
            *(_fixed_values(received[p.remote_id], shapes, scale_bits) for p in peers),
        ]
        total = await offload(size, sum_masked_shares, partials)
        averaged = mean_from_fixed_point_sum(total, n, scale_bits)
    except (RoundFailed, AggregationError) as error:
        return RoundOutcome(None, n, NATIVE_MODE, str(error))
    return RoundOutcome(to_weights(averaged, shapes), n, NATIVE_MODE)

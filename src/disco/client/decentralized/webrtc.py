"""One WebRTC data channel to another peer (aiortc), speaking simple-peer's signal format.

The 2.1.1 JS client wraps simple-peer 9: one ordered, reliable, non-negotiated data channel per
pair of peers, created by the initiator (the peer with the *larger* id: `initiator = remote <
own` in its peer pool). Signals relayed by the server are simple-peer's objects:

- `{type: 'offer' | 'answer', sdp}`; the JS peer reads `a=max-message-size` from them and
  throws without it (aiortc always writes it);
- `{type: 'candidate', candidate: {candidate, sdpMLineIndex, sdpMid}}` (trickle ICE; aiortc
  does not trickle, its offers and answers carry their candidates);
- `{type: 'renegotiate', renegotiate: true}` and `{type: 'transceiverRequest', ...}`: media
  renegotiation, meaningless for a data channel: ignored.

Python peers add one field to their offers and answers, `discoPython: {version, nativeSecure}`
(`disco.protocol.peer_messages.PeerCapabilities`); simple-peer and wrtc ignore unknown fields
of a signal (wrtc's RTCSessionDescription keeps only `type` and `sdp`). That is how two Python
peers recognise each other without ever sending a JS peer a message it does not know (JS peers
throw on any unknown data-channel message).

Loopback only (tests): aioice gathers host candidates on every interface *except* loopback, and
has no option to choose them. With `loopback_only` the ICE agent of each connection gets its
candidate gathering replaced, on that one aioice `Connection` object, by gathering on 127.0.0.1
and ::1 only (no global monkeypatching; it relies on aioice 0.9-0.13 internals and fails loudly
when they change). Remote candidates and SDP candidate lines whose address is not loopback are
dropped, as tests/interop/node/loopback_wrtc.cjs does on the JS side. A socket bound to a
loopback address can only talk over `lo`, so the selected pair is loopback by construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from disco.client.decentralized.waiting import ClosedWhileWaiting, next_item
from disco.client.options import PYTHON_CHUNK_SIZE
from disco.errors import DiscoError
from disco.protocol.chunking import (
    DISCO_CHUNK_SIZE,
    MESSAGE_ID_LIMIT,
    ChunkError,
    Reassembler,
    chunk_message,
    max_message_size,
)
from disco.protocol.errors import ProtocolError
from disco.protocol.peer_messages import (
    CAPABILITY_KEY,
    PeerCapabilities,
    PeerMessage,
    decode_peer_message,
)
from disco.protocol.types import MessageType

log = logging.getLogger("disco.client.decentralized")

LOOPBACK_ADDRESSES: Final = ("127.0.0.1", "::1")
DEFAULT_ICE_SERVERS: Final = ("stun:stun.l.google.com:19302", "stun:global.stun.twilio.com:3478")
"""simple-peer's defaults, so a Python peer finds the same paths as a JS one."""
SEND_HIGH_WATER: Final = 1024 * 1024
SEND_LOW_WATER: Final = 256 * 1024
DECODE_IN_THREAD_BYTES: Final = 64 * 1024
MAX_QUEUED_PER_TYPE: Final = 4
"""A round needs one message of each type per peer; one more may come early for the next."""
CLOSE_TIMEOUT_S: Final = 5.0
MAX_SCTP_MESSAGE: Final = 256 * 1024
"""aiortc's `a=max-message-size`: no chunk can be bigger."""
FLUSH_TIMEOUT_S: Final = 5.0
FLUSH_POLL_S: Final = 0.01

SendSignal = Callable[[int, dict[str, Any]], Awaitable[None]]


class PeerGone(DiscoError, ConnectionError):
    """The connection to a peer closed or failed; the reason says why."""


# ---------------------------------------------------------------------------------------------
# Pure helpers: ICE servers, SDP and candidate filtering


def ice_servers_from(
    servers: Sequence[str | Mapping[str, Any] | RTCIceServer] | None,
) -> list[RTCIceServer]:
    """aiortc ICE servers from URLs, `{urls, username?, credential?}` maps or RTCIceServer.

    None means simple-peer's default public STUN servers; `[]` means none (loopback tests).
    """
    if servers is None:
        servers = DEFAULT_ICE_SERVERS
    out: list[RTCIceServer] = []
    for server in servers:
        if isinstance(server, RTCIceServer):
            out.append(server)
        elif isinstance(server, str):
            out.append(RTCIceServer(urls=server))
        elif isinstance(server, Mapping):
            out.append(
                RTCIceServer(
                    urls=server["urls"],
                    username=server.get("username"),
                    credential=server.get("credential"),
                )
            )
        else:
            raise TypeError(f"ICE server must be a URL, a map or RTCIceServer, got {server!r}")
    return out


def is_loopback_address(address: str | None) -> bool:
    """127.0.0.1 or ::1 (brackets allowed)."""
    if not address:
        return False
    bare = address.strip("[]")
    try:
        return str(ipaddress.ip_address(bare)) in LOOPBACK_ADDRESSES
    except ValueError:
        return False


def candidate_address(line: str) -> str | None:
    """The connection address of an ICE candidate line (`[a=]candidate:f c proto prio ADDR ...`)."""
    fields = line.strip().removeprefix("a=").split()
    return fields[4] if len(fields) >= 6 else None


def filter_sdp_candidates(sdp: str) -> str:
    """`sdp` without the candidate lines whose address is not loopback."""
    lines = sdp.split("\r\n")
    kept = [
        line
        for line in lines
        if not line.startswith("a=candidate:") or is_loopback_address(candidate_address(line))
    ]
    return "\r\n".join(kept)


_MAX_MESSAGE_SIZE = re.compile(r"a=max-message-size:(\d+)")


def sdp_max_message_size(sdp: str) -> int | None:
    """The `a=max-message-size` of an SDP, None when absent (0 means "no limit" in RFC 8841)."""
    match = _MAX_MESSAGE_SIZE.search(sdp)
    return int(match.group(1)) if match else None


def parse_candidate_signal(signal: Mapping[str, Any]) -> tuple[str, int | None, str | None] | None:
    """(candidate line, sdpMLineIndex, sdpMid) of a simple-peer candidate signal, or None."""
    body = signal.get("candidate")
    if not isinstance(body, Mapping):
        return None
    line = body.get("candidate")
    if not isinstance(line, str):
        return None
    index = body.get("sdpMLineIndex")
    mid = body.get("sdpMid")
    return (
        line,
        index if type(index) is int else None,
        mid if isinstance(mid, str) else None,
    )


# ---------------------------------------------------------------------------------------------
# Gathering on loopback only


def restrict_gathering_to_loopback(pc: RTCPeerConnection) -> None:
    """Make the ICE agent of `pc`'s data transport gather host candidates on loopback only.

    Call after the SCTP transport exists (createDataChannel / setRemoteDescription) and before
    setLocalDescription (which gathers).
    """
    sctp = pc.sctp
    if sctp is None:
        raise RuntimeError("no SCTP transport yet: create the data channel or apply the offer")
    connection = sctp.transport.transport.iceGatherer._connection
    needed = ("_local_candidates", "_local_candidates_start", "_local_candidates_end")
    if not all(hasattr(connection, name) for name in needed) or not hasattr(
        connection, "get_component_candidates"
    ):
        raise RuntimeError("this aioice version cannot be restricted to loopback candidates")

    async def gather_loopback() -> None:
        if connection._local_candidates_start:
            return
        connection._local_candidates_start = True
        for component in sorted(getattr(connection, "_components", {1})):
            connection._local_candidates += await connection.get_component_candidates(
                component=component, addresses=list(LOOPBACK_ADDRESSES)
            )
        connection._local_candidates_end = True

    connection.gather_candidates = gather_loopback  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------------
# The link


@dataclass(frozen=True)
class LinkSettings:
    """How links are made: ICE servers, loopback restriction, what we advertise."""

    ice_servers: list[RTCIceServer]
    loopback_only: bool
    capabilities: PeerCapabilities
    python_chunk_size: int = PYTHON_CHUNK_SIZE

    def configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=list(self.ice_servers))


class PeerLink:
    """The data channel with one remote peer: signals in, chunked peer messages both ways.

    Received messages are reassembled, decoded (in a thread when big) and queued per type;
    `receive(kind)` takes the oldest one. A link that fails or breaks the protocol is closed
    and every waiter gets `PeerGone`.
    """

    def __init__(
        self,
        local_id: int,
        remote_id: int,
        send_signal: SendSignal,
        settings: LinkSettings,
        *,
        initiator: bool,
    ) -> None:
        self.local_id = local_id
        self.remote_id = remote_id
        self.initiator = initiator
        self.settings = settings
        self.capabilities: PeerCapabilities | None = None
        self.remote_max_message_size: int | None = None
        self.close_reason: str | None = None
        self._send_signal = send_signal
        self._pc = RTCPeerConnection(settings.configuration())
        self._channel: RTCDataChannel | None = None
        self._has_remote_description = False
        self._pending_candidates: list[tuple[str, int | None, str | None]] = []
        self._signals: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._opened = asyncio.Event()
        self._closed = asyncio.Event()
        self._low_water = asyncio.Event()
        self._low_water.set()
        # Buffer at most one message of the largest size a peer may send (255 SCTP messages
        # of aiortc's 256 KiB limit), and at most 4 incomplete messages (a round needs 2).
        self._reassembler = Reassembler(max_message_size(MAX_SCTP_MESSAGE), max_pending=4)
        self._raw: asyncio.Queue[bytes] = asyncio.Queue(maxsize=2 * MAX_QUEUED_PER_TYPE)
        self._inbox: dict[MessageType, asyncio.Queue[PeerMessage]] = {
            kind: asyncio.Queue(maxsize=MAX_QUEUED_PER_TYPE)
            for kind in (MessageType.WEIGHTS, MessageType.SHARES, MessageType.PARTIAL_SUMS)
        }
        self._next_message_id = 0
        self._send_lock = asyncio.Lock()
        self._closing: asyncio.Future[None] | None = None
        self._pc.on("connectionstatechange", self._on_connection_state)
        self._pc.on("datachannel", self._on_datachannel)
        self._tasks = [
            asyncio.create_task(self._process_signals(), name=f"peer-{remote_id}-signals"),
            asyncio.create_task(self._decode_messages(), name=f"peer-{remote_id}-decode"),
        ]

    # -- state -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._opened.is_set() and not self._closed.is_set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def negotiated(self) -> bool:
        """The remote's offer or answer was applied."""
        return self._has_remote_description

    @property
    def is_python(self) -> bool:
        """The remote announced itself as a Python peer."""
        return self.capabilities is not None

    def local_candidate_addresses(self) -> list[str]:
        """Addresses of the ICE candidates gathered for this connection (empty before)."""
        sctp = self._pc.sctp
        if sctp is None:
            return []
        return [c.ip for c in sctp.transport.transport.iceGatherer.getLocalCandidates()]

    def stats(self) -> dict[str, Any]:
        """For logs: who, state, role."""
        return {
            "peer": self.remote_id,
            "initiator": self.initiator,
            "open": self.is_open,
            "python": self.is_python,
            "closed": self.close_reason,
        }

    async def wait_open(self, timeout_s: float) -> bool:
        """True once the data channel is open; False on timeout or when the link closed."""
        if self.closed:
            return False
        opened = asyncio.ensure_future(self._opened.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait(
                {opened, closed}, timeout=max(timeout_s, 0.0), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            opened.cancel()
            closed.cancel()
        return self.is_open

    # -- signaling ---------------------------------------------------------------------------

    async def start(self) -> None:
        """As initiator: create the data channel and send the offer."""
        if not self.initiator:
            return
        try:
            label = secrets.token_hex(20)  # simple-peer names its channel the same way
            self._setup_channel(self._pc.createDataChannel(label, ordered=True))
            if self.settings.loopback_only:
                restrict_gathering_to_loopback(self._pc)
            await self._pc.setLocalDescription(await self._pc.createOffer())
            await self._send_description()
        except Exception as error:  # aiortc raises many kinds; all mean the link is unusable
            await self.close(f"cannot create the offer: {error}")

    def signal(self, signal: dict[str, Any]) -> None:
        """Hand over a signal relayed by the server (processed in order, in the background)."""
        if not self.closed:
            self._signals.put_nowait(signal)

    async def _process_signals(self) -> None:
        while True:
            signal = await self._signals.get()
            try:
                await self._apply_signal(signal)
            except Exception as error:
                await self.close(f"bad signal: {error}")
                return

    async def _apply_signal(self, signal: dict[str, Any]) -> None:
        kind = signal.get("type")
        sdp = signal.get("sdp")
        if kind in ("offer", "answer") and isinstance(sdp, str):
            await self._apply_description(kind, sdp, signal)
        elif kind == "candidate" or "candidate" in signal:
            parsed = parse_candidate_signal(signal)
            if parsed is None:
                log.debug("peer %d: ignoring malformed candidate signal", self.remote_id)
            elif self._has_remote_description:
                await self._add_candidate(*parsed)
            else:
                self._pending_candidates.append(parsed)
        elif kind in ("renegotiate", "transceiverRequest") or "renegotiate" in signal:
            log.debug("peer %d: ignoring %s signal (data channel only)", self.remote_id, kind)
        else:
            log.debug("peer %d: ignoring unknown signal type %r", self.remote_id, kind)

    async def _apply_description(self, kind: str, sdp: str, signal: Mapping[str, Any]) -> None:
        if kind == "offer" and self.initiator:
            log.warning("peer %d sent an offer although we initiate; ignored", self.remote_id)
            return
        if kind == "answer" and not self.initiator:
            log.warning("peer %d sent an answer to no offer; ignored", self.remote_id)
            return
        if self._has_remote_description:
            log.warning("peer %d sent a second %s; ignored", self.remote_id, kind)
            return
        if self.settings.loopback_only:
            sdp = filter_sdp_candidates(sdp)
        self.capabilities = PeerCapabilities.from_signal(signal)
        self.remote_max_message_size = sdp_max_message_size(sdp)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        self._has_remote_description = True
        if kind == "offer":
            if self.settings.loopback_only:
                restrict_gathering_to_loopback(self._pc)
            await self._pc.setLocalDescription(await self._pc.createAnswer())
            await self._send_description()
        pending, self._pending_candidates = self._pending_candidates, []
        for candidate in pending:
            await self._add_candidate(*candidate)

    async def _send_description(self) -> None:
        description = self._pc.localDescription
        sdp = description.sdp
        if self.settings.loopback_only:
            sdp = filter_sdp_candidates(sdp)
        signal = {
            "type": description.type,
            "sdp": sdp,
            CAPABILITY_KEY: self.settings.capabilities.to_wire(),
        }
        await self._send_signal(self.remote_id, signal)

    async def _add_candidate(self, line: str, index: int | None, mid: str | None) -> None:
        body = line.strip().removeprefix("a=").removeprefix("candidate:")
        if not body:
            return  # end-of-candidates marker
        if self.settings.loopback_only and not is_loopback_address(candidate_address(line)):
            log.debug("peer %d: dropping non-loopback candidate %s", self.remote_id, line)
            return
        try:
            candidate = candidate_from_sdp(body)
        except (AssertionError, ValueError, IndexError):
            log.debug("peer %d: ignoring unparsable candidate %r", self.remote_id, line)
            return
        if candidate.protocol.lower() != "udp":
            return  # aioice only speaks UDP
        candidate.sdpMid = mid
        candidate.sdpMLineIndex = index if index is not None or mid is not None else 0
        await self._pc.addIceCandidate(candidate)

    # -- data channel ------------------------------------------------------------------------

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self._channel is not None:
            log.warning("peer %d opened a second data channel; ignored", self.remote_id)
            return
        self._setup_channel(channel)
        if channel.readyState == "open":
            self._opened.set()

    def _setup_channel(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        channel.bufferedAmountLowThreshold = SEND_LOW_WATER
        channel.on("open", self._opened.set)
        channel.on("message", self._on_chunk)
        channel.on("bufferedamountlow", self._low_water.set)
        channel.on("close", lambda: self._close_soon("the data channel closed"))

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        if state in ("failed", "closed"):
            self._close_soon(f"connection {state}")

    def _on_chunk(self, chunk: bytes | str) -> None:
        if self.closed:
            return
        if isinstance(chunk, str):
            self._close_soon("received a text message; DISCO peers send binary chunks")
            return
        try:
            message = self._reassembler.feed(chunk)
        except ChunkError as error:
            self._close_soon(f"bad chunk: {error}")
            return
        if message is None:
            return
        try:
            self._raw.put_nowait(message)
        except asyncio.QueueFull:
            self._close_soon("sent more messages than a round needs")

    async def _decode_messages(self) -> None:
        while True:
            raw = await self._raw.get()
            try:
                if len(raw) >= DECODE_IN_THREAD_BYTES:
                    message = await asyncio.to_thread(decode_peer_message, raw)
                else:
                    message = decode_peer_message(raw)
            except ProtocolError as error:
                await self.close(f"bad message: {error.reason}")
                return
            try:
                self._inbox[message.type].put_nowait(message)
            except asyncio.QueueFull:
                await self.close(f"sent too many messages of type {int(message.type)}")
                return

    # -- messages ----------------------------------------------------------------------------

    @property
    def chunk_size(self) -> int:
        """16 KiB towards JS peers (as they send); bigger towards Python peers."""
        if not self.is_python:
            return DISCO_CHUNK_SIZE
        size = self.settings.python_chunk_size
        if self.remote_max_message_size:  # 0 / absent: no limit announced
            size = min(size, self.remote_max_message_size)
        return max(size, DISCO_CHUNK_SIZE)

    def check_sendable(self, size: int) -> None:
        """Raise ChunkError when a message of `size` bytes cannot be chunked for this peer."""
        limit = max_message_size(self.chunk_size)
        if size > limit:
            raise ChunkError(
                f"message of {size} bytes exceeds the {limit} bytes that 255 chunks can carry "
                f"to peer {self.remote_id}"
            )

    async def send(self, message: bytes) -> None:
        """Send one peer message, chunked; waits while the channel's buffer is full."""
        async with self._send_lock:
            channel = self._channel
            if channel is None or not self.is_open:
                raise PeerGone(f"peer {self.remote_id}: {self.close_reason or 'not connected'}")
            message_id = self._next_message_id
            self._next_message_id = (message_id + 1) % MESSAGE_ID_LIMIT
            for chunk in chunk_message(message_id, message, self.chunk_size):
                if channel.bufferedAmount > SEND_HIGH_WATER:
                    self._low_water.clear()
                    await self._wait_for(self._low_water)
                if not self.is_open:
                    raise PeerGone(f"peer {self.remote_id}: {self.close_reason}")
                channel.send(chunk)

    async def _wait_for(self, event: asyncio.Event) -> None:
        waiter = asyncio.ensure_future(event.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            closed.cancel()

    async def receive(self, kind: MessageType, timeout_s: float) -> PeerMessage:
        """The next message of type `kind`; TimeoutError, or PeerGone when the link closed."""
        try:
            return await next_item(self._inbox[kind], self._closed, timeout_s)
        except ClosedWhileWaiting:
            raise PeerGone(f"peer {self.remote_id}: {self.close_reason}") from None
        except TimeoutError:
            raise TimeoutError(
                f"no message of type {int(kind)} from peer {self.remote_id} in time"
            ) from None

    def drain(self) -> int:
        """Drop every queued message (stale ones, before a round starts); how many were dropped."""
        dropped = 0
        for queue in self._inbox.values():
            while not queue.empty():
                queue.get_nowait()
                dropped += 1
        return dropped

    # -- closing -----------------------------------------------------------------------------

    def _unsent(self) -> bool:
        """Whether sent data may still be unacknowledged: in the channel or the SCTP queues."""
        channel = self._channel
        if channel is not None and channel.bufferedAmount > 0:
            return True
        sctp = self._pc.sctp
        queues = (getattr(sctp, "_outbound_queue", None), getattr(sctp, "_sent_queue", None))
        return any(queue for queue in queues)

    async def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until everything sent was acknowledged by the peer (or the timeout); True if so.

        aiortc aborts the SCTP association on close, dropping unsent data: a message the last
        round sent would be lost to a peer still waiting for it.
        """
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.is_open and self._unsent():
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(FLUSH_POLL_S)
        return True

    def _close_soon(self, reason: str) -> None:
        if not self.closed and self._closing is None:
            self._closing = asyncio.ensure_future(self.close(reason))
            self._closing.add_done_callback(_log_failure)

    async def close(self, reason: str = "closed") -> None:
        """Close the peer connection (idempotent); waiters get PeerGone with `reason`."""
        if self._closed.is_set():
            return
        self.close_reason = reason
        self._closed.set()
        if reason != "closed":
            log.info("peer %d: link closed: %s", self.remote_id, reason)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._pc.close(), CLOSE_TIMEOUT_S)
        await asyncio.gather(*(t for t in self._tasks if t is not current), return_exceptions=True)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("closing a peer link failed: %s", task.exception())

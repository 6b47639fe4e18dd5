"""The decentralized participant's WebSocket to the server: peer id, signal relay, round start.

The server never sees weights: it hands out a numeric peer id (`{type: 0}` -> `{type: 1, id}`),
relays WebRTC signals (`{type: 2, peer, signal}` both ways, `peer` rewritten to the sender on
the way in) and, once enough peers said `{type: 3}` (ready), tells each of them who else takes
part in the round (`{type: 4, peers}`).

A signal the server cannot deliver comes back as `{type: 1, id: <own id>, peer, error}` (a PeerID
frame, so that the JS client ignores it); `on_signal_error(peer, reason)` is called then. Frames
are read with `disco.protocol.messages.parse_signaling_reply` (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from disco.client.connection import ServerConnection
from disco.client.decentralized.waiting import ClosedWhileWaiting, next_item
from disco.client.options import Route
from disco.errors import DiscoError
from disco.protocol.errors import ProtocolError
from disco.protocol.framing import pack, unpack_message
from disco.protocol.messages import (
    PeerIdAssigned,
    RoundPeers,
    SignalForPeer,
    SignalUndeliverable,
    client_connected,
    parse_signaling_reply,
    peer_is_ready,
    signal_for_peer,
)
from disco.protocol.types import MessageType

log = logging.getLogger("disco.client.decentralized")

OnSignal = Callable[[int, dict[str, Any]], None]
OnSignalError = Callable[[int, str], None]

MAX_FRAME_BYTES = 4 * 1024 * 1024
"""Signaling frames are small (SDP, candidates, id lists); refuse anything absurd."""


class SignalingError(DiscoError, ConnectionError):
    """The signaling connection could not be opened, or closed; the message says why."""


class SignalingClient:
    """One connection to `/decentralized/{task}/{clientId}` (or `/deai/{task}`)."""

    def __init__(
        self,
        server: str | ServerConnection,
        task_id: str,
        on_signal: OnSignal,
        on_signal_error: OnSignalError | None = None,
        *,
        route: Route = "decentralized",
        client_id: str | None = None,
        open_timeout_s: float = 30.0,
    ) -> None:
        self.server = ServerConnection.of(server)
        self.task_id = task_id
        self.client_id = client_id or str(uuid.uuid4())
        self.route = route
        self.open_timeout_s = open_timeout_s
        self.peer_id: int | None = None
        self.close_reason: str | None = None
        self._on_signal = on_signal
        self._on_signal_error = on_signal_error
        self._ws: ClientConnection | None = None
        self._rounds: asyncio.Queue[list[int]] = asyncio.Queue()
        self._round_peers: set[int] = set()
        self._reader: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    @property
    def path(self) -> str:
        # peerUpdates: the server tells us when a peer of our round leaves (JS clients never ask).
        if self.route == "deai":
            return f"/deai/{self.task_id}?peerUpdates=1"
        return f"/decentralized/{self.task_id}/{self.client_id}?peerUpdates=1"

    @property
    def url(self) -> str:
        return self.server.websocket_url(self.path)

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._closed.is_set()

    async def connect(self) -> int:
        """Open the socket, say clientConnected and return the peer id the server gives us."""
        url = self.url
        try:
            self._ws = await self.server.open_websocket(
                self.path,
                compression=None,
                max_size=MAX_FRAME_BYTES,
                open_timeout=self.open_timeout_s,
            )
        except (OSError, websockets.InvalidHandshake, TimeoutError) as error:
            raise SignalingError(f"cannot connect to {url}: {error}") from None
        try:
            await self._ws.send(pack(client_connected()))
            self.peer_id = await asyncio.wait_for(self._await_id(), self.open_timeout_s)
        except websockets.ConnectionClosed as closed:
            await self.close()
            raise SignalingError(f"{url}: {_closed_reason(closed)}") from None
        except TimeoutError:
            await self.close()
            raise SignalingError(f"{url}: no peer id from the server in time") from None
        except SignalingError:
            await self.close()
            raise
        self._reader = asyncio.create_task(self._read(), name="decentralized-signaling")
        return self.peer_id

    async def _await_id(self) -> int:
        assert self._ws is not None
        while True:
            message = await self._recv()
            try:
                reply = parse_signaling_reply(message)
            except ProtocolError as error:
                if message.get("type") == MessageType.PEER_ID:
                    raise SignalingError(
                        f"the server sent a bad peer id: {message.get('id')!r}"
                    ) from None
                log.warning("ignoring a malformed frame from the server: %s", error.reason)
                continue
            if isinstance(reply, PeerIdAssigned):
                return reply.id

    async def _recv(self) -> dict[str, Any]:
        assert self._ws is not None
        try:
            frame = await self._ws.recv()
        except websockets.ConnectionClosed as closed:
            raise SignalingError(_closed_reason(closed)) from None
        if isinstance(frame, str):
            raise SignalingError("the server sent a text frame")
        try:
            return unpack_message(frame)
        except ProtocolError as error:
            raise SignalingError(f"undecodable frame from the server: {error.reason}") from None

    async def _read(self) -> None:
        """Dispatch server frames until the socket closes."""
        try:
            while True:
                self._dispatch(await self._recv())
        except SignalingError as error:
            self.close_reason = str(error)
            if self.peer_id is not None:
                log.warning("peer %s: signaling connection lost: %s", self.peer_id, error)
        finally:
            self._closed.set()

    def _dispatch(self, message: dict[str, Any]) -> None:
        try:
            reply = parse_signaling_reply(message)
        except ProtocolError as error:
            log.warning("ignoring a malformed frame from the server: %s", error.reason)
            return
        if isinstance(reply, SignalForPeer):
            self._on_signal(reply.peer, reply.signal)
        elif isinstance(reply, RoundPeers):
            self._on_round_peers(reply)
        elif isinstance(reply, SignalUndeliverable):
            log.info("the server could not deliver a signal to peer %s: %s", reply.peer,
                     reply.reason)
            if reply.peer is not None and self._on_signal_error is not None:
                self._on_signal_error(reply.peer, reply.reason)
        else:
            log.debug("ignoring server message of type %s", message["type"])

    def _on_round_peers(self, reply: RoundPeers) -> None:
        listed = set(reply.peers)
        if reply.update:  # a peer of the current round left
            for gone in sorted(self._round_peers - listed):
                if self._on_signal_error is not None:
                    self._on_signal_error(gone, "left the round")
        else:
            self._rounds.put_nowait(list(reply.peers))
        self._round_peers = listed

    async def send_signal(self, peer: int, signal: dict[str, Any]) -> None:
        """Ask the server to relay `signal` to `peer`."""
        await self._send(signal_for_peer(peer, signal))

    async def send_ready(self) -> None:
        """Tell the server this peer is ready for the next round."""
        await self._send(peer_is_ready())

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is None or self._closed.is_set():
            raise SignalingError(self.close_reason or "not connected")
        try:
            await self._ws.send(pack(message))
        except websockets.ConnectionClosed as closed:
            raise SignalingError(_closed_reason(closed)) from None

    def drain_rounds(self) -> int:
        """Forget round announcements nobody waited for (a round given up); how many."""
        dropped = 0
        while not self._rounds.empty():
            self._rounds.get_nowait()
            dropped += 1
        return dropped

    async def next_round(self, timeout_s: float) -> list[int]:
        """The peers of the next round; TimeoutError, or SignalingError when the socket closed."""
        try:
            return await next_item(self._rounds, self._closed, timeout_s)
        except ClosedWhileWaiting:
            raise SignalingError(self.close_reason or "connection closed") from None
        except TimeoutError:
            raise TimeoutError("the server announced no round in time") from None

    async def close(self) -> None:
        """Close the socket and stop reading (idempotent)."""
        ws, self._ws = self._ws, None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5.0)
        self._closed.set()


def _closed_reason(closed: websockets.ConnectionClosed) -> str:
    if closed.rcvd is None:
        return "the server closed the connection without a reason"
    return f"the server closed the connection ({closed.rcvd.code}: {closed.rcvd.reason})"

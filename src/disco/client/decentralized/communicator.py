"""The decentralized participant: each round, say ready, meet the round's peers, aggregate.

Each `exchange` (after local training):

1. drops what is left of earlier rounds (announcements and peer messages nobody waited for:
   before we say we are ready, nothing can belong to the new round);
2. sends PeerIsReady and waits for PeersForRound;
3. connects to the round's peers, reusing the data channels of earlier rounds. Of each pair,
   the peer with the larger id sends the offer, as the JS client decides;
4. runs the clear-text or the secure round (`clear_text`, `secure`);
5. returns `Exchange(mean or None, participants, round + 1)`.

Everything is bounded by `round_timeout_s` from the moment `exchange` is called. A clear-text
round averages whatever arrived in time; a secure round needs every share and partial sum, so a
vanished peer makes it fail (`Exchange(weights=None)`: the caller keeps its own weights). A link
that failed or misbehaved is closed, so that no late message of a failed round can be taken for
one of a later round.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from disco.client.connection import ServerConnection
from disco.client.decentralized.clear_text import clear_text_round
from disco.client.decentralized.rounds import RoundOutcome, remaining
from disco.client.decentralized.secure import secure_round
from disco.client.decentralized.signaling import SignalingClient, SignalingError
from disco.client.decentralized.webrtc import (
    LinkSettings,
    PeerLink,
    ice_servers_from,
)
from disco.client.options import DecentralizedOptions, OptionsError
from disco.client.session import Exchange
from disco.errors import DiscoError
from disco.protocol.peer_messages import PeerCapabilities
from disco.tasks.schema import Task
from disco.weights import Weights

log = logging.getLogger("disco.client.decentralized")

MAX_LINKS = 1024
"""Most peer connections kept at once (signals from more peers are ignored)."""


class DecentralizedError(DiscoError, ConnectionError):
    """The participant cannot join the task's decentralized rounds (signaling failed)."""


class DecentralizedCommunicator:
    """`Communicator` of decentralized learning: WebRTC peers met through the server.

    `secure` chooses secure aggregation, `round_timeout_s` bounds each `exchange`, `client_id`
    is the id of the `/decentralized` route (None: a fresh one); how peers are reached and how
    secure rounds are run is in `options` (`TrainOptions.decentralized` when `Client.train`
    builds the communicator). The task's settings say how many peers a round waits for
    (`min_ready_peers`) and bound the secret shares (`share_bound`, unless the options do).
    """

    def __init__(
        self,
        server: str | ServerConnection,
        task: Task,
        secure: bool = False,
        round_timeout_s: float = 120.0,
        client_id: str | None = None,
        options: DecentralizedOptions | None = None,
    ) -> None:
        options = options or DecentralizedOptions()
        if not (round_timeout_s > 0 and math.isfinite(round_timeout_s)):
            raise OptionsError(f"round_timeout_s must be a positive number, got {round_timeout_s}")
        self.server = ServerConnection.of(server)
        self.task_id = task.task_id
        self.secure = secure
        self.round_timeout_s = round_timeout_s
        self.client_id = client_id
        self.options = options
        info = task.training_information
        self.max_share_value = (
            info.share_bound if options.max_share_value is None else float(options.max_share_value)
        )
        self.minimum_ready_peers = info.min_ready_peers
        native_bits = None if options.secure_mode == "disco" else options.scale_bits
        ice_servers = options.ice_servers
        if ice_servers is None and options.loopback_only:
            ice_servers = []  # a STUN server only finds non-loopback addresses
        self.link_settings = LinkSettings(
            ice_servers=ice_servers_from(ice_servers),
            loopback_only=options.loopback_only,
            capabilities=PeerCapabilities(native_secure_scale_bits=native_bits),
            python_chunk_size=options.python_chunk_size,
        )
        self.peer_id: int | None = None
        self.last_outcome: RoundOutcome | None = None
        self.last_timings: dict[str, float] = {}
        self._signaling: SignalingClient | None = None
        self._links: dict[int, PeerLink] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._round_lock = asyncio.Lock()

    # -- life cycle --------------------------------------------------------------------------

    async def __aenter__(self) -> DecentralizedCommunicator:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> int:
        """Connect to the server's signaling and get a peer id (DecentralizedError if not)."""
        signaling = SignalingClient(
            self.server,
            self.task_id,
            self._on_signal,
            self._on_signal_error,
            route=self.options.route,
            client_id=self.client_id,
            open_timeout_s=self.options.connect_timeout_s,
        )
        try:
            self.peer_id = await signaling.connect()
        except SignalingError as error:
            raise DecentralizedError(str(error)) from None
        self._signaling = signaling
        log.info("task %s: connected as peer %d", self.task_id, self.peer_id)
        return self.peer_id

    async def close(self) -> None:
        """Close every peer connection, then the signaling socket (idempotent).

        Data still on its way to a peer is delivered first (bounded wait): a peer may still be
        waiting for our last round's message.
        """
        links, self._links = list(self._links.values()), {}
        await asyncio.gather(*(link.flush() for link in links), return_exceptions=True)
        await asyncio.gather(*(link.close() for link in links), return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)  # links closing on their own
        signaling, self._signaling = self._signaling, None
        if signaling is not None:
            await signaling.close()

    @property
    def links(self) -> Mapping[int, PeerLink]:
        """Current peer connections by peer id (read-only view, for status and tests)."""
        return dict(self._links)

    # -- signals -----------------------------------------------------------------------------

    def _new_link(self, remote: int) -> PeerLink:
        assert self.peer_id is not None and self._signaling is not None
        link = PeerLink(
            self.peer_id,
            remote,
            self._signaling.send_signal,
            self.link_settings,
            initiator=remote < self.peer_id,  # the 2.1.1 rule: the larger id offers
        )
        self._links[remote] = link
        return link

    def _on_signal(self, peer: int, signal: dict[str, Any]) -> None:
        """A signal relayed by the server: to the peer's link; an offer may start a new one.

        An offer always precedes the candidates of its connection (simple-peer sends it before
        trickling), so only offers open links: a stray candidate must not leave behind a
        waiting link that the next round would take for a usable one.
        """
        if self.peer_id is None or self._signaling is None or peer == self.peer_id:
            return
        link = self._links.get(peer)
        is_offer = signal.get("type") == "offer" and isinstance(signal.get("sdp"), str)
        if link is not None and is_offer and (link.closed or link.negotiated):
            # The peer starts over (it dropped the connection we knew): replace ours.
            self._links.pop(peer)
            self._background(link.close("replaced by a new offer"))
            link = None
        if link is None or link.closed:
            if not is_offer:
                log.debug(
                    "ignoring a %r signal from peer %d: no connection", signal.get("type"), peer
                )
                return
            if len(self._links) >= MAX_LINKS:
                log.warning("ignoring an offer from peer %d: too many peer connections", peer)
                return
            link = PeerLink(
                self.peer_id,
                peer,
                self._signaling.send_signal,
                self.link_settings,
                initiator=False,
            )
            self._links[peer] = link
        link.signal(signal)

    def _on_signal_error(self, peer: int, reason: str) -> None:
        """The server could not deliver our signal: that peer is gone."""
        link = self._links.get(peer)
        if link is not None:
            self._background(link.close(f"unreachable: {reason}"))

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine on its own, keeping a reference until it ends."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- rounds ------------------------------------------------------------------------------

    async def exchange(
        self, weights: Weights, round_: int, num_samples: int, epsilon: float | None = None
    ) -> Exchange:
        """Share `weights` with the peers of the next round; the aggregate or None."""
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.round_timeout_s
        async with self._round_lock:  # one round at a time
            self.last_timings = {}
            outcome = await self._round(weights, deadline)
        self.last_outcome = outcome
        self.last_timings["total"] = time.monotonic() - started
        if outcome.failure is not None:
            log.warning("round %d (%s): %s", round_, outcome.mode, outcome.failure)
        return Exchange(outcome.weights, outcome.participants, round_ + 1)

    async def _round(self, weights: Weights, deadline: float) -> RoundOutcome:
        mode = "secure" if self.secure else "clear-text"
        try:
            signaling = await self._ensure_signaling()
        except DecentralizedError as error:
            return RoundOutcome(None, 1, mode, f"no signaling: {error}")
        self._forget_stale(signaling)
        t0 = time.monotonic()
        try:
            await signaling.send_ready()
            peers = await signaling.next_round(remaining(deadline))
        except (SignalingError, TimeoutError) as error:
            return RoundOutcome(None, 1, mode, f"no round started: {error}")
        self.last_timings["wait_peers"] = time.monotonic() - t0
        if self.peer_id in peers:
            return RoundOutcome(None, 1, mode, "the server listed our own id among the peers")
        if len(peers) + 1 < self.minimum_ready_peers:
            log.info("round with %d peers, fewer than minimumReadyPeers", len(peers) + 1)
        links = await self._links_for(peers)
        t0 = time.monotonic()
        try:
            if self.secure:
                missing = await self._wait_open(links, deadline)
                self.last_timings["connect"] = time.monotonic() - t0
                if missing:
                    outcome = RoundOutcome(
                        None, len(peers) + 1, mode, f"could not connect to peers {missing}"
                    )
                else:
                    outcome = await secure_round(
                        weights,
                        links,
                        deadline,
                        preference=self.options.secure_mode,
                        max_share_value=self.max_share_value,
                        scale_bits=self.options.scale_bits,
                    )
            else:  # each peer is served as soon as it is connected
                outcome = await clear_text_round(weights, links, deadline)
        finally:
            self.last_timings["exchange"] = time.monotonic() - t0
        if outcome.weights is None or outcome.left_out:
            await self._close_faulty(links, outcome)
        return outcome

    async def _ensure_signaling(self) -> SignalingClient:
        """The signaling connection, reconnected (new peer id, new links) if it was lost."""
        if self._signaling is not None and self._signaling.connected:
            return self._signaling
        if self._signaling is not None:
            log.info("task %s: reconnecting to the signaling server", self.task_id)
            await self.close()
        await self.connect()
        assert self._signaling is not None
        return self._signaling

    def _forget_stale(self, signaling: SignalingClient) -> None:
        """Before saying ready: whatever is queued belongs to rounds we are no longer in."""
        dropped = signaling.drain_rounds()
        for link in self._links.values():
            dropped += link.drain()
        for remote, link in list(self._links.items()):
            if link.closed:
                del self._links[remote]
        if dropped:
            log.info("dropped %d stale messages of earlier rounds", dropped)

    async def _links_for(self, peers: Sequence[int]) -> list[PeerLink]:
        """The link to each peer: reused when still usable, else new (offering if we initiate)."""
        links: list[PeerLink] = []
        starting = []
        for remote in peers:
            link = self._links.get(remote)
            if link is None or link.closed:
                link = self._new_link(remote)
                starting.append(link.start())
            links.append(link)
        await asyncio.gather(*starting)
        return links

    async def _wait_open(self, links: Sequence[PeerLink], deadline: float) -> list[int]:
        """Wait until every link is open (or the deadline); the ids of those that are not."""
        opened = await asyncio.gather(*(link.wait_open(remaining(deadline)) for link in links))
        return [link.remote_id for link, ok in zip(links, opened, strict=True) if not ok]

    async def _close_faulty(self, links: Sequence[PeerLink], outcome: RoundOutcome) -> None:
        """Close the links that may still carry late messages of this round.

        A failed round closes them all; a clear-text round that left peers out closes theirs.
        Without that, a late message could be taken for one of the next round.
        """
        failure = outcome.failure or "round failed"
        if outcome.weights is None:
            stale = [link for link in links if not link.closed]
        else:
            stale = [link for link in links if link.remote_id in outcome.left_out]
        await asyncio.gather(*(link.close(f"round failed: {failure}") for link in stale))

"""The signaling hub: peer ids, task membership, signal relaying and round announcements.

The server never sees weights in decentralized learning: peers exchange them over WebRTC. The hub
only hands out ids, forwards the WebRTC signals peers address to each other, and tells the peers
of a task who takes part in each round (readiness rule in `membership`).

Everything here is synchronous and runs on the event loop: a call never awaits, so the hub's
state cannot change half-way through a message. Frames leave through each peer's `Outbox`.

Frames are built by `disco.protocol.messages` and described in docs/protocol.md.

Error reply to a signal that cannot be delivered (unknown id, departed peer, peer of another
task, oneself): ``{type: 1, id: <sender's own id>, peer: <target>, error: "<reason>"}``.
It is a PeerID message repeating the sender's id on purpose: the 2.1.1 JS client validates every
server frame and throws (killing its process) on anything else, e.g. a SignalForPeer without a
`signal`, while it ignores a PeerID once connected. Clients that know better read `error`.

Peer-list updates (opt-in, `?peerUpdates=1` on the connection URL): when a peer of the latest
round leaves after PeersForRound was sent, every remaining peer of that round that opted in gets
``{type: 4, peers: [the round's peers still connected, without the recipient], update: true}``.
Frames of a connection stay in order, so an update always refers to the latest PeersForRound
(without `update`) that peer received; it never starts a round. Not sent to other peers: the
2.1.1 JS client takes any type-4 frame that arrives while it waits for its next round's list as
that list (an update racing its next PeerIsReady would give it a stale round, or fail its
"enough peers" check), and has no use for updates otherwise.
A peer that leaves before PeersForRound is sent is simply never announced (see `membership`).

Live pages: `on_change(task_id, change)` (the server's event bus) is told when peers come, go
or get ready and when a round starts ("round"). The hub remembers, in memory only, the last
`KEPT_ROUNDS` completed rounds of each task (a round is complete when the next one starts:
its peers, and the time between the two starts); `live_status` reports them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from disco.protocol.errors import CloseCode, ProtocolError
from disco.protocol.framing import pack
from disco.protocol.messages import (
    ClientConnected,
    DecentralizedMessage,
    PeerIsReady,
    SignalForPeer,
    peer_id,
    peer_list_update,
    peers_for_round,
    signal_error,
    signal_from,
)
from disco.server.decentralized.membership import PeerID, Readiness, TaskRoom
from disco.server.decentralized.outbox import Outbox
from disco.server.metrics import ServerMetrics
from disco.server.settings import Settings
from disco.tasks.store import CompletedRound, TaskNotFoundError, TaskStore

log = logging.getLogger("disco.server.decentralized")

MiB = 1024 * 1024
KEPT_ROUNDS = 20


@dataclass
class RoundLog:
    """Rounds of one task since the server started: how many, the latest one, the last ones."""

    started: int = 0
    latest_at: float | None = None  # Unix time the latest round started
    latest_peers: int = 0
    completed: deque[CompletedRound] = field(default_factory=lambda: deque(maxlen=KEPT_ROUNDS))

    def start(self, peers: int, now: float) -> None:
        """A round starts: the previous one (if any) is complete."""
        if self.latest_at is not None:
            seconds = max(0.0, now - self.latest_at)
            self.completed.append(
                CompletedRound(self.started, self.latest_at, self.latest_peers, seconds)
            )
        self.started += 1
        self.latest_at, self.latest_peers = now, peers


@dataclass(eq=False)
class PeerSession:
    """One WebSocket connection to a task; it gets a peer id when it says clientConnected."""

    task_id: str
    minimum_ready: int
    outbox: Outbox
    peer_id: PeerID | None = None
    detached: bool = field(default=False)
    peer_updates: bool = False  # wants peer-list updates when a round's peer leaves


class SignalingHub:
    """All decentralized peers of the server, grouped by task.

    `store` is read to check that a task exists and to find its `minimumReadyPeers`.
    """

    def __init__(
        self,
        store: TaskStore,
        settings: Settings,
        *,
        max_queued_frames: int = 8192,
        max_queued_bytes: int = 16 * MiB,
        max_frame_bytes: int = 1 * MiB,
        first_peer_id: int = 1,
        on_change: Callable[[str, str], None] | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self._store = store
        self._on_change = on_change
        self._rounds: dict[str, RoundLog] = {}
        self._settings = settings
        self.metrics = metrics or ServerMetrics()
        self._max_queued_frames = max_queued_frames
        self._max_queued_bytes = max_queued_bytes
        self.max_frame_bytes = min(max_frame_bytes, settings.max_frame_bytes)
        self._ids = itertools.count(first_peer_id)
        self._sessions: set[PeerSession] = set()
        self._peers: dict[PeerID, PeerSession] = {}
        self._rooms: dict[str, TaskRoom] = {}
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self._closing = False

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to load: peers and rounds live in memory only."""
        self._closing = False

    async def close(self) -> None:
        """Tell every connected peer the server is going away and forget all rounds."""
        self._closing = True
        for handle in self._deadlines.values():
            handle.cancel()
        self._deadlines.clear()
        sessions = list(self._sessions)
        for session in sessions:  # close every outbox first: no round may start while leaving
            session.outbox.close(CloseCode.GOING_AWAY, "server shutting down")
        for session in sessions:
            self.detach(session)

    # -- sessions ---------------------------------------------------------------------------

    def task_minimum(self, task_id: str) -> int | None:
        """`minimumReadyPeers` of a known task, None when the store has no such task."""
        try:
            stored = self._store.get(task_id)
        except TaskNotFoundError:
            return None
        return stored.task.training_information.min_ready_peers

    def attach(
        self, task_id: str, minimum_ready: int, *, peer_updates: bool = False
    ) -> PeerSession:
        """Register a new connection to `task_id` (not a member until clientConnected).

        `peer_updates`: the client asked for peer-list updates (module docstring).
        """
        if self._closing:
            raise ProtocolError("server shutting down", CloseCode.GOING_AWAY)
        session = PeerSession(
            task_id,
            minimum_ready,
            Outbox(self._max_queued_frames, self._max_queued_bytes),
            peer_updates=peer_updates,
        )
        self._sessions.add(session)
        return session

    def detach(self, session: PeerSession) -> None:
        """The connection is gone: leave the task and every ready set now; idempotent."""
        if session.detached:
            return
        session.detached = True
        self._sessions.discard(session)
        if session.peer_id is None:
            return
        self._peers.pop(session.peer_id, None)
        room = self._rooms.get(session.task_id)
        if room is None:
            return
        in_round = session.peer_id in room.round_peers
        state = room.leave(session.peer_id)
        self._changed(session.task_id, "connections")
        if room.empty:
            del self._rooms[session.task_id]
            self._cancel_deadline(session.task_id)
            return
        if in_round:  # before any new round starts: updates refer to the round they follow
            self._send_round_update(room)
        self._advance(room, state)

    # -- messages ---------------------------------------------------------------------------

    def handle(self, session: PeerSession, message: DecentralizedMessage) -> None:
        """Act on one client message; ProtocolError when it breaks the protocol's order."""
        if session.detached:
            return
        if isinstance(message, ClientConnected):
            self._identify(session)
            return
        if session.peer_id is None:
            raise ProtocolError(
                "send clientConnected (type 0) before any other message",
                CloseCode.POLICY_VIOLATION,
            )
        if isinstance(message, SignalForPeer):
            self._relay(session, session.peer_id, message.peer, message.signal)
        elif isinstance(message, PeerIsReady):
            self._ready(session, session.peer_id)

    def _identify(self, session: PeerSession) -> None:
        """Give the session its id (the same one if it asks again) and make it a task member."""
        if session.peer_id is None:
            session.peer_id = next(self._ids)
            self._peers[session.peer_id] = session
            room = self._rooms.get(session.task_id)
            if room is None:
                room = TaskRoom(session.task_id, session.minimum_ready)
                self._rooms[session.task_id] = room
            self._changed(session.task_id, "connections")
            self._advance(room, room.join(session.peer_id))
        self._send(session, peer_id(session.peer_id))

    def _relay(self, session: PeerSession, sender: PeerID, target: PeerID, signal: Any) -> None:
        """Forward a signal to a peer of the same task, or explain to the sender why not."""
        recipient = self._peers.get(target)
        # Signalling oneself is a client bug (warning); a peer that is gone is a normal race
        # of peers leaving mid-handshake (info). Either way, logged once per refused signal.
        level = logging.INFO
        if target == sender:
            reason = "cannot signal yourself"
            level = logging.WARNING
        elif recipient is None or recipient.task_id != session.task_id:
            reason = f"peer {target} is not connected to task {session.task_id}"
        else:
            self._send(recipient, signal_from(sender, signal))
            return
        log.log(level, "task %s: signal of peer %s not delivered: %s", session.task_id, sender,
                reason)
        self._send(session, signal_error(sender, target, reason))

    def _ready(self, session: PeerSession, peer: PeerID) -> None:
        """Record readiness and start the round when the readiness rule says so."""
        room = self._rooms[session.task_id]
        self._changed(session.task_id, "status")
        self._advance(room, room.mark_ready(peer))

    # -- rounds -----------------------------------------------------------------------------

    def _advance(self, room: TaskRoom, state: Readiness) -> None:
        """Apply the readiness rule's verdict: start now, run the deadline, or wait."""
        if state is Readiness.START:
            self._start_round(room)
        elif state is Readiness.DEADLINE:
            if room.task_id not in self._deadlines:
                self._deadlines[room.task_id] = asyncio.get_running_loop().call_later(
                    self._settings.readiness_deadline_s, self._on_deadline, room.task_id
                )
        else:
            self._cancel_deadline(room.task_id)

    def _on_deadline(self, task_id: str) -> None:
        """The readiness deadline ran out: start with whoever is ready, if still enough."""
        self._deadlines.pop(task_id, None)
        room = self._rooms.get(task_id)
        if room is not None and room.state() is not Readiness.WAIT:
            self._start_round(room)

    def _cancel_deadline(self, task_id: str) -> None:
        handle = self._deadlines.pop(task_id, None)
        if handle is not None:
            handle.cancel()

    def _start_round(self, room: TaskRoom) -> None:
        """Send each ready peer the others' ids; the ready set starts over."""
        self._cancel_deadline(room.task_id)
        assignment = room.start_round()
        log.debug("task %s: round with peers %s", room.task_id, sorted(assignment))
        self._rounds.setdefault(room.task_id, RoundLog()).start(len(assignment), time.time())
        self._changed(room.task_id, "round")
        for peer, others in assignment.items():
            session = self._peers.get(peer)
            if session is not None:
                self._send(session, peers_for_round(others))

    def _send_round_update(self, room: TaskRoom) -> None:
        """Tell the opted-in peers of the latest round who of it is still connected."""
        for peer in list(room.round_peers):
            session = self._peers.get(peer)
            if session is None or not session.peer_updates or peer not in room.round_peers:
                continue  # (a failed send below may detach peers: the list is read afresh)
            self._send(session, peer_list_update([p for p in room.round_peers if p != peer]))

    def _send(self, session: PeerSession, message: Mapping[str, Any]) -> None:
        """Queue a frame for one peer; a peer whose queue overflows is cut off and leaves."""
        if not session.outbox.put(pack(message)):
            self.detach(session)

    def _changed(self, task_id: str, change: str) -> None:
        if self._on_change is not None:
            self._on_change(task_id, change)

    # -- introspection ----------------------------------------------------------------------

    def live_status(self, task_id: str) -> dict[str, Any] | None:
        """What the dashboard shows of a task's peers and rounds; None when it never had any."""
        room = self._rooms.get(task_id)
        rounds = self._rounds.get(task_id)
        if room is None and rounds is None:
            return None
        return {
            "connected": 0 if room is None else len(room.members),
            "ready": 0 if room is None else len(room.ready),
            "minimumReady": self.task_minimum(task_id),
            "roundsStarted": 0 if rounds is None else rounds.started,
            "latestRoundPeers": 0 if rounds is None else rounds.latest_peers,
            "completedRounds": [] if rounds is None else [r.to_json() for r in rounds.completed],
        }

    def task_status(self, task_id: str) -> dict[str, int] | None:
        """Status keys for `GET /tasks/{taskID}/status`; None while no peer is connected."""
        room = self._rooms.get(task_id)
        if room is None:
            return None
        return {"connectedPeers": len(room.members), "readyPeers": len(room.ready)}

    def snapshot(self) -> dict[str, dict[str, list[PeerID]]]:
        """Members and ready peers per task (for status pages and tests)."""
        return {
            task_id: {"peers": list(room.members), "ready": list(room.ready)}
            for task_id, room in self._rooms.items()
        }

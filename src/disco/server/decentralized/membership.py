"""Who belongs to a decentralized task and who is ready for its next round (pure state, no I/O).

Readiness rule, per task, one round at a time (the hub owns the clock):

- fewer than `minimum` peers ready: wait (no deadline runs);
- at least `minimum` ready and *every* connected peer of the task ready: start the round now
  (DISCO's behaviour: with exactly `minimum` peers connected, the round starts as soon as they
  are all ready);
- at least `minimum` ready but some connected peers not ready yet: wait for them up to the
  readiness deadline, counted from the moment the minimum was first reached, then start the
  round with the peers ready at that moment.

A peer that leaves is dropped from the members and from the ready set at once, so it is never
announced to anyone; its departure may complete the round ("everyone left is ready") or bring
the ready count back under the minimum (the deadline is then called off).
Starting a round announces every ready peer to every other one and empties the ready set.
The room remembers the peers of the latest round (`round_peers`) while they stay connected, so
that the hub can tell the others when one of them leaves mid-round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

PeerID = int


class Readiness(Enum):
    """What the hub must do about a task's next round."""

    WAIT = "wait"  # fewer than the minimum are ready: nothing to do, no deadline
    DEADLINE = "deadline"  # the minimum is ready, others may still come: run the deadline
    START = "start"  # every connected peer is ready (and at least the minimum): start now


def readiness(ready: int, connected: int, minimum: int) -> Readiness:
    """The readiness rule above, on counts only."""
    if ready < max(minimum, 1):
        return Readiness.WAIT
    if ready >= connected:
        return Readiness.START
    return Readiness.DEADLINE


def round_assignment(ready: list[PeerID]) -> dict[PeerID, list[PeerID]]:
    """For each ready peer, the ids of the other ready peers it must connect to (ascending)."""
    ordered = sorted(ready)
    return {peer: [other for other in ordered if other != peer] for peer in ordered}


@dataclass
class TaskRoom:
    """The members of one task and its current ready set (both in arrival order)."""

    task_id: str
    minimum_ready: int
    members: dict[PeerID, None] = field(default_factory=dict)
    ready: dict[PeerID, None] = field(default_factory=dict)
    round_peers: dict[PeerID, None] = field(default_factory=dict)  # latest round, still here

    @property
    def empty(self) -> bool:
        """No member left: the hub may forget the room."""
        return not self.members

    def state(self) -> Readiness:
        """Where the next round stands."""
        return readiness(len(self.ready), len(self.members), self.minimum_ready)

    def join(self, peer: PeerID) -> Readiness:
        """Add a member (not ready yet); with more members, a complete ready set is not complete."""
        self.members[peer] = None
        return self.state()

    def leave(self, peer: PeerID) -> Readiness:
        """Remove a member from the task and from the ready set; idempotent."""
        self.members.pop(peer, None)
        self.ready.pop(peer, None)
        self.round_peers.pop(peer, None)
        return self.state()

    def mark_ready(self, peer: PeerID) -> Readiness:
        """Record that a member is ready for the next round; repeating it changes nothing."""
        if peer not in self.members:
            raise KeyError(peer)
        self.ready[peer] = None
        return self.state()

    def start_round(self) -> Mapping[PeerID, list[PeerID]]:
        """Announce the ready peers to each other and open a new round of readiness."""
        assignment = round_assignment(list(self.ready))
        self.round_peers = dict.fromkeys(assignment)
        self.ready.clear()
        return assignment

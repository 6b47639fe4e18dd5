"""The readiness rule and task membership, without sockets or clocks."""

from __future__ import annotations

import pytest

from disco.server.decentralized.membership import (
    Readiness,
    TaskRoom,
    readiness,
    round_assignment,
)


@pytest.mark.parametrize(
    ("ready", "connected", "minimum", "expected"),
    [
        (0, 0, 3, Readiness.WAIT),
        (2, 5, 3, Readiness.WAIT),
        (2, 2, 3, Readiness.WAIT),  # everyone ready but under the minimum
        (3, 3, 3, Readiness.START),  # DISCO: exactly the minimum connected and ready
        (3, 5, 3, Readiness.DEADLINE),
        (4, 5, 3, Readiness.DEADLINE),
        (5, 5, 3, Readiness.START),
        (1, 1, 1, Readiness.START),
        (0, 1, 0, Readiness.WAIT),  # a minimum under 1 still needs one ready peer
    ],
)
def test_readiness_rule(ready: int, connected: int, minimum: int, expected: Readiness) -> None:
    assert readiness(ready, connected, minimum) is expected


def test_round_assignment_excludes_self_and_sorts() -> None:
    assert round_assignment([9, 2, 5]) == {2: [5, 9], 5: [2, 9], 9: [2, 5]}
    assert round_assignment([4]) == {4: []}
    assert round_assignment([]) == {}


def test_room_round_clears_ready_but_keeps_members() -> None:
    room = TaskRoom("t", minimum_ready=2)
    assert room.join(1) is Readiness.WAIT
    assert room.join(2) is Readiness.WAIT
    assert room.mark_ready(1) is Readiness.WAIT
    assert room.mark_ready(1) is Readiness.WAIT  # repeating changes nothing
    assert room.mark_ready(2) is Readiness.START
    assert room.start_round() == {1: [2], 2: [1]}
    assert list(room.ready) == []
    assert list(room.members) == [1, 2]


def test_leaving_drops_from_ready_and_may_complete_round() -> None:
    room = TaskRoom("t", minimum_ready=2)
    for peer in (1, 2, 3):
        room.join(peer)
    room.mark_ready(1)
    assert room.mark_ready(2) is Readiness.DEADLINE  # 3 is connected but not ready
    assert room.leave(3) is Readiness.START  # everyone left is ready
    assert room.leave(2) is Readiness.WAIT  # back under the minimum
    assert list(room.ready) == [1]
    assert room.leave(2) is Readiness.WAIT  # idempotent
    room.leave(1)
    assert room.empty


def test_joining_makes_a_complete_ready_set_incomplete() -> None:
    room = TaskRoom("t", minimum_ready=1)
    room.join(1)
    assert room.mark_ready(1) is Readiness.START
    assert room.join(2) is Readiness.DEADLINE


def test_only_members_can_be_ready() -> None:
    room = TaskRoom("t", minimum_ready=1)
    with pytest.raises(KeyError):
        room.mark_ready(7)

"""The signaling hub without sockets: ids, relaying, rounds, deadlines, overflow, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from disco.protocol.errors import CloseCode, ProtocolError
from disco.protocol.framing import unpack_message
from disco.protocol.messages import ClientConnected, PeerIsReady, SignalForPeer, signal_error
from disco.server.decentralized.hub import PeerSession, SignalingHub
from disco.server.settings import Settings
from disco.tasks.store import TaskStore

DEADLINE_S = 0.3


@pytest.fixture
def store(decentralized_store: TaskStore) -> TaskStore:
    """Tasks plain (server default minimum 3), pair and other (2), solo (1)."""
    return decentralized_store


def make_hub(store: TaskStore, tmp_path: Path, **kwargs: Any) -> SignalingHub:
    settings = Settings(data_dir=tmp_path, readiness_deadline_s=DEADLINE_S)
    return SignalingHub(store, settings, **kwargs)


@pytest.fixture
async def hub(store: TaskStore, tmp_path: Path) -> AsyncIterator[SignalingHub]:
    hub = make_hub(store, tmp_path)
    await hub.start()
    yield hub
    await hub.close()


async def join(hub: SignalingHub, task_id: str) -> tuple[PeerSession, int]:
    """Attach a session to a task and say clientConnected; return it and its id."""
    minimum = hub.task_minimum(task_id)
    assert minimum is not None
    session = hub.attach(task_id, minimum)
    hub.handle(session, ClientConnected())
    assert session.peer_id is not None
    assert await drain(session) == [{"type": 1, "id": session.peer_id}]
    return session, session.peer_id


async def drain(session: PeerSession) -> list[dict[str, Any]]:
    """Every frame queued for the session, decoded (the outbox is empty afterwards)."""
    frames = []
    while session.outbox.queued_frames:
        frame = await session.outbox.get()  # returns at once: a frame is queued
        assert frame is not None
        frames.append(unpack_message(frame))
    return frames


def test_task_minimum_from_task_or_settings(store: TaskStore, tmp_path: Path) -> None:
    hub = make_hub(store, tmp_path)
    assert hub.task_minimum("plain") == 3
    assert hub.task_minimum("pair") == 2
    assert hub.task_minimum("nope") is None


async def test_ids_are_numbers_never_reused(hub: SignalingHub) -> None:
    a, a_id = await join(hub, "pair")
    _, b_id = await join(hub, "other")
    hub.detach(a)
    _, c_id = await join(hub, "pair")
    assert len({a_id, b_id, c_id}) == 3
    assert all(type(i) is int for i in (a_id, b_id, c_id))
    assert c_id > max(a_id, b_id)
    hub.handle(a, ClientConnected())  # a detached session is ignored
    assert await drain(a) == []


async def test_hello_twice_repeats_the_same_id(hub: SignalingHub) -> None:
    a, a_id = await join(hub, "pair")
    hub.handle(a, ClientConnected())
    assert await drain(a) == [{"type": 1, "id": a_id}]
    assert hub.snapshot()["pair"]["peers"] == [a_id]


async def test_task_status_counts_connected_and_ready(hub: SignalingHub) -> None:
    assert hub.task_status("pair") is None
    a, _ = await join(hub, "pair")
    await join(hub, "pair")
    hub.handle(a, PeerIsReady())
    assert hub.task_status("pair") == {"connectedPeers": 2, "readyPeers": 1}
    hub.attach("pair", 2)  # not a member before clientConnected
    assert hub.task_status("pair") == {"connectedPeers": 2, "readyPeers": 1}


async def test_messages_before_hello_are_refused(hub: SignalingHub) -> None:
    session = hub.attach("pair", 2)
    with pytest.raises(ProtocolError) as caught:
        hub.handle(session, PeerIsReady())
    assert caught.value.close_code == CloseCode.POLICY_VIOLATION


async def test_relay_rewrites_peer_and_keeps_signal(hub: SignalingHub) -> None:
    a, a_id = await join(hub, "pair")
    b, b_id = await join(hub, "pair")
    signal = {"type": "offer", "sdp": "v=0\r\n", "extra": [1, 2.5, None, {"k": b"\x00"}]}
    hub.handle(a, SignalForPeer(b_id, signal))
    assert await drain(b) == [{"type": 2, "peer": a_id, "signal": signal}]
    assert await drain(a) == []


async def test_undeliverable_signals_get_an_error_reply(hub: SignalingHub) -> None:
    a, a_id = await join(hub, "pair")
    c, c_id = await join(hub, "other")
    gone, gone_id = await join(hub, "pair")
    hub.detach(gone)
    for target in (c_id, gone_id, 10**12, a_id):
        hub.handle(a, SignalForPeer(target, {"type": "answer", "sdp": "x"}))
        [reply] = await drain(a)
        assert reply["type"] == 1 and reply["id"] == a_id and reply["peer"] == target
        assert isinstance(reply["error"], str) and reply["error"]
    assert await drain(c) == [] and await drain(gone) == []
    assert signal_error(1, 2, "r") == {"type": 1, "id": 1, "peer": 2, "error": "r"}


async def test_round_starts_when_minimum_and_everyone_ready(hub: SignalingHub) -> None:
    sessions = [await join(hub, "plain") for _ in range(3)]
    (a, a_id), (b, b_id), (c, c_id) = sessions
    hub.handle(a, PeerIsReady())
    hub.handle(b, PeerIsReady())
    assert [await drain(s) for s, _ in sessions] == [[], [], []]
    hub.handle(c, PeerIsReady())
    assert await drain(a) == [{"type": 4, "peers": [b_id, c_id]}]
    assert await drain(b) == [{"type": 4, "peers": [a_id, c_id]}]
    assert await drain(c) == [{"type": 4, "peers": [a_id, b_id]}]
    assert hub.snapshot()["plain"]["ready"] == []  # a new round of readiness


async def test_deadline_starts_with_those_ready(hub: SignalingHub) -> None:
    (a, a_id), (b, b_id), (c, _) = [await join(hub, "pair") for _ in range(3)]
    hub.handle(a, PeerIsReady())
    hub.handle(b, PeerIsReady())
    await asyncio.sleep(DEADLINE_S / 3)
    assert await drain(a) == []
    await asyncio.sleep(DEADLINE_S)
    assert await drain(a) == [{"type": 4, "peers": [b_id]}]
    assert await drain(b) == [{"type": 4, "peers": [a_id]}]
    assert await drain(c) == []


async def test_leaving_peer_is_dropped_and_may_complete_the_round(hub: SignalingHub) -> None:
    (a, a_id), (b, _), (c, c_id) = [await join(hub, "pair") for _ in range(3)]
    hub.handle(a, PeerIsReady())
    hub.handle(b, PeerIsReady())
    hub.detach(b)  # back under the minimum: the deadline is called off
    await asyncio.sleep(DEADLINE_S * 1.5)
    assert await drain(a) == []
    assert hub.snapshot()["pair"]["ready"] == [a_id]
    hub.handle(c, PeerIsReady())
    assert await drain(a) == [{"type": 4, "peers": [c_id]}]
    assert await drain(c) == [{"type": 4, "peers": [a_id]}]


async def test_departure_of_the_last_unready_peer_starts_the_round(hub: SignalingHub) -> None:
    (a, a_id), (b, b_id), (c, _) = [await join(hub, "pair") for _ in range(3)]
    hub.handle(a, PeerIsReady())
    hub.handle(b, PeerIsReady())
    hub.detach(c)
    assert await drain(a) == [{"type": 4, "peers": [b_id]}]
    assert await drain(b) == [{"type": 4, "peers": [a_id]}]


async def test_overflowing_peer_is_cut_off_and_leaves(store: TaskStore, tmp_path: Path) -> None:
    hub = make_hub(store, tmp_path, max_queued_frames=3)
    await hub.start()
    try:
        a, _ = await join(hub, "pair")
        slow, slow_id = await join(hub, "pair")
        for _ in range(4):  # the 4th frame does not fit
            hub.handle(a, SignalForPeer(slow_id, {"type": "candidate"}))
        request = slow.outbox.close_request
        assert request is not None and request.code == CloseCode.POLICY_VIOLATION
        assert slow_id not in hub.snapshot()["pair"]["peers"]
        hub.handle(a, SignalForPeer(slow_id, {"type": "candidate"}))
        assert "error" in (await drain(a))[-1]
        assert a.outbox.close_request is None  # the sender is not affected
    finally:
        await hub.close()


async def test_close_tells_everyone_and_refuses_new_sessions(
    store: TaskStore, tmp_path: Path
) -> None:
    hub = make_hub(store, tmp_path)
    await hub.start()
    a, _ = await join(hub, "pair")
    b, _ = await join(hub, "pair")
    hub.handle(a, PeerIsReady())
    await hub.close()
    for session in (a, b):
        request = session.outbox.close_request
        assert request is not None and request.code == CloseCode.GOING_AWAY
    assert hub.snapshot() == {}
    with pytest.raises(ProtocolError):
        hub.attach("pair", 2)

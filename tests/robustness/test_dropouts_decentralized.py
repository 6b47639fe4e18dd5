"""Decentralized peers that vanish around a round (`disco.server.decentralized.hub`).

- A peer that vanishes after PeerIsReady but before PeersForRound is sent is never announced:
  the round starts without it (at once when everyone left is ready).
- A peer that vanishes after PeersForRound was sent: the remaining peers of that round that
  opted in (`?peerUpdates=1`) get `{type: 4, peers: [...], update: true}` with the round's peers
  still connected; peers that did not opt in (the 2.1.1 JS client) get nothing extra.
- Updates only concern the latest round, and never start one.

Each test has a task of its own on one module-wide server; the last one drives the hub without
sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from disco.protocol.framing import unpack_message
from disco.protocol.messages import ClientConnected, PeerIsReady
from disco.server.decentralized.hub import PeerSession, SignalingHub
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from disco.tasks.schema import parse_task
from disco.tasks.store import TaskStore
from support.robust_ws import (
    SignalPeer,
    abort,
    open_ws,
    push_task,
    reset,
    small_model,
    task_json,
    ws_base,
)

READINESS_DEADLINE_S = 0.5
QUIET_S = 0.3


async def close_cleanly(peer: SignalPeer) -> None:
    await peer.ws.close()


async def reset_async(peer: SignalPeer) -> None:
    reset(peer.ws)


async def abort_async(peer: SignalPeer) -> None:
    abort(peer.ws)


DEATHS: dict[str, Callable[[SignalPeer], Awaitable[None]]] = {
    "close": close_cleanly, "reset": reset_async, "abort": abort_async,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("dropouts-decentralized"),
        port=0,
        load_default_tasks=False,
        log_level="warning",
        readiness_deadline_s=READINESS_DEADLINE_S,
    )
    with serve_in_thread(settings) as url:
        yield url


Open = Callable[..., Awaitable[SignalPeer]]


@pytest.fixture
async def task_peers(server: str) -> AsyncIterator[Callable[[int], Awaitable[Open]]]:
    """`open_peer = await task_peers(minimum)`: a fresh task; `await open_peer(updates=...)`."""
    opened: list[SignalPeer] = []

    async def new_task(minimum: int) -> Open:
        task_id = await push_task(server, scheme="decentralized", minimumReadyPeers=minimum)

        async def open_peer(**options: Any) -> SignalPeer:
            peer = await SignalPeer.open(server, task_id, **options)
            opened.append(peer)
            return peer

        return open_peer

    try:
        yield new_task
    finally:
        await asyncio.gather(*(p.close() for p in opened), return_exceptions=True)


async def departed(sender: SignalPeer, target: int) -> None:
    """Signal `target` until the server answers that it is gone (bounded)."""
    for _ in range(50):
        await sender.signal(target)
        try:
            reply = await sender.receive(within_s=0.1)
        except TimeoutError:
            continue  # delivered: not gone yet (the test's peers never answer signals)
        assert reply["type"] == 1 and reply["peer"] == target and "error" in reply, reply
        return
    raise AssertionError(f"peer {target} still reachable after 5 s")


# --------------------------------------------------------------------------- before the round


@pytest.mark.parametrize("death", DEATHS)
async def test_ready_peer_vanishing_before_the_round_is_not_announced(
    task_peers: Callable[[int], Awaitable[Open]], death: str
) -> None:
    open_peer = await task_peers(3)
    a, b, v, d = [await open_peer(updates=True) for _ in range(4)]
    for peer in (a, b, v):
        await peer.ready()  # the minimum: the readiness deadline runs
    await DEATHS[death](v)
    await departed(a, v.id)  # under the minimum again: the deadline is called off
    await a.quiet(READINESS_DEADLINE_S + 0.1)
    await d.ready()  # a, b, d: everyone left is ready
    assert await a.round_peers() == [b.id, d.id]
    assert await b.round_peers() == [a.id, d.id]
    assert await d.round_peers() == [a.id, b.id]


@pytest.mark.parametrize("death", DEATHS)
async def test_departure_of_the_last_unready_peer_starts_the_round_at_once(
    task_peers: Callable[[int], Awaitable[Open]], death: str
) -> None:
    open_peer = await task_peers(2)
    a, b, v = [await open_peer() for _ in range(3)]
    await a.ready()
    await b.ready()  # the minimum, v not ready: waits up to the readiness deadline for v
    loop = asyncio.get_running_loop()
    start = loop.time()
    await DEATHS[death](v)
    assert await a.round_peers() == [b.id]
    assert await b.round_peers() == [a.id]
    assert loop.time() - start < READINESS_DEADLINE_S


# --------------------------------------------------------------------------- during the round


@pytest.mark.parametrize("death", DEATHS)
async def test_peer_vanishing_mid_round_updates_the_opted_in_peers(
    task_peers: Callable[[int], Awaitable[Open]], death: str
) -> None:
    open_peer = await task_peers(4)
    a = await open_peer(updates=True)
    b = await open_peer(updates=True, route="decentralized")
    js = await open_peer()  # like the 2.1.1 JS client: no opt-in, must get nothing extra
    v = await open_peer(updates=True)
    everyone = [a, b, js, v]
    for peer in everyone:
        await peer.ready()
    for peer in everyone:
        assert await peer.round_peers() == sorted(p.id for p in everyone if p is not peer)

    await DEATHS[death](v)
    assert await a.update() == sorted([b.id, js.id])
    assert await b.update() == sorted([a.id, js.id])
    await js.quiet(QUIET_S)
    await departed(a, v.id)  # and it is out of the task: signals to it are refused

    await js.ws.close()  # a second departure: a new update with what is left
    assert await a.update() == [b.id]
    assert await b.update() == [a.id]

    c, d = await open_peer(updates=True), await open_peer()  # updates start no round: the
    for peer in (a, b, c, d):  # next one (4 ready peers again) is announced as usual
        await peer.ready()
    assert await a.round_peers() == sorted([b.id, c.id, d.id])
    assert await d.round_peers() == sorted([a.id, b.id, c.id])


async def test_updates_only_concern_the_latest_round(
    task_peers: Callable[[int], Awaitable[Open]],
) -> None:
    open_peer = await task_peers(2)
    a, b, v = [await open_peer(updates=True) for _ in range(3)]
    for peer in (a, b, v):
        await peer.ready()
    for peer in (a, b, v):
        await peer.round_peers()  # round 1: a, b, v
    await a.ready()
    await b.ready()  # round 2 without v, after the readiness deadline
    assert await a.round_peers(READINESS_DEADLINE_S + 3) == [b.id]
    assert await b.round_peers() == [a.id]
    reset(v.ws)  # v took part in round 1 only: nobody of round 2 needs to know
    await departed(a, v.id)
    await b.quiet(QUIET_S)


async def test_updates_go_out_before_the_round_a_departure_starts(
    task_peers: Callable[[int], Awaitable[Open]],
) -> None:
    open_peer = await task_peers(2)
    a, b, v = [await open_peer(updates=True) for _ in range(3)]
    for peer in (a, b, v):
        await peer.ready()
    for peer in (a, b, v):
        await peer.round_peers()
    await a.ready()
    await b.ready()  # v, not ready, is awaited until the deadline...
    reset(v.ws)  # ... or until it leaves: the round-1 update first, then round 2
    assert await a.update() == [b.id]
    assert await a.round_peers() == [b.id]
    assert await b.update() == [a.id]
    assert await b.round_peers() == [a.id]


@pytest.mark.parametrize("value", ["yes", "2", ""])
async def test_bad_opt_in_value_is_refused_with_a_reason(server: str, value: str) -> None:
    task_id = await push_task(server, scheme="decentralized", minimumReadyPeers=2)
    peer = SignalPeer(await open_ws(f"{ws_base(server)}/deai/{task_id}?peerUpdates={value}"))
    try:
        with pytest.raises(ConnectionClosed) as closed:
            await peer.hello()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        assert "peerUpdates must be 1, true, 0 or false" in closed.value.rcvd.reason
    finally:
        await peer.close()


# --------------------------------------------------------------------------- the hub, no sockets


async def drain(session: PeerSession) -> list[dict[str, Any]]:
    frames = []
    while session.outbox.queued_frames:
        frame = await session.outbox.get()  # returns at once: a frame is queued
        assert frame is not None
        frames.append(unpack_message(frame))
    return frames


async def test_a_peer_cut_off_while_being_updated_is_reported_to_the_others(
    tmp_path: Path,
) -> None:
    """A peer whose queue overflows on an update leaves too: the others' last update (the
    frame that counts) already lists it as gone."""
    store = TaskStore(tmp_path / "store")
    store.load(with_defaults=False)
    store.add(parse_task(task_json("p2p", scheme="decentralized", minimumReadyPeers=4)),
              small_model())
    hub = SignalingHub(store, Settings(data_dir=tmp_path / "store"), max_queued_frames=3)
    await hub.start()
    try:
        sessions = [hub.attach("p2p", 4, peer_updates=True) for _ in range(4)]
        for session in sessions:
            hub.handle(session, ClientConnected())
            hub.handle(session, PeerIsReady())
        a, b, full, gone = sessions  # queues now: PeerID, PeersForRound (2 of 3 frames)
        for session in (a, b):
            assert [m["type"] for m in await drain(session)] == [1, 4]
        hub.detach(gone)  # the update is the 3rd frame queued for `full`: it just fits
        assert full.outbox.queued_frames == 3
        assert not full.detached
        hub.detach(b)  # the next update overflows `full`: it is cut off and leaves as well
        assert full.detached and full.outbox.close_request is not None
        assert await drain(a) == [  # in order: gone left, b left, full was cut off
            {"type": 4, "peers": [b.peer_id, full.peer_id], "update": True},
            {"type": 4, "peers": [full.peer_id], "update": True},
            {"type": 4, "peers": [], "update": True},
        ]
        assert hub.snapshot()["p2p"]["peers"] == [a.peer_id]
    finally:
        await hub.close()

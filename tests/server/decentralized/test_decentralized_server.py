"""Decentralized signaling over a real loopback server, spoken frame by frame.

Each test gets a fresh server (start-up takes a few ms: no default tasks) serving the tasks of
conftest.TASK_MINIMUMS: plain (server default minimum, 3 here), pair and other (2), solo (1).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import msgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from disco.protocol.framing import pack, unpack_message
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from support.node import NODE_DIR, node_missing_reason

ANSWER_TIMEOUT_S = 3.0
DEADLINE_S = 0.5
OFFER = {"type": "offer", "sdp": "v=0\r\na=max-message-size:262144\r\n"}


class Peer:
    """One raw connection to the signaling channel."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.id = -1

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(pack(message))

    async def receive(self, within_s: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.recv(), within_s)
        assert isinstance(frame, bytes), "the server must send binary frames"
        return unpack_message(frame)

    async def quiet(self, seconds: float) -> None:
        """Nothing arrives for `seconds` (recv is cancellation-safe in websockets' asyncio API)."""
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.ws.recv(), seconds)

    async def hello(self) -> int:
        await self.send({"type": 0})
        reply = await self.receive()
        assert reply.keys() == {"type", "id"} and reply["type"] == 1
        assert type(reply["id"]) is int
        self.id = reply["id"]
        return self.id

    async def signal(self, target: int, signal: dict[str, Any] | None = None) -> None:
        await self.send({"type": 2, "peer": target, "signal": signal or OFFER})

    async def ready(self) -> None:
        await self.send({"type": 3})

    async def closed(self) -> tuple[int, str]:
        """Wait for the server to close the connection; its close code and reason."""
        with pytest.raises(ConnectionClosed) as caught:
            for _ in range(100):  # frames queued before the close may still arrive
                await asyncio.wait_for(self.ws.recv(), ANSWER_TIMEOUT_S)
        assert caught.value.rcvd is not None, "the server sent no close frame"
        return caught.value.rcvd.code, caught.value.rcvd.reason

    async def round_peers(self) -> list[int]:
        reply = await self.receive()
        assert reply["type"] == 4, reply
        return list(reply["peers"])


ServerFactory = Callable[..., str]
Connect = Callable[..., Any]


@pytest.fixture
def start_server(tmp_path: Path, decentralized_template: Path) -> Iterator[ServerFactory]:
    """Start a server on a copy of the test tasks, with settings overrides; stopped at teardown."""
    with ExitStack() as stack:
        started: list[str] = []

        def start(**overrides: Any) -> str:
            data_dir = tmp_path / f"data-{len(started)}"
            shutil.copytree(decentralized_template, data_dir)
            options: dict[str, Any] = {
                "readiness_deadline_s": DEADLINE_S,
                **overrides,
            }
            settings = Settings(
                data_dir=data_dir, port=0, load_default_tasks=False, log_level="warning", **options
            )
            url: str = stack.enter_context(serve_in_thread(settings))
            started.append(url)
            return url.replace("http://", "ws://", 1)

        yield start


@pytest.fixture
def server(start_server: ServerFactory) -> str:
    """WebSocket base URL of a server with a short readiness deadline."""
    return start_server()


@pytest.fixture
async def peers(server: str) -> AsyncIterator[Connect]:
    """`await peers(task, route=...)` opens a Peer; every peer is closed at teardown."""
    async with AsyncExitStack() as stack:

        async def open_peer(
            task_id: str, route: str = "deai", base: str = server, hello: bool = True
        ) -> Peer:
            path = f"/deai/{task_id}" if route == "deai" else f"/decentralized/{task_id}/client-x"
            ws = await stack.enter_async_context(
                connect(base + path, compression=None, open_timeout=5, close_timeout=2)
            )
            peer = Peer(ws)
            if hello:
                await peer.hello()
            return peer

        yield open_peer


async def wait_departed(sender: Peer, target: int) -> dict[str, Any]:
    """Signal `target` until the server answers that it is gone (its close is asynchronous)."""
    for _ in range(50):
        await sender.signal(target)
        try:
            return await sender.receive(within_s=0.1)
        except TimeoutError:
            continue
    raise AssertionError(f"peer {target} still reachable after 5 s")


# --------------------------------------------------------------------------- ids and routes


async def test_ids_are_unique_numbers_never_reused(peers: Connect) -> None:
    first = [await peers(task, route) for task in ("pair", "other") for route in ("deai", "x")]
    ids = [p.id for p in first]
    assert len(set(ids)) == len(ids)
    await first[0].ws.close()
    again = await peers("pair")
    assert again.id not in ids and again.id > max(ids)
    assert await again.hello() == again.id  # asking twice repeats the id


async def test_both_spellings_share_a_task(peers: Connect) -> None:
    a = await peers("pair", "deai")
    b = await peers("pair", "decentralized")
    await a.signal(b.id)
    assert await b.receive() == {"type": 2, "peer": a.id, "signal": OFFER}


async def test_path_without_client_id_is_not_served(server: str) -> None:
    with pytest.raises(InvalidStatus):
        async with connect(server + "/decentralized/pair", compression=None, open_timeout=5):
            pass


async def test_unknown_task_is_closed_with_reason(peers: Connect) -> None:
    peer = await peers("no-such-task", hello=False)
    code, reason = await peer.closed()
    assert code == 1008 and "no-such-task" in reason


# --------------------------------------------------------------------------- relaying


async def test_signal_is_relayed_with_sender_id_both_ways(peers: Connect) -> None:
    a, b = await peers("pair"), await peers("pair")
    signal = {"type": "candidate", "candidate": {"candidate": "c", "sdpMLineIndex": 0}, "n": 1.5}
    await a.signal(b.id, signal)
    assert await b.receive() == {"type": 2, "peer": a.id, "signal": signal}
    await b.signal(a.id, {"type": "answer", "sdp": "s", "blob": b"\x00\xff"})
    assert await a.receive() == {
        "type": 2,
        "peer": b.id,
        "signal": {"type": "answer", "sdp": "s", "blob": b"\x00\xff"},
    }


async def test_signal_to_another_task_is_refused(peers: Connect) -> None:
    a, outsider = await peers("pair"), await peers("other")
    await a.signal(outsider.id)
    reply = await a.receive()
    assert reply["type"] == 1 and reply["id"] == a.id and reply["peer"] == outsider.id
    assert "not connected to task pair" in reply["error"]
    await outsider.quiet(0.2)


@pytest.mark.parametrize("target", ["unknown", "self"])
async def test_undeliverable_signal_gets_error_and_channel_stays(
    peers: Connect, target: str
) -> None:
    a, b = await peers("pair"), await peers("pair")
    target_id = 10**12 if target == "unknown" else a.id
    await a.signal(target_id)
    reply = await a.receive()
    assert reply == {"type": 1, "id": a.id, "peer": target_id, "error": reply["error"]}
    assert reply["error"]
    await a.signal(b.id)  # still usable
    assert (await b.receive())["peer"] == a.id


async def test_signal_to_departed_peer_gets_error(peers: Connect) -> None:
    a, b = await peers("pair"), await peers("pair")
    await b.ws.close()
    reply = await wait_departed(a, b.id)
    assert reply["type"] == 1 and reply["peer"] == b.id and "not connected" in reply["error"]


# --------------------------------------------------------------------------- rounds


async def test_round_with_three_peers_and_the_default_minimum(peers: Connect) -> None:
    a, b, c = [await peers("plain") for _ in range(3)]
    await a.ready()
    await b.ready()
    await a.quiet(0.2)
    await c.ready()
    assert await a.round_peers() == sorted([b.id, c.id])
    assert await b.round_peers() == sorted([a.id, c.id])
    assert await c.round_peers() == sorted([a.id, b.id])
    # A new round of readiness: two ready peers are not enough again.
    await a.ready()
    await b.ready()
    await a.quiet(0.2)


async def test_minimum_comes_from_the_task(peers: Connect) -> None:
    a, b = await peers("pair"), await peers("pair")
    await a.ready()
    await a.quiet(0.1)
    await b.ready()
    assert await a.round_peers() == [b.id]
    assert await b.round_peers() == [a.id]
    solo = await peers("solo")
    await solo.ready()
    assert await solo.round_peers() == []


async def test_deadline_starts_the_round_with_the_ready_peers(peers: Connect) -> None:
    a, b, late = [await peers("pair") for _ in range(3)]
    await a.ready()
    await b.ready()
    await a.quiet(DEADLINE_S / 2)  # the minimum is ready, the deadline waits for `late`
    assert await a.round_peers() == [b.id]
    assert await b.round_peers() == [a.id]
    await late.quiet(0.1)


async def test_everyone_ready_starts_before_the_deadline(start_server: ServerFactory) -> None:
    base = start_server(readiness_deadline_s=60.0)
    async with AsyncExitStack() as stack:
        group = []
        for _ in range(3):
            ws = await stack.enter_async_context(connect(base + "/deai/pair", compression=None))
            group.append(Peer(ws))
            await group[-1].hello()
        for peer in group:
            await peer.ready()
        for peer in group:
            others = sorted(p.id for p in group if p is not peer)
            assert await peer.round_peers() == others  # long before 60 s


async def test_ready_peer_that_leaves_is_dropped(start_server: ServerFactory) -> None:
    deadline_s = 1.0
    base = start_server(readiness_deadline_s=deadline_s)
    async with AsyncExitStack() as stack:
        a, b, c = [
            Peer(await stack.enter_async_context(connect(base + "/deai/pair", compression=None)))
            for _ in range(3)
        ]
        for peer in (a, b, c):
            await peer.hello()
        await a.ready()
        await b.ready()  # the minimum (2) is ready: the deadline runs
        await b.ws.close()
        await wait_departed(a, b.id)  # b left: under the minimum again, deadline called off
        await a.quiet(deadline_s + 0.2)
        await c.ready()  # a and c are everyone left: the round starts now, without b
        assert await a.round_peers() == [c.id]
        assert await c.round_peers() == [a.id]


async def test_peers_are_never_told_about_a_departed_peer(peers: Connect) -> None:
    a, b, c = [await peers("plain") for _ in range(3)]
    await a.ready()
    await b.ready()
    await b.ws.close()
    await wait_departed(a, b.id)
    d = await peers("plain")
    await c.ready()
    await d.ready()
    for peer, others in ((a, [c.id, d.id]), (c, [a.id, d.id]), (d, [a.id, c.id])):
        assert await peer.round_peers() == sorted(others)


# --------------------------------------------------------------------------- hostile input

HOSTILE: list[tuple[str, bytes | str, int]] = [
    ("text frame", "hello", 1003),
    ("not msgpack", b"\xc1", 1007),
    ("truncated", b"\x82\xa4type", 1007),
    ("not a map", msgpack.packb([1, 2]), 1007),
    ("no type", pack({"peer": 1}), 1007),
    ("federated type", pack({"type": 8, "round": 0, "weights": []}), 1007),
    ("server-only type", pack({"type": 4, "peers": []}), 1007),
    ("peer not a number", pack({"type": 2, "peer": "x", "signal": {}}), 1007),
    ("signal not a map", pack({"type": 2, "peer": 1, "signal": "sdp"}), 1007),
    ("too big", pack({"type": 2, "peer": 1, "signal": {"b": b"\x00" * (1 << 21)}}), 1009),
]


@pytest.mark.parametrize(("frame", "code"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
async def test_hostile_frames_close_only_their_connection(
    peers: Connect, frame: bytes | str, code: int
) -> None:
    a, b = await peers("pair"), await peers("pair")
    hostile = await peers("pair")
    await hostile.ws.send(frame)
    closed_code, reason = await hostile.closed()
    assert closed_code == code and reason
    await a.signal(b.id)  # the others are not affected
    assert (await b.receive())["peer"] == a.id


@pytest.mark.parametrize("message", [{"type": 3}, {"type": 2, "peer": 1, "signal": {}}])
async def test_messages_before_client_connected_are_refused(
    peers: Connect, message: dict[str, Any]
) -> None:
    peer = await peers("pair", hello=False)
    await peer.send(message)
    code, reason = await peer.closed()
    assert code == 1008 and "clientConnected" in reason


# --------------------------------------------------------------------------- the real JS client

PROBE = Path(__file__).with_name("js_signaling_probe.cjs")


@pytest.mark.interop
def test_js_client_survives_error_reply_and_gets_its_round(start_server: ServerFactory) -> None:
    """The 2.1.1 client's own validators accept every frame the server sends it."""
    reason = node_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    base = start_server()
    result = subprocess.run(
        ["node", str(PROBE), base, "solo", "999999"],
        cwd=NODE_DIR,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    reply = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert isinstance(reply["id"], int) and reply["peers"] == []

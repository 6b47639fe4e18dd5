"""The per-connection handler against a scripted WebSocket: closing paths no real socket shows."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from starlette.websockets import WebSocket

from disco.protocol.framing import pack, unpack_message
from disco.protocol.messages import ClientConnected, SignalForPeer
from disco.server.decentralized.handler import serve_peer
from disco.server.decentralized.hub import SignalingHub
from disco.server.settings import Settings
from disco.tasks.store import TaskStore

STEP_S = 2.0


class ScriptedSocket:
    """Enough of starlette's WebSocket for `serve_peer`; `stuck` makes every write hang."""

    def __init__(self, stuck: bool = False) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closes: list[tuple[int, str | None]] = []
        self.stuck = stuck
        self.write_started = asyncio.Event()

    async def accept(self) -> None:
        return None

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send_bytes(self, data: bytes) -> None:
        self.write_started.set()
        if self.stuck:
            await asyncio.Event().wait()  # a peer that never reads: the write never completes
        self.sent.append(unpack_message(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closes.append((code, reason))

    def push(self, frame: bytes | str) -> None:
        key = "bytes" if isinstance(frame, bytes) else "text"
        self.incoming.put_nowait({"type": "websocket.receive", key: frame})

    def leave(self) -> None:
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})


def serve(socket: ScriptedSocket, task_id: str, hub: SignalingHub | None) -> asyncio.Task[None]:
    return asyncio.create_task(serve_peer(cast(WebSocket, socket), task_id, hub))


def make_hub(store: TaskStore, tmp_path: Path, **kwargs: Any) -> SignalingHub:
    return SignalingHub(store, Settings(data_dir=tmp_path), **kwargs)


async def test_peer_that_stops_reading_is_cut_off(
    decentralized_store: TaskStore, tmp_path: Path
) -> None:
    hub = make_hub(decentralized_store, tmp_path, max_queued_frames=2)
    await hub.start()
    slow = ScriptedSocket(stuck=True)
    task = serve(slow, "pair", hub)
    slow.push(pack({"type": 0}))
    await asyncio.wait_for(slow.write_started.wait(), STEP_S)  # PeerID write hangs
    slow_id = hub.snapshot()["pair"]["peers"][0]
    sender = hub.attach("pair", 2)
    hub.handle(sender, ClientConnected())
    for _ in range(3):
        hub.handle(sender, SignalForPeer(slow_id, {"type": "candidate"}))
    await asyncio.wait_for(task, STEP_S)  # ends although its write never completed
    [(code, reason)] = slow.closes
    assert code == 1008 and reason is not None and "outgoing queue full" in reason
    assert hub.snapshot()["pair"]["peers"] == [sender.peer_id]
    await hub.close()


async def test_client_leaving_detaches_without_close_frame(
    decentralized_store: TaskStore, tmp_path: Path
) -> None:
    hub = make_hub(decentralized_store, tmp_path)
    socket = ScriptedSocket()
    task = serve(socket, "pair", hub)
    socket.push(pack({"type": 0}))
    socket.push(pack({"type": 3}))
    socket.leave()
    await asyncio.wait_for(task, STEP_S)
    assert socket.closes == []
    assert hub.snapshot() == {}


async def test_protocol_error_closes_with_its_code(
    decentralized_store: TaskStore, tmp_path: Path
) -> None:
    hub = make_hub(decentralized_store, tmp_path)
    socket = ScriptedSocket()
    task = serve(socket, "pair", hub)
    socket.push(pack({"type": 0}))
    socket.push(b"\xc1")
    await asyncio.wait_for(task, STEP_S)
    assert [code for code, _ in socket.closes] == [1007]
    assert hub.snapshot() == {}


async def test_hub_shutdown_closes_with_going_away(
    decentralized_store: TaskStore, tmp_path: Path
) -> None:
    hub = make_hub(decentralized_store, tmp_path)
    socket = ScriptedSocket()
    task = serve(socket, "pair", hub)
    socket.push(pack({"type": 0}))
    for _ in range(100):  # bounded: wait for the hello to be handled
        if socket.sent:
            break
        await asyncio.sleep(0.01)
    await hub.close()
    await asyncio.wait_for(task, STEP_S)
    assert socket.closes == [(1001, "server shutting down")]


async def test_no_hub_or_unknown_task_is_refused(
    decentralized_store: TaskStore, tmp_path: Path
) -> None:
    socket = ScriptedSocket()
    await asyncio.wait_for(serve(socket, "pair", None), STEP_S)
    assert [code for code, _ in socket.closes] == [1011]
    socket = ScriptedSocket()
    await asyncio.wait_for(serve(socket, "nope", make_hub(decentralized_store, tmp_path)), STEP_S)
    assert socket.closes == [(1008, "unknown task: nope")]

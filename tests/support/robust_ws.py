"""Raw WebSocket clients for the robustness tests: speak the protocol frame by frame, then die
in controlled ways (TCP reset, abort without a close frame, half a frame, frozen, silent).

Also `push_task`, which creates a small task of its own over HTTP, so tests sharing one server
never share a round.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import uuid
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from disco.protocol.framing import pack, unpack_message
from disco.protocol.weights import decode_weights, encode_native
from disco.tasks.artifacts import ModelArtifacts
from disco.tasks.defaults import titanic_task
from disco.tasks.disco_encoding import encode_disco_model
from disco.tasks.sequential import SequentialBuilder
from disco.weights import Weights

ANSWER_TIMEOUT_S = 5.0


def ws_base(http_base: str) -> str:
    """`http://host:port` -> `ws://host:port`."""
    return "ws://" + http_base.removeprefix("http://").rstrip("/")


async def open_ws(url: str, *, keepalive: bool = True) -> ClientConnection:
    """A client connection without compression or size limit; `keepalive=False`: it never pings
    on its own (a victim that must stay byte-silent)."""
    return await connect(
        url,
        compression=None,
        max_size=None,
        open_timeout=ANSWER_TIMEOUT_S,
        close_timeout=1,
        ping_interval=20 if keepalive else None,
    )


# --------------------------------------------------------------------------- ways to die


def reset(ws: ClientConnection) -> None:
    """Vanish with a TCP reset (SO_LINGER 0, then close): no close frame, no FIN."""
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()


def abort(ws: ClientConnection) -> None:
    """Vanish without a WebSocket close frame (the kernel closes the TCP connection)."""
    ws.transport.abort()


def freeze(ws: ClientConnection) -> None:
    """Keep the TCP connection open but stop reading: pings go unanswered, as from a frozen
    process or a peer behind a dead link."""
    ws.transport.pause_reading()


def write_partial_frame(ws: ClientConnection, message: bytes, fraction: float) -> int:
    """Write the first `fraction` of a masked binary frame carrying `message`; bytes written.

    Goes straight to the transport: the connection object never learns of it, so it must not
    be used to send anything afterwards (the server would read garbage).
    """
    data = Frame(Opcode.BINARY, message).serialize(mask=True)
    cut = max(1, min(len(data) - 1, int(len(data) * fraction)))
    ws.transport.write(data[:cut])
    return cut


# --------------------------------------------------------------------------- clients


class FedClient:
    """One federated connection, spoken frame by frame."""

    def __init__(self, ws: ClientConnection, client_id: str) -> None:
        self.ws = ws
        self.client_id = client_id

    @classmethod
    async def open(
        cls, base: str, task_id: str, client_id: str | None = None, *, route: str = "federated",
        hello: bool = True, keepalive: bool = True, query: str = "",
    ) -> FedClient:
        client_id = client_id or str(uuid.uuid4())
        ws = await open_ws(f"{ws_base(base)}/{route}/{task_id}/{client_id}{query}",
                           keepalive=keepalive)
        client = cls(ws, client_id)
        if hello:
            await client.hello()
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(pack(message))

    async def receive(self, within_s: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.recv(), within_s)
        assert isinstance(frame, bytes), "the server must send binary frames"
        return unpack_message(frame)

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        await self.send(message)
        reply = await self.receive()
        assert reply["type"] == message["type"], reply
        return reply

    async def hello(self) -> None:
        assert await self.request({"type": 0}) == {"type": 0}

    async def latest(self) -> tuple[int, Weights]:
        reply = await self.request({"type": 11})
        weights, _ = decode_weights(reply["weights"])
        return int(reply["round"]), weights

    async def post(self, weights: Weights, round: int, **extra: Any) -> dict[str, Any]:
        message = {"type": 8, "weights": encode_native(weights), "round": round, **extra}
        return await self.request(message)

    async def round(self) -> int:
        reply = await self.request({"type": 13})
        return int(reply["statistics"]["round"])

    async def wait_round(self, target: int, within_s: float = ANSWER_TIMEOUT_S) -> int:
        """Poll statistics until the server reaches `target` or `within_s` passes; the round."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        current = await self.round()
        while current < target and loop.time() < deadline:
            await asyncio.sleep(0.02)
            current = await self.round()
        return current

    async def closed(self, within_s: float = ANSWER_TIMEOUT_S) -> tuple[int | None, str | None]:
        """Wait until the connection is closed; the close code and reason the server sent."""
        try:
            for _ in range(1000):  # answers queued before the close may still arrive
                await asyncio.wait_for(self.ws.recv(), within_s)
        except ConnectionClosed as closed:
            if closed.rcvd is None:
                return None, None
            return closed.rcvd.code, closed.rcvd.reason
        raise AssertionError("the connection was not closed")

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # an aborted transport: nothing left to close
            await self.ws.close()


def filled(shapes: list[tuple[int, ...]], value: float) -> Weights:
    """A model whose every parameter is `value` (means of such models are exact in float32)."""
    return [np.full(shape, value, dtype=np.float32) for shape in shapes]


# --------------------------------------------------------------------------- tasks


def small_model(inputs: int = 4, units: int = 3, seed: int = 0) -> ModelArtifacts:
    """Dense inputs -> units: small enough for quick rounds."""
    return SequentialBuilder((inputs,)).dense(units, "linear").build(np.random.default_rng(seed))


def task_json(task_id: str, *, scheme: str = "federated", **training: Any) -> dict[str, Any]:
    """Titanic's task definition under another id and scheme, with training fields overridden."""
    base = titanic_task()
    info = {**base["trainingInformation"], "scheme": scheme, **training}
    return {**base, "taskID": task_id, "trainingInformation": info}


async def push_task(
    base: str, task_id: str | None = None, *, model: ModelArtifacts | None = None,
    scheme: str = "federated", **training: Any,
) -> str:
    """POST /tasks (the 2.1.1 client's JSON body); returns the new taskID."""
    task_id = task_id or f"t-{uuid.uuid4().hex[:12]}"
    body = {
        "task": task_json(task_id, scheme=scheme, **training),
        "model": list(encode_disco_model(model or small_model())),
    }
    async with httpx.AsyncClient(base_url=base, timeout=ANSWER_TIMEOUT_S) as http:
        response = await http.post("/tasks", json=body)
    assert response.status_code == 201, response.text
    return task_id


class SignalPeer:
    """One decentralized signaling connection (`/deai/{task}` or `/decentralized/{task}/{id}`)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.id = -1

    @classmethod
    async def open(
        cls, base: str, task_id: str, *, route: str = "deai", updates: bool = False,
        hello: bool = True,
    ) -> SignalPeer:
        path = f"/deai/{task_id}" if route == "deai" else f"/decentralized/{task_id}/{uuid.uuid4()}"
        peer = cls(await open_ws(ws_base(base) + path + ("?peerUpdates=1" if updates else "")))
        if hello:
            await peer.hello()
        return peer

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(pack(message))

    async def receive(self, within_s: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.recv(), within_s)
        assert isinstance(frame, bytes), "the server must send binary frames"
        return unpack_message(frame)

    async def quiet(self, seconds: float) -> None:
        """Nothing arrives for `seconds` (websockets' recv is cancellation-safe)."""
        try:
            message = await self.receive(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"peer {self.id} got an unexpected message: {message}")

    async def hello(self) -> int:
        await self.send({"type": 0})
        reply = await self.receive()
        assert reply["type"] == 1 and type(reply["id"]) is int, reply
        self.id = reply["id"]
        return self.id

    async def ready(self) -> None:
        await self.send({"type": 3})

    async def signal(self, target: int, signal: dict[str, Any] | None = None) -> None:
        await self.send({"type": 2, "peer": target, "signal": signal or {"type": "offer"}})

    async def peers_message(self, within_s: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        """The next PeersForRound (type 4) frame, whole."""
        message = await self.receive(within_s)
        assert message["type"] == 4, message
        return message

    async def round_peers(self, within_s: float = ANSWER_TIMEOUT_S) -> list[int]:
        """The next round announcement: a type-4 frame that is not an update."""
        message = await self.peers_message(within_s)
        assert "update" not in message, message
        return list(message["peers"])

    async def update(self, within_s: float = ANSWER_TIMEOUT_S) -> list[int]:
        """The next peer-list update (opt-in peers only)."""
        message = await self.peers_message(within_s)
        assert message.get("update") is True, message
        assert set(message) == {"type", "peers", "update"}, message
        return list(message["peers"])

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # an aborted transport: nothing left to close
            await self.ws.close()

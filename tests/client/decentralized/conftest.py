"""Fixtures of the decentralized client tests.

- `fake_mesh(n, js=(), vanished=())`: n in-memory participants, each with a `FakePeer` per other
  participant: peer messages go through the real encoder and decoder (and the chunk framing),
  not through WebRTC, so the round logic is tested fast and deterministically;
- `decentralized_server(minimum)`: an in-process server (`runner.serve_in_thread`) with a
  decentralized titanic task whose `minimumReadyPeers` is `minimum`; returns (url, typed task).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import msgpack
import pytest

from disco.client.decentralized.webrtc import PeerGone
from disco.protocol.chunking import Reassembler, chunk_message
from disco.protocol.peer_messages import (
    PeerCapabilities,
    PeerMessage,
    decode_peer_message,
    payload_field,
)
from disco.protocol.types import MessageType
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from disco.tasks.defaults import default_tasks
from disco.tasks.schema import Task, parse_task
from disco.tasks.store import TaskStore

PEER_IDS = (11, 22, 33, 44, 55, 66)


class FakePeer:
    """What participant `owner` sees of participant `remote_id` (implements `RoundPeer`)."""

    def __init__(
        self,
        mesh: FakeMesh,
        owner: int,
        remote_id: int,
        capabilities: PeerCapabilities | None,
    ) -> None:
        self.mesh = mesh
        self.owner = owner
        self.remote_id = remote_id
        self.capabilities = capabilities
        self.sent: list[MessageType] = []

    @property
    def is_python(self) -> bool:
        return self.capabilities is not None

    def check_sendable(self, size: int) -> None:
        pass

    async def wait_open(self, timeout_s: float) -> bool:
        if self.remote_id in self.mesh.vanished:
            await asyncio.sleep(min(timeout_s, 0.05))
            return False
        return True

    async def send(self, message: bytes) -> None:
        if self.remote_id in self.mesh.vanished:
            raise PeerGone(f"peer {self.remote_id}: gone")
        reassembler = Reassembler()  # through the chunk framing, as on a data channel
        rebuilt = [m for c in chunk_message(0, message, 1024) if (m := reassembler.feed(c))]
        decoded = decode_peer_message(rebuilt[0])
        if not self.is_python:  # what a JS peer's isPeerMessage demands, or it throws
            body = msgpack.unpackb(message)
            assert isinstance(body[payload_field(decoded.type)], list), "JS peers need legacy"
            assert body["peer"] == self.remote_id, "`peer` is the recipient, as JS sets it"
        self.sent.append(decoded.type)
        await self.mesh.inbox(self.remote_id, self.owner, decoded.type).put(decoded)

    async def receive(self, kind: MessageType, timeout_s: float) -> PeerMessage:
        if self.remote_id in self.mesh.vanished:
            await asyncio.sleep(min(timeout_s, 0.05))
            raise PeerGone(f"peer {self.remote_id}: gone")
        queue = self.mesh.inbox(self.owner, self.remote_id, kind)
        return await asyncio.wait_for(queue.get(), timeout_s)


class FakeMesh:
    """n participants; `peers_of(i)` are participant i's FakePeers to every other one."""

    def __init__(
        self, n: int, js: Sequence[int] = (), vanished: Sequence[int] = (), scale_bits: int = 16
    ) -> None:
        self.ids = list(PEER_IDS[:n])
        self.vanished = {self.ids[i] for i in vanished}
        self.js = {self.ids[i] for i in js}
        self._queues: dict[tuple[int, int, MessageType], asyncio.Queue[PeerMessage]] = {}
        self.scale_bits = scale_bits

    def capabilities(self, peer: int) -> PeerCapabilities | None:
        return (
            None if peer in self.js else PeerCapabilities(native_secure_scale_bits=self.scale_bits)
        )

    def inbox(self, owner: int, sender: int, kind: MessageType) -> asyncio.Queue[PeerMessage]:
        return self._queues.setdefault((owner, sender, kind), asyncio.Queue())

    def peers_of(self, index: int) -> list[FakePeer]:
        owner = self.ids[index]
        return [
            FakePeer(self, owner, other, self.capabilities(other))
            for other in self.ids
            if other != owner
        ]


@pytest.fixture
def fake_mesh() -> Callable[..., FakeMesh]:
    return FakeMesh


def decentralized_titanic(task_id: str, minimum: int, secure: bool) -> tuple[Task, Any]:
    """The default titanic task as a decentralized task for `minimum` peers, and its model."""
    for task, artifacts in default_tasks():
        if task.task_id == "titanic":
            body = task.to_json()
            info = {
                **body["trainingInformation"],
                "scheme": "decentralized",
                "minimumReadyPeers": minimum,
                "decentralizedSecure": secure,
            }
            typed = parse_task({**body, "taskID": task_id, "trainingInformation": info})
            return typed, artifacts
    raise AssertionError("no default titanic task")


@pytest.fixture
def decentralized_server(tmp_path: Path) -> Iterator[Callable[..., tuple[str, Task]]]:
    """Start in-process servers holding a decentralized titanic task for `minimum` peers."""
    with ExitStack() as stack:

        def start(minimum: int, secure: bool = False) -> tuple[str, Task]:
            data_dir = tmp_path / f"server-{minimum}-{secure}"
            task, artifacts = decentralized_titanic(f"titanic-p{minimum}", minimum, secure)
            TaskStore(data_dir).add(task, artifacts)  # pushed via the store
            settings = Settings(
                data_dir=data_dir, port=0, log_level="warning", load_default_tasks=False
            )
            return stack.enter_context(serve_in_thread(settings)), task

        yield start

"""Identities: one live connection per clientID, signals stay inside their task, and nobody can
post (weights or metadata) for someone else.

- Federated: a second live connection claiming a connected clientID of the same task is refused
  (1008), whichever route either uses; the first is untouched. The same clientID on another task
  is another identity.
- Everything a federated connection posts is filed under the clientID of its URL and the task of
  its URL, never under `clientId` / `taskId` fields of the message.
- Decentralized: the server assigns peer ids (a URL clientID is ignored); a relayed signal always
  carries the real sender's id, and a peer of task A cannot reach a peer of task B.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest

from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from support.robust_ws import FedClient, SignalPeer, filled, open_ws, push_task, ws_base

GRACE_S = 0.3
SHAPES = [(4, 3), (3,)]  # support.robust_ws.small_model()
QUIET_S = 0.3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("identity"),
        port=0,
        load_default_tasks=False,
        log_level="warning",
        duplicate_client_grace_s=GRACE_S,
        round_deadline_s=30.0,  # rounds here end when every participant posted, never by time
    )
    with serve_in_thread(settings) as url:
        yield url


class Opened:
    """Connections of one test, closed at its end."""

    def __init__(self) -> None:
        self.items: list[FedClient | SignalPeer] = []

    async def fed(self, base: str, task_id: str, client_id: str | None = None,
                  **options: Any) -> FedClient:
        client = await FedClient.open(base, task_id, client_id, **options)
        self.items.append(client)
        return client

    async def peer(self, base: str, task_id: str, **options: Any) -> SignalPeer:
        peer = await SignalPeer.open(base, task_id, **options)
        self.items.append(peer)
        return peer


@pytest.fixture
async def opened() -> AsyncIterator[Opened]:
    connections = Opened()
    try:
        yield connections
    finally:
        await asyncio.gather(*(c.close() for c in connections.items), return_exceptions=True)


# --------------------------------------------------------------------------- one live connection


@pytest.mark.parametrize(
    ("first_route", "second_route"),
    [("federated", "federated"), ("feai", "feai"), ("federated", "feai"), ("feai", "federated")],
)
async def test_second_live_connection_for_a_client_id_is_refused(
    server: str, opened: Opened, first_route: str, second_route: str
) -> None:
    task_id = await push_task(server)
    first = await opened.fed(server, task_id, route=first_route)
    await first.post(filled(SHAPES, 1.0), 0)
    second = await opened.fed(server, task_id, first.client_id, route=second_route, hello=False)
    code, reason = await second.closed()
    assert code == 1008
    assert reason is not None and reason.startswith("clientID already connected"), reason
    assert await first.round() == 0  # the first connection is untouched...
    assert (await first.post(filled(SHAPES, 2.0), 0))["status"] == "accepted"  # ...and can post


async def test_same_client_id_on_another_task_is_another_identity(
    server: str, opened: Opened
) -> None:
    one, two = await push_task(server), await push_task(server)
    client_id = str(uuid.uuid4())
    a = await opened.fed(server, one, client_id)
    b = await opened.fed(server, two, client_id)
    assert (await a.post(filled(SHAPES, 1.0), 0))["status"] == "accepted"
    assert (await b.post(filled(SHAPES, 1.0), 0))["status"] == "accepted"


# --------------------------------------------------------------------------- attribution


IMPERSONATION_FIELDS = ["clientId", "clientID", "client_id", "id", "peer"]


@pytest.mark.parametrize("field", IMPERSONATION_FIELDS)
async def test_weights_count_for_the_connection_not_a_message_field(
    server: str, opened: Opened, field: str
) -> None:
    task_id = await push_task(server, minNbOfParticipants=2)
    victim = await opened.fed(server, task_id)
    forger = await opened.fed(server, task_id)
    assert (await victim.post(filled(SHAPES, 2.0), 0))["round"] == 0
    # Were it filed under the victim's id, it would replace the victim's update: one update,
    # no quorum, no aggregation. Filed under the forger's id, the round completes with both.
    reply = await forger.post(filled(SHAPES, 1.0), 0, **{field: victim.client_id})
    assert reply["status"] == "accepted"
    assert reply["round"] == 1
    round_, model = await victim.latest()
    assert round_ == 1
    for tensor in model:
        np.testing.assert_allclose(tensor, 1.5)
    stats = (await victim.request({"type": 13}))["statistics"]
    assert stats["totalNumberOfParticipants"] == 2


async def test_metadata_is_filed_under_the_connection_and_its_task(
    server: str, opened: Opened
) -> None:
    task_id, other_task = await push_task(server), await push_task(server)
    victim = await opened.fed(server, task_id)
    forger = await opened.fed(server, task_id)
    outsider = await opened.fed(server, other_task)

    def metadata(client_id: str, task: str, value: str) -> dict[str, Any]:
        return {"type": 9, "taskId": task, "clientId": client_id, "round": 3,
                "metadataId": "m", "metadata": value}

    await victim.send(metadata(victim.client_id, task_id, "mine"))
    await forger.send(metadata(victim.client_id, task_id, "forged"))  # as the victim
    await forger.send(metadata(outsider.client_id, other_task, "leak"))  # into another task
    await victim.round()  # type 9 has no answer: a round trip on each connection shows they
    await forger.round()  # were handled

    def query(client: FedClient, task: str) -> dict[str, Any]:
        return {"type": 10, "taskId": task, "clientId": client.client_id, "round": 3,
                "metadataId": "m"}

    board = (await victim.request(query(victim, task_id)))["metadataMap"]
    # The victim's value is intact; both forgeries went to the forger's own entry of its own
    # task (the second replacing the first).
    assert board == [[victim.client_id, "mine"], [forger.client_id, "leak"]]
    # The outsider's task has nothing, whichever taskId it asks for: a connection only ever
    # reads and writes its own task's board.
    assert (await outsider.request(query(outsider, other_task)))["metadataMap"] == []
    assert (await outsider.request(query(outsider, task_id)))["metadataMap"] == []


# --------------------------------------------------------------------------- decentralized


async def test_signals_never_cross_tasks(server: str, opened: Opened) -> None:
    task_a = await push_task(server, scheme="decentralized", minimumReadyPeers=2)
    task_b = await push_task(server, scheme="decentralized", minimumReadyPeers=2)
    a1 = await opened.peer(server, task_a)
    a2 = await opened.peer(server, task_a, route="decentralized")
    b1 = await opened.peer(server, task_b)
    b2 = await opened.peer(server, task_b, route="decentralized")
    for sender, target in ((a1, b1), (a2, b2), (b1, a1), (b2, a2)):
        await sender.signal(target.id, {"type": "offer", "sdp": "secret"})
        reply = await sender.receive()
        assert reply["type"] == 1 and reply["id"] == sender.id and reply["peer"] == target.id
        assert "is not connected to task" in reply["error"]
    for peer in (a1, a2, b1, b2):
        await peer.quiet(QUIET_S)  # nothing leaked to anyone
    await a1.signal(a2.id, {"type": "offer", "sdp": "hello"})  # inside a task: delivered
    assert await a2.receive() == {"type": 2, "peer": a1.id, "signal": {"type": "offer",
                                                                        "sdp": "hello"}}


@pytest.mark.parametrize("field", ["from", "sender", "id", "clientId"])
async def test_relayed_signal_carries_the_real_sender(
    server: str, opened: Opened, field: str
) -> None:
    task_id = await push_task(server, scheme="decentralized", minimumReadyPeers=3)
    a, b, c = [await opened.peer(server, task_id) for _ in range(3)]
    await a.send({"type": 2, "peer": b.id, "signal": {"type": "answer"}, field: c.id})
    assert await b.receive() == {"type": 2, "peer": a.id, "signal": {"type": "answer"}}
    await c.quiet(QUIET_S)


async def test_url_client_id_is_not_a_decentralized_identity(server: str, opened: Opened) -> None:
    """Peer ids come from the server: two connections naming the same clientID are two peers."""
    task_id = await push_task(server, scheme="decentralized", minimumReadyPeers=2)
    url = f"{ws_base(server)}/decentralized/{task_id}/same-client"
    first, second = SignalPeer(await open_ws(url)), SignalPeer(await open_ws(url))
    opened.items += [first, second]
    assert await first.hello() != await second.hello()
    await first.ready()
    await second.ready()
    assert await first.round_peers() == [second.id]

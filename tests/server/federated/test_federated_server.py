"""The federated WebSocket protocol over a real loopback server, spoken frame by frame.

Every test uses fresh client ids on the default `titanic` task of one module-wide server; each
test that aggregates reads the round it starts from instead of assuming one.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from disco.protocol.framing import pack
from disco.protocol.weights import decode_weights, encode_legacy, encode_native
from disco.server.federated import handler
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from disco.weights import Weights
from support.robust_ws import FedClient
from support.servers import loopback_server

DEADLINE_S = 0.5
MAX_FRAME_BYTES = 1024 * 1024
ANSWER_TIMEOUT_S = 5.0
TASK = "titanic"


# --------------------------------------------------------------------------- fixtures, client


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the module (start-up builds the default tasks)."""
    with loopback_server(
        tmp_path_factory, round_deadline_s=DEADLINE_S, max_frame_bytes=MAX_FRAME_BYTES
    ) as url:
        yield url


class RawClient(FedClient):
    """Speaks the federated protocol frame by frame, as a Python client would."""

    async def post(
        self, weights: Weights, round: int, *, native: bool = True, **extra: Any
    ) -> dict[str, Any]:
        payload = encode_native(weights) if native else encode_legacy(weights)
        return await self.request({"type": 8, "weights": payload, "round": round, **extra})

    async def statistics(self) -> dict[str, Any]:
        stats = (await self.request({"type": 13}))["statistics"]
        assert isinstance(stats, dict)
        return stats

    async def closed(self) -> tuple[int | None, str | None]:
        """Wait for the server to close the connection; its (code, reason)."""
        await asyncio.wait_for(self.ws.wait_closed(), ANSWER_TIMEOUT_S)
        return self.ws.close_code, self.ws.close_reason


class Clients:
    """Opens clients for one test and closes them all at its end."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opened: list[RawClient] = []

    async def open(
        self, *, route: str = "federated", task: str = TASK, client_id: str | None = None,
        query: str = "", hello: bool = True,
    ) -> RawClient:
        client_id = client_id or str(uuid.uuid4())
        ws = await connect(
            "ws://" + self.base.removeprefix("http://") + f"/{route}/{task}/{client_id}{query}",
            compression=None,
            max_size=None,
            open_timeout=ANSWER_TIMEOUT_S,
            close_timeout=2,
        )
        client = RawClient(ws, client_id)
        self.opened.append(client)
        if hello:
            await client.hello()
        return client

    async def open_many(self, count: int, **options: Any) -> list[RawClient]:
        return [await self.open(**options) for _ in range(count)]


@pytest.fixture
async def clients(server_url: str) -> AsyncIterator[Clients]:
    opened = Clients(server_url)
    yield opened
    await asyncio.gather(*(c.ws.close() for c in opened.opened), return_exceptions=True)


def shifted(weights: Weights, delta: float) -> Weights:
    return [np.asarray(w + np.float32(delta), dtype=np.float32) for w in weights]


def assert_close(actual: Weights, expected: Weights) -> None:
    assert [w.shape for w in actual] == [w.shape for w in expected]
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)


async def served_weights(base: str) -> Weights:
    """The global model as GET /tasks/titanic/model.json?format=tfjs and its weights serve it."""
    async with httpx.AsyncClient(base_url=base, timeout=ANSWER_TIMEOUT_S) as http:
        response = await http.get(f"/tasks/{TASK}/model.json", params={"format": "tfjs"})
        assert response.status_code == 200, response.text
        manifest = response.json()["weightsManifest"]
        data = b""
        for group in manifest:
            for path in group["paths"]:
                file = await http.get(f"/tasks/{TASK}/{path}")
                assert file.status_code == 200, file.text
                data += file.content
    flat = np.frombuffer(data, dtype="<f4")
    out: Weights = []
    offset = 0
    for spec in (spec for group in manifest for spec in group["weights"]):
        size = math.prod(spec["shape"])
        out.append(flat[offset : offset + size].reshape(spec["shape"]))
        offset += size
    assert offset == flat.size
    return out


async def wait_for_round(client: RawClient, round: int) -> int:
    """Poll statistics until the server reaches `round` (bounded by the deadline + margin)."""
    current = int((await client.statistics())["round"])
    for _ in range(150):  # 3 s at most
        if current >= round:
            break
        await asyncio.sleep(0.02)
        current = int((await client.statistics())["round"])
    return current


async def start_round(clients: Clients) -> tuple[int, Weights]:
    """Settle any round left open by an earlier test, then (round, global weights)."""
    observer = await clients.open()
    round_, weights = await observer.latest()
    await asyncio.sleep(DEADLINE_S + 0.1)  # an earlier test's round cannot still be pending
    round_, weights = await observer.latest()
    await observer.ws.close()
    return round_, weights


# --------------------------------------------------------------------------- aggregation


async def test_two_clients_aggregate_native_and_legacy(clients: Clients, server_url: str) -> None:
    r, initial = await start_round(clients)
    native = await clients.open(query="?encoding=native")
    legacy = await clients.open(route="feai")  # the spelling of the 2.1.1 JS client

    first = await native.post(shifted(initial, 1.0), r)
    assert first == {"type": 8, "round": r, "status": "accepted"}
    second = await legacy.post(shifted(initial, 3.0), r, native=False)
    assert second == {"type": 8, "round": r + 1, "status": "accepted"}  # everyone posted

    expected = shifted(initial, 2.0)
    reply = await legacy.request({"type": 11})
    assert isinstance(reply["weights"], list)  # legacy: byte-integers, what the JS client decodes
    assert reply["round"] == r + 1
    assert_close(decode_weights(reply["weights"])[0], expected)
    reply = await native.request({"type": 11})
    assert isinstance(reply["weights"], dict) and reply["weights"]["encoding"] == "f32le"
    assert_close(decode_weights(reply["weights"])[0], expected)

    stats = await native.statistics()
    assert stats["round"] == r + 1
    assert stats["currentNumberOfParticipants"] == 2
    assert stats["totalNumberOfParticipants"] >= 2
    assert stats["averageNumberOfParticipants"] > 0
    assert_close(await served_weights(server_url), expected)


async def test_sample_counts_weight_the_mean(clients: Clients) -> None:
    r, initial = await start_round(clients)
    a, b = await clients.open_many(2)
    await a.post(shifted(initial, 1.0), r, numSamples=30)
    assert (await b.post(shifted(initial, 5.0), r, numSamples=10))["round"] == r + 1
    round_, weights = await a.latest()
    assert round_ == r + 1
    assert_close(weights, shifted(initial, 2.0))


async def test_js_client_round_bookkeeping(clients: Clients) -> None:
    """Two clients that behave like the 2.1.1 JS client both end up with aggregated weights.

    The JS client tags every post with the last server round it adopted and adopts the server's
    weights only when the server's round is ahead of that; it never waits for aggregation.
    """
    r, initial = await start_round(clients)
    a, b = await clients.open(route="feai"), await clients.open(route="feai")
    a_round = b_round = r

    async def round_end(client: RawClient, own_round: int, delta: float) -> tuple[int, bool]:
        await client.send({"type": 8, "weights": encode_legacy(shifted(initial, delta)),
                           "round": own_round})
        assert (await client.receive())["type"] == 8  # our ack; the JS client ignores it
        await client.statistics()
        server_round, _ = await client.latest()
        return (server_round, True) if server_round > own_round else (own_round, False)

    a_round, adopted = await round_end(a, a_round, 1.0)  # b has not posted: nothing to adopt
    assert (a_round, adopted) == (r, False)
    b_round, adopted = await round_end(b, b_round, 3.0)  # completes round r
    assert (b_round, adopted) == (r + 1, True)
    a_round, adopted = await round_end(a, a_round, 1.0)  # tagged r, counts for r + 1
    assert (a_round, adopted) == (r + 1, True)
    b_round, adopted = await round_end(b, b_round, 3.0)  # completes round r + 1
    assert (b_round, adopted) == (r + 2, True)


async def test_resend_replaces_and_stale_future_are_refused(clients: Clients) -> None:
    r, initial = await start_round(clients)
    a, b = await clients.open_many(2)
    await a.post(shifted(initial, 100.0), r)
    await a.post(shifted(initial, 1.0), r)  # replaces the first
    future = await a.post(initial, r + 5)
    assert future["status"] == "future" and future["round"] == r
    assert "ahead" in future["error"]
    await b.post(shifted(initial, 3.0), r)
    assert_close((await a.latest())[1], shifted(initial, 2.0))
    if r + 1 >= 2:  # round r - 1 is stale once the server is two rounds ahead of it
        stale = await a.post(initial, r - 1)
        assert stale["status"] == "stale" and stale["round"] == r + 1


async def test_invalid_weights_are_refused_and_training_goes_on(clients: Clients) -> None:
    r, initial = await start_round(clients)
    poisoned, honest, other = await clients.open_many(3)
    nan = shifted(initial, 0.0)
    nan[0] = nan[0].copy()
    nan[0][0, 0] = np.nan
    for bad, reason in (
        (nan, "NaN or Inf"),
        (initial[:-1], f"expected {len(initial)} weight tensors"),
        ([initial[0].T, *initial[1:]], "has shape"),
    ):
        reply = await poisoned.post(bad, r, native=False)
        assert reply["status"] == "invalid" and reason in reply["error"], reply
    assert (await poisoned.statistics())["round"] == r  # connection still open, nothing counted
    await honest.post(shifted(initial, 1.0), r)
    await other.post(shifted(initial, 3.0), r)
    round_, weights = await poisoned.latest()
    assert round_ == r + 1
    assert all(np.isfinite(w).all() for w in weights)
    assert_close(weights, shifted(initial, 2.0))


@pytest.fixture(scope="module")
def patient_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose round deadline never expires within a test."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("patient"), port=0, round_deadline_s=60.0,
        log_level="warning",
    )
    with serve_in_thread(settings) as url:
        yield url


async def test_vanished_participant_does_not_stall_the_round(patient_server_url: str) -> None:
    clients = Clients(patient_server_url)
    try:
        a, b, c = await clients.open_many(3)
        r, initial = await a.latest()
        await a.post(initial, r)
        await b.post(initial, r)  # round r aggregates: c is not a participant yet
        await c.post(initial, r + 1)
        await a.post(initial, r + 1)  # quorum, but b (a participant) has not posted yet
        await b.post(initial, r + 1)  # all three posted: round r + 1 aggregates at once
        assert (await a.statistics())["round"] == r + 2
        # Round r + 2: a and b post, c (a participant) vanishes instead of posting.
        await a.post(initial, r + 2)
        assert (await b.post(initial, r + 2))["round"] == r + 2  # waiting for c
        await c.ws.close()
        assert await wait_for_round(a, r + 3) == r + 3  # long before the 60 s deadline
    finally:
        await asyncio.gather(*(c.ws.close() for c in clients.opened), return_exceptions=True)


async def test_observer_does_not_delay(clients: Clients) -> None:
    r, initial = await start_round(clients)
    await clients.open()  # connected, never posts
    a, b = await clients.open_many(2)
    await a.post(initial, r)
    assert (await b.post(initial, r))["round"] == r + 1


async def test_metadata(clients: Clients) -> None:
    a, b = await clients.open_many(2)
    for client, value in ((a, "one"), (b, "two")):
        await client.send({"type": 9, "taskId": TASK, "clientId": client.client_id, "round": 7,
                           "metadataId": "m", "metadata": value})
        await client.statistics()  # 9 has no answer: a round trip shows it was handled
    query = {"type": 10, "taskId": TASK, "clientId": a.client_id, "round": 7, "metadataId": "m"}
    reply = await a.request(query)
    assert reply == {**query, "metadataMap": [[a.client_id, "one"], [b.client_id, "two"]]}
    other = await a.request({**query, "metadataId": "nobody"})
    assert other["metadataMap"] == []


# --------------------------------------------------------------------------- refusals


async def expect_close(client: RawClient, code: int, reason_part: str) -> None:
    got_code, reason = await client.closed()
    assert got_code == code, (got_code, reason)
    assert reason is not None and reason_part in reason, reason


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        ("text", 1003, "text frames"),
        (b"\xc1", 1007, "msgpack"),
        (b"\x93\x01", 1007, "msgpack"),  # truncated array
        (pack({"type": 99}), 1007, "unknown message type 99"),
        (msgpack.packb([8, 1]), 1007, "map"),
        (pack({"round": 1}), 1007, "type"),
        (pack({"type": 3}), 1007, "not allowed on the federated channel"),
        (pack({"type": 8, "weights": "x", "round": 0}), 1007, "weights"),
        (pack({"type": 8, "weights": [1, 2], "round": "0"}), 1007, "round"),
        (pack({"type": 8, "weights": [300], "round": 0}), 1007, "legacy weights"),
        (pack({"type": 8, "round": 0}), 1007, "weights"),
        (pack({"type": 10, "taskId": TASK, "round": 0, "metadataId": "m"}), 1007, "clientId"),
    ],
)
async def test_hostile_frames_close_only_their_connection(
    clients: Clients, frame: bytes | str, code: int, reason: str
) -> None:
    bystander = await clients.open()
    hostile = await clients.open()
    await hostile.ws.send(frame)
    await expect_close(hostile, code, reason)
    assert "round" in await bystander.statistics()


async def test_oversized_frame_closes_1009(clients: Clients) -> None:
    bystander = await clients.open()
    hostile = await clients.open()
    await hostile.ws.send(b"\x00" * (MAX_FRAME_BYTES + 1))
    code, _ = await hostile.closed()
    assert code == 1009
    assert "round" in await bystander.statistics()


async def test_unknown_task_is_closed_with_reason(clients: Clients) -> None:
    client = await clients.open(task="no-such-task", hello=False)
    await expect_close(client, 1008, "unknown task 'no-such-task'")


async def test_second_connection_with_same_client_id_is_refused(clients: Clients) -> None:
    first = await clients.open()
    second = await clients.open(client_id=first.client_id, hello=False)
    await expect_close(second, 1008, "clientID already connected")
    await first.hello()  # the first connection is unaffected
    await first.ws.close()
    for _ in range(50):  # free again once the server has seen it leave (bounded retries)
        third = await clients.open(client_id=first.client_id, hello=False)
        try:
            await third.hello()
            break
        except ConnectionClosed:
            assert third.ws.close_reason == "clientID already connected"
            await asyncio.sleep(0.02)
    else:
        pytest.fail("the clientID stayed taken after its connection closed")


async def test_unknown_encoding_is_refused(clients: Clients) -> None:
    client = await clients.open(query="?encoding=base64", hello=False)
    await expect_close(client, 1008, "unknown encoding")


async def test_path_without_client_id_is_not_served(server_url: str) -> None:
    url = "ws://" + server_url.removeprefix("http://") + f"/federated/{TASK}"
    with pytest.raises(InvalidStatus):
        await connect(url, open_timeout=ANSWER_TIMEOUT_S)


# --------------------------------------------------------------------------- worker threads


async def test_a_big_post_is_decoded_checked_and_staged_in_one_thread_hop(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame decoded in a worker thread has its plain update checked and staged there too:
    one hop to decode and stage a post, not a second one to check it. Invalid updates are
    still refused with their reason, valid ones taken in and averaged."""
    monkeypatch.setattr(handler, "PARSE_THREAD_BYTES", 0)  # every frame decoded off the loop
    hops: list[str] = []
    to_thread = asyncio.to_thread

    async def counted(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__name__", type(func).__name__))
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    with loopback_server(
        tmp_path_factory, round_deadline_s=60.0, aggregation_thread_threshold=0
    ) as base:
        opened = Clients(base)
        try:
            first, second = await opened.open_many(2)
            r, initial = await first.latest()
            nan = shifted(initial, 0.0)
            nan[0] = nan[0].copy()
            nan[0][0, 0] = np.nan
            refused = await first.post(nan, r, native=False)
            assert refused["status"] == "invalid" and "NaN or Inf" in refused["error"], refused
            hops.clear()
            accepted = await first.post(shifted(initial, 1.0), r, native=False)
            assert accepted == {"type": 8, "round": r, "status": "accepted"}
            assert hops[0] == "decode_and_stage"
            assert len(hops) == 2  # then folding it in: checking it took no hop of its own
            await second.post(shifted(initial, 3.0), r, native=False)
            round_, weights = await first.latest()
            assert round_ == r + 1
            assert_close(weights, shifted(initial, 2.0))
        finally:
            await asyncio.gather(*(c.ws.close() for c in opened.opened), return_exceptions=True)

"""The event bus (coalesced, bounded, closable) and `GET /events` over a real loopback server:
initial snapshots, a created task, a federated round pushed with its history, shut-down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from disco.server.events import TASK_EVENT, EventBus
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from support.robust_ws import FedClient, SignalPeer, filled, push_task, small_model
from support.servers import loopback_server

READ_TIMEOUT_S = 20.0


# --------------------------------------------------------------------------- the bus


def counting_render() -> tuple[dict[str, int], Any]:
    renders: dict[str, int] = {}

    def render(task_id: str) -> dict[str, Any] | None:
        if task_id == "unknown":
            return None
        renders[task_id] = renders.get(task_id, 0) + 1
        return {"taskID": task_id, "n": renders[task_id]}

    return renders, render


async def test_a_burst_of_changes_is_one_event_per_task() -> None:
    renders, render = counting_render()
    bus = EventBus(render, interval_s=0.05)
    first, second = bus.subscribe(), bus.subscribe()
    for _ in range(1000):
        bus.notify("a", "status")
    bus.notify("a", "round")
    bus.notify("b", "connections")
    bus.notify("unknown", "status")
    events = [await first.next(5), await first.next(5)]
    assert sorted((e.data["taskID"], tuple(e.data["changes"])) for e in events if e) == [
        ("a", ("round", "status")), ("b", ("connections",)),
    ]
    assert renders == {"a": 1, "b": 1}  # rendered once, whatever the number of subscribers
    assert [await second.next(5), await second.next(5)] == events
    with pytest.raises(TimeoutError):
        await first.next(0.2)  # nothing more


async def test_subscribers_start_with_the_snapshots_asked_for() -> None:
    _, render = counting_render()
    bus = EventBus(render)
    stream = bus.subscribe(["a", "unknown", "b"])
    got = [await stream.next(1), await stream.next(1)]
    assert [(e.name, e.data["taskID"], e.data["changes"]) for e in got if e] == [
        (TASK_EVENT, "a", []), (TASK_EVENT, "b", []),
    ]
    assert got[0] is not None and got[0].encode().startswith(b"id: ")


async def test_nothing_is_rendered_without_subscribers() -> None:
    renders, render = counting_render()
    bus = EventBus(render, interval_s=0.01)
    bus.notify("a", "status")
    await asyncio.sleep(0.05)
    assert renders == {}


async def test_a_slow_subscriber_is_dropped_and_the_others_go_on() -> None:
    _, render = counting_render()
    bus = EventBus(render, interval_s=0.01, queue_size=3)
    slow, fast = bus.subscribe(), bus.subscribe()
    for i in range(6):
        bus.notify("a", "status")
        event = await fast.next(5)
        assert event is not None and event.data["n"] == i + 1
    assert slow.dropped and bus.subscribers == 1
    received = []
    while (event := await slow.next(1)) is not None:
        received.append(event.data["n"])
    assert received == [2, 3]  # what it had (the end marker took the oldest's place), the end


async def test_close_ends_every_stream_and_refuses_new_ones() -> None:
    _, render = counting_render()
    bus = EventBus(render, interval_s=0.01)
    stream = bus.subscribe()
    bus.notify("a", "status")
    bus.close()
    assert await stream.next(1) is None and bus.subscribers == 0
    bus.notify("a", "status")  # ignored
    bus.close()  # idempotent
    with pytest.raises(RuntimeError, match="shutting down"):
        bus.subscribe()


async def test_subscribers_are_bounded() -> None:
    _, render = counting_render()
    bus = EventBus(render, max_subscribers=2)
    bus.subscribe(), bus.subscribe()
    with pytest.raises(RuntimeError, match="too many"):
        bus.subscribe()


# --------------------------------------------------------------------------- GET /events


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with loopback_server(tmp_path_factory, round_deadline_s=0.5, load_default_tasks=False) as url:
        yield url


class EventReader:
    """Reads `task` events from an open /events response."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next_event(self) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            name, data = None, None
            async for line in self.lines:
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = json.loads(line.removeprefix("data: "))
                elif line == "" and name is not None and data is not None:
                    assert name == TASK_EVENT
                    return dict(data)
            raise AssertionError("the stream ended")

        return await asyncio.wait_for(read(), READ_TIMEOUT_S)

    async def until(self, task_id: str, check: Any) -> dict[str, Any]:
        for _ in range(100):
            event = await self.next_event()
            if event["taskID"] == task_id and check(event):
                return event
        raise AssertionError(f"no matching event for {task_id}")


@pytest.fixture
async def events(server_url: str) -> AsyncIterator[tuple[EventReader, httpx.Response]]:
    async with (
        httpx.AsyncClient(base_url=server_url, timeout=READ_TIMEOUT_S) as http,
        http.stream("GET", "/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventReader(response), response


async def test_events_push_a_created_task_and_its_federated_round(
    server_url: str, events: tuple[EventReader, httpx.Response]
) -> None:
    reader, _ = events
    task_id = await push_task(server_url, model=small_model(), minNbOfParticipants=2)
    created = await reader.until(task_id, lambda e: "created" in e["changes"])
    assert (created["round"], created["scheme"], created["lastRounds"]) == (0, "federated", [])

    one, two = [await FedClient.open(server_url, task_id) for _ in range(2)]
    connected = await reader.until(task_id, lambda e: e["connected"]["federated"] == 2)
    assert connected["federated"]["waitingFor"] == "participants"
    round_, weights = await one.latest()
    shapes = [tuple(w.shape) for w in weights]
    replies = await asyncio.gather(
        one.post(filled(shapes, 1.0), round_), two.post(filled(shapes, 3.0), round_)
    )
    assert all(reply["status"] == "accepted" for reply in replies), replies
    done = await reader.until(task_id, lambda e: e["round"] == 1)
    assert "round" in done["changes"]
    [entry] = done["lastRounds"]
    assert entry["round"] == 1 and entry["contributions"] == 2 and entry["seconds"] >= 0

    async with httpx.AsyncClient(base_url=server_url) as http:
        history = (await http.get(f"/tasks/{task_id}/history")).json()
        missing = await http.get("/tasks/nope/history")
    assert history == {"taskID": task_id, "round": 1, "rounds": [entry]}
    assert missing.status_code == 404

    await one.close()
    await two.close()
    gone = await reader.until(task_id, lambda e: e["connected"]["federated"] == 0)
    assert gone["round"] == 1


async def test_a_stream_starts_with_every_task(server_url: str) -> None:
    first = await push_task(server_url, model=small_model())
    second = await push_task(server_url, model=small_model())
    async with httpx.AsyncClient(base_url=server_url, timeout=READ_TIMEOUT_S) as http:
        tasks = {t["taskID"] for t in (await http.get("/tasks")).json()}
        async with http.stream("GET", "/events") as response:
            reader = EventReader(response)
            seen = {(await reader.next_event())["taskID"] for _ in tasks}
    assert seen == tasks and {first, second} <= seen


async def test_shutdown_ends_open_streams_cleanly(tmp_path: Any) -> None:
    """The server finishes open streams (a complete chunked body), it does not cut them."""
    settings = Settings(data_dir=tmp_path, port=0, load_default_tasks=False, log_level="warning")
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def read(url: str) -> None:
        async with (
            httpx.AsyncClient(base_url=url, timeout=READ_TIMEOUT_S) as http,
            http.stream("GET", "/events") as response,
        ):
            opened.set()
            try:
                async for _ in response.aiter_bytes():
                    pass
                ended.set_result("complete")
            except httpx.HTTPError as error:
                ended.set_result(f"cut: {error!r}")

    opened = asyncio.Event()
    with serve_in_thread(settings) as url:
        reader = asyncio.create_task(read(url))
        await asyncio.wait_for(opened.wait(), READ_TIMEOUT_S)
    # leaving serve_in_thread stopped the server (this loop blocked meanwhile): the stream's end
    # is in the socket's buffer, complete if the server ended the response
    assert await asyncio.wait_for(ended, READ_TIMEOUT_S) == "complete"
    await reader


async def test_events_push_decentralized_peers_and_rounds(
    server_url: str, events: tuple[EventReader, httpx.Response]
) -> None:
    reader, _ = events
    task_id = await push_task(
        server_url, model=small_model(), scheme="decentralized", minimumReadyPeers=2
    )
    peers = [await SignalPeer.open(server_url, task_id) for _ in range(2)]
    joined = await reader.until(task_id, lambda e: e["connected"]["decentralized"] == 2)
    assert joined["decentralized"]["minimumReady"] == 2
    for _ in range(2):  # two rounds: the first is complete when the second starts
        for peer in peers:
            await peer.ready()
        for peer in peers:
            await peer.round_peers()
    done = await reader.until(task_id, lambda e: e["decentralized"]["roundsStarted"] == 2)
    [entry] = done["lastRounds"]
    assert entry["round"] == 1 and entry["contributions"] == 2 and entry["seconds"] >= 0
    for peer in peers:
        await peer.ws.close()
    gone = await reader.until(task_id, lambda e: e["connected"]["decentralized"] == 0)
    assert gone["decentralized"]["roundsStarted"] == 2

"""Hub wiring (task store, strategy, sessions), encoded-model cache, metadata, request handling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from disco.protocol.errors import CloseCode, ProtocolError
from disco.protocol.framing import unpack_message
from disco.protocol.messages import (
    ClientConnected,
    GetMetadataMap,
    LatestServerRound,
    PostMetadata,
    PostWeights,
    PullServerStatistics,
)
from disco.protocol.weights import WeightEncoding, decode_weights
from disco.server.federated.handler import decode_frame, handle, requested_encoding
from disco.server.federated.hub import FederatedHub, LatestFrames
from disco.server.federated.metadata import ENTRY_OVERHEAD, MetadataBoard
from disco.server.settings import Settings
from disco.tasks.defaults import default_tasks
from disco.tasks.schema import TaskValidationError, parse_task
from disco.tasks.store import TaskStore


@pytest.fixture(scope="module")
def titanic() -> tuple[dict[str, Any], Any]:
    task, artifacts = next((t, a) for t, a in default_tasks() if t.task_id == "titanic")
    return task.to_json(), artifacts


def variant(base: dict[str, Any], task_id: str, **training: Any) -> Any:
    info = {**base["trainingInformation"], **training}
    return parse_task({**base, "taskID": task_id, "trainingInformation": info})


@pytest.fixture
def store(tmp_path: Path, titanic: tuple[dict[str, Any], Any]) -> Iterator[TaskStore]:
    task_json, artifacts = titanic
    store = TaskStore(tmp_path)
    store.load(with_defaults=False)
    store.add(variant(task_json, "titanic"), artifacts)
    store.add(variant(task_json, "solo", minNbOfParticipants=1), artifacts)
    store.add(variant(task_json, "robust", aggregator="median", minNbOfParticipants=3), artifacts)
    yield store


@pytest.fixture
async def hub(store: TaskStore, tmp_path: Path) -> AsyncIterator[FederatedHub]:
    settings = Settings(data_dir=tmp_path, default_min_participants=3)
    hub = FederatedHub(store, settings)
    await hub.start()
    yield hub
    await hub.close()


def shifted(weights: list[Any], delta: float) -> list[Any]:
    return [np.asarray(w + np.float32(delta), dtype=np.float32) for w in weights]


# --------------------------------------------------------------------------- hub


async def test_unknown_task_has_no_channel(hub: FederatedHub) -> None:
    assert await hub.channel("nope") is None
    assert hub.channels() == {}


async def test_one_channel_per_task_even_when_asked_concurrently(hub: FederatedHub) -> None:
    first, second = await asyncio.gather(hub.channel("titanic"), hub.channel("titanic"))
    assert first is not None and first is second
    assert list(hub.channels()) == ["titanic"]


async def test_min_participants_from_task_or_settings(hub: FederatedHub) -> None:
    solo = await hub.channel("solo")
    titanic = await hub.channel("titanic")
    assert solo is not None and titanic is not None
    assert solo.engine.min_participants == 1
    assert titanic.engine.min_participants == 3  # Settings.default_min_participants


async def test_the_engine_aggregates_with_the_tasks_strategy(hub: FederatedHub) -> None:
    channel = await hub.channel("robust")
    assert channel is not None
    _, weights = channel.engine.current()
    for client, delta in (("a", 0.0), ("b", 1.0), ("c", 100.0)):
        result = await channel.engine.submit(client, shifted(weights, delta), 0)
    assert result.aggregated
    _, median = channel.engine.current()
    np.testing.assert_allclose(median[0], shifted(weights, 1.0)[0], rtol=1e-6)


async def test_aggregation_is_persisted_to_the_store(hub: FederatedHub, store: TaskStore) -> None:
    channel = await hub.channel("solo")
    assert channel is not None
    round_, weights = channel.engine.current()
    assert round_ == 0
    result = await channel.engine.submit("a", shifted(weights, 1.0), 0)
    assert result.aggregated
    stored = store.get("solo")
    assert stored.round == 1
    for served, expected in zip(stored.weights(), shifted(weights, 1.0), strict=True):
        np.testing.assert_allclose(served, expected, rtol=1e-6)


async def test_engine_starts_from_the_stored_round(hub: FederatedHub, store: TaskStore) -> None:
    weights = shifted(store.get("solo").weights(), 0.5)
    await asyncio.to_thread(store.update_model, "solo", weights, 4)
    channel = await hub.channel("solo")
    assert channel is not None
    round_, current = channel.engine.current()
    assert round_ == 4
    np.testing.assert_allclose(current[0], weights[0])


async def test_task_status_once_the_engine_runs(hub: FederatedHub) -> None:
    assert hub.task_status("solo") is None
    channel = await hub.channel("solo")
    assert channel is not None
    hub.attach(channel, "a")
    await channel.engine.submit("a", channel.engine.current()[1], 0)
    assert hub.task_status("solo") == {
        "round": 1,
        "currentNumberOfParticipants": 1,
        "totalNumberOfParticipants": 1,
        "averageNumberOfParticipants": 1.0,
    }


def test_invalid_aggregator_never_reaches_the_hub(titanic: tuple[dict[str, Any], Any]) -> None:
    """Refused when the task is created (it used to fail at the task's first connection)."""
    with pytest.raises(TaskValidationError, match=r"trainingInformation\.aggregator"):
        variant(titanic[0], "bogus", aggregator="nonsense")


async def test_sessions_join_leave_and_refuse_duplicates(hub: FederatedHub) -> None:
    channel = await hub.channel("solo")
    assert channel is not None
    session = hub.attach(channel, "a")
    with pytest.raises(ProtocolError) as refused:
        hub.attach(channel, "a")
    assert refused.value.close_code == CloseCode.POLICY_VIOLATION
    assert refused.value.reason == "clientID already connected"
    with pytest.raises(ProtocolError, match="longer than"):
        hub.attach(channel, "x" * 5000)
    await channel.engine.submit("a", channel.engine.current()[1], 0)
    hub.detach(session)
    hub.detach(session)  # idempotent
    assert "a" not in channel.sessions
    assert hub.attach(channel, "a") is not session


async def test_close_asks_every_session_to_leave(store: TaskStore, tmp_path: Path) -> None:
    hub = FederatedHub(store, Settings(data_dir=tmp_path))
    await hub.start()
    channel = await hub.channel("titanic")
    assert channel is not None
    session = hub.attach(channel, "a")
    await hub.close()
    request = await asyncio.wait_for(session.wait_close_request(), 1)
    assert request.code == CloseCode.GOING_AWAY
    with pytest.raises(ProtocolError) as refused:
        hub.attach(channel, "b")
    assert refused.value.close_code == CloseCode.GOING_AWAY


async def test_session_answers_in_the_encoding_it_posts_unless_fixed(hub: FederatedHub) -> None:
    channel = await hub.channel("titanic")
    assert channel is not None
    follows = hub.attach(channel, "follows")
    fixed = hub.attach(channel, "fixed", WeightEncoding.LEGACY)
    before = follows.encoding
    for session in (follows, fixed):
        session.posted(WeightEncoding.NATIVE)
    assert (before, follows.encoding) == (WeightEncoding.LEGACY, WeightEncoding.NATIVE)
    assert fixed.encoding is WeightEncoding.LEGACY


# --------------------------------------------------------------------------- encoded model cache


@pytest.mark.parametrize("threshold", [0, 10**9])  # worker thread / event loop
async def test_latest_frame_encoded_once_per_round_and_encoding(threshold: int) -> None:
    frames = LatestFrames(threshold)
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3)]
    legacy = await frames.get(3, weights, WeightEncoding.LEGACY)
    assert await frames.get(3, weights, WeightEncoding.LEGACY) is legacy
    native = await frames.get(3, weights, WeightEncoding.NATIVE)
    assert native is not legacy
    for frame, encoding in ((legacy, WeightEncoding.LEGACY), (native, WeightEncoding.NATIVE)):
        reply = unpack_message(frame)
        assert reply["type"] == 11 and reply["round"] == 3
        decoded, found = decode_weights(reply["weights"])
        assert found is encoding
        np.testing.assert_array_equal(decoded[0], weights[0])
    concurrent = await asyncio.gather(
        *(frames.get(4, weights, WeightEncoding.NATIVE) for _ in range(3))
    )
    assert concurrent[0] is concurrent[1] is concurrent[2]
    assert unpack_message(concurrent[0])["round"] == 4


# --------------------------------------------------------------------------- metadata


def test_metadata_put_get_replace() -> None:
    board = MetadataBoard()
    board.put(1, "m", "a", "x")
    board.put(1, "m", "b", "y")
    board.put(1, "m", "a", "z")
    board.put(2, "m", "a", "other round")
    assert board.get(1, "m") == [("a", "z"), ("b", "y")]
    assert board.get(1, "other") == []
    assert board.get(9, "m") == []


def test_metadata_too_long_is_refused() -> None:
    board = MetadataBoard(max_value_chars=4)
    with pytest.raises(ProtocolError) as refused:
        board.put(0, "m", "a", "12345")
    assert refused.value.close_code == CloseCode.MESSAGE_TOO_BIG
    assert board.size == 0


def test_metadata_forgets_oldest_rounds_first() -> None:
    entry = len("m") + len("a") + 10 + ENTRY_OVERHEAD
    board = MetadataBoard(max_total_chars=3 * entry)
    for round_ in range(5):
        board.put(round_, "m", "a", "v" * 10)
        assert board.size <= 3 * entry
    assert [r for r in range(5) if board.get(r, "m")] == [2, 3, 4]
    board.put(9, "m", "a", "v" * 10)  # a new round evicts the oldest one
    assert [r for r in range(10) if board.get(r, "m")] == [3, 4, 9]


def test_metadata_trims_a_round_over_budget_alone() -> None:
    entry = len("m") + 1 + 10 + ENTRY_OVERHEAD
    board = MetadataBoard(max_total_chars=2 * entry)
    for client in "abc":
        board.put(0, "m", client, "v" * 10)
    assert [c for c, _ in board.get(0, "m")] == ["b", "c"]
    assert board.size == 2 * entry


# --------------------------------------------------------------------------- handler pieces


async def test_handle_answers_each_request(hub: FederatedHub) -> None:
    channel = await hub.channel("solo")
    assert channel is not None
    session = hub.attach(channel, "a")
    assert unpack_message(await handle(channel, session, ClientConnected()) or b"") == {"type": 0}
    _, weights = channel.engine.current()
    post = await handle(channel, session, PostWeights(weights, WeightEncoding.NATIVE, 0, None))
    assert unpack_message(post or b"") == {"type": 8, "round": 1, "status": "accepted"}
    future = unpack_message(
        await handle(channel, session, PostWeights(weights, WeightEncoding.NATIVE, 7)) or b""
    )
    assert future["status"] == "future" and "ahead" in future["error"]
    latest = unpack_message(await handle(channel, session, LatestServerRound()) or b"")
    assert latest["round"] == 1 and decode_weights(latest["weights"])[1] is WeightEncoding.NATIVE
    stats = unpack_message(await handle(channel, session, PullServerStatistics()) or b"")
    assert stats["statistics"]["round"] == 1
    # The connection's clientID keys the metadata, whatever the message claims.
    assert await handle(channel, session, PostMetadata("solo", "spoofed", 1, "m", "v")) is None
    reply = await handle(channel, session, GetMetadataMap("solo", "a", 1, "m"))
    assert unpack_message(reply or b"")["metadataMap"] == [["a", "v"]]


def test_decode_frame_enforces_the_size_limit() -> None:
    with pytest.raises(ProtocolError) as refused:
        decode_frame(b"\x81\xa4type\x00" + b"\x00" * 100, 50)
    assert refused.value.close_code == CloseCode.MESSAGE_TOO_BIG


def test_requested_encoding() -> None:
    assert requested_encoding(None) is None
    assert requested_encoding("native") is WeightEncoding.NATIVE
    assert requested_encoding("legacy") is WeightEncoding.LEGACY
    with pytest.raises(ProtocolError) as refused:
        requested_encoding("f16")
    assert refused.value.close_code == CloseCode.POLICY_VIOLATION

"""Pushed rounds: a waiting latestServerRound answered when the round moves, roundStatus frames.

Driven through `handle` on a channel with a real round engine and a recording `send`; nothing
is timed: every wait is for a frame, bounded by a generous timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from disco.protocol.framing import unpack_message
from disco.protocol.messages import LatestServerRound, PostWeights, parse_round_status
from disco.protocol.types import MessageType
from disco.protocol.weights import WeightEncoding, decode_weights
from disco.server.federated import push
from disco.server.federated.engine import RoundEngine
from disco.server.federated.handler import handle
from disco.server.federated.hub import Session, TaskChannel
from disco.server.ws_transport import ServerFrame
from disco.weights import Weights

WITHIN_S = 5.0
SHAPES = [(2, 3), (3,)]


def model(value: float) -> Weights:
    return [np.full(shape, value, dtype=np.float32) for shape in SHAPES]


def mean(updates: Any, counts: Any, previous: Weights) -> Weights:
    return [np.mean([u[i] for u in updates], axis=0, dtype=np.float32) for i in range(2)]


class Frames:
    """A connection's outgoing frames, decoded, in order."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: list[dict[str, Any]] = []

    async def send(self, frame: bytes) -> None:
        message = unpack_message(frame)
        self.seen.append(message)
        self.queue.put_nowait(message)

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.queue.get(), WITHIN_S)

    async def until(self, wanted: Any) -> dict[str, Any]:
        """The next frame for which `wanted(frame)` holds (earlier ones stay in `seen`)."""
        while True:
            frame = await self.next()
            if wanted(frame):
                return frame


class Persisted:
    """Persistence that can be held back, to observe a round while it aggregates."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, weights: Weights, round: int) -> None:
        await asyncio.wait_for(self.gate.wait(), WITHIN_S)


@pytest.fixture
async def channel() -> AsyncIterator[TaskChannel]:
    engine = RoundEngine(
        "push", model(0.0), min_participants=2, deadline_s=60.0, max_staleness=1,
        aggregator=mean, persist=Persisted(),
    )
    channel = TaskChannel("push", engine, thread_threshold=10**9)
    yield channel
    for session in list(channel.sessions.values()):
        session.cancel_wait()
    await engine.close()


def connect(channel: TaskChannel, client_id: str) -> tuple[Session, Frames]:
    session = Session(channel, client_id, WeightEncoding.NATIVE, encoding_fixed=True)
    channel.sessions[client_id] = session
    channel.engine.join(client_id)
    return session, Frames()


def leave(channel: TaskChannel, session: Session) -> None:
    """What the hub does when a connection ends."""
    session.cancel_wait()
    del channel.sessions[session.client_id]
    channel.engine.leave(session.client_id)


async def post(channel: TaskChannel, session: Session, value: float, round: int) -> None:
    reply = await handle(channel, session, PostWeights(model(value), WeightEncoding.NATIVE, round))
    assert reply is not None and unpack_message(reply)["status"] == "accepted"


async def wait_after(
    channel: TaskChannel, session: Session, frames: Frames, round: int
) -> bytes | None:
    return await handle(channel, session, LatestServerRound(after_round=round), frames.send)


def is_answer(frame: dict[str, Any]) -> bool:
    return bool(frame["type"] == MessageType.LATEST_SERVER_ROUND)


async def test_answered_the_moment_the_round_moves(channel: TaskChannel) -> None:
    a, a_frames = connect(channel, "a")
    b, _ = connect(channel, "b")
    await post(channel, a, 1.0, 0)
    assert await wait_after(channel, a, a_frames, 0) is None  # answered later, not now
    status = parse_round_status(await a_frames.next())
    assert (status.round, status.contributions, status.min_participants) == (0, 1, 2)
    assert status.waiting_for == "participants" and status.deadline_ms is None
    assert "waiting for participants: 1 of 2" in status.describe()
    await post(channel, b, 3.0, 0)  # completes the round
    answer = await a_frames.until(is_answer)
    assert answer["round"] == 1
    weights, encoding = decode_weights(answer["weights"])
    assert encoding is WeightEncoding.NATIVE
    assert [float(w.ravel()[0]) for w in weights] == [2.0, 2.0]
    assert not a.waiting


async def test_answered_at_once_when_already_past(channel: TaskChannel) -> None:
    a, a_frames = connect(channel, "a")
    b, _ = connect(channel, "b")
    await post(channel, a, 1.0, 0)
    await post(channel, b, 1.0, 0)
    reply = await wait_after(channel, a, a_frames, 0)
    assert reply is not None and unpack_message(reply)["round"] == 1
    assert not a.waiting and a_frames.seen == []  # no status before an immediate answer


async def test_a_new_request_replaces_the_pending_wait(channel: TaskChannel) -> None:
    a, a_frames = connect(channel, "a")
    b, _ = connect(channel, "b")
    await post(channel, a, 1.0, 0)
    await wait_after(channel, a, a_frames, 0)
    await a_frames.next()  # the first wait's status
    await wait_after(channel, a, a_frames, 1)  # replaces it: wait past round 1 instead
    await post(channel, b, 1.0, 0)  # round 0 -> 1: only the replaced wait would answer now
    moved = await a_frames.until(lambda f: f["type"] == MessageType.ROUND_STATUS and f["round"])
    assert parse_round_status(moved).round == 1 and a.waiting
    assert not any(is_answer(frame) for frame in a_frames.seen)
    # A plain latestServerRound replaces it too, and is answered at once.
    reply = await handle(channel, a, LatestServerRound(), a_frames.send)
    assert reply is not None and unpack_message(reply)["round"] == 1
    assert not a.waiting


async def test_status_follows_the_round(channel: TaskChannel) -> None:
    engine = channel.engine
    a, a_frames = connect(channel, "a")
    b, _ = connect(channel, "b")
    c, _ = connect(channel, "c")
    await post(channel, a, 1.0, 0)
    await post(channel, b, 1.0, 0)  # round 0 -> 1; a and b are the participants of round 1
    await post(channel, c, 1.0, 1)
    await post(channel, a, 1.0, 1)  # quorum of 2 reached, b still awaited: the deadline runs
    await wait_after(channel, a, a_frames, 1)
    status = parse_round_status(await a_frames.next())
    assert (status.round, status.participants, status.contributions) == (1, 3, 2)
    assert status.waiting_for == "contributions"
    assert status.deadline_ms is not None and 0 < status.deadline_ms <= 60_000
    # b leaves: nobody is awaited any more, the round aggregates (persistence held back).
    persist = engine._persist
    assert isinstance(persist, Persisted)
    persist.gate.clear()
    leave(channel, b)
    aggregating = await a_frames.until(
        lambda f: f["type"] == MessageType.ROUND_STATUS and f["waitingFor"] == "aggregation"
    )
    assert parse_round_status(aggregating).contributions == 2
    persist.gate.set()
    assert (await a_frames.until(is_answer))["round"] == 2


async def test_a_client_that_leaves_while_waiting(channel: TaskChannel) -> None:
    a, a_frames = connect(channel, "a")
    b, b_frames = connect(channel, "b")
    await post(channel, a, 1.0, 0)
    await wait_after(channel, a, a_frames, 0)
    await a_frames.next()
    leave(channel, a)  # its contribution stays; its wait ends with the connection
    assert not a.waiting
    await post(channel, b, 3.0, 0)
    assert channel.engine.round == 1
    reply = await wait_after(channel, b, b_frames, 0)
    assert reply is not None and unpack_message(reply)["round"] == 1
    assert not any(is_answer(frame) for frame in a_frames.seen)


class RawFrames(Frames):
    """Frames as sent (the bytes objects themselves), beside their decoded form."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    async def send(self, frame: bytes) -> None:
        self.raw.append(frame)
        await super().send(frame)


def crowd_channel(crowd: int) -> tuple[TaskChannel, list[tuple[Session, RawFrames]]]:
    """A channel whose round needs `crowd` contributions, with `crowd` connected clients."""
    engine = RoundEngine(
        "crowd", model(0.0), min_participants=crowd, deadline_s=60.0, max_staleness=1,
        aggregator=mean, persist=Persisted(),
    )  # fmt: skip
    channel = TaskChannel("crowd", engine, thread_threshold=10**9)
    clients = []
    for index in range(crowd):
        session, _ = connect(channel, f"c{index}")
        clients.append((session, RawFrames()))
    return channel, clients


async def test_a_crowd_shares_one_encoded_answer_and_its_status_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every waiter gets the very same bytes: the answer encoded once per round, a status frame
    packed once per change of figures."""
    monkeypatch.setattr(push, "STATUS_INTERVAL_S", 0.01)
    crowd = 30
    channel, clients = crowd_channel(crowd)
    try:
        for session, _ in clients[:-1]:
            await post(channel, session, 1.0, 0)
        for session, frames in clients[:-1]:
            assert await wait_after(channel, session, frames, 0) is None
        for _, frames in clients[:-1]:
            status = parse_round_status(await frames.next())  # once the wait lasted a while
            assert status.contributions == crowd - 1
        assert channel.status.waiters == crowd - 1
        first_statuses = {id(frames.raw[0]) for _, frames in clients[:-1]}
        assert len(first_statuses) == 1  # same figures: one packed frame for everyone
        await post(channel, clients[-1][0], 1.0, 0)  # completes the round
        answers = [await frames.until(is_answer) for _, frames in clients[:-1]]
        assert {answer["round"] for answer in answers} == {1}
        assert len({id(frames.raw[-1]) for _, frames in clients[:-1]}) == 1  # encoded once
        assert not any(session.waiting for session, _ in clients)
    finally:
        await channel.engine.close()


class Wire:
    """A connection's direct frame writer (`ws_transport.DIRECT_WRITE`): takes frames or not."""

    def __init__(self, takes: bool) -> None:
        self.takes = takes
        self.written: list[ServerFrame] = []

    def __call__(self, frame: ServerFrame) -> bool:
        if self.takes:
            self.written.append(frame)
        return self.takes


async def test_a_crowd_is_written_one_wire_frame_and_the_others_are_sent_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connections whose writer takes the answer get the one frame built for the round;
    one whose writer refuses (a full buffer, a send under way) and one without a writer get the
    same bytes through `send`; nobody is left waiting."""
    monkeypatch.setattr(push, "STATUS_INTERVAL_S", 60.0)
    crowd = 8
    channel, clients = crowd_channel(crowd)
    wires = [Wire(takes=index not in (1, 2)) for index in range(crowd)]
    for (session, _), wire in zip(clients, wires, strict=True):
        session.writer = None if wire is wires[2] else wire
    try:
        for session, frames in clients[:-1]:
            assert await handle(channel, session, awaiting(1.0, 0), frames.send) is None
        closing = await handle(channel, clients[-1][0], awaiting(1.0, 0), RawFrames().send)
        assert closing is not None
        for _, frames in clients[1:3]:
            assert (await frames.next())["round"] == 1
            assert frames.raw == [closing]
        for _ in range(100):
            if all(wire.written for wire in wires[3:-1]):
                break
            await asyncio.sleep(0.01)
        written = [frame for wire in (wires[0], *wires[3:-1]) for frame in wire.written]
        assert len(written) == crowd - 3 and len({id(frame) for frame in written}) == 1
        assert written[0].payload is closing and written[0].wire is not None
        assert all(not frames.raw for _, frames in (clients[0], *clients[3:-1]))
        assert not wires[1].written and not any(session.waiting for session, _ in clients)
    finally:
        await channel.engine.close()


class Stuck(RawFrames):
    """A connection whose sends hang until `release` is set (a peer that stopped reading)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def send(self, frame: bytes) -> None:
        self.started.set()
        await self.release.wait()
        await super().send(frame)


async def test_a_stuck_connection_holds_up_no_other_waiter_and_keeps_its_frames_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stuck one's status send is under way when the round moves: the others are answered
    meanwhile (written or sent), and its answer is neither written past its status nor lost."""
    monkeypatch.setattr(push, "STATUS_INTERVAL_S", 0.01)
    crowd = 5
    channel, clients = crowd_channel(crowd)
    stuck_session, _ = clients[0]
    stuck = Stuck()
    stuck_wire = Wire(takes=False)  # its status is sent, then it would take frames
    stuck_session.writer = stuck_wire
    clients[1][0].writer = Wire(takes=False)  # a full buffer: sent
    try:
        assert await handle(channel, stuck_session, awaiting(1.0, 0), stuck.send) is None
        await asyncio.wait_for(stuck.started.wait(), WITHIN_S)  # its first status hangs
        stuck_wire.takes = True  # but a send of its own is under way
        for session, frames in clients[1:-1]:
            assert await handle(channel, session, awaiting(1.0, 0), frames.send) is None
        assert await handle(channel, clients[-1][0], awaiting(1.0, 0), RawFrames().send)
        for _, frames in clients[1:-1]:
            assert (await frames.until(is_answer))["round"] == 1
        assert stuck_session.waiting and not stuck_wire.written and not stuck.seen
        stuck.release.set()  # the status goes out, then the answer is written after it
        for _ in range(100):
            if stuck_wire.written:
                break
            await asyncio.sleep(0.01)
        assert [f["type"] for f in stuck.seen] == [MessageType.ROUND_STATUS]
        assert [unpack_message(f.payload)["round"] for f in stuck_wire.written] == [1]
        assert not stuck_session.waiting
    finally:
        await channel.engine.close()


async def test_a_wait_the_round_passes_before_the_board_looks_is_answered(
    channel: TaskChannel,
) -> None:
    """The round moves after a wait is registered but before the board's task first runs
    (a publication whose step was queued first): the board's first look answers it."""
    a, a_frames = connect(channel, "a")
    b, _ = connect(channel, "b")
    await post(channel, a, 1.0, 0)
    await post(channel, b, 3.0, 0)  # round 0 -> 1
    channel.engine._round = 0  # as it was the moment a's wait below was registered
    a.start_wait(0, a_frames.send)  # the board's task is created, and has not run yet
    channel.engine._round = 1  # then the round moves: the publication
    assert (await a_frames.until(is_answer))["round"] == 1
    assert not a.waiting


async def test_waits_end_unanswered_when_the_engine_closes(channel: TaskChannel) -> None:
    a, a_frames = connect(channel, "a")
    connect(channel, "b")
    await post(channel, a, 1.0, 0)
    assert await wait_after(channel, a, a_frames, 0) is None and a.waiting
    await channel.engine.close()
    for _ in range(100):
        if not a.waiting:
            break
        await asyncio.sleep(0.01)
    assert not a.waiting and channel.status.waiters == 0
    assert not any(is_answer(frame) for frame in a_frames.seen)


async def test_a_short_wait_gets_the_answer_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A round that completes within the status interval: each waiter's only frame is the
    answer, whatever the contributions meanwhile (they never wake the waits)."""
    monkeypatch.setattr(push, "STATUS_INTERVAL_S", 60.0)
    crowd = 20
    channel, clients = crowd_channel(crowd)
    try:
        for session, frames in clients[:-1]:
            await post(channel, session, 1.0, 0)
            assert await wait_after(channel, session, frames, 0) is None
        await post(channel, clients[-1][0], 1.0, 0)
        for _, frames in clients[:-1]:
            assert (await frames.next())["round"] == 1
            assert [f["type"] for f in frames.seen] == [MessageType.LATEST_SERVER_ROUND]
    finally:
        await channel.engine.close()


async def test_the_status_interval_grows_with_the_crowd(channel: TaskChannel) -> None:
    board = channel.status
    assert board.interval() == push.STATUS_INTERVAL_S
    crowd = [connect(channel, f"w{index}") for index in range(10 * push.STATUS_CROWD)]
    for session, frames in crowd:
        session.start_wait(0, frames.send)
    assert board.waiters == 10 * push.STATUS_CROWD
    assert board.interval() == pytest.approx(10 * push.STATUS_INTERVAL_S)
    for session, _ in crowd:
        session.cancel_wait()
    assert board.waiters == 0 and board.interval() == push.STATUS_INTERVAL_S


# ---------------------------------------------------------------------------------------------
# A post that awaits the round (`awaitRound`): post and wait in one request


def awaiting(value: float, round: int) -> PostWeights:
    return PostWeights(model(value), WeightEncoding.NATIVE, round, await_round=True)


async def test_an_awaiting_post_is_answered_by_the_next_round_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No acknowledgement: each accepted post's only frame is the next round's answer, the very
    bytes every other waiter gets (a waiting latestServerRound's too), and the post that closes
    the round gets them at once."""
    monkeypatch.setattr(push, "STATUS_INTERVAL_S", 60.0)
    crowd = 10
    channel, clients = crowd_channel(crowd)
    try:
        for session, frames in clients[:-2]:
            assert await handle(channel, session, awaiting(1.0, 0), frames.send) is None
            assert session.waiting
        # One client of the crowd posts the legacy way and waits with latestServerRound.
        legacy_session, legacy_frames = clients[-2]
        await post(channel, legacy_session, 1.0, 0)
        assert await wait_after(channel, legacy_session, legacy_frames, 0) is None
        last, _ = clients[-1]
        closing = await handle(channel, last, awaiting(1.0, 0), RawFrames().send)
        assert closing is not None and unpack_message(closing)["round"] == 1  # at once
        assert channel.engine.round == 1
        for _, frames in clients[:-1]:
            assert (await frames.next())["round"] == 1
            assert [f["type"] for f in frames.seen] == [MessageType.LATEST_SERVER_ROUND]
        assert all(frames.raw[0] is closing for _, frames in clients[:-1])  # encoded once
        weights, _ = decode_weights(unpack_message(closing)["weights"])
        assert [float(w.ravel()[0]) for w in weights] == [1.0, 1.0]
        assert not any(session.waiting for session, _ in clients)
        assert channel.status.waiters == 0
    finally:
        await channel.engine.close()


async def test_a_refused_awaiting_post_is_acknowledged_at_once(channel: TaskChannel) -> None:
    a, a_frames = connect(channel, "a")
    connect(channel, "b")
    misshapen = [np.zeros((1,), np.float32)]
    nan = [np.full(shape, np.nan, np.float32) for shape in SHAPES]
    cases: list[tuple[PostWeights, str]] = [
        (awaiting(1.0, 5), "future"),
        (PostWeights(misshapen, WeightEncoding.NATIVE, 0, await_round=True), "invalid"),
        (PostWeights(nan, WeightEncoding.NATIVE, 0, await_round=True), "invalid"),
    ]
    for message, status in cases:
        reply = await handle(channel, a, message, a_frames.send)
        assert reply is not None
        ack = unpack_message(reply)
        assert ack["type"] == MessageType.POST_WEIGHTS_TO_SERVER
        assert ack["status"] == status and ack["error"] and ack["round"] == 0
        assert not a.waiting and channel.status.waiters == 0
    # Stale: the server moved on past the staleness bound.
    channel.engine.max_staleness = 0
    b = channel.sessions["b"]
    await post(channel, a, 1.0, 0)
    await post(channel, b, 1.0, 0)
    reply = await handle(channel, a, awaiting(1.0, 0), a_frames.send)
    assert reply is not None and unpack_message(reply)["status"] == "stale" and not a.waiting
    assert a_frames.seen == []


async def test_an_awaiting_post_to_a_secure_task_is_refused(channel: TaskChannel) -> None:
    a, a_frames = connect(channel, "a")
    channel.secure = object()  # type: ignore[assignment]  # only its presence matters here
    try:
        reply = await handle(channel, a, awaiting(1.0, 0), a_frames.send)
    finally:
        channel.secure = None
    assert reply is not None
    ack = unpack_message(reply)
    assert ack["status"] == "invalid" and "securely" in ack["error"] and not a.waiting


async def test_an_awaiting_post_waits_with_status_and_is_replaced_like_a_wait(
    channel: TaskChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push, "STATUS_INTERVAL_S", 0.01)
    a, a_frames = connect(channel, "a")
    b, _ = connect(channel, "b")
    assert await handle(channel, a, awaiting(1.0, 0), a_frames.send) is None
    status = parse_round_status(await a_frames.next())  # roundStatus while it waits
    assert (status.round, status.contributions, status.waiting_for) == (0, 1, "participants")
    assert a.waiting
    # A later latestServerRound replaces the post's wait: wait past round 1 instead.
    assert await wait_after(channel, a, a_frames, 1) is None
    await post(channel, b, 3.0, 0)  # round 0 -> 1: only the replaced wait would answer now
    moved = await a_frames.until(lambda f: f["type"] == MessageType.ROUND_STATUS and f["round"])
    assert parse_round_status(moved).round == 1 and a.waiting
    assert not any(is_answer(frame) for frame in a_frames.seen)
    # An awaiting post replaces a pending wait even when it is refused.
    reply = await handle(channel, a, awaiting(1.0, 7), a_frames.send)
    assert reply is not None and unpack_message(reply)["status"] == "future"
    assert not a.waiting


async def test_an_awaiting_post_for_a_past_round_is_answered_at_once(
    channel: TaskChannel,
) -> None:
    """Accepted for the current round while tagged with the one before (within the staleness
    bound): the round is already past the tag, so the answer comes at once."""
    a, a_frames = connect(channel, "a")
    b, _ = connect(channel, "b")
    await post(channel, a, 1.0, 0)
    await post(channel, b, 1.0, 0)
    reply = await handle(channel, a, awaiting(2.0, 0), a_frames.send)
    assert reply is not None
    answer = unpack_message(reply)
    assert answer["type"] == MessageType.LATEST_SERVER_ROUND and answer["round"] == 1
    assert channel.engine.contributors() == {"a"} and not a.waiting


async def test_the_board_sleeps_while_nothing_happens(
    channel: TaskChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiting client costs the server nothing until something changes: the board's watching
    task sleeps (each of its sleeps' wake-ups belongs to that sleep alone; a cancelled
    sleep's watcher once woke the next sleep, so the board spun through the event loop for as
    long as anyone waited)."""
    board = channel.status
    sleeps = 0
    sleep = board._sleep

    async def counted(event: asyncio.Event, until: float) -> None:
        nonlocal sleeps
        sleeps += 1
        await sleep(event, until)

    monkeypatch.setattr(board, "_sleep", counted)
    a, a_frames = connect(channel, "a")
    connect(channel, "b")
    await post(channel, a, 1.0, 0)
    await wait_after(channel, a, a_frames, 0)
    await a_frames.next()  # its status, once the wait lasted the interval
    before = sleeps
    await asyncio.sleep(5 * push.STATUS_INTERVAL_S)  # nothing changes meanwhile
    # A few passes at most (its status time coming back); the spinning board made thousands.
    assert sleeps - before <= 5
    assert a.waiting and [f["type"] for f in a_frames.seen] == [MessageType.ROUND_STATUS]

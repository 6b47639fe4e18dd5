"""Property-based fuzzing of the WebSocket handlers, in-process (hypothesis, derandomized).

Random frames (msgpack maps with random type codes and field values, well-formed updates with
random values, truncated frames, raw bytes, text) go through the real per-connection handlers
(`serve_federated`, `serve_peer`) over a scripted socket. Whatever arrives:
- the handler returns normally (no exception escapes), and closes at most once, with a
  client-error code (1003/1007/1008/1009) and a reason that fits a close frame;
- nothing is logged at ERROR (no "internal error" path, no traceback);
- every reply is a msgpack map of a type the channel may send;
- the global model and round are untouched unless an update was accepted, and are always
  finite with the model's shapes; a bystander on the same task is never closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocket

from disco.protocol.errors import ProtocolError
from disco.protocol.framing import pack, unpack_message
from disco.protocol.messages import ClientConnected, parse_decentralized, parse_federated
from disco.protocol.weights import decode_weights
from disco.server.decentralized.handler import serve_peer
from disco.server.decentralized.hub import SignalingHub
from disco.server.federated.handler import serve_federated
from disco.server.federated.hub import FederatedHub
from disco.server.settings import Settings
from disco.tasks.defaults import titanic_model, titanic_task
from disco.tasks.schema import parse_task
from disco.tasks.store import TaskStore
from robustness.conftest import (
    DECENTRALIZED_MINIMUM,
    DECENTRALIZED_TASK,
    FEDERATED_TASK,
    decentralized_task,
)

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")  # weight payloads

STEP_S = 5.0
MAX_FRAME_BYTES = 256 * 1024  # a titanic update in the legacy encoding (~140 KB) fits
CLIENT_ERRORS = {1003, 1007, 1008, 1009}
MAX_REASON_BYTES = 123

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=120,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # "explain" reruns are slow
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------- strategies

@dataclass(frozen=True)
class CurrentRound:
    """Placeholder for "the engine's round when the frame is sent, plus `offset`" (so updates
    can be accepted, or be just stale / just ahead; never below 0)."""

    offset: int


def opaque(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`strategy` as one branch of an enclosing one_of (which flattens nested one_ofs, so a
    one_of of ten kinds of junk would otherwise outweigh the branch listed next to it)."""
    return strategy.map(lambda value: value)


ints = st.one_of(
    st.integers(-3, 20),
    st.sampled_from([2**31 - 1, 2**31, 2**53, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]),
)
scalars = st.one_of(
    st.none(), st.booleans(), ints, st.floats(), st.text(max_size=12), st.binary(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
type_codes = st.one_of(ints, st.sampled_from([0, 2, 3, 8, 9, 10, 11, 13]), scalars)
# The unused second integer gives the branch entropy: hypothesis avoids repeating a choice
# sequence, so a branch with three possible values would almost never be drawn.
current_rounds = st.tuples(st.integers(-2, 1), st.integers(0, 2**20)).map(
    lambda drawn: CurrentRound(drawn[0])
)
rounds = st.one_of(current_rounds, current_rounds, opaque(st.one_of(ints, scalars)))
float32s = st.one_of(
    st.floats(width=32),  # NaN, ±Inf, subnormals, ±3.4e38 included
    st.floats(-1.0, 1.0, width=32),
)


def model_shapes(store: TaskStore) -> list[tuple[int, ...]]:
    return [tuple(w.shape) for w in store.get(FEDERATED_TASK).weights()]


@st.composite
def well_formed_weights(draw: st.DrawFn, shapes: list[tuple[int, ...]]) -> Any:
    """The model's shapes (sometimes one altered), values random, in either encoding."""
    shapes = list(shapes)
    if draw(st.integers(0, 4)) == 0:
        index = draw(st.integers(0, len(shapes) - 1))
        shapes[index] = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    fill = draw(float32s)
    tensors = [np.full(shape, fill, dtype=np.float32) for shape in shapes]
    if draw(st.booleans()):  # one random coordinate somewhere
        flat = tensors[draw(st.integers(0, len(tensors) - 1))].reshape(-1)
        if flat.size:
            flat[draw(st.integers(0, flat.size - 1))] = draw(float32s)
    if draw(st.booleans()):
        data = b"".join(t.astype("<f4").tobytes() for t in tensors)
        return {"encoding": "f32le", "shapes": [list(t.shape) for t in tensors], "data": data}
    entries = [{"shape": list(t.shape), "data": t.reshape(-1).tolist()} for t in tensors]
    return list(msgpack.packb(entries, use_bin_type=True))


def weights_values(shapes: list[tuple[int, ...]]) -> st.SearchStrategy[Any]:
    native_like = st.fixed_dictionaries(
        {
            "encoding": st.sampled_from(["f32le", "f64le", "", 1]),
            "shapes": st.lists(st.lists(st.integers(-1, 5), max_size=3), max_size=3),
            "data": st.binary(max_size=64),
        }
    )
    return st.one_of(
        well_formed_weights(shapes),
        well_formed_weights(shapes),
        well_formed_weights(shapes),
        values,
        native_like,
        st.lists(st.integers(-1, 256), max_size=32),  # legacy-like byte arrays
    )


REQUIRED_FIELDS: dict[int, tuple[str, ...]] = {
    0: (),
    2: ("peer", "signal"),
    3: (),
    8: ("round", "weights"),
    9: ("taskId", "clientId", "round", "metadataId", "metadata"),
    10: ("taskId", "clientId", "round", "metadataId"),
    11: (),
    13: (),
}
"""Fields of each client message type (docs/protocol.md), drawn with (often) the right kind."""


def messages(shapes: list[tuple[int, ...]]) -> st.SearchStrategy[dict[str, Any]]:
    """One map per client message type with its fields present, values right or wrong, plus
    random extra fields; and maps with any type code (or none) and any subset of the fields."""
    names = st.one_of(st.text(max_size=8), st.text(max_size=8), values)
    fields: dict[str, st.SearchStrategy[Any]] = {
        "round": rounds,
        "weights": weights_values(shapes),
        "numSamples": st.one_of(st.integers(0, 100), ints, scalars),
        "nbSamples": st.one_of(st.integers(0, 100), ints, scalars),
        "peer": st.one_of(st.integers(0, 4), ints, scalars),
        "signal": st.one_of(st.dictionaries(st.text(max_size=6), values, max_size=3), values),
        "taskId": names,
        "clientId": names,
        "metadataId": names,
        "metadata": names,
        "awaitRound": st.one_of(st.booleans(), scalars),
    }

    def typed(code: int, required: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
        extras = {k: v for k, v in fields.items() if k not in required}
        return st.fixed_dictionaries(
            {"type": st.just(code), **{k: fields[k] for k in required}},
            optional=extras if required else {},
        )

    anything = st.fixed_dictionaries({}, optional={"type": type_codes, **fields})
    return st.one_of(*(typed(c, r) for c, r in REQUIRED_FIELDS.items()), anything)


def updates(shapes: list[tuple[int, ...]]) -> st.SearchStrategy[dict[str, Any]]:
    """postWeightsToServer with a (mostly) usable round and (often) well-formed weights."""
    samples = st.one_of(st.integers(1, 100), st.integers(1, 100), ints, scalars)
    return st.fixed_dictionaries(
        {"type": st.just(8), "round": rounds, "weights": weights_values(shapes)},
        optional={"numSamples": samples, "awaitRound": st.one_of(st.booleans(), scalars)},
    )


def frames(shapes: list[tuple[int, ...]]) -> st.SearchStrategy[Any]:
    """A frame to send: a message (packed at send time), or bytes / text exactly as given."""
    message = messages(shapes)
    return st.one_of(
        message,
        message,
        message,
        st.tuples(message, st.integers(0, 1000)).map(lambda mt: ("truncate", *mt)),
        st.binary(max_size=48),
        st.text(max_size=16),
        st.just({"type": 0}),
    )


def to_wire(frame: Any, current_round: int) -> bytes | str:
    """Pack a drawn frame, resolving CurrentRound and truncations."""
    if isinstance(frame, tuple):
        _, message, cut = frame
        packed = to_wire(message, current_round)
        assert isinstance(packed, bytes)
        return packed[: cut % max(len(packed), 1)]
    if isinstance(frame, dict):
        if isinstance(frame.get("round"), CurrentRound):
            frame = {**frame, "round": max(0, current_round + frame["round"].offset)}
        return pack(frame)
    return cast(bytes | str, frame)


# --------------------------------------------------------------------------- harness


class ScriptedSocket:
    """Enough of starlette's WebSocket for the handlers: frames in, replies and closes out."""

    def __init__(self, query: dict[str, str] | None = None) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[bytes] = []
        self.closes: list[tuple[int, str | None]] = []
        self.query_params = query or {}
        self.scope: dict[str, Any] = {"type": "websocket", "extensions": {}}  # no direct writer
        self.replied = asyncio.Event()
        self.idle = asyncio.Event()  # the handler waits for a frame: all pushed ones are handled

    async def accept(self) -> None:
        return None

    async def receive(self) -> dict[str, Any]:
        if self.incoming.empty():
            self.idle.set()
        message = await self.incoming.get()
        self.idle.clear()
        return message

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)
        self.replied.set()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closes.append((code, reason))

    def push(self, frame: bytes | str) -> None:
        self.idle.clear()
        key = "bytes" if isinstance(frame, bytes) else "text"
        self.incoming.put_nowait({"type": "websocket.receive", key: frame})

    def leave(self) -> None:
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})

    def replies(self) -> list[dict[str, Any]]:
        return [unpack_message(frame) for frame in self.sent]


class Records(logging.Handler):
    """Collects `disco.*` records (caplog is function-scoped: hypothesis reuses the test)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[str]:
        return [
            r.getMessage() for r in self.records if r.levelno >= logging.ERROR or r.exc_info
        ]


@contextlib.contextmanager
def recording() -> Iterator[Records]:
    logger = logging.getLogger("disco")
    handler = Records()
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def check_close(socket: ScriptedSocket) -> None:
    assert len(socket.closes) <= 1, socket.closes
    for code, reason in socket.closes:
        assert code in CLIENT_ERRORS, (code, reason)
        assert reason and len(reason.encode()) <= MAX_REASON_BYTES, reason


def describe(socket: ScriptedSocket) -> None:
    """Hypothesis statistics (`--hypothesis-show-statistics`): what the examples reached."""
    for reply in socket.replies():
        describe_reply(reply)
    for code, _ in socket.closes:
        event(f"closed {code}")


def describe_reply(reply: dict[str, Any]) -> None:
    event(f"reply type {reply['type']} {reply.get('status', '')}".strip())


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with titanic and a decentralized task, copied for each federated example."""
    data_dir = tmp_path_factory.mktemp("fuzz-template") / "data"
    store = TaskStore(data_dir)
    store.load(with_defaults=False)  # only what the fuzzers use: copying it is cheap
    store.add(parse_task(titanic_task()), titanic_model(np.random.default_rng(0)))
    store.add(
        decentralized_task(DECENTRALIZED_TASK, DECENTRALIZED_MINIMUM),
        titanic_model(np.random.default_rng(1)),
    )
    return data_dir


@pytest.fixture(scope="module")
def shapes(template: Path) -> list[tuple[int, ...]]:
    store = TaskStore(template)
    store.load(with_defaults=False)
    return model_shapes(store)


def fuzz_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        max_frame_bytes=MAX_FRAME_BYTES,
        default_min_participants=1,
        round_deadline_s=60.0,
        duplicate_client_grace_s=0.0,
        aggregation_thread_threshold=10**9,  # aggregate on the loop: no threads per example
    )


# --------------------------------------------------------------------------- pure parsers


@FUZZ
@given(data=st.data())
def test_parsers_only_raise_protocol_errors(data: st.DataObject) -> None:
    """Any bytes: decoding either yields a typed message or raises ProtocolError, nothing else."""
    frame = data.draw(st.one_of(st.binary(max_size=64), messages([(2, 3), (3,)]).map(
        lambda m: to_wire(m, 0))))
    if isinstance(frame, str):
        return
    for parse in (parse_federated, parse_decentralized):
        with contextlib.suppress(ProtocolError):
            parse(unpack_message(frame, MAX_FRAME_BYTES))


# --------------------------------------------------------------------------- federated


async def federated_scenario(
    data_dir: Path, frames_in: list[Any], query: dict[str, str]
) -> None:
    store = TaskStore(data_dir)
    store.load(with_defaults=False)
    hub = FederatedHub(store, fuzz_settings(data_dir))
    await hub.start()
    channel = await hub.channel(FEDERATED_TASK)
    assert channel is not None
    bystander = hub.attach(channel, "bystander")
    round_before, weights_before = channel.engine.current()
    bytes_before = [w.tobytes() for w in weights_before]
    version_before = store.get(FEDERATED_TASK).model_version

    socket = ScriptedSocket(query)
    serving = asyncio.create_task(
        serve_federated(cast(WebSocket, socket), FEDERATED_TASK, "fuzzer", hub)
    )
    for frame in frames_in:
        if serving.done():
            break
        socket.push(to_wire(frame, channel.engine.round))
        # Let the handler finish with this frame (CurrentRound must see its effect).
        idle = asyncio.create_task(socket.idle.wait())
        await asyncio.wait([serving, idle], timeout=STEP_S, return_when=asyncio.FIRST_COMPLETED)
        idle.cancel()
    socket.leave()
    await asyncio.wait_for(serving, STEP_S)
    assert serving.result() is None

    check_close(socket)
    for reply in socket.replies():
        assert reply["type"] in (0, 8, 10, 11, 13), reply
        if reply["type"] == 8:
            assert reply["status"] in ("accepted", "stale", "future", "invalid"), reply
    # An accepted post with awaitRound is answered by a later round's model, not acknowledged.
    accepted = any(
        r.get("status") == "accepted" or (r["type"] == 11 and r["round"] > round_before)
        for r in socket.replies()
    )
    describe(socket)
    assert bystander.close_request is None

    round_after, weights_after = channel.engine.current()
    assert [w.shape for w in weights_after] == [w.shape for w in weights_before]
    assert all(np.isfinite(w).all() for w in weights_after)
    if not accepted:
        assert round_after == round_before
        assert [w.tobytes() for w in weights_after] == bytes_before
        assert store.get(FEDERATED_TASK).model_version == version_before
    hub.detach(bystander)
    await hub.close()


@FUZZ
@given(data=st.data())
def test_federated_handler_survives_random_frames(
    data: st.DataObject, template: Path, shapes: list[tuple[int, ...]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    frame = st.one_of(updates(shapes), updates(shapes), frames(shapes))
    frames_in = data.draw(st.lists(frame, min_size=1, max_size=4), label="frames")
    query = data.draw(
        st.sampled_from(
            [{}, {}, {}, {"encoding": "native"}, {"encoding": "legacy"}, {"encoding": "x"}]
        ),
        label="query",
    )
    if data.draw(st.booleans(), label="hello first"):
        frames_in = [{"type": 0}, *frames_in]
    data_dir = tmp_path_factory.mktemp("fuzz-federated") / "data"
    shutil.copytree(template, data_dir)
    try:
        with recording() as records:
            asyncio.run(federated_scenario(data_dir, frames_in, query))
        assert records.errors() == []
    finally:
        shutil.rmtree(data_dir.parent, ignore_errors=True)


async def updates_scenario(data_dir: Path, frames_in: list[dict[str, Any]]) -> None:
    """Frame by frame: the model changes exactly when an update is accepted, into that update."""
    store = TaskStore(data_dir)
    store.load(with_defaults=False)
    hub = FederatedHub(store, fuzz_settings(data_dir))
    await hub.start()
    channel = await hub.channel(FEDERATED_TASK)
    assert channel is not None
    socket = ScriptedSocket()
    serving = asyncio.create_task(
        serve_federated(cast(WebSocket, socket), FEDERATED_TASK, "updater", hub)
    )
    for frame in frames_in:
        round_before, weights_before = channel.engine.current()
        bytes_before = [w.tobytes() for w in weights_before]
        wire = to_wire(frame, round_before)
        socket.replied.clear()
        socket.push(wire)
        replied = asyncio.create_task(socket.replied.wait())
        await asyncio.wait([serving, replied], timeout=STEP_S, return_when=asyncio.FIRST_COMPLETED)
        replied.cancel()
        assert not serving.done(), f"closed: {socket.closes}"
        reply = socket.replies()[-1]
        describe_reply(reply)
        round_after, weights_after = channel.engine.current()
        if reply["type"] == 11:  # awaitRound: accepted, answered by the next round's model
            assert unpack_message(cast(bytes, wire)).get("awaitRound") is True, reply
            reply = {**reply, "status": "accepted"}
        if reply["status"] == "accepted":  # the only participant: aggregated at once
            assert reply["round"] == round_after == round_before + 1, reply
            sent, _ = decode_weights(unpack_message(cast(bytes, wire))["weights"])
            for got, want in zip(weights_after, sent, strict=True):  # the mean of one (-0 == 0)
                assert np.array_equal(got, np.asarray(want, dtype=np.float32))
            assert store.get(FEDERATED_TASK).round == round_after
        else:
            assert reply["status"] in ("invalid", "stale", "future"), reply
            assert round_after == round_before and reply["round"] == round_before
            assert [w.tobytes() for w in weights_after] == bytes_before
        assert all(np.isfinite(w).all() for w in weights_after)
    socket.leave()
    await asyncio.wait_for(serving, STEP_S)
    assert socket.closes == []
    await hub.close()


@FUZZ
@given(data=st.data())
def test_federated_model_changes_only_by_accepted_updates(
    data: st.DataObject, template: Path, shapes: list[tuple[int, ...]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Well-formed updates with random values (NaN/Inf/huge included), shapes (sometimes one
    altered) and round offsets (stale, current, ahead): each is either accepted and becomes the
    model, or refused with the model untouched."""
    update = st.fixed_dictionaries(
        {"type": st.just(8), "round": current_rounds, "weights": well_formed_weights(shapes)},
        optional={"numSamples": st.integers(1, 1000), "awaitRound": st.booleans()},
    )
    frames_in = data.draw(st.lists(update, min_size=1, max_size=4), label="updates")
    data_dir = tmp_path_factory.mktemp("fuzz-updates") / "data"
    shutil.copytree(template, data_dir)
    try:
        with recording() as records:
            asyncio.run(updates_scenario(data_dir, frames_in))
        assert records.errors() == []
    finally:
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def test_harness_sees_an_accepted_update(
    template: Path, shapes: list[tuple[int, ...]], tmp_path: Path
) -> None:
    """The control: a clean update through the same harness is accepted and persisted (so the
    "untouched unless accepted" properties are not vacuous)."""
    data_dir = tmp_path / "data"
    shutil.copytree(template, data_dir)
    update = [np.full(shape, 0.5, dtype=np.float32) for shape in shapes]
    payload = {"encoding": "f32le", "shapes": [list(s) for s in shapes],
               "data": b"".join(u.tobytes() for u in update)}

    async def run() -> None:
        store = TaskStore(data_dir)
        store.load(with_defaults=False)
        hub = FederatedHub(store, fuzz_settings(data_dir))
        await hub.start()
        socket = ScriptedSocket()
        serving = asyncio.create_task(
            serve_federated(cast(WebSocket, socket), FEDERATED_TASK, "good", hub)
        )
        socket.push(pack({"type": 8, "round": 0, "weights": payload}))
        await asyncio.wait_for(socket.replied.wait(), STEP_S)
        socket.leave()
        await asyncio.wait_for(serving, STEP_S)
        assert socket.replies()[0]["status"] == "accepted"
        channel = hub.channels()[FEDERATED_TASK]
        assert channel.engine.round == 1
        assert store.get(FEDERATED_TASK).round == 1
        await hub.close()

    asyncio.run(run())


# --------------------------------------------------------------------------- decentralized


async def decentralized_scenario(store: TaskStore, data_dir: Path, frames_in: list[Any]) -> None:
    hub = SignalingHub(store, fuzz_settings(data_dir), max_frame_bytes=MAX_FRAME_BYTES)
    await hub.start()
    minimum = hub.task_minimum(DECENTRALIZED_TASK)
    assert minimum is not None
    bystander = hub.attach(DECENTRALIZED_TASK, minimum)
    hub.handle(bystander, ClientConnected())  # peer id 1: fuzzed `peer` fields may target it
    version_before = store.get(DECENTRALIZED_TASK).model_version

    socket = ScriptedSocket()
    serving = asyncio.create_task(serve_peer(cast(WebSocket, socket), DECENTRALIZED_TASK, hub))
    for frame in frames_in:
        if serving.done():
            break
        socket.push(to_wire(frame, 0))
        idle = asyncio.create_task(socket.idle.wait())
        await asyncio.wait([serving, idle], timeout=STEP_S, return_when=asyncio.FIRST_COMPLETED)
        idle.cancel()
        for _ in range(3):  # let the writer task flush the replies the hub queued
            await asyncio.sleep(0)
    socket.leave()
    await asyncio.wait_for(serving, STEP_S)
    assert serving.result() is None

    check_close(socket)
    describe(socket)
    for reply in socket.replies():
        assert reply["type"] in (1, 2, 4), reply
    assert not bystander.outbox.closed
    for _ in range(bystander.outbox.queued_frames):
        frame = await bystander.outbox.get()
        assert frame is not None
        relayed = unpack_message(frame)
        assert relayed["type"] in (1, 2, 4), relayed
        if relayed["type"] == 2:
            assert isinstance(relayed["signal"], dict) and type(relayed["peer"]) is int
    assert store.get(DECENTRALIZED_TASK).model_version == version_before
    await hub.close()


@FUZZ
@given(data=st.data())
def test_decentralized_handler_survives_random_frames(
    data: st.DataObject, template: Path, shapes: list[tuple[int, ...]]
) -> None:
    frames_in = data.draw(st.lists(frames(shapes), min_size=1, max_size=5), label="frames")
    if data.draw(st.booleans(), label="hello first"):
        frames_in = [{"type": 0}, *frames_in]
    store = TaskStore(template)  # read-only here: the signaling hub never writes models
    store.load(with_defaults=False)
    with recording() as records:
        asyncio.run(decentralized_scenario(store, template, frames_in))
    assert records.errors() == []


def test_fuzz_strategies_reach_every_message(shapes: list[tuple[int, ...]]) -> None:
    """The control: the frame strategy produces every valid message of both channels (so the
    properties above are exercised past the envelope checks)."""
    seen: set[str] = set()

    @settings(derandomize=True, database=None, max_examples=400, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(frames(shapes))
    def collect(frame: Any) -> None:
        wire = to_wire(frame, 0)
        if isinstance(wire, str):
            return
        for parse in (parse_federated, parse_decentralized):
            with contextlib.suppress(ProtocolError):
                seen.add(type(parse(unpack_message(wire, MAX_FRAME_BYTES))).__name__)

    collect()
    assert seen == {
        "ClientConnected", "PostWeights", "LatestServerRound", "PullServerStatistics",
        "PostMetadata", "GetMetadataMap", "SignalForPeer", "PeerIsReady",
    }

"""SIGKILL the server at random moments of federated training and task uploads; after every
restart nothing persisted is lost or torn.

`disco-server` runs as a subprocess on a tmp data dir (no default tasks, short round deadline).
Two raw WebSocket clients train a task whose model has ~1e6 parameters (4 MB of weights, so each
persistence takes a few ms) in native encoding, each posting a constant model per round: every
aggregate is then an exactly known constant model. Each kind of kill happens twice (trigger four
times: 14 restarts), in an order a seeded RNG picks, as are the moments:

- `trigger`: a random 0-80 ms after the post that completes a round (aggregation, then
  persistence of the new model, then publication);
- `weights` / `meta` / `model`: the moment the store's temp file for the new weights version,
  for meta.json (the commit) or for model.json (after the commit) appears, plus 0-3 ms;
- `anytime`: a random moment of the training;
- `upload`: a random 0-40 ms into a POST /tasks.

After each restart (checked before any client reconnects):
- GET /tasks lists every task whose POST got its 201, and every task it lists serves exactly the
  model it was created with;
- the trained task serves (model.json?format=tfjs + its weights file) a complete model that is
  either one the clients received (type 11) at exactly the round the server now reports, or the
  model of the round after the last one they fetched (persisted, killed before publication):
  then it must be the mean of one update of each client;
- its round never goes backwards: at least the last round any client was told about, and at most
  one more;
- the task folder keeps at most the current and previous weights files, no temp file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from disco.protocol.framing import pack, unpack_message
from disco.protocol.weights import encode_native
from disco.tasks.artifacts import ModelArtifacts
from disco.tasks.sequential import SequentialBuilder
from interop.harness import ServerProcess
from support.robust_ws import open_ws, task_json, ws_base

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SEED = 20_240_611
BIG = "crash-big"
BIG_INPUTS, BIG_UNITS = 1000, 1000  # 1,001,000 float32 parameters: 4 MB
SMALL_INPUTS, SMALL_UNITS = 256, 128  # ~130 KB uploads
ANSWER_TIMEOUT_S = 15.0
MODES = ("trigger", "trigger", "weights", "meta", "model", "anytime", "upload")
# Every kind of kill twice (trigger four times), in a seeded random order: each mode is certain
# to be exercised (24 random draws, as before, left one mode at 3.4 hits on average and could
# miss one), with 14 server restarts instead of 24.
KILLS = 2 * len(MODES)
WRITES = {  # kill modes that wait for the store's temp file of ... to appear
    "weights": ".weights-",  # the new weights version (before the commit)
    "meta": ".meta.json.",  # meta.json, the commit point
    "model": ".model.json.",  # model.json, rewritten after the commit (repaired at load)
}


def model(inputs: int, units: int, seed: int) -> ModelArtifacts:
    return SequentialBuilder((inputs,)).dense(units, "linear").build(np.random.default_rng(seed))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def update_value(client: int, round_: int) -> float:
    """What client `client` posts (every parameter) when training from round `round_`: small
    integers, so the mean of two is exact in float32."""
    return float(4 * round_ + 2 * client + 1)


def multipart(task_id: str, artifacts: ModelArtifacts, **training: Any) -> list[Any]:
    """POST /tasks multipart parts: task.json, model.json, weights.bin."""
    task = task_json(task_id, minNbOfParticipants=2, **training)
    return [
        ("task.json", ("task.json", json.dumps(task).encode(), "application/json")),
        ("model.json", ("model.json", json.dumps(artifacts.to_layers_json("weights.bin")).encode(),
                        "application/json")),
        ("weights", ("weights.bin", artifacts.weight_data, "application/octet-stream")),
    ]


# --------------------------------------------------------------------------- what clients saw


@dataclass
class History:
    """Everything the clients were told, across every server life."""

    seen: dict[str, int] = field(default_factory=dict)  # sha256 of weights -> round (type 11)
    max_round: int = 0  # highest round any reply mentioned
    max_fetched: int = 0  # highest round whose weights a client received
    posted: dict[int, set[float]] = field(default_factory=lambda: {0: set(), 1: set()})
    posts_by_round: dict[int, int] = field(default_factory=dict)  # in this server life
    triggers: int = 0  # posts sent that completed their round
    tasks: dict[str, str] = field(default_factory=dict)  # created (201) -> sha256 of weights
    maybe_tasks: dict[str, str] = field(default_factory=dict)  # POST cut by a kill
    outcomes: dict[str, int] = field(default_factory=dict)

    def saw_round(self, round_: int) -> None:
        self.max_round = max(self.max_round, round_)

    def saw_model(self, round_: int, data: bytes) -> None:
        self.saw_round(round_)
        self.max_fetched = max(self.max_fetched, round_)
        digest = sha256(data)
        known = self.seen.setdefault(digest, round_)
        assert known == round_, f"one model served as rounds {known} and {round_}"

    def will_post(self, client: int, round_: int, value: float) -> bool:
        """Record a post about to be sent; True when it completes its round (the trigger)."""
        self.posted[client].add(value)
        self.posts_by_round[round_] = self.posts_by_round.get(round_, 0) + 1
        return self.posts_by_round[round_] == 2

    def note(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class Trainer:
    """One raw federated client: fetch the round's model, post its constant update, wait for the
    next round; again, until the server dies."""

    def __init__(self, index: int, base: str, history: History) -> None:
        self.index = index
        self.url = f"{ws_base(base)}/federated/{BIG}/client-{index}?encoding=native"
        self.history = history
        self._update: tuple[float, dict[str, Any]] | None = None

    def _payload(self, value: float, shapes: list[tuple[int, ...]]) -> dict[str, Any]:
        if self._update is None or self._update[0] != value:
            weights = [np.full(shape, value, np.float32) for shape in shapes]
            self._update = (value, encode_native(weights))
        return self._update[1]

    async def run(self) -> None:
        """Train until the connection fails (the server was killed, maybe mid-handshake)."""
        with contextlib.suppress(ConnectionClosed, InvalidHandshake, OSError, TimeoutError):
            ws = await open_ws(self.url)
            try:
                await self._train(ws)
            finally:
                ws.transport.abort()

    async def _receive(self, ws: ClientConnection, kind: int) -> dict[str, Any]:
        frame = await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_S)
        assert isinstance(frame, bytes), "the server must send binary frames"
        reply = unpack_message(frame)
        assert reply["type"] == kind, reply
        return reply

    async def _server_round(self, ws: ClientConnection) -> int:
        await ws.send(pack({"type": 13}))
        round_ = int((await self._receive(ws, 13))["statistics"]["round"])
        self.history.saw_round(round_)
        return round_

    async def _train(self, ws: ClientConnection) -> None:
        history = self.history
        await ws.send(pack({"type": 0}))
        await self._receive(ws, 0)
        while True:
            await ws.send(pack({"type": 11}))
            latest = await self._receive(ws, 11)
            round_, weights = int(latest["round"]), latest["weights"]
            assert weights["encoding"] == "f32le", "native weights were asked for"
            history.saw_model(round_, weights["data"])
            value = update_value(self.index, round_)
            payload = self._payload(value, [tuple(s) for s in weights["shapes"]])
            trigger = history.will_post(self.index, round_, value)
            await ws.send(pack({"type": 8, "round": round_, "weights": payload}))
            if trigger:
                history.triggers += 1
            reply = await self._receive(ws, 8)
            assert reply["status"] == "accepted", reply
            current = int(reply["round"])
            history.saw_round(current)
            for _ in range(int(ANSWER_TIMEOUT_S / 0.005)):  # until the round advances
                if current > round_:
                    break
                await asyncio.sleep(0.005)
                current = await self._server_round(ws)
            else:
                raise AssertionError(f"round {round_} never completed")


# --------------------------------------------------------------------------- the server


class Server:
    """`disco-server` as a subprocess that can be SIGKILLed and restarted; always reaped."""

    def __init__(self, data_dir: Path) -> None:
        self.process = ServerProcess(
            data_dir, extra_args=("--no-default-tasks", "--round-deadline", "0.5")
        )
        self.base = ""

    @property
    def task_dir(self) -> Path:
        return self.process.data_dir / "tasks" / BIG

    async def start(self) -> str:
        self.base = await asyncio.to_thread(self.process.start)
        return self.base

    def kill(self) -> None:
        """SIGKILL: no clean-up code runs in the server."""
        proc = self.process.process
        if proc is not None and proc.poll() is None:
            proc.kill()

    def reap(self) -> None:
        """Kill if still running and wait for the process to be gone."""
        proc, self.process.process = self.process.process, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)

    def kill_when_writing(self, prefix: str, delay_s: float, timeout_s: float) -> bool:
        """Poll the task folder (from a thread) for a temp file named `prefix...tmp`; kill
        `delay_s` after it appears; True if it appeared (else kill at `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        seen = False
        while time.monotonic() < deadline:
            try:
                names = [entry.name for entry in os.scandir(self.task_dir)]
            except OSError:
                names = []
            if any(n.startswith(prefix) and n.endswith(".tmp") for n in names):
                seen = True
                break
            time.sleep(0.0002)
        if seen and delay_s > 0:
            time.sleep(delay_s)
        self.kill()
        return seen


# --------------------------------------------------------------------------- HTTP


async def upload(http: httpx.AsyncClient, history: History, task_id: str, seed: int) -> None:
    """POST /tasks a small task; recorded as created only once the 201 arrived."""
    artifacts = model(SMALL_INPUTS, SMALL_UNITS, seed)
    digest = sha256(artifacts.weight_data)
    history.maybe_tasks[task_id] = digest
    response = await http.post("/tasks", files=multipart(task_id, artifacts))
    assert response.status_code == 201, response.text
    history.tasks[task_id] = history.maybe_tasks.pop(task_id)


async def served_weights(http: httpx.AsyncClient, task_id: str) -> bytes:
    """The weights the TF.js layers model.json of a task points to, as served."""
    response = await http.get(f"/tasks/{task_id}/model.json", params={"format": "tfjs"})
    assert response.status_code == 200, response.text
    manifest = response.json()["weightsManifest"]
    data = b""
    for path in (p for group in manifest for p in group["paths"]):
        weights = await http.get(f"/tasks/{task_id}/{path}", params={"format": "tfjs"})
        assert weights.status_code == 200, weights.text
        data += weights.content
    expected = 4 * sum(int(np.prod(w["shape"])) for g in manifest for w in g["weights"])
    assert len(data) == expected, f"{task_id}: {len(data)} bytes of weights, {expected} expected"
    return data


async def verify(http: httpx.AsyncClient, server: Server, history: History, lost: set[str]) -> None:
    """Every invariant of the module docstring, before any client reconnects."""
    listed = {task["taskID"] for task in (await http.get("/tasks")).json()}
    assert BIG in listed
    assert set(history.tasks) <= listed, f"tasks lost: {set(history.tasks) - listed}"
    extra = listed - set(history.tasks) - {BIG}
    assert extra <= set(history.maybe_tasks), f"unexpected tasks {extra - set(history.maybe_tasks)}"
    assert not listed & lost, f"tasks came back: {listed & lost}"
    for task_id in list(history.maybe_tasks):  # cut by a kill: whole, or not at all (for ever)
        digest = history.maybe_tasks.pop(task_id)
        if task_id in listed:
            history.tasks[task_id] = digest
        else:
            lost.add(task_id)
    for task_id, digest in history.tasks.items():
        assert sha256(await served_weights(http, task_id)) == digest, f"{task_id} changed"

    status = (await http.get(f"/tasks/{BIG}/status")).json()
    round_ = int(status["round"])
    data = await served_weights(http, BIG)
    digest = sha256(data)
    assert history.max_round <= round_ <= history.max_round + 1, (
        f"server at round {round_}, clients were told round {history.max_round}"
    )
    if digest in history.seen:
        assert history.seen[digest] == round_, "a model served with another round number"
        history.note("known model")
    else:  # persisted, killed before the clients fetched it: the mean of the round's updates
        assert round_ == history.max_fetched + 1, (round_, history.max_fetched)
        values = np.frombuffer(data, dtype=np.float32)
        assert (values == values[0]).all(), "an unknown model that is no aggregate"
        means = {(a + b) / 2 for a in history.posted[0] for b in history.posted[1]}
        assert float(values[0]) in means, f"aggregate {values[0]} of no posted updates"
        history.seen[digest] = round_
        history.note("persisted before publication")

    names = os.listdir(server.task_dir)
    assert not [n for n in names if n.endswith(".tmp")], names
    assert len([n for n in names if n.startswith("weights-")]) <= 2, names
    assert not [n for n in os.listdir(server.task_dir.parent) if n.startswith(".")]


# --------------------------------------------------------------------------- the test


async def wait_triggers(
    history: History, target: int, trainers: list[asyncio.Task[None]], timeout_s: float = 20
) -> None:
    """Wait until `target` posts completed their round (polling: the moment matters)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while history.triggers < target:
        for trainer in trainers:
            if trainer.done():
                trainer.result()  # a client's failure, raised here
                raise AssertionError("a client stopped training before the planned kill")
        assert loop.time() < deadline, "training stopped before the planned kill"
        await asyncio.sleep(0.001)


async def one_life(
    server: Server, history: History, rng: random.Random, life: int, mode: str
) -> None:
    """Train until this life's planned kill of kind `mode`."""
    history.posts_by_round.clear()
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
        if rng.random() < 0.4:
            await upload(http, history, f"up-{life}", seed=life)
        trainers = [
            asyncio.create_task(Trainer(i, server.base, history).run()) for i in range(2)
        ]
        try:
            if mode == "trigger":
                await wait_triggers(history, history.triggers + rng.randint(1, 3), trainers)
                await asyncio.sleep(rng.uniform(0, 0.08))
                server.kill()
            elif mode in WRITES:
                await wait_triggers(history, history.triggers + rng.randint(1, 2), trainers)
                hit = await asyncio.to_thread(
                    server.kill_when_writing, WRITES[mode], rng.uniform(0, 0.003), 5
                )
                history.note(f"killed writing {mode}" if hit else f"{mode} write missed")
            elif mode == "anytime":
                await asyncio.sleep(rng.uniform(0, 0.8))
                server.kill()
            else:
                await asyncio.sleep(rng.uniform(0, 0.3))
                posting = asyncio.create_task(upload(http, history, f"cut-{life}", seed=life))
                await asyncio.sleep(rng.uniform(0, 0.04))
                server.kill()
                with contextlib.suppress(httpx.HTTPError):
                    await posting
        finally:
            server.kill()
            await asyncio.wait_for(asyncio.gather(*trainers, return_exceptions=True), 20)
            await asyncio.to_thread(server.reap)
    for trainer in trainers:
        error = trainer.exception()
        assert error is None, f"a client failed: {error!r}"


async def test_sigkill_never_loses_or_tears_persisted_state(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    server = Server(tmp_path / "data")
    history = History()
    lost: set[str] = set()
    big = model(BIG_INPUTS, BIG_UNITS, seed=SEED)
    history.seen[sha256(big.weight_data)] = 0
    start = time.monotonic()
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.base, timeout=60) as http:
            response = await http.post("/tasks", files=multipart(BIG, big))
            assert response.status_code == 201, response.text
        plan = [*MODES, *MODES]
        rng.shuffle(plan)
        assert len(plan) == KILLS and set(plan) == set(MODES)
        for life, mode in enumerate(plan):
            await one_life(server, history, rng, life, mode)
            history.note(mode)
            await server.start()
            async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
                await verify(http, server, history, lost)
    finally:
        server.kill()
        await asyncio.to_thread(server.reap)
    print(  # the spread of what happened (varies with timing; the asserts above do not)
        f"\n{KILLS} kills in {time.monotonic() - start:.1f} s, last round {history.max_round}, "
        f"{len(history.tasks)} tasks uploaded, {len(lost)} uploads cut: {history.outcomes}"
    )
    assert history.max_round >= KILLS // 2, "too little training happened between kills"

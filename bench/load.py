"""Load benchmark: 1,000 federated clients training 3 rounds, and 10,000 idle WebSocket connections.

Run: `.venv/bin/python bench/load.py` (`--quick`: 200 clients, 2,000 idle connections).

Both parts start a fresh `disco-server` subprocess (its own RSS, its open-files limit raised)
and drive it over loopback from several client processes (asyncio + websockets, no
compression), so that the client side has its own cores' worth of Python and can be shown not
to be the bottleneck (their CPU use and event-loop lag are reported).

Federated (per client kind, `--encodings`: native then legacy by default): one task with a
small model (Dense 10 → 10 → 1, 121 parameters) and `minNbOfParticipants` = number of clients,
so each round aggregates every client. Every client connects (clientConnected, then
latestServerRound for the starting model), the workers wait at a barrier, then each client, for
each round, posts its weights (type 8) and gets the next round:
- `native` (the Python client and the browser engine): post and wait in one request, the post
  carrying `awaitRound: true`; the server answers an accepted post with the next round's model
  the moment the round moves (2 frames a round; roundStatus frames meanwhile are skipped);
- `native-ack` (native clients before `awaitRound`, for comparison): the post is acknowledged
  (type 8), then one pushed request (latestServerRound with `afterRound`) waits for the round
  (4 frames a round);
- `legacy`, as the 2.1.1 JS client: the post is acknowledged, then latestServerRound (type 11)
  until the server round moved past the one it posted for, waiting `--poll` seconds (× 0.5–1.5,
  jitter) between requests; the default, clients / 2000 s (at least 0.1 s), keeps the waiting
  crowd at ~2,000 requests/s.
Native clients dial `/federated/...?encoding=native`; legacy ones dial `/feai/...` and post
legacy weights, as the 2.1.1 JS client. Client `i` posts `global + step × (1 ± 0.5)`, so the new
global model must be `global + step` (checked by every client, with the answer's type, round
and encoding).
- round time: from the first post of the round (any client) to the moment the last client
  holds the new round's weights; p50/p99 over the rounds. Split into posting (first → last
  post), aggregation (last post → the acknowledgement of the post that closed the round, or
  with `awaitRound`, where nothing is acknowledged, → the first client holding the new model:
  validation, mean, persistence, publication) and spreading (→ the last client holds the new
  model); with polling (legacy) clients, posting and spreading are mostly the poll interval;
- client latency: one client's post → its own copy of the new weights; p50/p99 over all
  client-rounds; ack: post → its acknowledgement (none with `awaitRound`);
- frames per client-round: WebSocket messages a client sent and received for one round;
- errors: connection failures, refused posts, wrong replies, wrong weights, timeouts, and
  ERROR lines in the server's log. Must be 0.

Idle (per route, federated then decentralized): `--idle` connections do the clientConnected
handshake and stay silent for `--hold` seconds, spread over several 127.0.0.x source addresses
(each has its own ~28k ephemeral ports). Meanwhile a fresh client measures `GET /tasks` and a
new federated connection (WebSocket handshake + clientConnected round trip); the same probes
run before the crowd connects, for comparison. Server RSS before and after → per connection.
At the end every idle connection must still answer a clientConnected.

Results: rich tables on stdout, JSON in bench/results/load.json. Every phase is bounded in
time; workers and the server are always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing as mp
import os
import platform
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import psutil  # type: ignore[import-untyped]
from numpy.typing import NDArray
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from disco.protocol.framing import pack
from disco.protocol.messages import client_connected, latest_server_round, post_weights
from disco.protocol.weights import WeightEncoding, decode_weights, encode_weights
from disco.tasks.defaults import titanic_task
from disco.tasks.sequential import SequentialBuilder
from disco.weights import split_by_shapes

ROOT = Path(__file__).resolve().parent.parent
SERVER_BIN = ROOT / ".venv" / "bin" / "disco-server"
RESULTS = Path(__file__).resolve().parent / "results" / "load.json"

FED_TASK = "load-fed"
DEAI_TASK = "load-deai"
STEP = 0.01  # how far each round moves the global model
STEP_32 = np.float32(STEP)
WEIGHT_TOLERANCE = 1e-4

START_TIMEOUT_S = 60.0
ANSWER_TIMEOUT_S = 60.0  # one reply from the server
ROUND_WAIT_S = 120.0  # a pushed round (the whole round: every client must post first)
CONNECT_PHASE_S = 180.0  # all clients of one worker connected
ROUNDS_PHASE_S = 300.0  # all rounds of one worker
CLOSE_PHASE_S = 60.0
CONNECT_CONCURRENCY = 64  # handshakes in flight per worker
LAG_TICK_S = 0.01
LOG_PROBLEM = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")  # ours and uvicorn's log formats
POLL_RATE = 2000  # latestServerRound requests per second of all waiting clients together
PROBES_BEFORE = 5
KINDS = {"native": "native", "native-ack": "native", "legacy": "legacy"}
"""Federated client kinds (`--encodings`) and the weight encoding each posts in: `native` posts
with awaitRound, `native-ack` is acknowledged then waits (see the module docstring)."""


Weights = list[NDArray[np.float32]]


# --------------------------------------------------------------------------- shared helpers


def raise_fd_limit() -> int:
    """Raise this process's soft open-files limit to the hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation), NaN for no values."""
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (every core, every process) since boot."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def short_error(error: BaseException) -> str:
    """A bounded, countable description of a failure (type and the start of the message)."""
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text[:80]}"


class LagMonitor:
    """Measures how late a periodic timer fires: the event loop's lag (saturation signal)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_TICK_S)
            self.lags.append(max(0.0, loop.time() - before - LAG_TICK_S))

    async def stop(self) -> dict[str, float]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return {"p99_ms": ms(percentile(self.lags, 99)), "max_ms": ms(max(self.lags, default=0))}


async def open_ws(url: str, source: str) -> ClientConnection:
    """A loopback WebSocket from `source` (a 127.0.0.x address), no compression, no pings."""
    return await connect(
        url,
        compression=None,
        proxy=None,
        open_timeout=ANSWER_TIMEOUT_S,
        close_timeout=5,
        ping_interval=None,
        max_size=None,
        local_addr=(source, 0),
    )


class LeanSocket(asyncio.Protocol):
    """A WebSocket client connection: websockets' sans-I/O `ClientProtocol` (the same
    handshake, framing, masking and close as websockets' asyncio client) over a plain asyncio
    protocol. The federated clients use it: the asyncio client's per-message machinery (locks,
    futures, a message assembler, a write drain per send) was most of their CPU, and the client
    processes share the machine's 2 cores with the server. No compression, no pings of its own
    (the server's are answered), no size limit."""

    def __init__(self, url: str) -> None:
        self.uri = parse_uri(url)
        self.protocol = ClientProtocol(self.uri, max_size=None)
        self.transport: asyncio.Transport | None = None
        self.frames: collections.deque[bytes | str] = collections.deque()
        self.partial: list[Frame] = []  # a fragmented message (servers rarely fragment)
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiter: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.failure: BaseException | None = None

    @classmethod
    async def open(cls, url: str, source: str) -> LeanSocket:
        """Connect from `source` (a 127.0.0.x address) and do the opening handshake."""
        socket_ = cls(url)
        uri = socket_.uri
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(
            loop.create_connection(lambda: socket_, uri.host, uri.port, local_addr=(source, 0)),
            ANSWER_TIMEOUT_S,
        )
        socket_.protocol.send_request(socket_.protocol.connect())
        socket_.flush()
        try:
            await asyncio.wait_for(asyncio.shield(socket_.handshake), ANSWER_TIMEOUT_S)
        except BaseException:
            socket_.abort()
            raise
        return socket_

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                if self.protocol.handshake_exc is not None:
                    self.fail(self.protocol.handshake_exc)
                elif not self.handshake.done():
                    self.handshake.set_result(None)
            elif isinstance(event, Frame):
                self.frame_received(event)
        self.flush()  # pongs, the close handshake's answer

    def frame_received(self, frame: Frame) -> None:
        if frame.opcode not in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            return  # ping (answered by the protocol), pong, close (the state tells)
        self.partial.append(frame)
        if not frame.fin:
            return
        first, self.partial = self.partial[0], []
        data = first.data if first.fin else b"".join(f.data for f in [first, *self.partial])
        self.frames.append(bytes(data) if first.opcode is Opcode.BINARY else bytes(data).decode())
        self.wake()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(exc or ConnectionError(f"connection closed ({self.protocol.close_code})"))
        if not self.lost.done():
            self.lost.set_result(None)

    def fail(self, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error
        if not self.handshake.done():
            self.handshake.set_exception(error)
            self.handshake.exception()  # retrieved: no "never retrieved" warning
        self.wake()

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():  # b"": the protocol half-closes
                transport.write_eof()
        if self.protocol.close_expected():
            transport.close()

    async def send(self, frame: bytes) -> None:
        if self.failure is not None or self.protocol.state is not State.OPEN:
            raise ConnectionError(f"cannot send: {self.failure or self.protocol.state.name}")
        self.protocol.send_binary(frame)
        self.flush()

    async def recv(self) -> bytes | str:
        while not self.frames:
            if self.failure is not None:
                raise ConnectionError(f"connection lost: {short_error(self.failure)}")
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return self.frames.popleft()

    async def close(self) -> None:
        """The closing handshake, bounded in time; then the socket is gone."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
            self.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.lost), 5)
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


Socket = ClientConnection | LeanSocket


async def request(ws: Socket, frame: bytes, answer: int) -> dict[str, Any]:
    """Send one request and return the server's next frame, which must be of type `answer`."""
    await ws.send(frame)
    async with asyncio.timeout(ANSWER_TIMEOUT_S):  # no task per call, unlike wait_for (3.11)
        raw = await ws.recv()
    if not isinstance(raw, bytes):
        raise ValueError("text frame from the server")
    reply = msgpack.unpackb(raw)
    if not isinstance(reply, dict) or reply.get("type") != answer:
        raise ValueError(f"expected a type-{answer} reply, got {str(reply)[:60]}")
    if "error" in reply:
        raise ValueError(f"server error: {reply['error']}")
    return reply


def wait_message(conn: Connection, timeout_s: float, what: str) -> dict[str, Any]:
    """The next message on a pipe, TimeoutError naming `what` when none comes in time."""
    if not conn.poll(timeout_s):
        raise TimeoutError(f"no {what} within {timeout_s:.0f} s")
    message = conn.recv()
    assert isinstance(message, dict)
    return message


async def close_all(sockets: Sequence[Socket]) -> None:
    """Close connections, bounded in time (a stuck close must not hang the benchmark)."""

    async def close_one(ws: Socket) -> None:
        with contextlib.suppress(Exception):
            await ws.close()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(close_one(ws) for ws in sockets)), CLOSE_PHASE_S)


# --------------------------------------------------------------------------- server process


def write_tasks(tasks_dir: Path, participants: int) -> int:
    """A federated and a decentralized task with the same small model; its parameter count."""
    artifacts = (
        SequentialBuilder((10,))
        .dense(10, "relu")
        .dense(1, "sigmoid")
        .build(np.random.default_rng(0))
    )
    base = titanic_task()
    for task_id, scheme in ((FED_TASK, "federated"), (DEAI_TASK, "decentralized")):
        info = {
            **base["trainingInformation"],
            "modelID": f"{task_id}-model",
            "scheme": scheme,
            "inputColumns": [f"x{i}" for i in range(10)],
            "outputColumns": ["y"],
            "minNbOfParticipants": participants,
            "minimumReadyPeers": 2,
        }
        display = {**base["displayInformation"], "taskTitle": f"Load benchmark ({scheme})"}
        folder = tasks_dir / task_id
        folder.mkdir(parents=True)
        task = {**base, "taskID": task_id, "displayInformation": display}
        task["trainingInformation"] = info
        (folder / "task.json").write_text(json.dumps(task))
        (folder / "model.json").write_text(json.dumps(artifacts.to_layers_json("weights.bin")))
        (folder / "weights.bin").write_bytes(artifacts.weight_data)
    return artifacts.parameter_count


def _server_limits() -> None:
    """preexec_fn of the server: as many open files as the hard limit allows."""
    raise_fd_limit()


@dataclass
class Server:
    """A running `disco-server` subprocess."""

    port: int
    proc: psutil.Process
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def rss_mib(self) -> float:
        return float(self.proc.memory_info().rss) / (1 << 20)

    def cpu_s(self) -> float:
        times = self.proc.cpu_times()
        return float(times.user + times.system)

    def log_errors(self) -> list[str]:
        """ERROR/CRITICAL lines and tracebacks of the server's log."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if LOG_PROBLEM.search(line)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server_process(
    args: argparse.Namespace, workdir: Path, name: str, participants: int
) -> Iterator[Server]:
    """A fresh data dir and `disco-server` on a free port; stopped (then killed) on exit."""
    data_dir = workdir / f"data-{name}"
    tasks_dir = workdir / f"tasks-{name}"
    write_tasks(tasks_dir, participants)
    port = free_port()
    log_path = workdir / f"server-{name}.log"
    command = [
        str(args.server_bin), "--port", str(port), "--data-dir", str(data_dir),
        "--tasks-dir", str(tasks_dir), "--no-default-tasks",
        "--round-deadline", str(args.deadline), "--log-level", "warning",
    ]  # fmt: skip
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            preexec_fn=_server_limits,  # no threads in this process yet
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {log_path.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start in time")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        yield Server(port, psutil.Process(proc.pid), log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- worker processes


@dataclass(frozen=True)
class WorkerPlan:
    """What one client process does (picklable: crosses the process boundary)."""

    kind: str  # "federated" | "idle-federated" | "idle-decentralized"
    ws_base: str
    first: int  # global index of its first client
    count: int
    total: int  # clients over all workers
    source: str  # local 127.0.0.x address
    encoding: str = "native"  # a key of KINDS
    rounds: int = 0
    poll_s: float = 0.1
    socket: str = "lean"  # federated clients: "lean" (LeanSocket) or "websockets" (asyncio)


def worker_entry(plan: WorkerPlan, conn: Connection) -> None:
    """Process entry point: run the plan's coroutine; report a crash instead of dying silently."""
    raise_fd_limit()
    try:
        if plan.kind == "federated":
            asyncio.run(federated_worker(plan, conn))
        else:
            asyncio.run(idle_worker(plan, conn))
    except BaseException as error:
        with contextlib.suppress(Exception):
            conn.send({"event": "crashed", "error": short_error(error)})
        raise
    finally:
        conn.close()


Worker = tuple[mp.process.BaseProcess, Connection]


def start_workers(plans: Sequence[WorkerPlan]) -> list[Worker]:
    """One spawned process per plan, each with a pipe to this process."""
    context = mp.get_context("spawn")
    workers: list[Worker] = []
    for plan in plans:
        parent, child = context.Pipe()
        proc = context.Process(target=worker_entry, args=(plan, child), daemon=True)
        proc.start()
        child.close()
        workers.append((proc, parent))
    return workers


def stop_workers(workers: Sequence[Worker]) -> None:
    """Join each worker briefly, then terminate and kill the ones still running."""
    deadline = time.monotonic() + CLOSE_PHASE_S
    for proc, conn in workers:
        proc.join(timeout=max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
        conn.close()


def gather_messages(workers: Sequence[Worker], timeout_s: float, what: str) -> list[dict[str, Any]]:
    """One message from every worker (a crash report is raised as an error)."""
    deadline = time.monotonic() + timeout_s
    messages = []
    for _, conn in workers:
        message = wait_message(conn, max(0.1, deadline - time.monotonic()), what)
        if message.get("event") == "crashed":
            raise RuntimeError(f"a worker crashed: {message['error']}")
        messages.append(message)
    return messages


def broadcast(workers: Sequence[Worker], command: str) -> None:
    for _, conn in workers:
        conn.send({"command": command})


async def next_command(conn: Connection, timeout_s: float) -> str:
    """Wait (off the event loop) for the parent's next command."""
    message = await asyncio.to_thread(wait_message, conn, timeout_s, "command from the parent")
    return str(message["command"])


def split(total: int, parts: int) -> list[tuple[int, int]]:
    """(first, count) of `parts` nearly equal slices of range(total)."""
    base, extra = divmod(total, parts)
    slices, first = [], 0
    for part in range(parts):
        count = base + (1 if part < extra else 0)
        slices.append((first, count))
        first += count
    return [s for s in slices if s[1] > 0]


# --------------------------------------------------------------------------- federated clients


@dataclass
class RoundRecord:
    """One client's view of one round (time.monotonic(): one clock for every process)."""

    round: int
    posted: float
    acked: float | None  # None: the post was not acknowledged (awaitRound)
    received: float
    polls: int  # requests after the post (latestServerRound)
    frames: int  # frames sent and received for the round
    closed: bool  # this post completed the round: its answer came after the aggregation


@dataclass
class FedClient:
    """One simulated participant: post and wait (`awaitRound`), or post then wait with
    latestServerRound (pushed or polled) until the round moves (see the module docstring)."""

    index: int
    ws: Socket
    encoding: WeightEncoding
    poll_s: float
    await_round: bool = False
    round: int = 0
    frames: int = 0  # frames sent and received by `run` so far
    weights: Weights = field(default_factory=list)
    records: list[RoundRecord] = field(default_factory=list)

    @property
    def factor(self) -> float:
        """1 ± 0.5, alternating: the mean over an even number of clients is exactly 1."""
        return 1.5 if self.index % 2 else 0.5

    async def fetch_latest(self) -> int:
        reply = await request(self.ws, pack(latest_server_round()), 11)
        weights, encoding = decode_weights(reply["weights"])
        if encoding is not self.encoding:
            raise ValueError(f"latestServerRound answered in {encoding}, expected {self.encoding}")
        self.round, self.weights = int(reply["round"]), weights
        return self.round

    async def wait_pushed(self, after: int | None) -> None:
        """Skip roundStatus frames until the answer to a wait past `after` arrives (after a
        waiting latestServerRound when `after` is given, else after a post with awaitRound)."""
        if after is not None:
            await self.ws.send(pack(latest_server_round(after_round=after)))
            self.frames += 1
        while True:
            async with asyncio.timeout(ROUND_WAIT_S):  # no task per frame, unlike wait_for
                raw = await self.ws.recv()
            self.frames += 1
            if not isinstance(raw, bytes):
                raise ValueError("text frame from the server")
            reply = msgpack.unpackb(raw)
            if reply.get("type") == 11:
                break
            if reply.get("type") != 14:
                raise ValueError(f"expected a type-11 or 14 frame, got {str(reply)[:60]}")
        weights, encoding = decode_weights(reply["weights"])
        if encoding is not self.encoding:
            raise ValueError(f"latestServerRound answered in {encoding}, expected {self.encoding}")
        self.round, self.weights = int(reply["round"]), weights

    async def run(self, rounds: int) -> None:
        for _ in range(rounds):
            start_round = self.round
            previous = self.weights
            # One vector operation on the flat model instead of one per tensor (client CPU).
            flat = np.concatenate([w.ravel() for w in previous])
            shapes = [w.shape for w in previous]
            mine = split_by_shapes(flat + np.float32(STEP * self.factor), shapes)
            payload = encode_weights(mine, self.encoding)
            frame = pack(post_weights(payload, start_round, await_round=self.await_round))
            frames_before = self.frames
            posted = time.monotonic()
            acked: float | None = None
            polls = 0
            ahead = closing = False
            if self.await_round:  # one request: the answer is the next round's model
                await self.ws.send(frame)
                self.frames += 1
                await self.wait_pushed(None)
            else:
                ack = await request(self.ws, frame, 8)
                self.frames += 2
                acked = time.monotonic()
                if ack.get("status") != "accepted":
                    raise ValueError(f"post refused: {ack.get('status')}")
                ahead = closing = int(ack.get("round", start_round)) > start_round
            if not self.await_round and self.encoding is WeightEncoding.NATIVE:
                polls = 1  # pushed: one waiting request
                await self.wait_pushed(start_round)
            while self.encoding is WeightEncoding.LEGACY:
                if not ahead:
                    await asyncio.sleep(self.poll_s * (0.5 + random.random()))
                polls += 1
                ahead = await self.fetch_latest() > start_round
                self.frames += 2
                if ahead:
                    break
            received = time.monotonic()
            if self.round != start_round + 1:
                raise ValueError(f"round jumped from {start_round} to {self.round}")
            if [w.shape for w in self.weights] != shapes:
                raise ValueError("the new global model has other shapes")
            # np.allclose(atol=WEIGHT_TOLERANCE, rtol=0) without its overhead (~25 µs a call),
            # once on the flat model: NaN fails the comparison as well.
            error = np.abs(np.concatenate([w.ravel() for w in self.weights]) - (flat + STEP_32))
            if not bool((error <= WEIGHT_TOLERANCE).all()):
                raise ValueError("the new global model is not the mean of the updates")
            record = RoundRecord(
                start_round, posted, acked, received, polls, self.frames - frames_before, closing
            )
            self.records.append(record)


async def connect_federated(plan: WorkerPlan, index: int) -> FedClient:
    encoding = WeightEncoding(KINDS[plan.encoding])
    if encoding is WeightEncoding.NATIVE:
        url = f"{plan.ws_base}/federated/{FED_TASK}/client-{index}?encoding=native"
    else:  # the route and encoding of the 2.1.1 JS client
        url = f"{plan.ws_base}/feai/{FED_TASK}/client-{index}"
    ws: Socket
    if plan.socket == "lean":
        ws = await LeanSocket.open(url, plan.source)
    else:
        ws = await open_ws(url, plan.source)
    client = FedClient(index, ws, encoding, plan.poll_s, await_round=plan.encoding == "native")
    try:
        await request(ws, pack(client_connected()), 0)
        await client.fetch_latest()
    except BaseException:
        await close_all([ws])
        raise
    return client


async def federated_worker(plan: WorkerPlan, conn: Connection) -> None:
    """Connect this worker's clients, wait for "go", run the rounds, report the records."""
    errors: Counter[str] = Counter()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect_one(index: int) -> FedClient | None:
        async with gate:
            try:
                return await connect_federated(plan, index)
            except Exception as error:
                errors[f"connect: {short_error(error)}"] += 1
                return None

    started = time.monotonic()
    connected = await asyncio.wait_for(
        asyncio.gather(*(connect_one(plan.first + i) for i in range(plan.count))),
        CONNECT_PHASE_S,
    )
    clients = [c for c in connected if c is not None]
    conn.send(
        {"event": "ready", "connected": len(clients), "connect_s": time.monotonic() - started}
    )
    try:
        if await next_command(conn, CONNECT_PHASE_S * 2) != "go":
            return

        async def run_one(client: FedClient) -> None:
            try:
                await client.run(plan.rounds)
            except Exception as error:
                errors[f"round {client.round}: {short_error(error)}"] += 1

        lag = LagMonitor()
        lag.start()
        cpu_before, wall_before = time.process_time(), time.monotonic()
        try:
            await asyncio.wait_for(asyncio.gather(*(run_one(c) for c in clients)), ROUNDS_PHASE_S)
        except TimeoutError:
            errors["rounds phase timed out"] += 1
        cpu_s, wall_s = time.process_time() - cpu_before, time.monotonic() - wall_before
        lags = await lag.stop()
        conn.send(
            {
                "event": "done",
                "records": [[asdict(r) for r in c.records] for c in clients],
                "errors": dict(errors),
                "cpu_s": cpu_s,
                "wall_s": wall_s,
                "lag": lags,
            }
        )
    finally:
        await close_all([c.ws for c in clients])


# --------------------------------------------------------------------------- idle connections


async def idle_worker(plan: WorkerPlan, conn: Connection) -> None:
    """Open `count` connections (handshake done), hold them, re-check them on command."""
    federated = plan.kind == "idle-federated"
    answer = 0 if federated else 1
    errors: Counter[str] = Counter()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one(index: int) -> ClientConnection | None:
        if federated:
            url = f"{plan.ws_base}/federated/{FED_TASK}/idle-{index}?encoding=native"
        else:
            url = f"{plan.ws_base}/deai/{DEAI_TASK}"
        async with gate:
            try:
                ws = await open_ws(url, plan.source)
            except Exception as error:
                errors[f"connect: {short_error(error)}"] += 1
                return None
            try:
                await request(ws, pack(client_connected()), answer)
            except Exception as error:
                errors[f"clientConnected: {short_error(error)}"] += 1
                await close_all([ws])
                return None
            return ws

    started = time.monotonic()
    opened = await asyncio.wait_for(
        asyncio.gather(*(open_one(plan.first + i) for i in range(plan.count))), CONNECT_PHASE_S
    )
    sockets = [ws for ws in opened if ws is not None]
    conn.send(
        {
            "event": "ready",
            "connected": len(sockets),
            "connect_s": time.monotonic() - started,
            "errors": dict(errors),
        }
    )
    try:
        if await next_command(conn, CONNECT_PHASE_S * 3) != "check":
            return
        # Still open after the hold, and still served: one more clientConnected on each.
        check_errors: Counter[str] = Counter()
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY * 4)

        async def check(ws: ClientConnection) -> float:
            async with gate:
                started = time.monotonic()
                try:
                    await request(ws, pack(client_connected()), answer)
                except Exception as error:
                    check_errors[f"after hold: {short_error(error)}"] += 1
                return time.monotonic() - started

        checks = await asyncio.wait_for(
            asyncio.gather(*(check(ws) for ws in sockets)), CONNECT_PHASE_S
        )
        conn.send({"event": "checked", "errors": dict(check_errors), "rtt": checks})
        await next_command(conn, CONNECT_PHASE_S)
    finally:
        await close_all(sockets)


# --------------------------------------------------------------------------- probes


async def probe_once(server: Server, name: str) -> dict[str, float]:
    """GET /tasks on a fresh HTTP connection; a fresh federated client's handshake and answer."""
    async with httpx.AsyncClient(timeout=ANSWER_TIMEOUT_S, trust_env=False) as http:
        started = time.monotonic()  # the client's own set-up (an SSL context) is not counted
        response = await http.get(f"{server.http}/tasks")
        get_tasks = time.monotonic() - started
    if response.status_code != 200 or not isinstance(response.json(), list):
        raise ValueError(f"GET /tasks answered {response.status_code}")
    started = time.monotonic()
    ws = await open_ws(f"{server.ws}/federated/{FED_TASK}/{name}?encoding=native", "127.0.0.1")
    try:
        handshake = time.monotonic() - started
        before = time.monotonic()
        await request(ws, pack(client_connected()), 0)
        rtt = time.monotonic() - before
    finally:
        await close_all([ws])
    return {"get_tasks": get_tasks, "ws_connect": handshake + rtt, "client_connected_rtt": rtt}


async def probe_series(
    server: Server, count: int, every_s: float, tag: str
) -> list[dict[str, float]]:
    results = []
    for i in range(count):
        results.append(await probe_once(server, f"probe-{tag}-{i}"))
        await asyncio.sleep(every_s)
    return results


def probe_summary(probes: Sequence[dict[str, float]]) -> dict[str, float]:
    summary: dict[str, float] = {}
    for key in ("get_tasks", "ws_connect", "client_connected_rtt"):
        values = [p[key] for p in probes]
        summary[f"{key}_p50_ms"] = ms(percentile(values, 50))
        summary[f"{key}_max_ms"] = ms(max(values, default=float("nan")))
    return summary


# --------------------------------------------------------------------------- scenarios


@dataclass
class FederatedResult:
    """One row of the federated table."""

    encoding: str
    clients: int
    workers: int
    rounds_requested: int
    rounds_completed: int
    connect_s: float
    round_ms: list[float]
    round_phases_ms: list[dict[str, float]]
    round_p50_ms: float
    round_p99_ms: float
    client_p50_ms: float
    client_p99_ms: float
    post_ack_p50_ms: float | None  # None: posts not acknowledged (awaitRound)
    post_ack_p99_ms: float | None
    polls_per_client_round: float
    frames_per_client_round: float
    server_cpu_pct: float
    clients_cpu_pct: float
    server_cpu_ms_per_round: float  # CPU time of the rounds phase / rounds completed
    clients_cpu_us_per_client_round: float  # all client processes' CPU / client-rounds
    other_cpu_pct: float
    client_loop_lag_p99_ms: float
    client_loop_lag_max_ms: float
    server_rss_mib: float
    server_round: int
    average_participants: float
    errors: int
    error_kinds: dict[str, int]


def round_phases(
    records: Sequence[Sequence[dict[str, Any]]], rounds: int, clients: int
) -> list[dict[str, float]]:
    """Per completed round (every client holds its new weights), in seconds:

    `total`: first post of any client → the last client holding the new weights;
    `posting`: first post → last post; `aggregation`: last post → the answer to the post that
    closed the round (the server aggregated, persisted and published meanwhile), or with
    awaitRound (no acknowledgement) the first client holding the new weights;
    `spreading`: that answer → the last client holding the new weights (polling).
    """
    phases = []
    for k in range(rounds):
        mine = [r[k] for r in records if len(r) > k]
        if len(mine) < clients:
            break
        first = min(r["posted"] for r in mine)
        last = max(r["posted"] for r in mine)
        closed = max(
            (r["acked"] for r in mine if r["closed"] and r["acked"] is not None),
            default=min(r["received"] for r in mine),
        )
        end = max(r["received"] for r in mine)
        phases.append(
            {
                "total": end - first,
                "posting": last - first,
                "aggregation": closed - last,
                "spreading": end - closed,
            }
        )
    return phases


async def final_statistics(server: Server) -> dict[str, Any]:
    """Server round and participation, asked by an observer (connects, never posts)."""
    ws = await open_ws(f"{server.ws}/federated/{FED_TASK}/observer?encoding=native", "127.0.0.1")
    try:
        await request(ws, pack(client_connected()), 0)
        reply = await request(ws, pack({"type": 13}), 13)
    finally:
        await close_all([ws])
    stats = reply.get("statistics", {})
    return stats if isinstance(stats, dict) else {}


def run_federated(args: argparse.Namespace, workdir: Path, encoding: str) -> FederatedResult:
    n, rounds = args.clients, args.rounds
    with server_process(args, workdir, f"fed-{encoding}", n) as server:
        plans = [
            WorkerPlan("federated", server.ws, first, count, n, f"127.0.0.{2 + w}", encoding,
                       rounds, args.poll, args.client_socket)
            for w, (first, count) in enumerate(split(n, args.workers))
        ]  # fmt: skip
        workers = start_workers(plans)
        try:
            ready = gather_messages(workers, CONNECT_PHASE_S + START_TIMEOUT_S, "ready")
            connected = sum(m["connected"] for m in ready)
            connect_s = max(m["connect_s"] for m in ready)
            print(f"  {encoding}: {connected}/{n} clients connected in {connect_s:.1f} s",
                  file=sys.stderr)  # fmt: skip
            cpu_before, wall_before = server.cpu_s(), time.monotonic()
            machine_before = machine_busy_s()
            broadcast(workers, "go")
            done = gather_messages(workers, ROUNDS_PHASE_S + 30, "round results")
            server_cpu = server.cpu_s() - cpu_before
            machine_cpu = machine_busy_s() - machine_before
            wall = time.monotonic() - wall_before
            rss = server.rss_mib()
            stats = asyncio.run(final_statistics(server))
        finally:
            stop_workers(workers)
        log_errors = server.log_errors()

    errors: Counter[str] = Counter()
    for message in done:
        errors.update(message["errors"])
    errors["clients not connected"] += n - connected
    if log_errors:
        errors[f"server log: {log_errors[0][:80]}"] += len(log_errors)
    records = [client for message in done for client in message["records"]]
    phases = round_phases(records, rounds, n)
    times = [p["total"] for p in phases]
    flat = [r for client in records for r in client]
    latency = [r["received"] - r["posted"] for r in flat]
    acks = [r["acked"] - r["posted"] for r in flat if r["acked"] is not None]
    clients_cpu = sum(float(m["cpu_s"]) for m in done)
    server_round = int(stats.get("round", -1))
    average = float(stats.get("averageNumberOfParticipants", 0.0))
    if len(times) == rounds and (server_round != rounds or average != float(n)):
        errors[f"server statistics: round {server_round}, average {average}"] += 1
    errors = +errors  # drop zero counts
    return FederatedResult(
        encoding=encoding,
        clients=n,
        workers=len(plans),
        rounds_requested=rounds,
        rounds_completed=len(times),
        connect_s=round(connect_s, 2),
        round_ms=[ms(t) for t in times],
        round_phases_ms=[{key: ms(value) for key, value in p.items()} for p in phases],
        round_p50_ms=ms(percentile(times, 50)),
        round_p99_ms=ms(percentile(times, 99)),
        client_p50_ms=ms(percentile(latency, 50)),
        client_p99_ms=ms(percentile(latency, 99)),
        post_ack_p50_ms=ms(percentile(acks, 50)) if acks else None,
        post_ack_p99_ms=ms(percentile(acks, 99)) if acks else None,
        polls_per_client_round=round(sum(r["polls"] for r in flat) / max(1, len(flat)), 2),
        frames_per_client_round=round(sum(r["frames"] for r in flat) / max(1, len(flat)), 2),
        server_cpu_pct=round(100 * server_cpu / wall, 1),
        clients_cpu_pct=round(100 * clients_cpu / wall, 1),
        server_cpu_ms_per_round=round(1000 * server_cpu / max(1, len(times)), 1),
        clients_cpu_us_per_client_round=round(1e6 * clients_cpu / max(1, len(flat)), 1),
        other_cpu_pct=round(100 * max(0.0, machine_cpu - server_cpu - clients_cpu) / wall, 1),
        client_loop_lag_p99_ms=max(m["lag"]["p99_ms"] for m in done),
        client_loop_lag_max_ms=max(m["lag"]["max_ms"] for m in done),
        server_rss_mib=round(rss, 1),
        server_round=server_round,
        average_participants=average,
        errors=sum(errors.values()),
        error_kinds=dict(errors),
    )


@dataclass
class IdleResult:
    """One row of the idle-connections table."""

    route: str
    connections: int
    workers: int
    connect_s: float
    hold_s: float
    rss_before_mib: float
    rss_after_mib: float
    rss_end_mib: float
    rss_per_conn_kib: float
    server_fds: int
    server_fd_limit: int
    probes_before: dict[str, float]
    probes_during: dict[str, float]
    recheck_p50_ms: float
    recheck_max_ms: float
    errors: int
    error_kinds: dict[str, int]


def run_idle(args: argparse.Namespace, workdir: Path, route: str) -> IdleResult:
    n = args.idle
    with server_process(args, workdir, f"idle-{route}", 2) as server:
        # Warm-up: the code paths run once, so imports and caches are not counted per connection.
        before_probes = asyncio.run(probe_series(server, PROBES_BEFORE, 0.1, "before"))
        time.sleep(1.0)
        rss_before = server.rss_mib()
        plans = [
            WorkerPlan(f"idle-{route}", server.ws, first, count, n, f"127.0.0.{2 + w}")
            for w, (first, count) in enumerate(split(n, args.idle_workers))
        ]
        workers = start_workers(plans)
        try:
            ready = gather_messages(workers, CONNECT_PHASE_S + START_TIMEOUT_S, "ready")
            connected = sum(m["connected"] for m in ready)
            connect_s = max(m["connect_s"] for m in ready)
            print(f"  {route}: {connected}/{n} idle connections in {connect_s:.1f} s",
                  file=sys.stderr)  # fmt: skip
            time.sleep(1.0)
            rss_after = server.rss_mib()
            fds = int(server.proc.num_fds())
            fd_limit = int(server.proc.rlimit(psutil.RLIMIT_NOFILE)[0])
            held_from = time.monotonic()
            probes = max(1, int(args.hold))
            during = asyncio.run(probe_series(server, probes, args.hold / probes, "during"))
            hold_s = time.monotonic() - held_from
            rss_end = server.rss_mib()
            broadcast(workers, "check")
            checked = gather_messages(workers, CONNECT_PHASE_S + 30, "re-check results")
            broadcast(workers, "close")
        finally:
            stop_workers(workers)
        log_errors = server.log_errors()

    errors: Counter[str] = Counter()
    for message in ready + checked:
        errors.update(message["errors"])
    errors["connections not opened"] += n - connected
    if log_errors:
        errors[f"server log: {log_errors[0][:80]}"] += len(log_errors)
    errors = +errors
    rtts = [t for message in checked for t in message["rtt"]]
    return IdleResult(
        route=route,
        connections=connected,
        workers=len(plans),
        connect_s=round(connect_s, 2),
        hold_s=round(hold_s, 1),
        rss_before_mib=round(rss_before, 1),
        rss_after_mib=round(rss_after, 1),
        rss_end_mib=round(rss_end, 1),
        rss_per_conn_kib=round((rss_after - rss_before) * 1024 / max(1, connected), 1),
        server_fds=fds,
        server_fd_limit=fd_limit,
        probes_before=probe_summary(before_probes),
        probes_during=probe_summary(during),
        recheck_p50_ms=ms(percentile(rtts, 50)),
        recheck_max_ms=ms(max(rtts, default=float("nan"))),
        errors=sum(errors.values()),
        error_kinds=dict(errors),
    )


# --------------------------------------------------------------------------- report


def one(value: float) -> str:
    """A table cell: one decimal is enough for milliseconds and mebibytes."""
    return f"{value:.1f}"


def pair(first: float, second: float) -> str:
    return f"{one(first)}/{one(second)}"


def aggregation_cell(row: FederatedResult) -> str:
    """The server's part of each round: last post → the closing post's answer, per round."""
    return " ".join(one(p["aggregation"]) for p in row.round_phases_ms)


def ack_cell(row: FederatedResult) -> str:
    """Post → acknowledgement, p50/p99; "none" when posts are not acknowledged (awaitRound)."""
    if row.post_ack_p50_ms is None or row.post_ack_p99_ms is None:
        return "none"
    return pair(row.post_ack_p50_ms, row.post_ack_p99_ms)


def probe_cell(row: IdleResult, key: str) -> str:
    """`p50/max → p50/max` of one probe, before and while the crowd is connected."""
    before, during = row.probes_before, row.probes_during
    return (
        f"{pair(before[key + '_p50_ms'], before[key + '_max_ms'])} → "
        f"{pair(during[key + '_p50_ms'], during[key + '_max_ms'])}"
    )


def print_tables(federated: Sequence[FederatedResult], idle: Sequence[IdleResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=240)
    if federated:
        table = Table(title="federated rounds (loopback, Dense 10→10→1, every client aggregated)")
        columns: list[tuple[str, Callable[[FederatedResult], object]]] = [
            ("encoding", lambda r: r.encoding),
            ("clients", lambda r: r.clients),
            ("rounds", lambda r: f"{r.rounds_completed}/{r.rounds_requested}"),
            ("round p50 ms", lambda r: one(r.round_p50_ms)),
            ("round p99 ms", lambda r: one(r.round_p99_ms)),
            ("client p50/p99 ms", lambda r: pair(r.client_p50_ms, r.client_p99_ms)),
            ("ack p50/p99 ms", ack_cell),
            ("frames/client-round", lambda r: r.frames_per_client_round),
            ("aggregation ms", aggregation_cell),
            ("CPU server", lambda r: f"{r.server_cpu_pct}%"),
            ("server CPU ms/round", lambda r: r.server_cpu_ms_per_round),
            ("CPU clients", lambda r: f"{r.clients_cpu_pct}% ({r.workers} procs)"),
            ("client CPU µs/client-round", lambda r: r.clients_cpu_us_per_client_round),
            ("CPU others", lambda r: f"{r.other_cpu_pct}%"),
            ("client lag p99 ms", lambda r: one(r.client_loop_lag_p99_ms)),
            ("RSS MiB", lambda r: one(r.server_rss_mib)),
            ("errors", lambda r: r.errors),
        ]
        for title, _ in columns:
            table.add_column(title, justify="right", no_wrap=True)
        for row in federated:
            table.add_row(*(str(get(row)) for _, get in columns))
        console.print(table)
    if idle:
        table = Table(title="idle WebSocket connections (clientConnected done, then silent)")
        idle_columns: list[tuple[str, Callable[[IdleResult], object]]] = [
            ("route", lambda r: r.route),
            ("connections", lambda r: r.connections),
            ("connect s", lambda r: r.connect_s),
            ("held s", lambda r: r.hold_s),
            ("RSS MiB before→held", lambda r: f"{one(r.rss_before_mib)}→{one(r.rss_after_mib)}"),
            ("RSS/conn KiB", lambda r: one(r.rss_per_conn_kib)),
            ("fds", lambda r: r.server_fds),
            ("GET /tasks ms p50/max idle→held", lambda r: probe_cell(r, "get_tasks")),
            ("new conn+type 0 ms p50/max idle→held", lambda r: probe_cell(r, "ws_connect")),
            ("re-check ms p50/max", lambda r: pair(r.recheck_p50_ms, r.recheck_max_ms)),
            ("errors", lambda r: r.errors),
        ]
        for title, _ in idle_columns:
            table.add_column(title, justify="right", no_wrap=True)
        for irow in idle:
            table.add_row(*(str(get(irow)) for _, get in idle_columns))
        console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 clients, 2,000 idle connections")
    parser.add_argument("--clients", type=int, help="federated clients (default 1000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="client processes (federated)")
    parser.add_argument(
        "--poll",
        type=float,
        help="seconds between a waiting client's latestServerRound requests (default: "
        f"clients / {POLL_RATE}, at least 0.1: the whole crowd polls ~{POLL_RATE} times a second)",
    )
    parser.add_argument("--client-socket", choices=["lean", "websockets"], default="lean",
                        help="federated clients' WebSocket: LeanSocket (websockets' sans-I/O "
                        "protocol) or websockets' asyncio client")  # fmt: skip
    parser.add_argument("--deadline", type=float, default=60.0, help="server --round-deadline")
    parser.add_argument("--encodings", nargs="*", default=["native", "legacy"], choices=list(KINDS),
                        help="federated client kinds, in order (native-ack: native clients "
                        "before awaitRound)")  # fmt: skip
    parser.add_argument("--idle", type=int, help="idle connections (default 10000)")
    parser.add_argument("--idle-workers", type=int, default=4)
    parser.add_argument("--idle-routes", nargs="*", default=["federated", "decentralized"],
                        choices=["federated", "decentralized"])  # fmt: skip
    parser.add_argument("--hold", type=float, default=10.0, help="seconds the idle crowd is held")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--server-bin", type=Path, default=SERVER_BIN, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.clients = args.clients or (200 if args.quick else 1000)
    args.poll = args.poll or max(0.1, args.clients / POLL_RATE)
    args.idle = args.idle if args.idle is not None else (2000 if args.quick else 10_000)
    if args.clients % 2:
        parser.error("--clients must be even (the updates' mean is checked exactly)")

    fd_limit = raise_fd_limit()
    per_worker = max(args.idle // max(1, args.idle_workers), args.clients) + 256
    if fd_limit < max(per_worker, args.idle + 256):
        print(f"warning: open-files limit {fd_limit} may be too low", file=sys.stderr)

    workdir = Path(tempfile.mkdtemp(prefix="disco-load-"))
    federated: list[FederatedResult] = []
    idle: list[IdleResult] = []
    started = time.monotonic()
    load_at_start = os.getloadavg()
    try:
        for encoding in args.encodings:
            federated.append(run_federated(args, workdir, encoding))
        for route in args.idle_routes:
            if args.idle > 0:
                idle.append(run_idle(args, workdir, route))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print_tables(federated, idle)
    total_errors = sum(r.errors for r in federated) + sum(r.errors for r in idle)
    kinds = [r.error_kinds for r in federated] + [r.error_kinds for r in idle]
    for row_kinds in kinds:
        for kind, count in row_kinds.items():
            print(f"error ×{count}: {kind}", file=sys.stderr)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "load",
        "command": " ".join([".venv/bin/python", "bench/load.py", *sys.argv[1:]]),
        "duration_s": round(time.monotonic() - started, 1),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "open_files_limit": fd_limit,
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
        },
        "settings": {
            "clients": args.clients,
            "rounds": args.rounds,
            "client_workers": args.workers,
            "client_socket": args.client_socket,
            "poll_s": args.poll,
            "idle_connections": args.idle,
            "idle_workers": args.idle_workers,
            "hold_s": args.hold,
            "model": "Dense 10→10(relu)→1(sigmoid), 121 float32 parameters",
        },
        "notes": [
            "server: .venv/bin/disco-server subprocess, fresh data dir per scenario, "
            "RLIMIT_NOFILE raised to the hard limit",
            "clients: asyncio + websockets (compression off) in spawned processes; "
            "times from time.monotonic(), one clock for every process",
            "round time: first post of the round -> last client holding the new weights "
            "(latestServerRound); client latency: one client's post -> its new weights",
            "CPU %: CPU seconds / wall seconds of the rounds phase (100% = one core); "
            "'other' = the rest of the machine (other users' processes) meanwhile",
            "the machine's 2 cores are shared with other work: absolute times are noisy",
        ],
        "federated": [asdict(r) for r in federated],
        "idle": [asdict(r) for r in idle],
        "errors": total_errors,
    }
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"written {args.output} ({total_errors} errors)", file=sys.stderr)
    return 0 if total_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Shared pieces of the decentralized interop tests: real JS peers on loopback WebRTC.

Fixtures (`loopback_shim`, `decentralized_server`, registered in conftest.py), task folders,
weight (de)serialization for the node scripts and the mean checks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt
import pytest
from websockets.asyncio.client import connect

from disco.tasks.artifacts import ModelArtifacts
from disco.tasks.defaults import default_tasks
from interop.harness import NODE_DIR, ServerProcess, run_node_async

PEERS = 3
CLEAR_TASK = "titanic-decentralized"
SECURE_TASK = "titanic-secure"
EPOCHS = 2
ROUND_DURATION = 5
BATCH_SIZE = 30
AGGREGATION_ROUNDS = 2
SCRIPT_TIMEOUT_MS = 60_000  # the scripts' own deadline (exit 2) ...
PROCESS_TIMEOUT_S = 75.0  # ... and ours, should a script not even manage that

F32 = npt.NDArray[np.float32]
Tensors = list[F32]


# --------------------------------------------------------------------------- helpers


def encode_tensors(tensors: Sequence[F32]) -> list[dict[str, Any]]:
    """`[{shape, data}]` with data the base64 of little-endian float32, as the scripts read it."""
    return [
        {"shape": list(t.shape), "data": base64.b64encode(t.astype("<f4").tobytes()).decode()}
        for t in tensors
    ]


def decode_tensors(encoded: Sequence[dict[str, Any]]) -> Tensors:
    """Inverse of `encode_tensors`, shapes checked against the byte counts."""
    out: Tensors = []
    for entry in encoded:
        values = np.frombuffer(base64.b64decode(entry["data"]), dtype="<f4")
        out.append(values.reshape([int(d) for d in entry["shape"]]).astype(np.float32))
    return out


def max_abs_diff(a: Sequence[npt.NDArray[Any]], b: Sequence[npt.NDArray[Any]]) -> float:
    """Largest elementwise difference of two weight lists of identical shapes."""
    assert [t.shape for t in a] == [t.shape for t in b], "weight shapes differ"
    return max(float(np.max(np.abs(x.astype(np.float64) - y))) for x, y in zip(a, b, strict=True))


def mean_of(peers: Sequence[Sequence[F32]]) -> list[npt.NDArray[np.float64]]:
    """Elementwise mean (float64) of several weight lists."""
    return [
        np.mean([np.asarray(p[i], dtype=np.float64) for p in peers], axis=0)
        for i in range(len(peers[0]))
    ]


@functools.cache
def titanic() -> tuple[dict[str, Any], ModelArtifacts]:
    """The server's default titanic task (JSON) and initial model (callers must not mutate)."""
    for task, artifacts in default_tasks():
        if task.task_id == "titanic":
            return task.to_json(), artifacts
    raise AssertionError("no default titanic task")


def write_task_folder(root: Path, task: dict[str, Any], artifacts: ModelArtifacts) -> None:
    """A `--tasks-dir` entry: task.json, TF.js layers model.json and its weights file."""
    folder = root / str(task["taskID"])
    folder.mkdir(parents=True)
    (folder / "task.json").write_text(json.dumps(task))
    (folder / "model.json").write_text(json.dumps(artifacts.to_layers_json("weights.bin")))
    (folder / "weights.bin").write_bytes(artifacts.weight_data)


def decentralized_task(task_id: str, secure: bool) -> dict[str, Any]:
    """Titanic as a decentralized task for three peers, with a short training schedule."""
    base, _ = titanic()
    info = dict(base["trainingInformation"])
    info.update(
        scheme="decentralized",
        minimumReadyPeers=PEERS,
        epochs=EPOCHS,
        roundDuration=ROUND_DURATION,
        batchSize=BATCH_SIZE,
    )
    if secure:
        info.update(decentralizedSecure=True, maxShareValue=100)
    title = f"Titanic ({'secure ' if secure else ''}decentralized interop)"
    display = {**base["displayInformation"], "taskTitle": title}
    return {**base, "taskID": task_id, "displayInformation": display, "trainingInformation": info}


def check_loopback(result: dict[str, Any], other_peers: int) -> None:
    """The peer used no ICE server and connected to every other peer over loopback only."""
    report = result["loopback"]
    assert report["iceServers"] == []
    assert report["shim"], "loopback_ifaddrs.so was not preloaded"
    # With the shim libwebrtc gathers nothing but 127.0.0.1 / ::1, so no signal had to be cut.
    assert report["signals"]["dropped"] == 0, report["signals"]
    assert report["signals"]["sdpLinesCut"] == 0, report["signals"]
    assert report["nonLoopbackSelected"] == 0
    pairs = report["selectedPairs"]
    assert len(pairs) == other_peers, pairs
    for pair in pairs:
        assert pair["local"] in ("127.0.0.1", "::1"), pair
        # A peer-reflexive remote is redacted by getStats (None); a loopback socket is local-only.
        assert pair["remote"] in ("127.0.0.1", "::1", None), pair


@dataclass(frozen=True)
class Barrier:
    """The peers of a test leave together: each says it is done after its last round, and
    disconnects once all `parties` are (`leaveTogether` of node/decentralized_common.mjs says
    why: a 2.1.1 peer leaving at once can take its own last message with it)."""

    dir: Path
    parties: int

    @classmethod
    def create(cls, workdir: Path, parties: int) -> Barrier:
        folder = workdir / "barrier"
        folder.mkdir()
        return cls(folder, parties)

    def request(self) -> dict[str, Any]:
        """The `barrier` field of a node script's request."""
        return {"dir": str(self.dir), "parties": self.parties}

    def done(self, name: str) -> None:
        """Say `name` is done with its rounds."""
        (self.dir / f"{name}.done").touch()

    def all_done(self) -> bool:
        return len(list(self.dir.glob("*.done"))) >= self.parties

    async def leave_together(self, name: str, timeout_s: float = SCRIPT_TIMEOUT_MS / 1000) -> None:
        """Say `name` is done, then wait for the others (a Python peer, before it closes)."""
        self.done(name)
        async with asyncio.timeout(timeout_s):
            while True:
                if self.all_done():
                    return
                await asyncio.sleep(0.02)

    def wait(self, timeout_s: float = SCRIPT_TIMEOUT_MS / 1000) -> None:
        """Block until every party is done (TimeoutError after `timeout_s`): a thread that
        drives peers with no event loop of its own (Playwright's sync API)."""
        deadline = time.monotonic() + timeout_s
        while not self.all_done():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"barrier: {self.parties} parties not done in {timeout_s} s")
            time.sleep(0.02)


async def run_peers(
    script: str, requests: Sequence[dict[str, Any]], workdir: Path
) -> list[dict[str, Any]]:
    """Run one node peer per request concurrently (leaving together); results in request order."""
    barrier = Barrier.create(workdir, len(requests))
    files = []
    for index, request in enumerate(requests):
        path = workdir / f"{Path(script).stem}-peer{index}.json"
        path.write_text(json.dumps({**request, "barrier": barrier.request()}))
        files.append(path)
    runs = [run_node_async(script, str(f), timeout=PROCESS_TIMEOUT_S) for f in files]
    results: list[dict[str, Any]] = await asyncio.gather(*runs)
    # Shown with the test's output: how often the scripts had to hold an early message.
    print(script, "client races worked around:", [r.get("races") for r in results])
    return results


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def loopback_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """loopback_ifaddrs.so built from its C source (skips without a C compiler)."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("interop: no C compiler to build loopback_ifaddrs.so (WebRTC on loopback)")
    out = tmp_path_factory.mktemp("loopback-shim") / "loopback_ifaddrs.so"
    source = NODE_DIR / "loopback_ifaddrs.c"
    done = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(out), str(source), "-ldl"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return out


@pytest.fixture
def decentralized_server(
    tmp_path: Path,
    interop_server_factory: Callable[..., ServerProcess],
    loopback_shim: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """A fresh server with the two decentralized titanic tasks; its URL.

    Node peers started afterwards (run_node_async inherits the environment) preload the loopback
    shim; the server, started before, does not.
    """
    tasks_dir = tmp_path / "tasks"
    _, artifacts = titanic()
    write_task_folder(tasks_dir, decentralized_task(CLEAR_TASK, secure=False), artifacts)
    write_task_folder(tasks_dir, decentralized_task(SECURE_TASK, secure=True), artifacts)
    server = interop_server_factory("--tasks-dir", str(tasks_dir))
    monkeypatch.setenv("LD_PRELOAD", str(loopback_shim))
    return server.url


# --------------------------------------------------------------------------- tests


@contextlib.asynccontextmanager
async def idle_peer(base_url: str, task_id: str) -> AsyncIterator[int]:
    """A decentralized peer that joins the task (clientConnected) but never says it is ready,
    like a 2.1.1 client still preprocessing its data; yields its peer id."""
    url = base_url.replace("http://", "ws://", 1) + f"/deai/{task_id}"
    async with connect(url, compression=None, open_timeout=10) as websocket:
        await websocket.send(msgpack.packb({"type": 0}))
        frame = await asyncio.wait_for(websocket.recv(decode=False), 10)
        reply = msgpack.unpackb(frame)
        assert reply["type"] == 1 and isinstance(reply["id"], int), reply
        yield int(reply["id"])


def aggregation_requests(
    base_url: str, task_id: str, inputs: Sequence[Sequence[Tensors]]
) -> list[dict[str, Any]]:
    """One decentralized_aggregate.mjs request per peer: its weights for each round."""
    return [
        {
            "url": base_url,
            "taskID": task_id,
            "timeoutMs": SCRIPT_TIMEOUT_MS,
            "rounds": [encode_tensors(round_inputs) for round_inputs in peer_rounds],
        }
        for peer_rounds in inputs
    ]


def check_means(
    results: Sequence[dict[str, Any]], inputs: Sequence[Sequence[Tensors]], tolerance: float
) -> None:
    """Every peer aggregated every round with all the others and got the mean of their inputs."""
    peers = len(inputs)
    for peer, result in enumerate(results):
        assert result["aggregated"] == [True] * AGGREGATION_ROUNDS, (
            f"peer {peer} gave up rounds (flags per round: {result['aggregated']}): a 2.1.1 client "
            "does when PeersForRound has not come 10 s after its PeerIsReady"
        )
        assert result["participants"] == [peers] * AGGREGATION_ROUNDS
        for round_index, got in enumerate(result["rounds"]):
            expected = mean_of([inputs[p][round_index] for p in range(peers)])
            assert max_abs_diff(inputs[peer][round_index], expected) > 0.1, "inputs too close"
            error = max_abs_diff(decode_tensors(got), expected)
            assert error <= tolerance, (
                f"peer {peer} round {round_index + 1}: max |got - mean| = {error:.3g}"
            )


def peer_inputs(seed: int, shapes: Sequence[tuple[int, ...]]) -> list[Tensors]:
    """Distinct weights per peer and round: uniform in (-1, 1), so no input equals the mean."""
    rng = np.random.default_rng(seed)
    return [
        [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32) for shape in shapes]
        for _ in range(AGGREGATION_ROUNDS)
    ]

"""Decentralized learning with real DISCO 2.1.1 JavaScript peers through our signaling server.

Three node processes per test (the real `@epfml/discojs-node` client), each one peer, meet on
`/deai/{taskID}` of a `disco-server` subprocess; weights travel peer to peer over WebRTC kept on
loopback (node/loopback_wrtc.cjs: no ICE servers, loopback-only signals, selected pair checked;
node/loopback_ifaddrs.c preloaded so libwebrtc gathers on lo only).

- ClearText and SecAgg peers: each peer hands distinct weights (titanic model shapes) to the
  client's per-round entry point `onRoundEndCommunication` for two rounds; each must get back the
  mean of the three. (On any failure the 2.1.1 client silently returns its own weights, so
  comparing with the mean is the only meaningful check.)
- A full decentralized training of a titanic task: every round of every peer aggregated with
  both others, each peer's result the mean of what the three shared, same final model everywhere.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import math
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt
import pytest
from websockets.asyncio.client import connect

from disco.tasks.artifacts import ModelArtifacts
from disco.tasks.defaults import default_tasks
from interop.datasets import good_shards, read_rows
from interop.harness import NODE_DIR, ServerProcess, run_node_async

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

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


async def run_peers(
    script: str, requests: Sequence[dict[str, Any]], workdir: Path
) -> list[dict[str, Any]]:
    """Run one node peer per request concurrently; their results in request order."""
    files = []
    for index, request in enumerate(requests):
        path = workdir / f"{Path(script).stem}-peer{index}.json"
        path.write_text(json.dumps(request))
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


@pytest.mark.parametrize(
    ("task_id", "client_class", "tolerance"),
    [
        (CLEAR_TASK, "ClearText", 1e-5),
        # Shares are uniform in (-100, 100) float32: the sums lose ~1e-5 of absolute precision.
        (SECURE_TASK, "SecAgg", 1e-3),
    ],
)
async def test_peers_end_each_round_with_the_mean(
    decentralized_server: str, tmp_path: Path, task_id: str, client_class: str, tolerance: float
) -> None:
    """Three real peers aggregate twice through our server; each gets the mean of the three."""
    _, artifacts = titanic()
    shapes = artifacts.shapes()
    inputs = [peer_inputs(1000 + peer, shapes) for peer in range(PEERS)]
    requests = aggregation_requests(decentralized_server, task_id, inputs)
    results = await run_peers("decentralized_aggregate.mjs", requests, tmp_path)

    assert len({r["id"] for r in results}) == PEERS, "the server must give distinct peer ids"
    for result in results:
        assert result["clientClass"] == client_class
        check_loopback(result, PEERS - 1)
    check_means(results, inputs, tolerance)


async def test_round_starts_without_a_connected_peer_that_is_not_ready(
    decentralized_server: str, tmp_path: Path
) -> None:
    """A fourth peer is connected but never ready: the three ready ones still aggregate.

    The server waits for it up to its readiness deadline; a 2.1.1 client gives up a round when
    PeersForRound has not come 10 s (MAX_WAIT_PER_ROUND) after its PeerIsReady, so the deadline
    must end well before that.
    """
    _, artifacts = titanic()
    inputs = [peer_inputs(2000 + peer, artifacts.shapes()) for peer in range(PEERS)]
    requests = aggregation_requests(decentralized_server, CLEAR_TASK, inputs)
    async with idle_peer(decentralized_server, CLEAR_TASK) as idle_id:
        results = await run_peers("decentralized_aggregate.mjs", requests, tmp_path)
    assert idle_id not in {r["id"] for r in results}
    check_means(results, inputs, 1e-5)


async def test_decentralized_training_completes(decentralized_server: str, tmp_path: Path) -> None:
    """Three real peers train titanic together; every round is a true average of all three."""
    shards = good_shards(tmp_path / "data", PEERS)
    batches = [EPOCHS * math.ceil(len(read_rows(path)) / BATCH_SIZE) for path in shards]
    assert len(set(batches)) == 1, f"peers would train different round counts: {batches}"
    expected_rounds = batches[0] // ROUND_DURATION
    assert expected_rounds >= 2
    requests = [
        {
            "url": decentralized_server,
            "taskID": CLEAR_TASK,
            "csv": [str(path)],
            "timeoutMs": SCRIPT_TIMEOUT_MS,
        }
        for path in shards
    ]
    results = await run_peers("decentralized_train.mjs", requests, tmp_path)

    assert len({r["id"] for r in results}) == PEERS
    for result in results:
        assert result["clientClass"] == "ClearText"
        assert result["finite"], "NaN/inf in the trained model"
        assert [r["round"] for r in result["rounds"]] == list(range(1, expected_rounds + 1))
        assert all(r["aggregated"] for r in result["rounds"]), "a round fell back to own weights"
        assert all(r["participants"] == PEERS for r in result["rounds"])
        assert len(result["trainAccuracy"]) == EPOCHS
        check_loopback(result, PEERS - 1)

    for index in range(expected_rounds):
        shared = [decode_tensors(r["rounds"][index]["sent"]) for r in results]
        expected = mean_of(shared)
        assert max_abs_diff(shared[0], expected) > 0, "peers shared identical weights"
        for peer, result in enumerate(results):
            received = decode_tensors(result["rounds"][index]["received"])
            error = max_abs_diff(received, expected)
            assert error <= 1e-5, f"peer {peer} round {index + 1}: max |got - mean| = {error:.3g}"

    finals = [decode_tensors(r["final"]) for r in results]
    for peer in range(1, PEERS):
        assert max_abs_diff(finals[peer], finals[0]) <= 1e-5, "peers ended with different models"
    if batches[0] % ROUND_DURATION == 0:  # training ended on a round: the model is its average
        last = decode_tensors(results[0]["rounds"][-1]["received"])
        assert max_abs_diff(finals[0], last) == 0.0

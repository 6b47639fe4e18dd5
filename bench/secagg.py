"""Benchmark: a secure federated round (SecAgg+) against a plain FedAvg round.

Run: `.venv/bin/python bench/secagg.py` (N = 10 clients, P = 1e5 and 1e6 parameters, 3
measured rounds after one warm-up, medians); `--quick` measures P = 1e5 only with 2 rounds.

Set-up. One `disco-server` subprocess (`--no-default-tasks --tasks-dir D`) serves, per P, a
plain task and a secure one (`aggregationStrategy: "secure"`, threshold 2/3, full graph at
N = 10), each a Dense layer of ~P parameters with `minNbOfParticipants = N`. The N clients are
the project's Python client objects in this process, each on its own loopback WebSocket
(`?encoding=native`): plain clients post their update and wait for the new model
(`FederatedSession.contribute`: post, then the pushed latestServerRound); secure
clients run `SecureFederatedCommunicator.exchange` (join, shares, masked vector, reveal,
outcome, then latestServerRound). Local training is not part of a round.

Measured per round: round_s = from the first client starting its exchange to the last client
holding the new global model; bytes per participant = WebSocket payload bytes it sent plus
received during the round (counted at the client's socket wrapper), averaged over clients.
Client-side cryptography runs in worker threads of this process: with 10 clients on a 2-core
machine their mask expansion competes for the same cores, which a real deployment (one client
per machine) would not, so round_s is pessimistic for secure rounds.

Goal (issue): secure <= 3x plain, for round time and bytes per participant, at N = 10 for
P = 1e5 and 1e6. The table is printed and the JSON written to bench/results/secagg.json;
`--check` exits 1 when a goal fails. The server is always stopped; every round is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from disco.client.federated import FederatedSession
from disco.client.secure_federated import SecureFederatedCommunicator
from disco.protocol.weights import WeightEncoding
from disco.weights import Weights
from federated_round import (
    Config,
    client_updates,
    dense_model,
    disco_server,
    task_json,
    write_task_folder,
)

HOST = "127.0.0.1"
CLIENTS = 10
ROUND_TIMEOUT_S = 300.0
RESULTS = Path(__file__).resolve().parent / "results" / "secagg.json"
GOAL_RATIO = 3.0


class CountingSocket:
    """Wraps a client connection and counts payload bytes in both directions."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self.sent = 0
        self.received = 0

    async def send(self, frame: bytes) -> None:
        self.sent += len(frame)
        await self._ws.send(frame)

    async def recv(self) -> Any:
        frame = await self._ws.recv()
        self.received += len(frame)
        return frame

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


@dataclass
class Measurement:
    """Medians over the measured rounds of one (mode, P)."""

    mode: str
    params: int
    clients: int
    round_s: float
    bytes_per_participant: float
    rounds: int


def secure_config(params: int) -> Config:
    return Config(WeightEncoding.NATIVE, CLIENTS, params)


def write_tasks(root: Path, params: int) -> list[str]:
    """A plain and a secure task of ~params parameters; their ids."""
    config = secure_config(params)
    artifacts = dense_model(config.side, seed=0)
    write_task_folder(root, config, artifacts)
    secure_id = f"{config.task_id}-secure"
    folder = root / secure_id
    folder.mkdir(parents=True)
    task = task_json(config)
    task["taskID"] = secure_id
    task["trainingInformation"]["aggregationStrategy"] = "secure"
    (folder / "task.json").write_text(json.dumps(task))
    (folder / "model.json").write_text(json.dumps(artifacts.to_layers_json("weights.bin")))
    (folder / "weights.bin").write_bytes(artifacts.weight_data)
    return [config.task_id, secure_id]


async def open_sessions(base: str, task_id: str) -> tuple[list[FederatedSession], list[Any]]:
    sessions, counters = [], []
    for _ in range(CLIENTS):
        session = FederatedSession(base, task_id, answer_timeout_s=ROUND_TIMEOUT_S)
        await session.connect()
        counter = CountingSocket(session._ws)
        session._ws = counter
        sessions.append(session)
        counters.append(counter)
    return sessions, counters


async def one_round(
    mode: str, sessions: list[FederatedSession], counters: list[Any], round_: int,
    inputs: list[Weights],
) -> tuple[float, float]:
    """(round seconds, mean bytes per participant) of one round."""
    for counter in counters:
        counter.sent = counter.received = 0
    started = time.perf_counter()
    if mode == "plain":
        jobs = [
            s.contribute(w, round_, 100, timeout_s=ROUND_TIMEOUT_S)
            for s, w in zip(sessions, inputs, strict=True)
        ]
    else:
        jobs = [
            SecureFederatedCommunicator(s, round_timeout_s=ROUND_TIMEOUT_S).exchange(w, round_, 100)
            for s, w in zip(sessions, inputs, strict=True)
        ]
    results = await asyncio.wait_for(asyncio.gather(*jobs), ROUND_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if any(r.weights is None or r.round != round_ + 1 for r in results):
        raise RuntimeError(f"{mode} round {round_} did not aggregate: {results[0]}")
    return elapsed, statistics.fmean(c.sent + c.received for c in counters)


async def measure(base: str, mode: str, task_id: str, params: int, rounds: int) -> Measurement:
    sessions, counters = await open_sessions(base, task_id)
    try:
        start_round, weights = await sessions[0].latest()
        times, sizes = [], []
        for index in range(rounds + 1):  # the first is a warm-up
            inputs = client_updates(weights, CLIENTS, seed=index)
            elapsed, size = await one_round(mode, sessions, counters, start_round + index, inputs)
            if index > 0:
                times.append(elapsed)
                sizes.append(size)
            print(f"  {mode} P={params:.0e} round {index}: {elapsed:.3f} s, "
                  f"{size / 1e6:.2f} MB per participant", flush=True)
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    return Measurement(mode, params, CLIENTS, statistics.median(times), statistics.median(sizes),
                       rounds)


async def run(params_list: list[int], rounds: int, workdir: Path) -> list[Measurement]:
    tasks_dir, data_dir = workdir / "tasks", workdir / "data"
    tasks_dir.mkdir()
    ids = {p: write_tasks(tasks_dir, p) for p in params_list}
    out: list[Measurement] = []
    with disco_server(tasks_dir, data_dir, workdir / "server.log",
                      [i for pair in ids.values() for i in pair]) as (port, _, _):
        base = f"http://{HOST}:{port}"
        for params in params_list:
            plain_id, secure_id = ids[params]
            out.append(await measure(base, "plain", plain_id, params, rounds))
            out.append(await measure(base, "secure", secure_id, params, rounds))
    return out


def table(results: list[Measurement]) -> tuple[str, list[dict[str, Any]]]:
    lines = [
        "| P | plain round | secure round | time ratio | plain MB/participant | "
        "secure MB/participant | bytes ratio | goal (<= 3x) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    goals = []
    for params in sorted({r.params for r in results}):
        plain = next(r for r in results if r.params == params and r.mode == "plain")
        secure = next(r for r in results if r.params == params and r.mode == "secure")
        time_ratio = secure.round_s / plain.round_s
        bytes_ratio = secure.bytes_per_participant / plain.bytes_per_participant
        ok = time_ratio <= GOAL_RATIO and bytes_ratio <= GOAL_RATIO
        goals.append({"params": params, "time_ratio": time_ratio, "bytes_ratio": bytes_ratio,
                      "met": ok})
        lines.append(
            f"| {params:.0e} | {plain.round_s:.3f} s | {secure.round_s:.3f} s | "
            f"{time_ratio:.2f}x | {plain.bytes_per_participant / 1e6:.2f} | "
            f"{secure.bytes_per_participant / 1e6:.2f} | {bytes_ratio:.2f}x | "
            f"{'met' if ok else 'MISSED'} |"
        )
    return "\n".join(lines), goals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="P = 1e5 only, 2 rounds")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    params_list = [100_000] if args.quick else [100_000, 1_000_000]
    rounds = 2 if args.quick else 3
    with tempfile.TemporaryDirectory(prefix="disco-bench-secagg-") as folder:
        results = asyncio.run(run(params_list, rounds, Path(folder)))
    text, goals = table(results)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "command": " ".join(["bench/secagg.py", *sys.argv[1:]]),
        "machine": {"cpus": len(__import__("os").sched_getaffinity(0)),
                    "python": platform.python_version()},
        "clients": CLIENTS,
        "results": [asdict(r) for r in results],
        "goals": goals,
        "table": text,
    }, indent=2) + "\n")
    print(f"written {RESULTS}")
    if args.check and not all(g["met"] for g in goals):
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Server memory during a federated round: RSS above idle against the round's updates' size.

Run: `.venv/bin/python bench/memory.py` (native N=10 P=1e7, legacy N=10 P=1e6, and, for the
record, native N=10 P=1e6 with the median aggregator, which keeps every update; `--scenarios
legacy` runs only some of them, by name: native, legacy, median); add `--big` for
the opt-in gigabyte model (native N=2, P=2.5e8 = 1 GB of float32, Python clients sending and
receiving in chunks; needs ~6 GB of RAM for the two clients of this process and ~4 GB for the
server, and takes minutes).

Each scenario starts its own `disco-server` subprocess (`bench/federated_round.py`'s helper) with
one task (a Dense layer of side² ≈ P parameters, `minNbOfParticipants = N`), connects N clients,
fetches the model once (the engine and model are loaded), then reads the server's RSS: idle.
One round follows — every client posts a distinct update (legacy: the 2.1.1 client's frames,
as in federated_round.py; native: `?encoding=native`; --big: `FederatedSession`, chunked) and
waits for the next model with the pushed request — while a thread samples the server's RSS every
5 ms: peak. Goal (issue): peak - idle <= 3 × N × 4P bytes (the round's updates in float32) for
native N=10 P=1e7 and legacy N=10 P=1e6; --big: peak - idle <= 3 GB, and the RSS of this process
(the two Python clients) is reported too. Table on stdout, JSON in bench/results/memory.json:
a run replaces the rows of the scenarios it measured and keeps the others, each row with the
command and machine state that produced it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import threading
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil  # type: ignore[import-untyped]
from websockets.asyncio.client import connect

from disco.client.federated import FederatedSession
from disco.protocol.framing import pack
from disco.protocol.messages import client_connected, latest_server_round
from disco.protocol.types import MessageType
from disco.protocol.weights import WeightEncoding
from disco.weights import Weights
from federated_round import (
    HOST,
    BenchError,
    Config,
    UpdateFrame,
    client_updates,
    connect_args,
    dense_model,
    disco_server,
    model_weights,
    recv_bytes,
    reply_header,
    task_json,
)
from report import machine, write_report

RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"
SAMPLE_S = 0.005
ROUND_TIMEOUT_S = 1800.0
GB = 1e9


@dataclass
class Scenario:
    encoding: WeightEncoding
    clients: int
    params: int
    aggregator: str = "mean"
    python_clients: bool = False  # FederatedSession (chunked when big) instead of raw frames

    @property
    def config(self) -> Config:
        return Config(self.encoding, self.clients, self.params)

    @property
    def budget_bytes(self) -> float:
        if self.params >= 100_000_000:
            return 3 * GB  # the goal for the gigabyte model
        return 3.0 * self.clients * 4 * self.config.side**2


@dataclass
class MemoryResult:
    encoding: str
    clients: int
    params: int
    aggregator: str
    idle_mb: float
    peak_mb: float
    above_idle_mb: float
    updates_float32_mb: float  # N × 4P
    budget_mb: float
    ratio_to_updates: float  # above idle / (N × 4P)
    round_s: float
    passed: bool
    clients_idle_mb: float | None = None  # this process (the N Python clients), --big only
    clients_peak_mb: float | None = None


class RssSampler:
    """Peak RSS of a process, sampled from a thread."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, int(self.process.memory_info().rss))
            time.sleep(SAMPLE_S)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, int(self.process.memory_info().rss))


def write_task(root: Path, scenario: Scenario) -> Weights:
    """The scenario's task folder; the model's weights."""
    config = scenario.config
    artifacts = dense_model(config.side, seed=1)
    folder = root / config.task_id
    folder.mkdir(parents=True)
    task = task_json(config)
    task["trainingInformation"]["aggregator"] = scenario.aggregator
    (folder / "task.json").write_text(json.dumps(task))
    (folder / "model.json").write_text(json.dumps(artifacts.to_layers_json("weights.bin")))
    (folder / "weights.bin").write_bytes(artifacts.weight_data)
    return model_weights(artifacts)


Measured = tuple[float, int, int, tuple[int, int] | None]
"""(round seconds, server idle RSS, server peak RSS, (idle, peak) RSS of this process when it
runs the Python clients)."""


async def raw_round(
    scenario: Scenario, port: int, base: Weights, server: psutil.Process
) -> Measured:
    """One round of raw clients (prebuilt frames)."""
    config = scenario.config
    native = scenario.encoding is WeightEncoding.NATIVE
    variants = scenario.clients if native else min(scenario.clients, 4)
    updates = client_updates(base, variants, seed=7)
    frames = [UpdateFrame(u, scenario.encoding).frame(0) for u in updates]
    del updates
    query = "?encoding=native" if native else ""
    async with AsyncExitStack() as stack:
        base_url = f"ws://{HOST}:{port}/federated/{config.task_id}"
        clients = [
            await stack.enter_async_context(connect(f"{base_url}/c{i}{query}", **connect_args()))
            for i in range(scenario.clients)
        ]
        for ws in clients:
            await ws.send(pack(client_connected()))
            await recv_bytes(ws)
            await ws.send(pack(latest_server_round()))
            await recv_bytes(ws)
        await asyncio.sleep(1.0)  # settle: the idle figure

        async def one(index: int) -> None:
            ws = clients[index]
            await ws.send(frames[index % variants])
            ack = await recv_bytes(ws)
            if reply_header(ack)[0] != MessageType.POST_WEIGHTS_TO_SERVER:
                raise BenchError("no acknowledgement")
            await ws.send(pack(latest_server_round(after_round=0)))
            while reply_header(await recv_bytes(ws))[0] != MessageType.LATEST_SERVER_ROUND:
                pass

        idle = int(server.memory_info().rss)
        with RssSampler(server) as sampler:
            started = time.perf_counter()
            await asyncio.wait_for(
                asyncio.gather(*(one(i) for i in range(scenario.clients))), ROUND_TIMEOUT_S
            )
            elapsed = time.perf_counter() - started
    return elapsed, idle, sampler.peak, None


async def python_round(scenario: Scenario, port: int, server: psutil.Process) -> Measured:
    """One round of `FederatedSession` clients (chunked for big models)."""
    url = f"http://{HOST}:{port}"
    sessions = [FederatedSession(url, scenario.config.task_id, answer_timeout_s=ROUND_TIMEOUT_S)
                for _ in range(scenario.clients)]  # fmt: skip
    try:
        models = []
        for session in sessions:
            await session.connect()
            models.append(await session.latest())
        await asyncio.sleep(1.0)
        updates = []
        for index, (_, weights) in enumerate(models):
            for tensor in weights:  # each client's own update, in place: no second copy
                tensor += np.float32(0.001 * (index + 1))
            updates.append(weights)
        del models
        idle = int(server.memory_info().rss)
        me = psutil.Process()
        clients_idle = int(me.memory_info().rss)
        with RssSampler(server) as sampler, RssSampler(me) as clients:
            started = time.perf_counter()
            exchanges = await asyncio.gather(*(
                session.contribute(update, 0, 10, timeout_s=ROUND_TIMEOUT_S)
                for session, update in zip(sessions, updates, strict=True)
            ))  # fmt: skip
            elapsed = time.perf_counter() - started
        if any(e.weights is None or e.round != 1 for e in exchanges):
            raise BenchError("the big round did not complete")
    finally:
        for session in sessions:
            await session.close()
    return elapsed, idle, sampler.peak, (clients_idle, clients.peak)


async def measure(scenario: Scenario, workdir: Path) -> MemoryResult:
    root = workdir / f"{scenario.config.task_id}-{scenario.aggregator}"
    tasks = root / "tasks"
    base = write_task(tasks, scenario)
    with disco_server(tasks, root / "data", root / "server.log", [scenario.config.task_id]) as (
        port, server, _command
    ):  # fmt: skip
        if scenario.python_clients:
            del base
            elapsed, idle, peak, own = await python_round(scenario, port, server)
        else:
            elapsed, idle, peak, own = await raw_round(scenario, port, base, server)
    updates = scenario.clients * 4 * scenario.config.side**2
    above = peak - idle
    return MemoryResult(
        encoding=str(scenario.encoding), clients=scenario.clients, params=scenario.config.side**2,
        aggregator=scenario.aggregator, idle_mb=idle / 1e6, peak_mb=peak / 1e6,
        above_idle_mb=above / 1e6, updates_float32_mb=updates / 1e6,
        budget_mb=scenario.budget_bytes / 1e6, ratio_to_updates=above / updates,
        round_s=elapsed, passed=above <= scenario.budget_bytes,
        clients_idle_mb=None if own is None else own[0] / 1e6,
        clients_peak_mb=None if own is None else own[1] / 1e6,
    )  # fmt: skip


SCENARIOS = {
    "native": Scenario(WeightEncoding.NATIVE, 10, 10_000_000),
    "legacy": Scenario(WeightEncoding.LEGACY, 10, 1_000_000),
    "median": Scenario(WeightEncoding.NATIVE, 10, 1_000_000, aggregator="median"),
}
"""The standard scenarios (`--scenarios`), in this order by default."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also the 1 GB model (opt-in)")
    parser.add_argument("--only-big", action="store_true", help="only the 1 GB model")
    parser.add_argument("--output", type=Path, help=f"JSON report (default {RESULTS})")
    parser.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS),
                        default=list(SCENARIOS),
                        help="which of the standard scenarios to run (default: all)")  # fmt: skip
    args = parser.parse_args()
    scenarios = [] if args.only_big else [SCENARIOS[name] for name in args.scenarios]
    if args.big or args.only_big:
        scenarios.append(Scenario(WeightEncoding.NATIVE, 2, 250_000_000, python_clients=True))
    workdir = Path(tempfile.mkdtemp(prefix="disco-bench-mem-"))
    try:
        results = []
        for scenario in scenarios:
            print(f"memory: {scenario}", file=sys.stderr)
            results.append(asyncio.run(measure(scenario, workdir)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    from rich.console import Console
    from rich.table import Table

    table = Table(title="server RSS during one federated round")
    for column in ("enc", "N", "P", "aggregator", "idle MB", "peak MB", "above idle MB",
                   "N×4P MB", "above/(N×4P)", "budget MB", "round s", "goal",
                   "clients idle/peak MB"):  # fmt: skip
        table.add_column(column, justify="right")
    for r in results:
        own = "-"
        if r.clients_idle_mb is not None and r.clients_peak_mb is not None:
            own = f"{r.clients_idle_mb:.0f}/{r.clients_peak_mb:.0f}"
        table.add_row(
            r.encoding, str(r.clients), f"{r.params:.2e}", r.aggregator, f"{r.idle_mb:.0f}",
            f"{r.peak_mb:.0f}", f"{r.above_idle_mb:.0f}", f"{r.updates_float32_mb:.0f}",
            f"{r.ratio_to_updates:.2f}", f"{r.budget_mb:.0f}", f"{r.round_s:.2f}",
            ("PASS" if r.passed else "FAIL") + (" (info)" if r.aggregator != "mean" else ""), own,
        )  # fmt: skip
    Console(width=200).print(table)
    report = {
        "benchmark": "server memory during a federated round",
        "command": " ".join([".venv/bin/python", "bench/memory.py", *sys.argv[1:]]),
        "machine": machine(),
        "definitions": {
            "idle": "server RSS after every client connected and fetched the model once",
            "peak": "highest server RSS sampled every 5 ms during the round",
            "budget": "3 x N x 4P bytes (3 GB for the 1 GB model): the issue's goal",
            "median": "informational: robust aggregators keep every update (N x 4P) by design",
            "clients idle/peak": "--big: RSS of this process, which runs the N Python clients "
            "(FederatedSession, chunked), when the round starts (each client holds the model it "
            "fetched, perturbed in place as its update) and its peak during the round",
        },
        "results": [asdict(r) for r in results],
    }
    write_report(merged(report, args.output or RESULTS), args.output or RESULTS)


def row_key(row: dict[str, Any]) -> tuple[object, ...]:
    return row["encoding"], row["clients"], row["params"], row["aggregator"]


def merged(report: dict[str, Any], output: Path) -> dict[str, Any]:
    """`report` with the rows of the JSON already at `output` that this run did not measure
    (a run of some scenarios, `--only-big` say, keeps the others' figures); every row carries
    the command and machine state it was measured with."""
    for row in report["results"]:
        row["command"], row["machine"] = report["command"], report["machine"]
    try:
        previous = json.loads(output.read_text())
        rows = list(previous["results"])
    except (OSError, ValueError, KeyError, TypeError):
        return report
    fresh = {row_key(row): row for row in report["results"]}
    results = []
    for row in rows:
        row.setdefault("command", previous.get("command"))
        row.setdefault("machine", previous.get("machine"))
        results.append(fresh.pop(row_key(row), row))  # a measured scenario replaces its row
    report["results"] = results + list(fresh.values())
    report["command"] = "; ".join(dict.fromkeys(str(row["command"]) for row in results))
    return report


if __name__ == "__main__":
    main()

"""Benchmark of decentralized signaling: round start latency, relay throughput, memory per peer.

Run: `.venv/bin/python bench/signaling.py [--peers 10 100 1000] [--messages 20000]`.

For each peer count N, a fresh `disco` server runs in a subprocess (so its RSS is its own) with
one decentralized task; N simulated peers connect from this process over loopback with the
raw protocol (websockets, no compression), then:

- memory: server RSS after all N peers said clientConnected, minus RSS before, divided by N;
- readiness: every peer sends PeerIsReady; we time from the last PeerIsReady written to the
  last PeersForRound received (and check every peer got the N-1 others);
- relay: every peer sends SignalForPeer with a 2 KB signal to the next peer, about
  `--messages` in total; throughput = messages delivered / wall time, plus the server's CPU
  time per relayed message (the client side shares the machine and may be the bottleneck).

The table is printed and written as JSON to bench/results/signaling.json. Every phase is
bounded in time; the server is always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import psutil  # type: ignore[import-untyped]
from websockets.asyncio.client import ClientConnection, connect

from disco.server.runner import free_port
from disco.server.settings import Settings
from disco.tasks.defaults import titanic_model, titanic_task
from disco.tasks.schema import parse_task
from disco.tasks.store import TaskStore

TASK_ID = "bench"
SIGNAL_BYTES = 2048
PHASE_TIMEOUT_S = 180.0
START_TIMEOUT_S = 60.0
CONNECT_CONCURRENCY = 64
RESULTS = Path(__file__).resolve().parent / "results" / "signaling.json"

SERVER_MAIN = """
import sys
import uvicorn
from disco.server.app import create_app
from disco.server.runner import uvicorn_config
from disco.server.settings import Settings

settings = Settings.model_validate_json(sys.argv[1])
uvicorn.Server(uvicorn_config(create_app(settings), settings)).run()
"""


@dataclass
class Result:
    """One row of the table."""

    peers: int
    connect_s: float
    rss_before_mib: float
    rss_after_mib: float
    rss_per_peer_kib: float
    round_latency_ms: float
    round_total_ms: float
    relay_messages: int
    relay_s: float
    relay_msgs_per_s: float
    server_cpu_us_per_msg: float


# --------------------------------------------------------------------------- server process


def raise_fd_limit(needed: int) -> int:
    """Raise the soft open-files limit (inherited by the server) to `needed`, up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


def prepare_data_dir(data_dir: Path) -> None:
    """A store with one decentralized task (titanic's definition, minimumReadyPeers 2)."""
    base = titanic_task()
    info = {**base["trainingInformation"], "scheme": "decentralized", "minimumReadyPeers": 2}
    store = TaskStore(data_dir)
    store.load(with_defaults=False)
    store.add(
        parse_task({**base, "taskID": TASK_ID, "trainingInformation": info}),
        titanic_model(np.random.default_rng(0)),
    )


@contextmanager
def server_process(data_dir: Path) -> Iterator[tuple[str, psutil.Process]]:
    """Serve `data_dir` in a subprocess; yield its ws:// base URL and process; stop it on exit."""
    settings = Settings(
        data_dir=data_dir,
        port=free_port(),
        load_default_tasks=False,
        log_level="warning",
        readiness_deadline_s=600.0,  # rounds start only when every peer is ready
    )
    proc = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-c", SERVER_MAIN, settings.model_dump_json()],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start in time")
            try:
                with socket.create_connection((settings.host, settings.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        yield f"ws://{settings.host}:{settings.port}", psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# --------------------------------------------------------------------------- simulated peers


class SimPeer:
    """One raw signaling connection; a reader task records what arrives."""

    def __init__(self, ws: ClientConnection, stats: Stats) -> None:
        self.ws = ws
        self.stats = stats
        self.id = -1
        self.got_id = asyncio.Event()
        self.round_peers: list[int] | None = None
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            if not isinstance(frame, bytes):
                continue
            message = msgpack.unpackb(frame)
            kind = message["type"]
            if kind == 1 and "error" not in message:
                self.id = message["id"]
                self.got_id.set()
            elif kind == 4:
                self.round_peers = message["peers"]
                self.stats.round_arrived()
            elif kind == 2:
                self.stats.relay_arrived()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(msgpack.packb(message, use_bin_type=True))


class Stats:
    """Counters shared by the peers' reader tasks, with events for the awaited totals."""

    def __init__(self) -> None:
        self.rounds = 0
        self.rounds_expected = 0
        self.rounds_done = asyncio.Event()
        self.last_round_at = 0.0
        self.relayed = 0
        self.relay_expected = 0
        self.relay_done = asyncio.Event()
        self.last_relay_at = 0.0

    def round_arrived(self) -> None:
        self.rounds += 1
        self.last_round_at = time.perf_counter()
        if self.rounds >= self.rounds_expected:
            self.rounds_done.set()

    def relay_arrived(self) -> None:
        self.relayed += 1
        self.last_relay_at = time.perf_counter()
        if self.relayed >= self.relay_expected:
            self.relay_done.set()


async def open_peers(base: str, n: int, stack: AsyncExitStack, stats: Stats) -> list[SimPeer]:
    """Connect `n` peers (bounded concurrency) and wait until each has its id."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> SimPeer:
        async with gate:
            ws = await stack.enter_async_context(
                connect(
                    f"{base}/deai/{TASK_ID}",
                    compression=None,
                    open_timeout=30,
                    close_timeout=5,
                    ping_interval=None,
                    max_queue=None,
                )
            )
            peer = SimPeer(ws, stats)
            await peer.send({"type": 0})
            await peer.got_id.wait()
            return peer

    return await asyncio.gather(*(one() for _ in range(n)))


def rss_mib(proc: psutil.Process) -> float:
    return float(proc.memory_info().rss) / (1 << 20)


async def measure(n: int, messages: int, workdir: Path) -> Result:
    """All three measurements for `n` peers against a fresh server."""
    data_dir = workdir / f"data-{n}"
    prepare_data_dir(data_dir)
    with server_process(data_dir) as (base, proc):
        async with AsyncExitStack() as stack:
            stats = Stats()
            # Warm-up: one peer through the whole path, so code loading is not counted per peer.
            async with AsyncExitStack() as warm:
                await open_peers(base, 1, warm, Stats())
            await asyncio.sleep(0.5)
            rss_before = rss_mib(proc)

            started = time.perf_counter()
            peers = await asyncio.wait_for(open_peers(base, n, stack, stats), PHASE_TIMEOUT_S)
            connect_s = time.perf_counter() - started
            await asyncio.sleep(0.5)
            rss_after = rss_mib(proc)

            # Readiness round: every peer ready, the round starts when the last one is.
            stats.rounds_expected = n
            first_ready = time.perf_counter()
            await asyncio.gather(*(peer.send({"type": 3}) for peer in peers))
            last_ready = time.perf_counter()
            await asyncio.wait_for(stats.rounds_done.wait(), PHASE_TIMEOUT_S)
            ids = {peer.id for peer in peers}
            for peer in peers:
                assert peer.round_peers is not None and set(peer.round_peers) == ids - {peer.id}

            # Relay: every peer signals the next one, `per_peer` times, all at once.
            per_peer = max(1, messages // n)
            stats.relay_expected = per_peer * n
            signal = {"type": "offer", "sdp": "x" * SIGNAL_BYTES}
            cpu_before = sum(proc.cpu_times()[:2])

            async def sender(peer: SimPeer, target: int) -> None:
                for _ in range(per_peer):
                    await peer.send({"type": 2, "peer": target, "signal": signal})

            relay_start = time.perf_counter()
            await asyncio.wait_for(
                asyncio.gather(
                    *(sender(p, peers[(i + 1) % n].id) for i, p in enumerate(peers)),
                    stats.relay_done.wait(),
                ),
                PHASE_TIMEOUT_S,
            )
            relay_s = stats.last_relay_at - relay_start
            cpu_s = sum(proc.cpu_times()[:2]) - cpu_before
            for peer in peers:
                peer.reader.cancel()

    return Result(
        peers=n,
        connect_s=round(connect_s, 3),
        rss_before_mib=round(rss_before, 1),
        rss_after_mib=round(rss_after, 1),
        rss_per_peer_kib=round((rss_after - rss_before) * 1024 / n, 1),
        round_latency_ms=round((stats.last_round_at - last_ready) * 1000, 2),
        round_total_ms=round((stats.last_round_at - first_ready) * 1000, 2),
        relay_messages=stats.relayed,
        relay_s=round(relay_s, 3),
        relay_msgs_per_s=round(stats.relayed / relay_s, 1),
        server_cpu_us_per_msg=round(cpu_s * 1e6 / max(stats.relayed, 1), 1),
    )


# --------------------------------------------------------------------------- report

COLUMNS = [
    ("peers", "peers"),
    ("connect_s", "connect (s)"),
    ("rss_per_peer_kib", "RSS/peer (KiB)"),
    ("rss_after_mib", "RSS (MiB)"),
    ("round_latency_ms", "last ready→last round (ms)"),
    ("round_total_ms", "first ready→last round (ms)"),
    ("relay_messages", "relayed"),
    ("relay_msgs_per_s", "relay (msg/s)"),
    ("server_cpu_us_per_msg", "server CPU/msg (µs)"),
]


def print_table(results: list[Result]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text fallback
        print(" | ".join(title for _, title in COLUMNS))
        for row in results:
            print(" | ".join(str(getattr(row, key)) for key, _ in COLUMNS))
        return
    table = Table(title=f"decentralized signaling ({SIGNAL_BYTES} B signals, loopback)")
    for _, title in COLUMNS:
        table.add_column(title, justify="right")
    for row in results:
        table.add_row(*(str(getattr(row, key)) for key, _ in COLUMNS))
    Console(width=200).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--messages", type=int, default=20_000, help="signals relayed per size")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    fd_limit = raise_fd_limit(2 * max(args.peers) + 256)
    if fd_limit < max(args.peers) + 64:
        sys.exit(f"open-files limit {fd_limit} is too low for {max(args.peers)} peers")

    workdir = Path(tempfile.mkdtemp(prefix="disco-bench-"))
    results: list[Result] = []
    try:
        for n in args.peers:
            results.append(asyncio.run(measure(n, args.messages, workdir)))
            print(f"done: {n} peers", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print_table(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "decentralized signaling",
        "signal_bytes": SIGNAL_BYTES,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "note": "server in a subprocess; all peers simulated by one asyncio client process",
        "results": [asdict(r) for r in results],
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()

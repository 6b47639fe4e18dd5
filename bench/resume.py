"""Resuming a chunked upload cut short by a lost connection, against uploading it again.

Run: `.venv/bin/python bench/resume.py` (P = 1e8 parameters, 400 MB of float32, in 64 MiB
chunks; `--params 250000000` for the gigabyte model; `--cut 0.5` is where the connection drops,
as a fraction of the upload's bytes).

One `disco-server` subprocess (`bench/federated_round.py`'s helper) with one task of P
parameters whose rounds need one participant, so that every accepted upload completes a round.
One Python client (`FederatedSession`) uploads a distinct update per mode, through a loopback TCP
proxy (tests/support/cutting_proxy.py) in every mode, so that the proxy's cost is the same:

- whole: the proxy forwards everything (the reference);
- resumed: the proxy cuts the first connection after `cut` of the upload's bytes; the client
  reconnects, asks how much the server holds (uploadProgress) and sends the rest;
- restarted: the same cut with resuming off on the client (`upload_resumes=0`, what every client
  did before): the post fails, and the client uploads the whole update again on a new session.

Per mode: time from the first byte to the accepted acknowledgement, the bytes the client sent
on every connection (WebSocket frames, counted by the proxy) and their ratio to the whole
upload's, and the server's peak RSS above its idle RSS. The round after each mode is awaited
(and the new model downloaded) outside the timed part. Table on stdout, JSON in
bench/results/resume.json with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from disco.client.federated import ConnectionLost, FederatedSession  # noqa: E402
from disco.protocol.native_chunks import CHUNK_BYTES  # noqa: E402
from disco.protocol.weights import WeightEncoding  # noqa: E402
from disco.weights import Weights  # noqa: E402
from federated_round import HOST, BenchError, Config, disco_server  # noqa: E402
from memory import RssSampler, Scenario, write_task  # noqa: E402
from report import machine, write_report  # noqa: E402
from support.cutting_proxy import CuttingProxy  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "resume.json"
TIMEOUT_S = 1800.0


@dataclass
class ModeResult:
    mode: str
    seconds: float
    connections: int
    sent_mb: float
    sent_ratio: float  # bytes sent / the whole upload's bytes
    time_ratio: float  # seconds / the whole upload's seconds
    server_above_idle_mb: float


async def upload(url: str, task_id: str, update: Weights, round_: int, resumes: int) -> None:
    """Post `update` for `round_` on a new session; ConnectionLost when it is cut short (and
    not resumed)."""
    async with FederatedSession(
        url, task_id, answer_timeout_s=TIMEOUT_S, upload_resumes=resumes
    ) as session:
        ack = await session.post(update, round_, 10)
    if not ack.accepted:
        raise BenchError(f"the upload was refused: {ack.status} {ack.error}")


async def run(params: int, cut: float, workdir: Path) -> tuple[list[ModeResult], int]:
    scenario = Scenario(WeightEncoding.NATIVE, 1, params)
    config: Config = scenario.config
    tasks = workdir / "tasks"
    base = write_task(tasks, scenario)
    total = sum(int(w.size) for w in base)
    with disco_server(tasks, workdir / "data", workdir / "server.log", [config.task_id]) as (
        port, server, _command
    ):  # fmt: skip
        url = f"http://{HOST}:{port}"
        async with FederatedSession(url, config.task_id, answer_timeout_s=TIMEOUT_S) as watcher:
            round_, _ = await watcher.latest()
            await asyncio.sleep(1.0)
            idle = int(server.memory_info().rss)
            whole_bytes: int | None = None
            whole_s = 0.0
            results: list[ModeResult] = []
            for index, mode in enumerate(("whole", "resumed", "restarted")):
                for tensor in base:  # a distinct update per mode, in place
                    tensor += np.float32(0.001 * (index + 1))
                cut_after = None if whole_bytes is None else int(cut * whole_bytes)
                async with CuttingProxy(url, cut_after).running() as proxy:
                    with RssSampler(server) as sampler:
                        started = time.perf_counter()
                        if mode == "restarted":
                            try:
                                await upload(proxy.url, config.task_id, base, round_, 0)
                                raise BenchError("the cut did not interrupt the upload")
                            except ConnectionLost:
                                pass
                            await upload(proxy.url, config.task_id, base, round_, 0)
                        else:
                            await upload(proxy.url, config.task_id, base, round_, 3)
                        seconds = time.perf_counter() - started
                sent = sum(proxy.sent)
                if whole_bytes is None:
                    whole_bytes, whole_s = sent, seconds
                elif not proxy.cut.is_set() or proxy.connections != 2:
                    raise BenchError(f"{mode}: the connection was not cut once")
                results.append(ModeResult(
                    mode=mode, seconds=seconds, connections=proxy.connections,
                    sent_mb=sent / 1e6, sent_ratio=sent / whole_bytes,
                    time_ratio=seconds / whole_s,
                    server_above_idle_mb=(sampler.peak - idle) / 1e6,
                ))  # fmt: skip
                print(f"resume: {results[-1]}", file=sys.stderr)
                moved = await watcher.latest_after(round_, TIMEOUT_S)
                if moved is None:
                    raise BenchError(f"{mode}: the round did not complete")
                round_ = moved[0]
    return results, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=100_000_000, help="model size P")
    parser.add_argument("--cut", type=float, default=0.5,
                        help="where the connection drops, as a fraction of the upload's bytes")
    parser.add_argument("--output", type=Path, help=f"JSON report (default {RESULTS})")
    args = parser.parse_args()
    if not 0 < args.cut < 1:
        parser.error("--cut must be between 0 and 1")
    if 4 * args.params <= CHUNK_BYTES:
        parser.error(f"--params must exceed {CHUNK_BYTES // 4} (one chunk): only chunked uploads "
                     "resume")  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="disco-bench-resume-"))
    try:
        results, total = asyncio.run(run(args.params, args.cut, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"an upload of {total:.3g} parameters cut at {args.cut:.0%} of its bytes")
    for column in ("mode", "connections", "seconds", "× whole", "sent MB", "sent × whole",
                   "server RSS above idle MB"):  # fmt: skip
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            r.mode, str(r.connections), f"{r.seconds:.2f}", f"{r.time_ratio:.2f}",
            f"{r.sent_mb:.0f}", f"{r.sent_ratio:.3f}", f"{r.server_above_idle_mb:.0f}",
        )  # fmt: skip
    Console(width=160).print(table)
    report = {
        "benchmark": "resuming a chunked upload cut short",
        "command": " ".join([".venv/bin/python", "bench/resume.py", *sys.argv[1:]]),
        "machine": machine(),
        "params": total,
        "cut": args.cut,
        "definitions": {
            "seconds": "first byte of the upload to its accepted acknowledgement, reconnection "
            "and the second upload included",
            "sent": "WebSocket bytes the client sent on every connection of the mode, past the "
            "HTTP handshakes, as the proxy forwarded them (a cut connection's up to the cut)",
            "restarted": "the same cut with resuming off: the whole update sent again",
        },
        "results": [asdict(r) for r in results],
    }
    write_report(report, args.output or RESULTS)


if __name__ == "__main__":
    main()

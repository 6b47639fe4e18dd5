"""Server cost of rounds with the real 2.1.1 JS clients (`@epfml/discojs-node`), legacy encoding.

Run: `.venv/bin/python bench/legacy_js.py` (P = 1e5 and 1e6, 10 clients, 3 rounds; `--params`,
`--clients`, `--rounds` to change). Needs node and `tests/interop/node/node_modules`
(`scripts/bootstrap.sh test`).

Per P: a `disco-server` subprocess (bench/federated_round.py's helper: `--round-deadline 600`, so
a round waits for all N) serves one titanic-like task whose model is Dense 6→k (relu) → k→k
(relu) → k→1 (sigmoid), k chosen so that the model has ~P parameters, with
`minNbOfParticipants = N`. N node processes run `tests/interop/node/train_federated.mjs` (the
real client: discojs.Disco, federated scheme, msgpack-lite legacy weights) on their own 32-row
shard of generated titanic-like data, one batch per round, `--rounds` epochs: every client posts
its weights and pulls the new model once per round, as the JS client does.

Measured: the server process's CPU seconds from before the clients start until they have all
finished (`ThreadCpu`: every thread's nanosecond scheduler counter, threads that end meanwhile
included), minus what it spends idle over the same time (its idle rate: the median of
`IDLE_WINDOWS` windows of `IDLE_WINDOW_S` before the clients start and as many after they
finish, from the same counters, `scheduled_cpu`; the event-loop figure is the main thread's
CPU over the span, idle included, the workers' the rest); its peak RSS (sampled
every 5 ms) against its RSS before the clients connect. The issue's original DISCO server
figures (measured earlier on this machine with the same clients: 3.28 s and 35.3 s of server CPU
for 3 rounds at P = 1e5 and 1e6; RSS peak 1508 MB at P = 1e6) and this server's before this work
(0.95 s, 10.5 s; 611 MB over an idle 136 MB) are printed as ratios. Goals: CPU ≥ 10× less than
the original; RSS peak ≤ idle + 3 × N × 4P. Table on stdout, JSON in
bench/results/legacy_js.json with the command.

`--profile DIR`: py-spy samples the server (all threads, native frames off) during the clients'
run and writes collapsed stacks to DIR/server-P.txt with a summary of the hottest functions on
stderr; the profiler's own cost inflates the figures, so no JSON is written then.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil  # type: ignore[import-untyped]

from disco.simulation.builtin_data import titanic_like_csv
from disco.tasks.defaults import titanic_task
from disco.tasks.sequential import SequentialBuilder
from federated_round import cpu_seconds, disco_server
from memory import RssSampler
from report import machine, write_report

RESULTS = Path(__file__).resolve().parent / "results" / "legacy_js.json"
NODE_DIR = Path(__file__).resolve().parent.parent / "tests" / "interop" / "node"
ROWS = 32
NODE_TIMEOUT_S = 1800.0
IDLE_WINDOWS = 5
IDLE_WINDOW_S = 0.5
THREAD_SAMPLE_S = 0.005
ORIGINAL = {100_000: {"cpu_s": 3.28}, 1_000_000: {"cpu_s": 35.3, "rss_peak_mb": 1508.0}}
BEFORE = {100_000: {"cpu_s": 0.95}, 1_000_000: {"cpu_s": 10.5, "rss_peak_mb": 611.0,
                                                 "rss_idle_mb": 136.0}}  # fmt: skip


def scheduled_cpu(pid: int) -> float | None:
    """CPU seconds of the process's live threads from the scheduler's nanosecond counters
    (/proc/PID/task/*/schedstat, Linux), None where they cannot be read. psutil's CPU times come
    in 10 ms clock ticks: over the idle sample (`IDLE_SAMPLE_S`) a rate of 0, 0.005 or 0.01 s/s,
    which times a 12-35 s run moved the subtracted idle CPU by up to 0.3 s from run to run."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


def idle_rate(server: psutil.Process, seconds: float) -> float:
    """The server's CPU seconds per second while nobody uses it, over `seconds`."""
    scheduled, cpu, started = scheduled_cpu(server.pid), cpu_seconds(server), time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - started
    after = scheduled_cpu(server.pid)
    if scheduled is not None and after is not None:
        return (after - scheduled) / elapsed
    return (cpu_seconds(server) - cpu) / elapsed


class ThreadCpu:
    """CPU seconds of a process's threads over a span, from their nanosecond scheduler counters
    (/proc/PID/task/TID/schedstat), read every `THREAD_SAMPLE_S` from a thread of this process
    so that a thread that ends meanwhile (the server's short-lived file-sync threads) still
    counts up to its last reading. psutil's process times come in 10 ms ticks, user and system
    apart: up to 20 ms off each end of a span, against a 0.3 s figure."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> dict[int, int]:
        counters: dict[int, int] = {}
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    counters[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        return counters

    def _run(self) -> None:
        while not self._stop.wait(THREAD_SAMPLE_S):
            self._last.update(self._read())

    def __enter__(self) -> ThreadCpu:
        self._start = self._read()
        self._last = dict(self._start)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._last.update(self._read())

    @property
    def available(self) -> bool:
        return bool(self._start)

    def total(self) -> float:
        """All threads' CPU seconds over the span (a thread started meanwhile: all of its)."""
        return sum(last - self._start.get(tid, 0) for tid, last in self._last.items()) / 1e9

    def main(self) -> float:
        """The main thread's (the event loop's) CPU seconds over the span."""
        return (self._last.get(self.pid, 0) - self._start.get(self.pid, 0)) / 1e9


def idle_rates(server: psutil.Process) -> list[float]:
    """`IDLE_WINDOWS` idle rates in a row. The median of those before and after the run is
    the one subtracted: one window over the whole time let a single burst in it (e.g. a heap
    trim once start-up is over) count for the whole run (one run subtracted 0.2 s for a server
    that idles at 2 ms/s), and the windows after the run see the idle rate of the machine as
    loaded at the end (it moved between 2 and 7 ms/s from run to run)."""
    return [idle_rate(server, IDLE_WINDOW_S) for _ in range(IDLE_WINDOWS)]


def main_thread_cpu(process: psutil.Process) -> float:
    """CPU seconds of the process's main thread: the event loop (WebSocket and HTTP I/O,
    framing, small messages); the rest of the process's CPU is worker threads (decoding big
    frames, encoding replies, folding updates, writing the model)."""
    for thread in process.threads():
        if thread.id == process.pid:
            return float(thread.user_time + thread.system_time)
    return 0.0


@contextmanager
def profiled(pid: int, output: Path | None) -> Iterator[None]:
    """py-spy recording `pid` (collapsed stacks into `output`) while the block runs."""
    if output is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "--pid", str(pid), "--threads", "--rate", "250", "--format", "raw",
               "--output", str(output), "--nonblocking"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # attached before the clients start
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def summarize_profile(path: Path, top: int = 25) -> str:
    """Share of samples per function (self) and per function with its callees (total)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("thread ", "process "))]
        if not frames or "(threading.py)" in frames[-1] or "select (" in frames[-1]:
            continue  # idle: waiting threads and the event loop's select
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"{samples} busy samples; self %, total %, function"]
    for frame, count in own.most_common(top):
        lines.append(f"{100 * count / samples:5.1f} {100 * total[frame] / samples:5.1f}  {frame}")
    lines.append("-- by total")
    for frame, count in total.most_common(top):
        lines.append(f"{100 * own[frame] / samples:5.1f} {100 * count / samples:5.1f}  {frame}")
    return "\n".join(lines)


def hidden_units(params: int) -> int:
    """k such that Dense 6→k→k→1 has about `params` parameters (k² + 9k + 1)."""
    return max(2, round((-9 + math.sqrt(81 + 4 * (params - 1))) / 2))


def write_task(root: Path, task_id: str, params: int, clients: int, rounds: int) -> int:
    """The task folder; the model's exact parameter count."""
    k = hidden_units(params)
    artifacts = (
        SequentialBuilder((6,)).dense(k, "relu").dense(k, "relu").dense(1, "sigmoid")
        .build(np.random.default_rng(params))
    )  # fmt: skip
    base = titanic_task()
    info = {**base["trainingInformation"], "scheme": "federated", "minNbOfParticipants": clients,
            "epochs": rounds, "roundDuration": 1, "batchSize": ROWS,
            "modelID": f"{task_id}-model"}  # fmt: skip
    task = {**base, "taskID": task_id, "trainingInformation": info,
            "displayInformation": {**base["displayInformation"], "taskTitle": task_id}}  # fmt: skip
    folder = root / task_id
    folder.mkdir(parents=True)
    (folder / "task.json").write_text(json.dumps(task))
    (folder / "model.json").write_text(json.dumps(artifacts.to_layers_json("weights.bin")))
    (folder / "weights.bin").write_bytes(artifacts.weight_data)
    return sum(int(w.size) for w in artifacts.weights())


async def run_client(base: str, task_id: str, csv: Path, rounds: int) -> dict[str, Any]:
    options = {"csv": [str(csv)], "epochs": rounds, "roundDuration": 1, "batchSize": ROWS,
               "timeoutMs": int(NODE_TIMEOUT_S * 1000)}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / "train_federated.mjs"), base, task_id, json.dumps(options),
        cwd=NODE_DIR, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT_S + 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = stdout.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"node client failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if not result.get("ok"):
        raise RuntimeError(f"node client error: {result.get('error')}")
    return result


async def measure(
    params: int, clients: int, rounds: int, workdir: Path, profile: Path | None = None
) -> dict[str, Any]:
    root = workdir / f"p{params}"
    task_id = f"legacy-p{params}"
    exact = write_task(root / "tasks", task_id, params, clients, rounds)
    shards = []
    for index in range(clients):
        path = root / f"part{index}.csv"
        path.write_text(titanic_like_csv(ROWS, seed=index))
        shards.append(path)
    with disco_server(root / "tasks", root / "data", root / "server.log", [task_id]) as (
        port, server, command
    ):  # fmt: skip
        idle_rss = int(server.memory_info().rss)
        before = await asyncio.to_thread(idle_rates, server)
        base = f"http://127.0.0.1:{port}"
        with (
            profiled(server.pid, profile),
            RssSampler(server) as sampler,
            ThreadCpu(server.pid) as threads,
        ):
            cpu_start, started = cpu_seconds(server), time.perf_counter()
            loop_start = main_thread_cpu(server)
            results = await asyncio.gather(
                *(run_client(base, task_id, shard, rounds) for shard in shards)
            )
            elapsed = time.perf_counter() - started
            ticks_cpu = cpu_seconds(server) - cpu_start
            ticks_loop = main_thread_cpu(server) - loop_start
        after = await asyncio.to_thread(idle_rates, server)
        windows = before + after
        idle = float(np.median(windows))
        if threads.available:
            cpu, loop_cpu = threads.total(), threads.main()
        else:  # no per-thread counters (not Linux): psutil's ticks
            cpu, loop_cpu = ticks_cpu, ticks_loop
        cpu -= idle * elapsed
    posts = sum(len(r["posts"]) for r in results)
    adopted = sum(1 for r in results for p in r["pulls"] if p["adopted"])
    if posts < clients * rounds:
        raise RuntimeError(f"only {posts} posts for {clients} clients x {rounds} rounds")
    above = (sampler.peak - idle_rss) / 1e6
    budget = 3 * clients * 4 * exact / 1e6
    row: dict[str, Any] = {
        "nominal_params": params, "params": exact, "clients": clients, "rounds": rounds,
        "posts": posts, "adopted_models": adopted, "wall_s": round(elapsed, 2),
        "server_cpu_s": round(cpu, 3), "event_loop_cpu_s": round(loop_cpu, 3),
        "worker_threads_cpu_s": round(cpu - loop_cpu, 3),
        "server_idle_cpu_rate": round(idle, 5),
        "server_idle_cpu_rate_windows": {"before": [round(w, 5) for w in before],
                                         "after": [round(w, 5) for w in after]},
        "cpu_counters": "scheduler ns per thread" if threads.available else "psutil ticks",
        "server_cpu_s_from_ticks": round(ticks_cpu - idle * elapsed, 3),
        "rss_idle_mb": round(idle_rss / 1e6, 1),
        "rss_peak_mb": round(sampler.peak / 1e6, 1), "rss_above_idle_mb": round(above, 1),
        "rss_budget_mb": round(budget, 1), "server_command": " ".join(command),
    }  # fmt: skip
    original, before = ORIGINAL.get(params), BEFORE.get(params)
    if original is not None:
        row["cpu_vs_original"] = round(original["cpu_s"] / cpu, 2)
        row["goal_cpu_10x_less"] = original["cpu_s"] / cpu >= 10
    if before is not None:
        row["cpu_vs_before"] = round(before["cpu_s"] / cpu, 2)
    if params == 1_000_000:
        row["goal_rss"] = above <= budget
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, help=f"JSON report (default {RESULTS})")
    parser.add_argument("--profile", type=Path, help="py-spy the server; stacks into this folder")
    args = parser.parse_args()
    if shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir():
        sys.exit("needs node and tests/interop/node/node_modules (scripts/bootstrap.sh test)")
    workdir = Path(tempfile.mkdtemp(prefix="disco-bench-js-"))
    load_start = [round(x, 2) for x in os.getloadavg()]
    try:
        rows = []
        for params in args.params:
            print(f"legacy JS clients: P={params}", file=sys.stderr)
            stacks = None
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                stacks = args.profile / f"server-{params}.txt"
            rows.append(asyncio.run(measure(params, args.clients, args.rounds, workdir, stacks)))
            if stacks is not None and stacks.exists():
                print(summarize_profile(stacks), file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.clients} real 2.1.1 JS clients, {args.rounds} rounds, legacy")
    for column in ("P", "server CPU s", "event loop s", "workers s", "original s", "÷ original",
                   "before s", "÷ before", "RSS idle MB", "RSS peak MB", "above idle",
                   "budget MB", "wall s"):  # fmt: skip
        table.add_column(column, justify="right")
    for row in rows:
        original = ORIGINAL.get(row["nominal_params"], {})
        before = BEFORE.get(row["nominal_params"], {})
        table.add_row(
            f"{row['params']:.2e}", f"{row['server_cpu_s']:.2f}",
            f"{row['event_loop_cpu_s']:.2f}", f"{row['worker_threads_cpu_s']:.2f}",
            str(original.get("cpu_s", "-")), str(row.get("cpu_vs_original", "-")),
            str(before.get("cpu_s", "-")), str(row.get("cpu_vs_before", "-")),
            f"{row['rss_idle_mb']:.0f}", f"{row['rss_peak_mb']:.0f}",
            f"{row['rss_above_idle_mb']:.0f}", f"{row['rss_budget_mb']:.0f}",
            f"{row['wall_s']:.0f}",
        )  # fmt: skip
    Console(width=200).print(table)
    if args.profile is not None:
        return  # the profiler's cost is in these figures: not a result
    report = {
        "benchmark": "server cost with real 2.1.1 JS clients (legacy encoding)",
        "command": " ".join([".venv/bin/python", "bench/legacy_js.py", *sys.argv[1:]]),
        "machine": {**machine(), "load_average_at_start": load_start},
        "reference_figures": {"original_disco_server": ORIGINAL, "this_server_before": BEFORE},
        "results": rows,
    }
    write_report(report, args.output or RESULTS)


if __name__ == "__main__":
    main()

"""Flower side by side: one federated workload through Flower's deployment path and this server,
with a bare loopback WebSocket transfer as the floor, in one run.

Flower comes with the project's `bench` extra (`flwr==1.42.0`, plus psutil and rich for this
script), installed in a virtualenv of its own: Flower pins uvicorn, fastapi and starlette, and
the test venv (`scripts/bootstrap.sh test`) must not get it:

    python3.11 -m venv /tmp/flwr-venv
    /tmp/flwr-venv/bin/pip install '.[bench]'

Run: `.venv/bin/python bench/vs_flower.py --flower-bin /tmp/flwr-venv/bin` (this server from
the project's venv, Flower from the bench venv; `--flower-bin` defaults to the running Python's
bin/ when it has `flower-superlink`, else /tmp/flwr-venv/bin; defaults: N=10 clients, P=1e6
float32 parameters, 5 measured rounds after one warm-up round each side). Always bounded:
`--flower-timeout` (default 900 s) ends Flower's run, and every Flower process is stopped.

Workload (the same on both sides): FedAvg over all N clients, no training; each client answers
with its own perturbed copy of the global model (w + 0.01 * noise, its own seed), so no two
uploads are identical; everything on 127.0.0.1, no TLS.
- Flower 1.42 deployment: `flower-superlink --insecure` (its SuperExec then runs the ServerApp
  in a subprocess), N `flower-supernode --insecure` processes (each runs the ClientApp in a
  subprocess), and `flwr run` submitting a Flower App written to a temporary folder: a ServerApp
  with `flwr.serverapp.strategy.FedAvg` (fraction_train 1, no evaluation, min nodes N) and a
  ClientApp whose train() returns the perturbed arrays. Telemetry and update checks off
  (`FLWR_TELEMETRY_ENABLED=0`, `FLWR_DISABLE_UPDATE_CHECK=1`), runtime dependency installation
  off. The ServerApp times each round from `configure_train` to the end of `aggregate_train`
  (model out to N nodes, their replies in, aggregation), and reads the CPU seconds of the
  SuperLink's process tree (SuperLink, SuperExec, ServerApp) at both ends. Peak RSS: the sum
  over that tree, sampled every 20 ms from this process.
- This server: `disco-server` in a subprocess, a Dense task with side**2 ~ P parameters and
  `minNbOfParticipants = N`; N native clients (websockets coroutines of this process, as in
  bench/federated_round.py, whose measurement this reuses): each posts its update, then waits
  with a pushed latestServerRound for the new model. The comparable round is `full_s` (first
  upload started -> last client holds the new model: uploads, aggregation, downloads); the
  issue's narrower `round_s` (last upload sent -> last model received) is shown too. Server CPU
  is the disco-server process's per round, peak RSS its own, sampled the same way.
- Bare: a plain websockets server process gathers one native update frame from each of the N
  clients and answers each with a frame of the native model reply's size (`bare_full_s`).

On 2 shared cores, run it at a calm moment: under a load average of ~20 from other work, the N=10
Flower deployment once had 80+ ClientApp processes running (SuperNodes restarting them as they
timed out), the load went past 100 and no round finished in 25 minutes; `--flower-timeout`
bounds the run and reports the rounds finished so far with the reason.

Goals (issue 12): round p50 >= 20x faster than Flower's, server CPU per round <= 1/5 of
Flower's. Table on stdout, JSON in bench/results/vs_flower.json with the command. Every
process this bench starts is stopped at the end (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from disco.protocol.framing import pack
from disco.protocol.messages import latest_round_reply
from disco.protocol.weights import WeightEncoding, encode_weights
from disco.server.runner import free_port
from federated_round import (
    HOST,
    Config,
    UpdateFrame,
    bare_server,
    client_updates,
    dense_model,
    disco_server,
    measure_bare,
    measure_rounds,
    model_weights,
    write_task_folder,
)
from report import machine, write_report

RESULTS = Path(__file__).resolve().parent / "results" / "vs_flower.json"
FLOWER_VERSION = "1.42.0"
FLOWER_TIMEOUT_S = 900.0
"""Default bound on Flower's whole run (`--flower-timeout`): past it the rounds finished so far
are reported, with the reason."""
SAMPLE_S = 0.02
FLOWER_VENV_BIN = Path("/tmp/flwr-venv/bin")
"""Where the docstring's bench venv puts Flower's commands."""


def default_flower_bin() -> Path:
    """This Python's bin/ when Flower is installed beside it, else `FLOWER_VENV_BIN`."""
    here = Path(sys.executable).parent
    return here if (here / "flower-superlink").exists() else FLOWER_VENV_BIN


PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "discobench"
version = "1.0.0"
description = "disco bench: FedAvg rounds without training"
license = "Apache-2.0"
dependencies = ["flwr==1.42.0", "numpy", "psutil"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "disco-bench"

[tool.flwr.app.components]
serverapp = "discobench.server_app:app"
clientapp = "discobench.client_app:app"

[tool.flwr.app.config]
num-server-rounds = 6
params = 1000000
nodes = 10
out = "rounds.json"
superlink-pid = 0
"""

CLIENT_APP = '''\
"""ClientApp: no training; each node returns its own perturbed copy of the global arrays."""

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    rng = np.random.default_rng(int(context.node_id) % (2**32))
    update = [(a + 0.01 * rng.standard_normal(a.shape, dtype=np.float32)).astype(np.float32)
              for a in arrays]
    content = RecordDict({"arrays": ArrayRecord(update),
                          "metrics": MetricRecord({"num-examples": 1})})
    return Message(content=content, reply_to=msg)
'''

SERVER_APP = '''\
"""ServerApp: FedAvg over all nodes, no evaluation; per round, the time and the CPU seconds of
the SuperLink's process tree at configure_train and at the end of aggregate_train."""

import json
import time

import numpy as np
import psutil
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


def tree_cpu(pid):
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return total
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class TimedFedAvg(FedAvg):
    def __init__(self, pid, partial, **kwargs):
        super().__init__(**kwargs)
        self.pid = pid
        self.partial = partial
        self.marks = []

    def configure_train(self, server_round, arrays, config, grid):
        self.marks.append({"round": server_round, "start": time.time(),
                           "start_cpu": tree_cpu(self.pid)})
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        result = super().aggregate_train(server_round, replies)
        self.marks[-1].update(end=time.time(), end_cpu=tree_cpu(self.pid), replies=len(replies))
        with open(self.partial, "w") as f:  # rounds so far, in case the run is cut short
            json.dump(self.marks, f)
        return result


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    params, nodes = int(cfg["params"]), int(cfg["nodes"])
    side = max(2, round(params ** 0.5))
    rng = np.random.default_rng(params)
    initial = [rng.standard_normal((side - 1, side), dtype=np.float32) * 0.05,
               np.zeros(side, dtype=np.float32)]
    strategy = TimedFedAvg(int(cfg["superlink-pid"]), str(cfg["out"]) + ".partial",
                           fraction_train=1.0, fraction_evaluate=0.0,
                           min_train_nodes=nodes, min_available_nodes=nodes)
    started = time.time()
    strategy.start(grid=grid, initial_arrays=ArrayRecord(initial),
                   num_rounds=int(cfg["num-server-rounds"]))
    with open(str(cfg["out"]), "w") as f:
        json.dump({"rounds": strategy.marks, "params": side * side, "nodes": nodes,
                   "started": started}, f)
'''


# --------------------------------------------------------------------------- processes


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop each process we started and everything it started (SuperExecs, ServerApp and
    ClientApp processes): SIGTERM, then SIGKILL what is left after 20 s."""
    tree: list[psutil.Process] = []
    for proc in procs:
        with suppress(psutil.Error):
            root = psutil.Process(proc.pid)
            tree += [root, *root.children(recursive=True)]
    for member in tree:
        with suppress(psutil.Error):
            member.terminate()
    _, alive = psutil.wait_procs(tree, timeout=20)
    for member in alive:
        with suppress(psutil.Error):
            member.kill()
    psutil.wait_procs(alive, timeout=20)
    for proc in procs:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)


class TreeRssSampler:
    """Peak of the summed RSS of a process and its descendants, sampled from a thread."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        total = 0
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return 0
        for proc in procs:
            with suppress(psutil.Error):
                total += int(proc.memory_info().rss)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            time.sleep(SAMPLE_S)

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@contextmanager
def flower_deployment(
    flower_bin: Path, nodes: int, workdir: Path
) -> Iterator[tuple[int, subprocess.Popen[bytes], dict[str, str]]]:
    """A SuperLink and `nodes` SuperNodes on 127.0.0.1 (insecure); yields (port, superlink, env
    for the `flwr` CLI); every process stopped on exit."""
    home = workdir / "flwr-home"
    home.mkdir(parents=True)
    env = {
        **os.environ,
        "PATH": f"{flower_bin}{os.pathsep}{os.environ.get('PATH', '')}",  # flower-superexec
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }
    port = free_port(HOST)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\naddress = "{HOST}:{port}"\n'
        "insecure = true\n"
    )
    procs: list[subprocess.Popen[bytes]] = []
    logs = workdir / "logs"
    logs.mkdir()

    def start(name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with (logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir
            )
        procs.append(proc)
        return proc

    try:
        superlink = start("superlink", [
            str(flower_bin / "flower-superlink"), "--insecure", "--host", HOST,
            "--port", str(port), "--disable-runtime-dependency-installation",
        ])  # fmt: skip
        wait_http(superlink, port, "flower-superlink")
        for index in range(nodes):
            start(f"supernode-{index}", [
                str(flower_bin / "flower-supernode"), "--insecure",
                "--superlink", f"{HOST}:{port}", "--port", str(free_port(HOST)),
                "--node-config", f"partition-id={index}",
            ])  # fmt: skip
        yield port, superlink, env
    finally:
        stop_all(procs)


def wait_http(proc: subprocess.Popen[bytes], port: int, what: str) -> None:
    """Until `port` accepts connections (the SuperLink's HTTP API)."""
    import socket

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} during start-up")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{what} did not listen within 300 s")


def count_clientapps(pid: int) -> int:
    """Processes under the SuperLink plus every flwr-clientapp on the machine started from this
    Flower install (what the deployment spawned)."""
    count = 0
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any("flwr-clientapp" in part for part in cmdline[:2]):
            count += 1
    return count


def flower_log_summary(logs: Path) -> str:
    """The last warnings and errors of the SuperLink and of one SuperNode (for the report)."""
    lines: list[str] = []
    for name in ("superlink.log", "supernode-0.log"):
        path = logs / name
        if path.exists():
            picked = [line for line in path.read_text(errors="replace").splitlines()
                      if "ERROR" in line or "WARNING" in line or "ROUND" in line]  # fmt: skip
            lines += [f"{name}: {line.strip()}" for line in picked[-5:]]
    return "\n".join(lines)


def measure_flower(
    flower_bin: Path, nodes: int, params: int, rounds: int, timeout_s: float
) -> dict[str, Any]:
    """Flower's rounds (the first, warm-up, dropped): per-round times and SuperLink-tree CPU,
    peak RSS of the SuperLink tree. When the run does not finish within `timeout_s`, what the
    ServerApp logged so far is reported with `completed: false`."""
    workdir = Path(tempfile.mkdtemp(prefix="disco-bench-flower-"))
    try:
        app = workdir / "app"
        (app / "discobench").mkdir(parents=True)
        (app / "pyproject.toml").write_text(PYPROJECT)
        (app / "discobench" / "__init__.py").write_text("")
        (app / "discobench" / "client_app.py").write_text(CLIENT_APP)
        (app / "discobench" / "server_app.py").write_text(SERVER_APP)
        out = workdir / "rounds.json"
        with flower_deployment(flower_bin, nodes, workdir) as (_, superlink, env):
            idle_rss = TreeRssSampler(superlink.pid).sample()
            with TreeRssSampler(superlink.pid) as sampler:
                overrides = (f"params={params} nodes={nodes} num-server-rounds={rounds + 1} "
                             f'superlink-pid={superlink.pid} out="{out}"')  # fmt: skip
                submitted = subprocess.run(
                    [str(flower_bin / "flwr"), "run", str(app), "bench",
                     "--run-config", overrides],
                    env=env, capture_output=True, timeout=300, check=False,
                )  # fmt: skip
                if submitted.returncode != 0:
                    raise RuntimeError(
                        f"flwr run failed: {submitted.stdout.decode()[-1500:]}"
                        f"{submitted.stderr.decode()[-1500:]}"
                    )
                deadline = time.monotonic() + timeout_s
                failure = None
                while not out.exists() or not out.read_text().endswith("}"):
                    if time.monotonic() > deadline:
                        failure = f"the Flower run did not finish within {timeout_s:.0f} s"
                        break
                    if superlink.poll() is not None:
                        failure = "flower-superlink exited during the run"
                        break
                    time.sleep(0.5)
                time.sleep(0.5)
                clientapps = count_clientapps(superlink.pid)
        report = json.loads(out.read_text()) if failure is None else None
        partial_path = out.with_name(out.name + ".partial")
        partial = json.loads(partial_path.read_text()) if partial_path.exists() else []
        log_tail = "" if failure is None else flower_log_summary(workdir / "logs")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if report is None:
        return {"completed": False, "reason": failure, "rss_peak_mb": sampler.peak / 1e6,
                "rss_idle_mb": idle_rss / 1e6, "superlink_log": log_tail,
                "flower_processes_at_timeout": clientapps,
                "finished_rounds": partial}  # fmt: skip
    marks = report["rounds"][1:]  # round 1: warm-up (ClientApp processes start)
    if any(m["replies"] != nodes for m in report["rounds"]):
        raise RuntimeError(f"a Flower round had missing replies: {report['rounds']}")
    times = [m["end"] - m["start"] for m in marks]
    cpus = [m["end_cpu"] - m["start_cpu"] for m in marks]
    return {
        "completed": True,
        "params": report["params"],
        "round_s": statistics.median(times),
        "server_cpu_s": statistics.median(cpus),
        "rss_idle_mb": idle_rss / 1e6,
        "rss_peak_mb": sampler.peak / 1e6,
        "round_samples_s": [round(t, 3) for t in times],
        "server_cpu_samples_s": [round(c, 3) for c in cpus],
        "warmup_round_s": round(report["rounds"][0]["end"] - report["rounds"][0]["start"], 3),
    }


async def measure_disco(nodes: int, params: int, rounds: int, workdir: Path) -> dict[str, Any]:
    """This server's native rounds and the bare WebSocket floor, as bench/federated_round.py."""
    config = Config(WeightEncoding.NATIVE, nodes, params)
    artifacts = dense_model(config.side, seed=params)
    base = model_weights(artifacts)
    write_task_folder(workdir / "tasks", config, artifacts)
    with (
        disco_server(workdir / "tasks", workdir / "data", workdir / "server.log",
                     [config.task_id]) as (port, server, command),
        bare_server() as bare_port,
    ):  # fmt: skip
        idle_rss = int(server.memory_info().rss)
        sampler = TreeRssSampler(server.pid)
        with sampler:
            result = await measure_rounds(config, port, server, base, rounds)
        updates = client_updates(base, nodes, seed=1)
        up = [UpdateFrame(u, WeightEncoding.NATIVE).frame(1) for u in updates]
        down = len(pack(latest_round_reply(2, encode_weights(base, WeightEncoding.NATIVE))))
        bare_full, bare_tail = await measure_bare(bare_port, nodes, up, down, rounds, "flower")
    return {
        "params": result.params,
        "full_s": result.full_s,
        "round_s": result.round_s,
        "server_cpu_s": result.server_cpu_s,
        "rss_idle_mb": idle_rss / 1e6,
        "rss_peak_mb": sampler.peak / 1e6,
        "bare_full_s": bare_full,
        "bare_tail_s": bare_tail,
        "full_samples_s": [round(s["full_s"], 4) for s in result.samples],
        "server_command": " ".join(command),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--flower-bin", type=Path, default=default_flower_bin(),
        help="bin/ of a virtualenv with the bench extra (flwr==1.42.0); default: this Python's "
        f"when it has flower-superlink, else {FLOWER_VENV_BIN}",
    )  # fmt: skip
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--flower-timeout", type=float, default=FLOWER_TIMEOUT_S,
                        help="bound on Flower's whole run, seconds")  # fmt: skip
    parser.add_argument("--output", type=Path, help=f"JSON report (default {RESULTS})")
    args = parser.parse_args()
    flower_bin = args.flower_bin.resolve()
    if not (flower_bin / "flower-superlink").exists():
        sys.exit(f"no flower-superlink in {flower_bin}: install the bench extra (flwr=="
                 f"{FLOWER_VERSION}) in a venv of its own (see the docstring) and pass "
                 "--flower-bin")  # fmt: skip
    load_start = [round(x, 2) for x in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix="disco-bench-vsflower-"))
    try:
        print(f"this server: N={args.clients} P={args.params}", file=sys.stderr)
        disco = asyncio.run(measure_disco(args.clients, args.params, args.rounds, workdir))
        print(f"Flower {FLOWER_VERSION}: N={args.clients} P={args.params}", file=sys.stderr)
        flower = measure_flower(
            flower_bin, args.clients, args.params, args.rounds, args.flower_timeout
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    bare = disco["bare_full_s"]
    ratios: dict[str, float] = {"disco_full_over_bare_full": disco["full_s"] / bare}
    goals: dict[str, bool | None] = {
        "round_p50_20x_faster_than_flower": None,
        "server_cpu_at_most_a_fifth_of_flowers": None,
    }
    if flower["completed"]:
        ratios |= {
            "flower_round_over_disco_full": flower["round_s"] / disco["full_s"],
            "flower_cpu_over_disco_cpu": flower["server_cpu_s"] / disco["server_cpu_s"],
            "flower_rss_over_disco_rss": flower["rss_peak_mb"] / disco["rss_peak_mb"],
            "flower_round_over_bare_full": flower["round_s"] / bare,
        }
        goals = {
            "round_p50_20x_faster_than_flower": ratios["flower_round_over_disco_full"] >= 20,
            "server_cpu_at_most_a_fifth_of_flowers": ratios["flower_cpu_over_disco_cpu"] >= 5,
        }
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"N={args.clients}, P={disco['params']:.2e} float32, FedAvg, no training, "
                        f"{args.rounds} rounds after a warm-up (medians), loopback")  # fmt: skip
    for column in ("", "round p50 s", "× bare", "server CPU s/round", "RSS idle MB",
                   "RSS peak MB"):  # fmt: skip
        table.add_column(column, justify="right")
    table.add_row("bare WebSocket", f"{bare:.3f}", "1.00", "-", "-", "-")
    table.add_row(
        "this server (full round)", f"{disco['full_s']:.3f}", f"{disco['full_s'] / bare:.2f}",
        f"{disco['server_cpu_s']:.3f}", f"{disco['rss_idle_mb']:.0f}",
        f"{disco['rss_peak_mb']:.0f}",
    )  # fmt: skip
    table.add_row(
        "this server (round_s)", f"{disco['round_s']:.3f}", f"{disco['round_s'] / bare:.2f}",
        "", "", "",
    )  # fmt: skip
    if flower["completed"]:
        table.add_row(f"Flower {FLOWER_VERSION} deployment", f"{flower['round_s']:.3f}",
                      f"{flower['round_s'] / bare:.1f}", f"{flower['server_cpu_s']:.3f}",
                      f"{flower['rss_idle_mb']:.0f}", f"{flower['rss_peak_mb']:.0f}")  # fmt: skip
    else:
        table.add_row(f"Flower {FLOWER_VERSION} deployment", "did not finish", "-", "-",
                      f"{flower['rss_idle_mb']:.0f}", f"{flower['rss_peak_mb']:.0f}")  # fmt: skip
    Console(width=160).print(table)
    if flower["completed"]:
        print(
            f"Flower / this server: round {ratios['flower_round_over_disco_full']:.1f}x, server "
            f"CPU {ratios['flower_cpu_over_disco_cpu']:.1f}x, peak RSS "
            f"{ratios['flower_rss_over_disco_rss']:.1f}x; goals: "
            + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in goals.items())
        )
    else:
        done = [m for m in flower["finished_rounds"] if "end" in m]
        print(f"Flower: {flower['reason']} ({flower['flower_processes_at_timeout']} "
              f"flwr-clientapp processes running then); rounds finished: {len(done)} ("
              + ", ".join(f"{m['end'] - m['start']:.1f} s" for m in done)
              + f")\n{flower['superlink_log']}")  # fmt: skip
    report = {
        "benchmark": "Flower side by side (issue 12)",
        "command": " ".join([".venv/bin/python", "bench/vs_flower.py", *sys.argv[1:]]),
        "flower_install": f"flwr=={FLOWER_VERSION} (the bench extra) in a virtualenv of its own",
        "machine": {**machine(), "load_average_at_start": load_start},
        "setup": {"clients": args.clients, "params": disco["params"], "rounds": args.rounds,
                  "warmup_rounds": 1, "dtype": "float32", "training": "none, perturbed copies"},
        "definitions": {
            "disco full_s": "first upload started -> last client holds the new model",
            "disco round_s": "last upload sent -> last client holds the new model",
            "flower round_s": "ServerApp configure_train -> end of aggregate_train",
            "server CPU": "disco-server process / SuperLink tree (SuperLink, SuperExec, "
                          "ServerApp), per round",
        },
        "this_server": disco,
        "flower": flower,
        "ratios": {k: round(v, 2) for k, v in ratios.items()},
        "goals": goals,
    }
    write_report(report, args.output or RESULTS)


if __name__ == "__main__":
    main()

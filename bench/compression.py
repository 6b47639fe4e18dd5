"""Compressed updates on the mnist simulation: held-out accuracy of int8 and fp16 against float32.

Run: `.venv/bin/python bench/compression.py` (`--quick`: 2 clients, 4 rounds).

The same simulation (`disco.simulation.simulate_async`, built-in digits upsampled to
28×28, iid split, same seeds) runs once per update encoding — float32 (native), int8 (per-block
scales, error feedback) and fp16 (error feedback) — each against a fresh in-process server
(`simulation_server`). Reported per encoding: held-out accuracy of the global model after the
last round, the difference from float32 in percentage points, and the bytes per parameter of a
postWeightsToServer frame for the mnist model (its packed length / parameters, for a delta
shaped like a real one). Goal (issue): int8 ends within 1 percentage point of float32, and costs
≤ 1.1 bytes per parameter. Table on stdout, JSON in bench/results/compression.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from disco.protocol.compression import Compression, ErrorFeedback, encode_delta
from disco.protocol.framing import pack
from disco.protocol.messages import post_weights
from disco.protocol.weights import encode_native
from disco.simulation import SimulationOptions, simulate_async, simulation_server
from disco.tasks.defaults import default_tasks
from report import machine, write_report

RESULTS = Path(__file__).resolve().parent / "results" / "compression.json"
TASK = "mnist"
ENCODINGS: list[Compression | None] = [None, "int8", "fp16"]


def bytes_per_parameter(kind: Compression | None) -> float:
    """Packed postWeightsToServer length / parameters for the mnist model."""
    artifacts = next(a for t, a in default_tasks() if t.task_id == TASK)
    weights = [np.asarray(w, np.float32) for w in artifacts.weights()]
    rng = np.random.default_rng(0)
    delta = [(0.01 * rng.standard_normal(w.shape)).astype(np.float32) for w in weights]
    size = sum(int(w.size) for w in weights)
    if kind is None:
        payload: Any = encode_native([w + d for w, d in zip(weights, delta, strict=True)])
    else:
        payload, _ = encode_delta(delta, kind)
    return len(pack(post_weights(payload, 1, 100))) / size


ACCEPTED = [0]


def count_compressed_updates() -> None:
    """Count the compressed updates the server took in (every participant runs in this process),
    to show the compressed runs really sent compressed updates."""
    original = ErrorFeedback.accepted

    def counting(self: ErrorFeedback, residual: Any) -> None:
        ACCEPTED[0] += 1
        original(self, residual)

    ErrorFeedback.accepted = counting  # type: ignore[method-assign]


async def one_run(kind: Compression | None, clients: int, rounds: int, seed: int) -> dict[str, Any]:
    started = time.monotonic()
    ACCEPTED[0] = 0
    with simulation_server(TASK, clients) as url:
        options = SimulationOptions(
            rounds=rounds, seed=seed, compression=kind, round_timeout_s=300
        )
        result = await simulate_async(url, TASK, clients, options)
    accuracies = [r.accuracy for r in result.rounds]
    return {
        "encoding": kind or "float32",
        "final_accuracy": accuracies[-1],
        "accuracy_by_round": accuracies,
        "aggregated_rounds": sum(1 for r in result.rounds if r.aggregated),
        "compressed_updates_accepted": ACCEPTED[0],
        "bytes_per_parameter": round(bytes_per_parameter(kind), 4),
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 clients, 4 rounds")
    parser.add_argument("--clients", type=int, help="participants (default 4)")
    parser.add_argument("--rounds", type=int, help="communication rounds (default 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help=f"JSON report (default {RESULTS})")
    args = parser.parse_args()
    clients = args.clients or (2 if args.quick else 4)
    rounds = args.rounds or (4 if args.quick else 12)
    count_compressed_updates()
    runs = [asyncio.run(one_run(kind, clients, rounds, args.seed)) for kind in ENCODINGS]
    base = runs[0]["final_accuracy"]
    for run in runs:
        run["points_vs_float32"] = round(100 * (run["final_accuracy"] - base), 2)
    int8 = next(r for r in runs if r["encoding"] == "int8")
    goals = [
        {"goal": "int8 held-out accuracy within 1 percentage point of float32",
         "value": int8["points_vs_float32"], "passed": abs(int8["points_vs_float32"]) <= 1.0},
        {"goal": "int8 <= 1.1 bytes per parameter", "value": int8["bytes_per_parameter"],
         "passed": int8["bytes_per_parameter"] <= 1.1},
    ]  # fmt: skip
    table = Table(title=f"mnist simulation, {clients} clients, {rounds} rounds, seed {args.seed}")
    for column in ("encoding", "held-out accuracy", "vs float32 (points)", "bytes/param",
                   "compressed updates", "s"):  # fmt: skip
        table.add_column(column, justify="right")
    for run in runs:
        table.add_row(
            run["encoding"], f"{run['final_accuracy']:.4f}", f"{run['points_vs_float32']:+.2f}",
            f"{run['bytes_per_parameter']:.3f}", str(run["compressed_updates_accepted"]),
            f"{run['seconds']:.0f}",
        )  # fmt: skip
    console = Console()
    console.print(table)
    for goal in goals:
        console.print(f"{'PASS' if goal['passed'] else 'FAIL'}  {goal['goal']}: {goal['value']}")
    report = {
        "benchmark": "compressed updates (mnist simulation)",
        "command": " ".join([".venv/bin/python", "bench/compression.py", *sys.argv[1:]]),
        "machine": machine(),
        "setup": {"task": TASK, "clients": clients, "rounds": rounds, "seed": args.seed,
                  "split": "iid", "data": "built-in digits upsampled to 28x28"},
        "runs": runs,
        "goals": goals,
    }
    write_report(report, args.output or RESULTS)


if __name__ == "__main__":
    main()

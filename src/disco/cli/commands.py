"""The bodies of `disco tasks`, `disco train` and `disco simulate` (rich output)."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from disco.client.api import Client
from disco.client.remote import ServerError, fetch_tasks
from disco.client.session import RoundRecord
from disco.client.simulation import SimulationResult, SimulationRound, simulate_async

console = Console()


async def _model_size(http: httpx.AsyncClient, server: str, task_id: str) -> int | None:
    try:
        response = await http.get(f"{server}/tasks/{task_id}/model.json?format=tfjs")
        manifest = response.json().get("weightsManifest", [])
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return int(sum(math.prod(w["shape"]) for g in manifest for w in g.get("weights", [])))


async def _status(http: httpx.AsyncClient, server: str, task_id: str) -> dict[str, Any]:
    try:
        response = await http.get(f"{server}/tasks/{task_id}/status")
        body = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


async def list_tasks(server: str) -> int:
    async with httpx.AsyncClient(timeout=15) as http:
        tasks = await fetch_tasks(http, server)
        table = Table(title=f"Tasks on {server}")
        for column in ("id", "title", "scheme", "data type", "model size", "round", "participants"):
            table.add_column(
                column,
                justify="right" if column in ("model size", "round", "participants") else "left",
            )
        for task in tasks:
            task_id = str(task.get("taskID"))
            info = task.get("trainingInformation", {})
            size = await _model_size(http, server, task_id)
            status = await _status(http, server, task_id)
            table.add_row(
                task_id,
                str(task.get("displayInformation", {}).get("taskTitle", "")),
                str(info.get("scheme", "")),
                str(info.get("dataType", "")),
                f"{size:,}" if size is not None else "?",
                str(status.get("round", "?")),
                str(status.get("participants", status.get("currentNumberOfParticipants", "?"))),
            )
    console.print(table)
    return 0


@contextlib.contextmanager
def _progress() -> Iterator[Progress]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[metrics]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with progress:
        yield progress


async def train(args: argparse.Namespace) -> int:
    client = Client(args.server)
    task = await client.task_async(args.task)  # fails early, with the list of tasks
    info = task.get("trainingInformation", {})
    with _progress() as progress:
        batches = progress.add_task("batches", total=int(info.get("roundDuration", 1)), metrics="")
        rounds = progress.add_task("rounds", total=args.rounds, metrics="")

        def on_batch(epoch: int, batch: int, loss: float, accuracy: float) -> None:
            progress.update(
                batches,
                completed=batch + 1,
                description=f"epoch {epoch + 1} batch",
                metrics=f"loss {loss:.4f} acc {accuracy:.3f}",
            )

        def on_round(record: RoundRecord) -> None:
            progress.update(batches, completed=0)
            progress.update(
                rounds,
                advance=1,
                description=f"round {record.round}",
                metrics=f"loss {record.loss:.4f} acc {record.accuracy:.3f} "
                f"peers {record.participants}",
            )

        history = await client.train_async(
            args.task,
            args.data,
            scheme=args.scheme,
            secure=args.secure or None,
            epochs=args.epochs,
            rounds=args.rounds,
            on_round=on_round,
            on_batch=on_batch,
            missing=args.missing,
            round_timeout_s=args.round_timeout,
        )
    if not history.rounds:
        raise ServerError("no round completed")
    last = history.rounds[-1]
    aggregated = sum(1 for r in history.rounds if r.aggregated)
    console.print(
        f"[bold green]done[/]: {len(history.rounds)} rounds ({aggregated} aggregated), "
        f"final loss {last.loss:.4f}, accuracy {last.accuracy:.3f}, "
        f"{last.participants} participants in the last round"
    )
    return 0


def _table(result: SimulationResult) -> Table:
    table = Table(
        title=f"{result.scheme} simulation of {result.task_id}: {result.clients} clients"
        f", split {result.split}{', secure' if result.secure else ''}"
    )
    for column in ("round", "participants", "loss", "accuracy", "seconds"):
        table.add_column(column, justify="right")
    for row in result.rounds:
        table.add_row(
            str(row.round),
            str(row.participants),
            f"{row.loss:.4f}",
            f"{row.accuracy:.3f}" if row.accuracy is not None else "-",
            f"{row.seconds:.2f}",
        )
    return table


async def simulate(args: argparse.Namespace) -> int:
    from disco.cli.plot import plot_rounds

    async def run(server: str) -> SimulationResult:
        with _progress() as progress:
            bar = progress.add_task("rounds (participant 0)", total=args.rounds, metrics="")

            def on_round(index: int, record: RoundRecord) -> None:
                if index == 0:
                    acc = f"{record.val_accuracy:.3f}" if record.val_accuracy is not None else "-"
                    progress.update(bar, advance=1, metrics=f"held-out acc {acc}")

            return await simulate_async(
                server,
                args.task,
                args.clients,
                scheme=args.scheme,
                secure=args.secure,
                rounds=args.rounds,
                data_path=args.data,
                split=args.split,
                holdout=args.holdout,
                seed=args.seed,
                round_timeout_s=args.round_timeout,
                engine=args.engine,
                ray_address=args.ray_address,
                on_participant_round=on_round,
            )

    if args.server:
        result = await run(args.server.rstrip("/"))
    else:
        result = await _with_local_server(run, args)
    console.print(_table(result))
    if result.majority_rate is not None:
        console.print(f"majority-class rate of the held-out data: {result.majority_rate:.3f}")
    log_path = result.write_json(Path(f"{args.output}.json"))
    plot_path = plot_rounds(
        result.rounds,
        f"{result.task_id}: {result.clients} {result.scheme} clients ({result.split})",
        f"{args.output}.png",
    )
    console.print(f"log: {log_path}  plot: {plot_path}")
    return 0


async def _with_local_server(run: Any, args: argparse.Namespace) -> SimulationResult:
    """An in-process server on a free loopback port, with a throwaway data folder."""
    import tempfile

    from disco.server.runner import serve_in_thread
    from disco.server.settings import Settings

    with tempfile.TemporaryDirectory(prefix="disco-sim-") as folder:
        settings = Settings(
            data_dir=Path(folder),
            port=0,
            log_level="warning",
            round_deadline_s=10.0,
            default_min_participants=args.clients,
        )
        with serve_in_thread(settings) as url:
            result: SimulationResult = await run(url)
            return result


__all__ = ["SimulationRound", "list_tasks", "simulate", "train"]

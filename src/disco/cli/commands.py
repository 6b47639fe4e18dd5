"""The bodies of `disco tasks`, `disco train` and `disco simulate` (rich output).

Results (tables, per-round lines, summaries) go to stdout; live progress bars and log messages
go to stderr, and only when stderr is an interactive terminal: piped or captured output stays
plain text. Every command checks what it can (server, task, data, output folder) before it
starts training, so a user's mistake costs one line and no waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, get_args

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from disco.client.connection import ServerConnection
from disco.client.data.dataset import DataError, Dataset
from disco.client.data.loading import load_task_data
from disco.client.data.tabular import Missing
from disco.client.options import DecentralizedOptions, OptionsError, Scheme, TrainOptions
from disco.client.remote import ServerError, fetch_model, fetch_task, fetch_tasks
from disco.client.session import History, RoundRecord
from disco.errors import DiscoError
from disco.protocol.messages import RoundStatus
from disco.simulation.options import SimulationOptions
from disco.simulation.results import SimulationResult, SimulationRound
from disco.tasks.artifacts import write_layers_folder
from disco.tasks.schema import Task, TrainingInformation

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

SCHEMES: tuple[Scheme, ...] = get_args(Scheme)


class UsageError(DiscoError, ValueError):
    """Options that contradict each other or the task (exit status 2)."""


class OutputError(DiscoError, OSError):
    """The results cannot be written where `--output` says; the message names the path."""


# -- disco tasks ----------------------------------------------------------------------------


def model_size(model_json: object) -> int | None:
    """Parameter count from a TF.js model.json's weights manifest (None if it has none)."""
    if not isinstance(model_json, Mapping):
        return None
    try:
        return int(
            sum(
                math.prod(int(d) for d in weight["shape"])
                for group in model_json.get("weightsManifest", [])
                for weight in group.get("weights", [])
            )
        )
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


def participants_of(status: Mapping[str, Any]) -> int | None:
    """Clients taking part now: federated participants plus connected decentralized peers."""
    counts = [
        status.get(key)
        for key in ("currentNumberOfParticipants", "connectedPeers")
        if key in status
    ]
    numbers = [c for c in counts if isinstance(c, int) and not isinstance(c, bool)]
    return sum(numbers) if numbers else None


TASK_COLUMNS = ("id", "title", "scheme", "data type", "model size", "round", "participants")
_NUMERIC_COLUMNS = frozenset({"model size", "round", "participants"})


def task_rows(
    tasks: Sequence[Task],
    sizes: Sequence[int | None],
    statuses: Sequence[Mapping[str, Any]],
) -> list[tuple[str, ...]]:
    """The cells of `disco tasks`, one tuple per task (TASK_COLUMNS order)."""
    rows: list[tuple[str, ...]] = []
    for task, size, status in zip(tasks, sizes, statuses, strict=True):
        info = task.training_information
        participants = participants_of(status)
        rows.append(
            (
                task.task_id,
                task.display_information.task_title,
                str(info.training_scheme or info.scheme),
                info.data_type,
                f"{size:,}" if size is not None else "?",
                str(status.get("round", "?")),
                str(participants) if participants is not None else "?",
            )
        )
    return rows


def tasks_table(
    server: str,
    tasks: Sequence[Task],
    sizes: Sequence[int | None],
    statuses: Sequence[Mapping[str, Any]],
) -> Table:
    """The `disco tasks` table for a terminal: IDs are never cut, titles wrap instead."""
    rows = task_rows(tasks, sizes, statuses)
    table = Table(title=f"Tasks on {server}", show_edge=False)
    widest_id = max((len(row[0]) for row in rows), default=2)
    for column in TASK_COLUMNS:
        numeric = column in _NUMERIC_COLUMNS
        table.add_column(
            column,
            justify="right" if numeric else "left",
            no_wrap=numeric or column == "id",
            min_width=widest_id if column == "id" else None,
            overflow="fold",
        )
    for row in rows:
        table.add_row(*row)
    return table


def tasks_plain(
    server: str,
    tasks: Sequence[Task],
    sizes: Sequence[int | None],
    statuses: Sequence[Mapping[str, Any]],
) -> str:
    """`disco tasks` for a pipe or a file: aligned plain columns, nothing cut or wrapped."""
    rows = [TASK_COLUMNS, *task_rows(tasks, sizes, statuses)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TASK_COLUMNS))]

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(width) if column in _NUMERIC_COLUMNS else cell.ljust(width)
            for cell, width, column in zip(row, widths, TASK_COLUMNS, strict=True)
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([f"Tasks on {server}", *(line(row) for row in rows)])


async def _json_or_none(http: httpx.AsyncClient, url: str) -> Any:
    """GET url as JSON; None on any failure (the table shows '?' for what is missing)."""
    try:
        response = await http.get(url)
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


TOKEN_ENV = "DISCO_TOKEN"


def server_of(args: argparse.Namespace) -> ServerConnection:
    """The server of `--server`, `--ca-file` and `--token` (else $DISCO_TOKEN); UsageError when
    they cannot work."""
    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None
    try:
        return ServerConnection(args.server, getattr(args, "ca_file", None), token)
    except OptionsError as error:
        raise UsageError(str(error)) from None


async def _list_tasks(connection: ServerConnection) -> int:
    server = connection.url
    async with connection.http(15) as http:
        tasks = await fetch_tasks(http, server)
        ids = [task.task_id for task in tasks]
        models, statuses = await asyncio.gather(
            asyncio.gather(
                *(_json_or_none(http, f"{server}/tasks/{i}/model.json?format=tfjs") for i in ids)
            ),
            asyncio.gather(*(_json_or_none(http, f"{server}/tasks/{i}/status") for i in ids)),
        )
    sizes = [model_size(model) for model in models]
    reports = [s if isinstance(s, Mapping) else {} for s in statuses]
    if out.is_terminal:
        out.print(tasks_table(server, tasks, sizes, reports))
    else:
        out.print(tasks_plain(server, tasks, sizes, reports), markup=False)
    return 0


def tasks_command(args: argparse.Namespace) -> int:
    """`disco tasks`."""
    return asyncio.run(_list_tasks(server_of(args)))


# -- disco train ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundPlan:
    """How a run splits into rounds, as `run_training` will do it (for the progress bars)."""

    batches_per_epoch: int
    epochs: int | None  # None: as many epochs as `rounds` needs
    rounds: int


def plan_rounds(
    samples: int, info: TrainingInformation, epochs: int | None = None, rounds: int | None = None
) -> RoundPlan:
    """Batches per epoch and the number of rounds, from the task's batchSize/roundDuration."""
    per_epoch = max(1, math.ceil(samples / int(info.batch_size)))
    if rounds is not None:
        return RoundPlan(per_epoch, None, rounds)
    chosen = epochs if epochs is not None else int(info.epochs)
    return RoundPlan(per_epoch, chosen, math.ceil(chosen * per_epoch / info.batches_per_round))


class TrainView:
    """Progress of one participant: live bars on a terminal, else a line per round on stdout."""

    def __init__(self, plan: RoundPlan, live: bool) -> None:
        self.plan = plan
        self.live = live
        self.records: list[RoundRecord] = []
        self._epoch = -1
        self._in_epoch = 0
        self._epoch_loss = 0.0
        self._epoch_correct = 0.0
        self._progress: Progress | None = None
        self._epoch_bar: TaskID | None = None
        self._round_bar: TaskID | None = None
        self._waiting: tuple[object, ...] | None = None

    def __enter__(self) -> TrainView:
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description:<14}"),
                BarColumn(),
                TextColumn("{task.completed:>4}/{task.total:<4}"),
                TextColumn("{task.fields[metrics]}"),
                TimeElapsedColumn(),
                console=err,
            )
            self._progress.start()
            epochs = f"/{self.plan.epochs}" if self.plan.epochs else ""
            self._epoch_bar = self._progress.add_task(
                f"epoch 1{epochs}", total=self.plan.batches_per_epoch, metrics=""
            )
            self._round_bar = self._progress.add_task("rounds", total=self.plan.rounds, metrics="")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def on_batch(self, epoch: int, index: int, loss: float, accuracy: float) -> None:
        if epoch != self._epoch:
            self._epoch, self._in_epoch = epoch, 0
            self._epoch_loss = self._epoch_correct = 0.0
        self._in_epoch += 1
        self._epoch_loss += loss
        self._epoch_correct += accuracy
        if self._progress is not None and self._epoch_bar is not None:
            epochs = f"/{self.plan.epochs}" if self.plan.epochs else ""
            self._progress.update(
                self._epoch_bar,
                completed=min(self._in_epoch, self.plan.batches_per_epoch),
                description=f"epoch {epoch + 1}{epochs}",
                metrics=f"loss {self._epoch_loss / self._in_epoch:.4f} "
                f"acc {self._epoch_correct / self._in_epoch:.3f}",
            )

    def on_status(self, status: RoundStatus) -> None:
        """What the round waits for, pushed by the server while this participant waits: shown on
        the rounds bar, or printed once per change (not for every tick of the deadline)."""
        key = (status.round, status.waiting_for, status.contributions, status.participants)
        if self._progress is not None and self._round_bar is not None:
            self._progress.update(self._round_bar, metrics=status.describe())
        elif key != self._waiting:
            out.print(status.describe())
        self._waiting = key

    def on_round(self, record: RoundRecord) -> None:
        self.records.append(record)
        if self._progress is not None and self._round_bar is not None:
            note = "" if record.aggregated else " (not aggregated)"
            if record.epsilon is not None:
                note += f" ε {record.epsilon:.3g}"
            self._progress.update(
                self._round_bar,
                completed=len(self.records),
                metrics=f"loss {record.loss:.4f} acc {record.accuracy:.3f} "
                f"participants {record.participants}{note}",
            )
        else:
            out.print(round_line(record, len(self.records), self.plan.rounds))


def round_line(record: RoundRecord, index: int, total: int) -> str:
    """One plain-text line per finished round, numbered within this run (1..total)."""
    text = (
        f"round {index}/{total}  epoch {record.epoch + 1}  loss {record.loss:.4f}  "
        f"accuracy {record.accuracy:.3f}  participants {record.participants}"
    )
    if record.epsilon is not None:
        text += f"  ε {record.epsilon:.3g}"
    return text if record.aggregated else text + "  (no aggregate: kept the local model)"


def train_summary(records: Sequence[RoundRecord], seconds: float, interrupted: bool) -> str:
    """The closing line of `disco train`."""
    if not records:
        return "no round completed" + (" before the interruption" if interrupted else "")
    last = records[-1]
    aggregated = sum(1 for r in records if r.aggregated)
    head = "interrupted after" if interrupted else "done:"
    text = (
        f"{head} {len(records)} rounds ({aggregated} aggregated) in {seconds:.1f} s; "
        f"last round: loss {last.loss:.4f}, accuracy {last.accuracy:.3f}, "
        f"{last.participants} participants"
    )
    if last.epsilon is not None:
        text += f"; privacy spent ε = {last.epsilon:.3g}"
    return text


def cli_data_error(error: DataError) -> DataError:
    """A data error reworded for the command line (flags instead of API arguments)."""
    message = (
        str(error)
        .replace("missing='drop' or 'mean'", "--missing drop or --missing mean")
        .replace("missing='drop'", "--missing drop")
        .replace("labels_csv / --labels", "--labels")
    )
    if "the task expects" in message:
        message += " (pass --resize to resize images to the task's size)"
    return DataError(message)


def load_local_data(
    info: TrainingInformation,
    path: str,
    model_topology: Mapping[str, Any],
    missing: Missing,
    resize: bool,
    labels: str | None = None,
) -> Dataset:
    """The user's data for the task, with CLI wording on errors."""
    try:
        return load_task_data(
            info, path, model_topology, missing=missing, resize=resize, labels_csv=labels
        )
    except DataError as error:
        raise cli_data_error(error) from None


def resolve_scheme(
    info: TrainingInformation | None, requested: str | None, secure: bool
) -> Scheme:
    """The scheme to train with: `requested`, else the task's (federated without a task at
    hand); UsageError for contradictions."""
    task_scheme = "federated" if info is None else str(info.training_scheme or info.scheme)
    name = (requested or task_scheme).lower()
    scheme = next((s for s in SCHEMES if s == name), None)
    if scheme is None:
        raise UsageError(f"the task's scheme {name!r} is not supported: pass --scheme")
    if secure and scheme != "decentralized":
        raise UsageError("--secure (secure aggregation) needs --scheme decentralized")
    return scheme


async def _train(args: argparse.Namespace) -> int:
    connection = server_of(args)
    server = connection.url
    async with connection.http(30) as http:
        task = await fetch_task(http, server, args.task)
        remote = await fetch_model(http, server, args.task)
    info = task.training_information
    scheme = resolve_scheme(info, args.scheme, args.secure)
    data = await asyncio.to_thread(
        load_local_data,
        info,
        args.data,
        remote.artifacts.model_topology,
        args.missing,
        args.resize,
        args.labels,
    )
    plan = plan_rounds(len(data), info, args.epochs, args.rounds)
    # torch, once the task, its model and the data are known good (not for a refusal)
    from disco.client.api import Client

    # federated tasks aggregate securely by their setting; decentralized ones also on --secure
    secure = args.secure or info.aggregation_strategy == "secure"
    out.print(
        f"{args.task}: {len(data)} local samples, {scheme}"
        f"{' (secure)' if secure else ''}, {plan.rounds} rounds, server {server}"
    )
    started = time.monotonic()
    view = TrainView(plan, live=err.is_interactive)
    history: History | None = None
    try:
        with view:
            options = TrainOptions(
                scheme=scheme,
                secure=True if args.secure else None,
                epochs=args.epochs,
                rounds=args.rounds,
                on_round=view.on_round,
                on_batch=view.on_batch,
                on_status=view.on_status,
                round_timeout_s=args.round_timeout,
                seed=args.seed,
                decentralized=DecentralizedOptions(loopback_only=args.loopback_only),
                model_path=tuple(args.model_path),
            )
            history = await Client(connection).train_async(args.task, data, options)
    except asyncio.CancelledError:  # Ctrl-C: the session has closed its connection by now
        out.print(train_summary(view.records, time.monotonic() - started, interrupted=True))
        raise
    out.print(train_summary(history.rounds, time.monotonic() - started, interrupted=False))
    if history.stopped:
        out.print(f"stopped early: {history.stopped}")
    if not history.rounds:
        raise ServerError("no round completed")
    if args.save_model and history.final_weights is not None:
        saved = write_layers_folder(
            remote.artifacts.with_weights(history.final_weights), Path(args.save_model)
        )
        out.print(f"model saved: {saved}")
    return 0


def train_command(args: argparse.Namespace) -> int:
    """`disco train`."""
    return asyncio.run(_train(args))


# -- disco simulate -------------------------------------------------------------------------


def simulation_table(result: SimulationResult) -> Table:
    """Per-round table: participants, training loss, held-out loss and accuracy, seconds."""
    table = Table(
        title=f"{result.scheme} simulation of {result.task_id}: {result.clients} clients, "
        f"split {result.split}{', secure' if result.secure else ''}",
        show_edge=False,
    )
    for column in ("round", "participants", "train loss", "held-out loss", "accuracy", "seconds"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in result.rounds:
        table.add_row(*simulation_cells(row))
    return table


def simulation_cells(row: SimulationRound) -> list[str]:
    """The table cells of one round."""
    return [
        str(row.round),
        str(row.participants),
        f"{row.loss:.4f}",
        f"{row.val_loss:.4f}" if row.val_loss is not None else "-",
        f"{row.accuracy:.3f}" if row.accuracy is not None else "-",
        f"{row.seconds:.2f}",
    ]


class SimulationView:
    """Live bar of participant 0's rounds (held-out accuracy) on an interactive terminal."""

    def __init__(self, rounds: int, live: bool) -> None:
        self._progress = (
            Progress(
                TextColumn("[bold]rounds"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[metrics]}"),
                TimeElapsedColumn(),
                console=err,
            )
            if live
            else None
        )
        self._bar = (
            self._progress.add_task("rounds", total=rounds, metrics="")
            if self._progress is not None
            else None
        )

    def __enter__(self) -> SimulationView:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def on_round(self, index: int, record: RoundRecord) -> None:
        if index != 0 or self._progress is None or self._bar is None:
            return
        accuracy = f"{record.val_accuracy:.3f}" if record.val_accuracy is not None else "-"
        self._progress.update(
            self._bar,
            advance=1,
            metrics=f"held-out accuracy {accuracy}, {record.participants} participants",
        )


def check_output_prefix(prefix: str) -> tuple[Path, Path]:
    """The JSON and PNG paths of `--output`; OutputError now rather than after training."""
    base = Path(prefix)
    folder = base.parent if str(base.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"--output {prefix}: folder {folder} does not exist")
    return base.with_name(base.name + ".json"), base.with_name(base.name + ".png")


def _describe(args: argparse.Namespace, server: str, in_process: bool) -> str:
    where = "in-process server" if in_process else "server"
    return (
        f"simulating {args.clients} {args.scheme} participants of {args.task}"
        f"{' with secure aggregation' if args.secure else ''}: split {args.split}, "
        f"{args.rounds} rounds, {args.engine} engine, {where} {server}"
    )


async def _simulate(
    args: argparse.Namespace, scheme: Scheme, server: str, loopback_only: bool
) -> SimulationResult:
    with SimulationView(args.rounds, live=err.is_interactive) as view:
        options = SimulationOptions(
            scheme=scheme,
            secure=args.secure,
            rounds=args.rounds,
            data_path=args.data,
            split=args.split,
            holdout=args.holdout,
            seed=args.seed,
            round_timeout_s=args.round_timeout,
            engine="ray" if args.engine == "ray" else "local",
            ray_address=args.ray_address,
            on_participant_round=view.on_round,
            decentralized=DecentralizedOptions(loopback_only=loopback_only),
            missing=args.missing,
            resize=args.resize,
        )
        from disco.simulation.run import simulate_async  # torch

        try:
            return await simulate_async(server, args.task, args.clients, options)
        except DataError as error:
            raise cli_data_error(error) from None


def simulate_command(args: argparse.Namespace) -> int:
    """`disco simulate`: an in-process server unless --server, then the table, log and plot."""
    from disco.cli.plot import plot_rounds
    from disco.simulation.local_server import simulation_server  # the server (FastAPI)
    from disco.tasks.defaults import DEFAULT_TASK_IDS

    scheme = resolve_scheme(None, args.scheme, args.secure)
    json_path, png_path = check_output_prefix(args.output)
    started_ray = False
    if args.engine == "ray":
        from disco.simulation.ray_engine import init_ray

        # In the main thread: Ray installs signal handlers there.
        started_ray = init_ray(args.ray_address, args.clients, verbose=args.verbose)
    try:
        if args.server:
            server = args.server.rstrip("/")
            out.print(_describe(args, server, in_process=False))
            result = asyncio.run(_simulate(args, scheme, server, loopback_only=args.loopback_only))
        else:
            if args.task not in DEFAULT_TASK_IDS:
                raise ServerError(
                    f"unknown task {args.task!r}: the in-process server has "
                    f"{', '.join(DEFAULT_TASK_IDS)} (pass --server URL for other tasks)"
                )
            # Every peer runs on this machine: WebRTC on loopback only.
            with simulation_server(args.task, args.clients) as server:
                out.print(_describe(args, server, in_process=True))
                result = asyncio.run(_simulate(args, scheme, server, loopback_only=True))
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    out.print(simulation_table(result))
    summary = f"simulated in {result.seconds:.1f} s"
    mean = result.mean_accuracy(3)
    if mean is not None:
        summary += f"; held-out accuracy over the last 3 rounds {mean:.3f}"
    if result.majority_rate is not None:
        summary += f" (majority class: {result.majority_rate:.3f})"
    out.print(summary)
    try:
        result.write_json(json_path)
        plot_rounds(
            result.rounds,
            f"{result.task_id}: {result.clients} {result.scheme} clients"
            f"{' (secure)' if result.secure else ''}, split {result.split}",
            png_path,
            majority_rate=result.majority_rate,
        )
    except OSError as error:
        raise OutputError(f"--output {args.output}: {error}") from None
    out.print(f"log: {json_path}  plot: {png_path}")
    return 0


__all__ = [
    "OutputError",
    "RoundPlan",
    "TrainView",
    "UsageError",
    "model_size",
    "participants_of",
    "plan_rounds",
    "simulate_command",
    "simulation_table",
    "tasks_command",
    "tasks_plain",
    "tasks_table",
    "train_command",
    "train_summary",
]

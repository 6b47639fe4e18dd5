"""Simulate N participants of one task on one machine: split data, train concurrently, evaluate.

Participants are asyncio tasks in this process by default, or Ray actors (`engine="ray"`) so a
large simulation spreads over a cluster. Each round the global model is evaluated on held-out
data: participant 0 holds the evaluation set, and its weights right after a round's exchange are
the global model (federated: the server's aggregate; decentralized: the peers' mean).

`simulation_server(task_id, n)` runs an in-process server on a free loopback port whose copy of
the task waits for exactly `n` participants (`minNbOfParticipants` and `minimumReadyPeers` set to
`n`): every round then aggregates all `n` updates, whatever the task's own minimum says.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from disco.client.api import Client, Scheme
from disco.client.builtin_data import builtin_dataset
from disco.client.data.dataset import DataError, Dataset
from disco.client.data.loading import load_task_data
from disco.client.data.tabular import Missing
from disco.client.options import OptionsError
from disco.client.remote import fetch_model, fetch_task
from disco.client.session import History, RoundRecord

log = logging.getLogger("disco.client.simulation")

Engine = Literal["local", "ray"]
ParticipantListener = Callable[[int, RoundRecord], None]
"""Called with (participant index, record) after each of a participant's rounds."""


# -- data splits ----------------------------------------------------------------------------


def split_iid(data: Dataset, n: int, seed: int = 0) -> list[Dataset]:
    """Shuffle and deal the data into n nearly equal parts."""
    if n < 1 or n > len(data):
        raise DataError(f"cannot split {len(data)} samples among {n} participants")
    order = np.random.default_rng(seed).permutation(len(data))
    return [data.subset(part) for part in np.array_split(order, n)]


def split_dirichlet(
    data: Dataset, n: int, alpha: float, seed: int = 0, min_size: int = 2
) -> list[Dataset]:
    """Non-IID split: each class is spread over participants by Dirichlet(alpha) proportions.

    Small alpha gives each participant few classes. Draws are repeated (bounded) until every
    participant holds at least `min_size` samples.
    """
    if not alpha > 0 or not math.isfinite(alpha):
        raise OptionsError("the Dirichlet alpha must be a positive number")
    if n < 1 or n * min_size > len(data):
        raise DataError(f"cannot split {len(data)} samples among {n} participants")
    labels = data.class_labels()
    rng = np.random.default_rng(seed)
    for _ in range(100):
        parts: list[list[int]] = [[] for _ in range(n)]
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(n, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for part, chunk in zip(parts, np.split(members, cuts), strict=True):
                part.extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [data.subset(np.asarray(sorted(p), dtype=np.int64)) for p in parts]
    raise DataError(f"no Dirichlet({alpha}) split gave every participant {min_size} samples")


def parse_split(how: str) -> tuple[str, float | None]:
    """`iid` -> ("iid", None); `dirichlet:ALPHA` -> ("dirichlet", alpha); ValueError otherwise."""
    if how == "iid":
        return "iid", None
    if how.startswith("dirichlet:"):
        try:
            alpha = float(how.split(":", 1)[1])
        except ValueError:
            raise OptionsError(f"bad split {how!r}: expected dirichlet:ALPHA") from None
        if not alpha > 0 or not math.isfinite(alpha):
            raise OptionsError(f"bad split {how!r}: ALPHA must be a positive number")
        return "dirichlet", alpha
    raise OptionsError(f"unknown split {how!r} (iid or dirichlet:ALPHA)")


def split_data(data: Dataset, n: int, how: str, seed: int = 0) -> list[Dataset]:
    """`iid` or `dirichlet:ALPHA`."""
    kind, alpha = parse_split(how)
    if kind == "iid" or alpha is None:
        return split_iid(data, n, seed)
    return split_dirichlet(data, n, alpha, seed)


def class_counts(parts: Sequence[Dataset]) -> list[npt.NDArray[np.int64]]:
    """Per-participant label histograms (to show how non-IID a split is)."""
    width = max((int(p.class_labels().max()) + 1 for p in parts if len(p)), default=0)
    return [np.bincount(p.class_labels(), minlength=width) for p in parts]


def majority_rate(data: Dataset) -> float:
    """Accuracy of always predicting the most frequent class."""
    counts = np.bincount(data.class_labels())
    return float(counts.max() / counts.sum())


# -- results --------------------------------------------------------------------------------


@dataclass
class SimulationRound:
    """One row of the per-round table.

    `loss` is the participants' mean training loss over the round's batches; `accuracy` and
    `val_loss` are the global model's on the held-out data (None when not evaluated);
    `aggregated` counts the participants whose round produced an aggregate.
    """

    round: int
    participants: int
    loss: float
    accuracy: float | None
    val_loss: float | None
    seconds: float
    aggregated: int = 0


@dataclass
class SimulationResult:
    """What a simulation did, round by round; `write_json` saves it as the JSON log."""

    task_id: str
    scheme: str
    clients: int
    split: str
    secure: bool
    rounds: list[SimulationRound] = field(default_factory=list)
    majority_rate: float | None = None
    seconds: float = 0.0
    engine: str = "local"
    seed: int = 0
    server: str = ""
    held_out: int = 0
    train_sizes: list[int] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float | None:
        return self.rounds[-1].accuracy if self.rounds else None

    def mean_accuracy(self, last: int = 3) -> float | None:
        """Mean held-out accuracy of the last `last` evaluated rounds (less noisy than one)."""
        values = [r.accuracy for r in self.rounds if r.accuracy is not None][-last:]
        return float(np.mean(values)) if values else None

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "final_accuracy": self.final_accuracy,
            "mean_accuracy_last_3": self.mean_accuracy(3),
        }

    def write_json(self, path: str | Path) -> Path:
        target = Path(path)
        target.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
        return target


def combine_rounds(histories: Sequence[History]) -> list[SimulationRound]:
    """Per-round table from all participants' histories (evaluation from participant 0)."""
    by_round: dict[int, list[RoundRecord]] = {}
    for history in histories:
        for index, record in enumerate(history.rounds):
            by_round.setdefault(index, []).append(record)
    evaluated = histories[0].rounds if histories else []
    rows = []
    for index in sorted(by_round):
        records = by_round[index]
        ref = evaluated[index] if index < len(evaluated) else None
        rows.append(
            SimulationRound(
                round=index + 1,
                participants=max(r.participants for r in records),
                loss=float(np.mean([r.loss for r in records])),
                accuracy=ref.val_accuracy if ref is not None else None,
                val_loss=ref.val_loss if ref is not None else None,
                seconds=max(r.seconds for r in records),
                aggregated=sum(1 for r in records if r.aggregated),
            )
        )
    return rows


# -- the task's quorum ----------------------------------------------------------------------


def with_quorum(task_json: Mapping[str, Any], participants: int) -> dict[str, Any]:
    """A copy of a task JSON whose rounds wait for exactly `participants` clients/peers."""
    if participants < 1:
        raise OptionsError("a simulation needs at least one participant")
    copied = copy.deepcopy(dict(task_json))
    info = dict(copied.get("trainingInformation") or {})
    info["minNbOfParticipants"] = participants
    info["minimumReadyPeers"] = participants
    copied["trainingInformation"] = info
    return copied


def quorum_problem(task_json: Mapping[str, Any], scheme: str, participants: int) -> str | None:
    """Why `participants` simulated clients alone cannot complete a round of this task, if so.

    Only minimums the task states are checked (a server default is not visible to clients).
    """
    info = task_json.get("trainingInformation") or {}
    key = "minimumReadyPeers" if scheme == "decentralized" else "minNbOfParticipants"
    value = info.get(key) if isinstance(info, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > participants:
        return (
            f"task {task_json.get('taskID')!r} has {key}={value}: rounds wait for "
            f"{value} participants, but only {participants} are simulated"
        )
    return None


@contextmanager
def simulation_server(
    task_id: str, participants: int, round_deadline_s: float = 10.0
) -> Iterator[str]:
    """An in-process server (throwaway data folder, free loopback port) for a simulation.

    Its copy of the default task `task_id` waits for `participants` (see `with_quorum`); the
    other default tasks are served unchanged. Yields the base URL; stops the server on exit.
    """
    from disco.server.runner import serve_in_thread
    from disco.server.settings import Settings
    from disco.tasks.defaults import default_tasks
    from disco.tasks.schema import parse_task
    from disco.tasks.store import TaskStore

    with tempfile.TemporaryDirectory(prefix="disco-sim-") as folder:
        store = TaskStore(folder)
        for task, artifacts in default_tasks():
            if task.task_id == task_id:
                store.add(parse_task(with_quorum(task.to_json(), participants)), artifacts)
        settings = Settings(
            host="127.0.0.1",
            port=0,
            data_dir=Path(folder),
            log_level="warning",
            round_deadline_s=round_deadline_s,
            default_min_participants=participants,
            default_minimum_ready_peers=participants,
        )
        with serve_in_thread(settings) as url:
            yield url


# -- running --------------------------------------------------------------------------------


async def _all_or_none(coroutines: Sequence[Coroutine[Any, Any, History]]) -> list[History]:
    """Run the participants together; if one fails (or we are cancelled) stop the others.

    Stopping means cancelling and awaiting them, so every connection is closed on the way out.
    """
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def prepare_data(
    server_url: str,
    task_id: str,
    data_path: str | Path | None,
    holdout: float,
    seed: int,
    missing: Missing = "error",
    resize: bool = False,
) -> tuple[dict[str, Any], Dataset, Dataset]:
    """The task, its training data and held-out evaluation data (built-in data without a path)."""
    import httpx

    if not 0.0 < holdout < 1.0:
        raise OptionsError("the held-out fraction must be in (0, 1)")
    async with httpx.AsyncClient(timeout=30) as http:
        task = await fetch_task(http, server_url, task_id)
        remote = await fetch_model(http, server_url, task_id)
    info = task.get("trainingInformation", {})
    if data_path is None:
        data = await asyncio.to_thread(builtin_dataset, task_id, info)
    else:
        data = await asyncio.to_thread(
            load_task_data,
            info,
            data_path,
            remote.artifacts.model_topology,
            missing=missing,
            resize=resize,
        )
    if len(data) < 4:
        raise DataError(f"too little data to simulate: {len(data)} samples")
    train, held_out = data.split(holdout, seed=seed)
    return task, train, held_out


async def simulate_async(
    server_url: str,
    task_id: str,
    clients: int,
    scheme: Scheme = "federated",
    secure: bool = False,
    rounds: int | None = None,
    data_path: str | Path | None = None,
    split: str = "iid",
    holdout: float = 0.2,
    seed: int = 0,
    round_timeout_s: float = 120.0,
    engine: Engine = "local",
    ray_address: str | None = None,
    on_participant_round: ParticipantListener | None = None,
    decentralized_options: Mapping[str, Any] | None = None,
    missing: Missing = "error",
    resize: bool = False,
) -> SimulationResult:
    """Run `clients` participants of `task_id` concurrently and collect the per-round table.

    `decentralized_options` go to every participant's `DecentralizedCommunicator` (for example
    `{"loopback_only": True}` when every peer runs on this machine). With `engine="ray"` each
    participant is a Ray actor (Ray is initialised locally, or on `ray_address`, unless the
    caller already did).
    """
    if clients < 1:
        raise OptionsError("a simulation needs at least one participant")
    if engine not in ("local", "ray"):
        raise OptionsError(f"unknown engine {engine!r} (local or ray)")
    parse_split(split)
    started = time.monotonic()
    task, train, held_out = await prepare_data(
        server_url, task_id, data_path, holdout, seed, missing=missing, resize=resize
    )
    problem = quorum_problem(task, scheme, clients)
    if problem is not None:
        log.warning("%s; rounds will wait for other participants", problem)
    parts = split_data(train, clients, split, seed)
    result = SimulationResult(
        task_id,
        scheme,
        clients,
        split,
        secure,
        majority_rate=majority_rate(held_out),
        engine=engine,
        seed=seed,
        server=server_url,
        held_out=len(held_out),
        train_sizes=[len(p) for p in parts],
    )
    options = dict(decentralized_options or {})
    if engine == "ray":
        from disco.client.ray_engine import RayJob, run_with_ray

        stop = threading.Event()
        job = RayJob(
            server_url,
            task_id,
            scheme,
            secure,
            rounds,
            round_timeout_s,
            seed,
            options,
        )
        try:
            histories = await asyncio.to_thread(
                run_with_ray, job, parts, held_out, ray_address, on_participant_round, stop
            )
        finally:
            stop.set()  # on cancellation: the polling thread kills the actors and returns
    else:
        client = Client(server_url)

        def listener(index: int) -> Callable[[RoundRecord], None] | None:
            if on_participant_round is None:
                return None
            return lambda record: on_participant_round(index, record)

        histories = await _all_or_none(
            [
                client.train_async(
                    task_id,
                    part,
                    scheme=scheme,
                    secure=secure,
                    rounds=rounds,
                    validation=held_out if index == 0 else None,
                    on_round=listener(index),
                    round_timeout_s=round_timeout_s,
                    seed=seed + index,
                    decentralized_options=options or None,
                )
                for index, part in enumerate(parts)
            ]
        )
    result.rounds = combine_rounds(histories)
    result.seconds = time.monotonic() - started
    return result

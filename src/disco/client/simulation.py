"""Simulate N participants of one task on one machine: split data, train concurrently, evaluate.

Participants are asyncio tasks in this process by default, or Ray actors (`engine="ray"`) so a
large simulation spreads over a cluster. Each round the global model is evaluated on held-out
data (participant 0 holds the evaluation set: its weights after a round are the global model).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from disco.client.api import Client, Scheme
from disco.client.builtin_data import builtin_dataset
from disco.client.data.dataset import DataError, Dataset
from disco.client.data.loading import load_task_data
from disco.client.remote import fetch_model, fetch_task
from disco.client.session import History, RoundRecord


def split_iid(data: Dataset, n: int, seed: int = 0) -> list[Dataset]:
    """Shuffle and deal the data into n nearly equal parts."""
    if n < 1 or n > len(data):
        raise ValueError(f"cannot split {len(data)} samples among {n} participants")
    order = np.random.default_rng(seed).permutation(len(data))
    return [data.subset(part) for part in np.array_split(order, n)]


def split_dirichlet(
    data: Dataset, n: int, alpha: float, seed: int = 0, min_size: int = 2
) -> list[Dataset]:
    """Non-IID split: each class is spread over participants by Dirichlet(alpha) proportions.

    Small alpha gives each participant few classes. Draws are repeated (bounded) until every
    participant holds at least `min_size` samples.
    """
    if alpha <= 0:
        raise ValueError("the Dirichlet alpha must be positive")
    if n < 1 or n * min_size > len(data):
        raise ValueError(f"cannot split {len(data)} samples among {n} participants")
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
    raise ValueError(f"no Dirichlet({alpha}) split gave every participant {min_size} samples")


def split_data(data: Dataset, n: int, how: str, seed: int = 0) -> list[Dataset]:
    """`iid` or `dirichlet:ALPHA`."""
    if how == "iid":
        return split_iid(data, n, seed)
    if how.startswith("dirichlet:"):
        try:
            alpha = float(how.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad split {how!r}: expected dirichlet:ALPHA") from None
        return split_dirichlet(data, n, alpha, seed)
    raise ValueError(f"unknown split {how!r} (iid or dirichlet:ALPHA)")


@dataclass
class SimulationRound:
    round: int
    participants: int
    loss: float
    accuracy: float | None
    val_loss: float | None
    seconds: float


@dataclass
class SimulationResult:
    task_id: str
    scheme: str
    clients: int
    split: str
    secure: bool
    rounds: list[SimulationRound] = field(default_factory=list)
    majority_rate: float | None = None
    seconds: float = 0.0

    @property
    def final_accuracy(self) -> float | None:
        return self.rounds[-1].accuracy if self.rounds else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "final_accuracy": self.final_accuracy}

    def write_json(self, path: str | Path) -> Path:
        target = Path(path)
        target.write_text(json.dumps(self.as_dict(), indent=2), encoding="utf-8")
        return target


def majority_rate(data: Dataset) -> float:
    """Accuracy of always predicting the most frequent class."""
    counts = np.bincount(data.class_labels())
    return float(counts.max() / counts.sum())


def combine_rounds(histories: Sequence[History]) -> list[SimulationRound]:
    """Per-round table from all participants' histories (evaluation from participant 0)."""
    by_round: dict[int, list[RoundRecord]] = {}
    for history in histories:
        for index, record in enumerate(history.rounds):
            by_round.setdefault(index, []).append(record)
    rows = []
    evaluated = histories[0].rounds
    for index in sorted(by_round):
        records = by_round[index]
        ref = evaluated[index] if index < len(evaluated) else records[0]
        rows.append(
            SimulationRound(
                round=index + 1,
                participants=max(r.participants for r in records),
                loss=float(np.mean([r.loss for r in records])),
                accuracy=ref.val_accuracy,
                val_loss=ref.val_loss,
                seconds=max(r.seconds for r in records),
            )
        )
    return rows


async def prepare_data(
    server_url: str, task_id: str, data_path: str | None, holdout: float, seed: int
) -> tuple[dict[str, Any], Dataset, Dataset]:
    """The task, its training data and held-out evaluation data."""
    import httpx

    async with httpx.AsyncClient(timeout=30) as http:
        task = await fetch_task(http, server_url, task_id)
        remote = await fetch_model(http, server_url, task_id)
    info = task.get("trainingInformation", {})
    if data_path is None:
        data = builtin_dataset(task_id, info)
    else:
        data = load_task_data(info, data_path, remote.artifacts.model_topology, missing="drop")
    if len(data) < 4:
        raise DataError("too little data to simulate")
    train, held_out = data.split(holdout, seed=seed)
    return task, train, held_out


RoundListener = Callable[[SimulationRound], None]


async def simulate_async(
    server_url: str,
    task_id: str,
    clients: int,
    scheme: Scheme = "federated",
    secure: bool = False,
    rounds: int | None = None,
    data_path: str | None = None,
    split: str = "iid",
    holdout: float = 0.2,
    seed: int = 0,
    round_timeout_s: float = 120.0,
    engine: str = "local",
    ray_address: str | None = None,
    on_participant_round: Callable[[int, RoundRecord], None] | None = None,
) -> SimulationResult:
    """Run `clients` participants of `task_id` concurrently and collect the per-round table."""
    started = time.monotonic()
    _, train, held_out = await prepare_data(server_url, task_id, data_path, holdout, seed)
    parts = split_data(train, clients, split, seed)
    result = SimulationResult(
        task_id, scheme, clients, split, secure, majority_rate=majority_rate(held_out)
    )
    if engine == "ray":
        from disco.client.ray_engine import run_with_ray

        histories = await asyncio.to_thread(
            run_with_ray,
            server_url,
            task_id,
            parts,
            held_out,
            scheme,
            secure,
            rounds,
            round_timeout_s,
            seed,
            ray_address,
        )
    elif engine == "local":
        client = Client(server_url)

        def listener(index: int) -> Callable[[RoundRecord], None] | None:
            if on_participant_round is None:
                return None
            return lambda record: on_participant_round(index, record)

        histories = list(
            await asyncio.gather(
                *(
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
                    )
                    for index, part in enumerate(parts)
                )
            )
        )
    else:
        raise ValueError(f"unknown engine {engine!r} (local or ray)")
    result.rounds = combine_rounds(histories)
    result.seconds = time.monotonic() - started
    return result


def class_counts(parts: Sequence[Dataset]) -> list[npt.NDArray[np.int64]]:
    """Per-participant label histograms (to show how non-IID a split is)."""
    return [np.bincount(p.class_labels(), minlength=10) for p in parts]

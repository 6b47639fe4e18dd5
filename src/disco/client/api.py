"""The Python API: point it at a server, pick a task, give local data, train together.

    from disco.client import Client
    client = Client("http://127.0.0.1:8080")
    client.tasks()                                   # what the server offers
    history = client.train("titanic", "train.csv")   # federated by default
    history = client.train("titanic", "train.csv", TrainOptions(rounds=3, seed=1))
    history.rounds[-1].accuracy

Synchronous methods run their coroutine on a private event loop in a worker thread, so they
also work inside Jupyter (whose own loop is already running); `*_async` variants exist for
asyncio code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from disco.client.data.dataset import Dataset
from disco.client.data.loading import load_task_data
from disco.client.data.tabular import Missing
from disco.client.federated import FederatedCommunicator, FederatedSession
from disco.client.model.convert import TfjsModel, build_model
from disco.client.options import OptionsError, TrainOptions
from disco.client.remote import fetch_model, fetch_task, fetch_tasks
from disco.client.session import History, run_training
from disco.client.training import LocalTrainer
from disco.tasks.artifacts import ModelArtifacts

T = TypeVar("T")


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code, even under a running loop."""

    async def main() -> T:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


def model_for(task: dict[str, Any], artifacts: ModelArtifacts) -> TfjsModel:
    """A torch model for the task's TF.js artifacts, holding their weights."""
    specs = [(spec.name, list(spec.shape)) for spec in artifacts.weight_specs]
    model = build_model(artifacts.model_topology, specs)
    model.set_tfjs_weights(artifacts.weights())
    return model


class Client:
    """A DISCO participant bound to one server."""

    def __init__(self, server_url: str, timeout_s: float = 30.0) -> None:
        self.server_url = server_url.rstrip("/")
        self.timeout_s = timeout_s

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout_s)

    async def tasks_async(self) -> list[dict[str, Any]]:
        async with self._http() as http:
            return await fetch_tasks(http, self.server_url)

    def tasks(self) -> list[dict[str, Any]]:
        """The tasks the server offers (DISCO Task JSON objects)."""
        return _run(self.tasks_async)

    async def task_async(self, task_id: str) -> dict[str, Any]:
        async with self._http() as http:
            return await fetch_task(http, self.server_url, task_id)

    def load_data(
        self,
        task: dict[str, Any],
        data: str | Path | Dataset,
        artifacts: ModelArtifacts,
        missing: Missing = "error",
        labels_csv: str | Path | None = None,
    ) -> Dataset:
        """Local data for the task: a Dataset as is, or a CSV file / image folder path."""
        if isinstance(data, Dataset):
            return data
        return load_task_data(
            task.get("trainingInformation", {}),
            data,
            artifacts.model_topology,
            missing=missing,
            labels_csv=labels_csv,
        )

    async def train_async(
        self, task_id: str, data: str | Path | Dataset, options: TrainOptions | None = None
    ) -> History:
        """Join `task_id` with local `data` and train; see `train`."""
        options = options or TrainOptions()
        async with self._http() as http:
            task = await fetch_task(http, self.server_url, task_id)
            remote = await fetch_model(http, self.server_url, task_id)
        info = task.get("trainingInformation", {})
        scheme = options.scheme or str(info.get("scheme", "federated")).lower()
        # Off the event loop: other participants of this process (a simulation) keep talking to
        # the server meanwhile, instead of finding their idle connections closed.
        dataset = await asyncio.to_thread(
            self.load_data, task, data, remote.artifacts, options.missing
        )
        model = await asyncio.to_thread(model_for, task, remote.artifacts)
        trainer = LocalTrainer(model, info, seed=options.seed)
        if scheme == "federated":
            async with FederatedSession(
                self.server_url, task_id, options.client_id, on_status=options.on_status
            ) as session:
                start_round, weights = await session.latest()
                model.set_tfjs_weights(weights)
                communicator = FederatedCommunicator(session, options.round_timeout_s)
                return await run_training(
                    task, trainer, dataset, communicator, "federated", options, start_round
                )
        if scheme == "decentralized":
            from disco.client.decentralized import DecentralizedCommunicator

            secure = options.secure
            if secure is None:
                secure = bool(info.get("decentralizedSecure"))
            async with DecentralizedCommunicator(
                self.server_url,
                task,
                secure=secure,
                round_timeout_s=options.round_timeout_s,
                client_id=options.client_id,
                options=options.decentralized,
            ) as peer:
                return await run_training(task, trainer, dataset, peer, "decentralized", options)
        raise OptionsError(
            f"task {task_id!r} has scheme {scheme!r}: pass TrainOptions(scheme=...) "
            "(federated or decentralized)"
        )

    def train(
        self, task_id: str, data: str | Path | Dataset, options: TrainOptions | None = None
    ) -> History:
        """Train on local `data` with the other participants of `task_id`.

        `data` is a CSV file (tabular tasks), an image folder (a sub-folder per label) or a
        `Dataset`; `options` (a `TrainOptions`) chooses the scheme, rounds or epochs, callbacks
        and the rest, each with a default. Returns the per-round History (loss, accuracy,
        participants).
        """
        return _run(lambda: self.train_async(task_id, data, options))

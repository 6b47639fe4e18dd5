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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from disco.client.connection import ServerConnection
from disco.client.data.dataset import Dataset
from disco.client.data.loading import load_task_data, warn_if_smaller_than_a_batch
from disco.client.data.tabular import Missing
from disco.client.evaluation import Evaluation, Predictions, load_inputs, read_local_model
from disco.client.evaluation import evaluate as evaluate_model
from disco.client.evaluation import predict as predict_model
from disco.client.federated import FederatedCommunicator, FederatedSession
from disco.client.model.convert import build_model
from disco.client.model.torch_task import Outputs, TaskModel, build_torch_model
from disco.client.options import OptionsError, TrainOptions
from disco.client.publish import admin_token as admin_token_of
from disco.client.publish import merge_settings, prepare_task, read_settings, upload_task
from disco.client.remote import fetch_model, fetch_task, fetch_tasks
from disco.client.secure_federated import SecureFederatedCommunicator
from disco.client.session import Communicator, History, run_training
from disco.client.training import LocalTrainer
from disco.tasks.artifacts import ModelArtifacts
from disco.tasks.schema import Task
from disco.tasks.torch_model import is_torch_topology

if TYPE_CHECKING:
    from torch import nn

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


def model_for(artifacts: ModelArtifacts, model_path: Sequence[str | Path] = ()) -> TaskModel:
    """A torch model for a task's artifacts (TF.js, or PyTorch-only), holding their weights.

    A PyTorch-only model is built by the task's factory, looked up in `model_path` folders
    first, and checked against the task's parameter names and shapes.
    """
    specs = [(spec.name, list(spec.shape)) for spec in artifacts.weight_specs]
    model: TaskModel
    if is_torch_topology(artifacts.model_topology):
        model = build_torch_model(artifacts.model_topology, specs, model_path)
    else:
        model = build_model(artifacts.model_topology, specs)
    model.set_tfjs_weights(artifacts.weights())
    return model


class Client:
    """A DISCO participant bound to one server."""

    def __init__(
        self,
        server: str | ServerConnection,
        timeout_s: float = 30.0,
        ca_file: str | Path | None = None,
        token: str | None = None,
    ) -> None:
        """`server`: an http:// or https:// URL (or a ServerConnection); `ca_file`: PEM CA
        certificates to verify an https server with instead of the system's (a private CA's);
        `token`: the participant token the admin gave you, for tasks that require enrollment."""
        if isinstance(server, str):
            server = ServerConnection(server, Path(ca_file) if ca_file else None, token)
        self.server = server
        self.server_url = self.server.url
        self.timeout_s = timeout_s

    def _http(self) -> httpx.AsyncClient:
        return self.server.http(self.timeout_s)

    async def tasks_async(self) -> list[Task]:
        async with self._http() as http:
            return await fetch_tasks(http, self.server_url)

    def tasks(self) -> list[Task]:
        """The tasks the server offers, typed (`Task.to_json()` gives the DISCO JSON)."""
        return _run(self.tasks_async)

    async def task_async(self, task_id: str) -> Task:
        async with self._http() as http:
            return await fetch_task(http, self.server_url, task_id)

    async def create_task_async(
        self,
        model: nn.Module | str | Path | ModelArtifacts,
        settings: Mapping[str, Any] | str | Path | None = None,
        *,
        admin_token: str | None = None,
        torch_only: bool = False,
        input_shape: Sequence[int] | None = None,
        outputs: Outputs = "logits",
        model_path: Sequence[str | Path] = (),
        **fields: Any,
    ) -> Task:
        """Publish a new task; see `create_task`."""
        base = read_settings(settings) if isinstance(settings, str | Path) else settings or {}
        draft = prepare_task(
            merge_settings(base, fields),
            model,
            torch_only=torch_only,
            input_shape=input_shape,
            outputs=outputs,
            model_path=model_path,
        )
        async with self._http() as http:
            return await upload_task(http, self.server_url, draft, admin_token_of(admin_token))

    def create_task(
        self,
        model: nn.Module | str | Path | ModelArtifacts,
        settings: Mapping[str, Any] | str | Path | None = None,
        *,
        admin_token: str | None = None,
        torch_only: bool = False,
        input_shape: Sequence[int] | None = None,
        outputs: Outputs = "logits",
        model_path: Sequence[str | Path] = (),
        **fields: Any,
    ) -> Task:
        """Publish a new task on the server and return it as stored.

        `model`: a torch.nn.Module, a factory 'package.module:function' returning one, or a
        TF.js layers folder. Modules are exported to TF.js so every DISCO client can train
        them; `torch_only=True` publishes any module (a factory name) as a PyTorch-only task,
        trained by Python participants only. `settings`: a (partial) DISCO task dict or a
        YAML/JSON file; keyword fields named like the schema's (`task_id`, `title`,
        `data_type`, `epochs`, `batch_size`, `input_columns`, `label_list`, `image_h`, ...)
        override it. Checked by the server's task schema before upload (same reasons).
        `admin_token` defaults to $DISCO_ADMIN_TOKEN.
        """
        return _run(
            lambda: self.create_task_async(
                model,
                settings,
                admin_token=admin_token,
                torch_only=torch_only,
                input_shape=input_shape,
                outputs=outputs,
                model_path=model_path,
                **fields,
            )
        )

    async def task_model_async(
        self,
        task_id: str,
        model: str | Path | None = None,
        model_path: Sequence[str | Path] = (),
    ) -> tuple[Task, ModelArtifacts, TaskModel]:
        """The task, and its model: the server's current global one, or a local model folder."""
        async with self._http() as http:
            task = await fetch_task(http, self.server_url, task_id)
            if model is None:
                artifacts = (await fetch_model(http, self.server_url, task_id)).artifacts
        if model is not None:
            artifacts = read_local_model(model)
        return task, artifacts, model_for(artifacts, model_path)

    async def evaluate_async(
        self,
        task_id: str,
        data: str | Path | Dataset,
        *,
        model: str | Path | None = None,
        labels: str | Path | None = None,
        missing: Missing = "error",
        model_path: Sequence[str | Path] = (),
    ) -> Evaluation:
        """Evaluate a model of `task_id` on local labelled data; see `evaluate`."""
        task, artifacts, task_model = await self.task_model_async(task_id, model, model_path)
        dataset = await asyncio.to_thread(self.load_data, task, data, artifacts, missing, labels)
        return await asyncio.to_thread(
            evaluate_model, task_model, task.training_information, dataset
        )

    def evaluate(
        self,
        task_id: str,
        data: str | Path | Dataset,
        *,
        model: str | Path | None = None,
        labels: str | Path | None = None,
        missing: Missing = "error",
        model_path: Sequence[str | Path] = (),
    ) -> Evaluation:
        """Accuracy, loss, per-class precision/recall and confusion matrix on labelled `data`.

        The model is the server's current global model, or `model=` a local TF.js layers folder
        (or its model.json, e.g. written by `disco train --save-model`). `labels`: an image
        labels CSV; `missing`: what to do with empty cells; `model_path`: where a PyTorch-only
        task's factory is looked up.
        """
        return _run(
            lambda: self.evaluate_async(
                task_id, data, model=model, labels=labels, missing=missing, model_path=model_path
            )
        )

    async def predict_async(
        self,
        task_id: str,
        data: str | Path,
        *,
        model: str | Path | None = None,
        missing: Missing = "error",
        model_path: Sequence[str | Path] = (),
    ) -> Predictions:
        """Predict with a model of `task_id` on unlabelled data; see `predict`."""
        task, artifacts, task_model = await self.task_model_async(task_id, model, model_path)
        info = task.training_information
        inputs = await asyncio.to_thread(load_inputs, info, data, artifacts.model_topology, missing)
        return await asyncio.to_thread(predict_model, task_model, info, inputs)

    def predict(
        self,
        task_id: str,
        data: str | Path,
        *,
        model: str | Path | None = None,
        missing: Missing = "error",
        model_path: Sequence[str | Path] = (),
    ) -> Predictions:
        """Class predictions (and probabilities) for every input of `data`.

        `data`: a CSV (its input columns; output columns are ignored) or a folder of images
        (every image under it). The model is the server's global model or `model=` a local
        one. `Predictions.write_csv(path)` writes `id,prediction,p(class)...` rows.
        """
        return _run(
            lambda: self.predict_async(
                task_id, data, model=model, missing=missing, model_path=model_path
            )
        )

    def load_data(
        self,
        task: Task,
        data: str | Path | Dataset,
        artifacts: ModelArtifacts,
        missing: Missing = "error",
        labels_csv: str | Path | None = None,
    ) -> Dataset:
        """Local data for the task: a Dataset as is, or a CSV file / image folder path."""
        if isinstance(data, Dataset):
            return data
        return load_task_data(
            task.training_information,
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
        info = task.training_information
        scheme = options.scheme or str(info.training_scheme or info.scheme)
        # Off the event loop: other participants of this process (a simulation) keep talking to
        # the server meanwhile, instead of finding their idle connections closed.
        dataset = await asyncio.to_thread(
            self.load_data, task, data, remote.artifacts, options.missing, options.labels
        )
        name = Path(data).name if isinstance(data, str | Path) else "the dataset"
        warn_if_smaller_than_a_batch(dataset, info, name)
        model = await asyncio.to_thread(model_for, remote.artifacts, options.model_path)
        trainer = LocalTrainer(model, info, seed=options.seed)
        if scheme == "federated":
            async with FederatedSession(
                self.server,
                task_id,
                options.client_id,
                on_status=options.on_status,
                compression=options.compression,
            ) as session:
                start_round, weights = await session.latest()
                model.set_tfjs_weights(weights)
                communicator: Communicator = FederatedCommunicator(session, options.round_timeout_s)
                if info.aggregation_strategy == "secure":
                    communicator = SecureFederatedCommunicator(session, options.round_timeout_s)
                return await run_training(
                    task, trainer, dataset, communicator, "federated", options, start_round
                )
        if scheme == "decentralized":
            from disco.client.decentralized import DecentralizedCommunicator

            secure = options.secure
            if secure is None:
                secure = info.secure_aggregation
            async with DecentralizedCommunicator(
                self.server,
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

        `data` is a CSV file (tabular tasks), an image folder (a sub-folder per label, or any
        folder with `TrainOptions(labels=...)`, a CSV of `file_name,label` rows) or a
        `Dataset`; `options` (a `TrainOptions`) chooses the scheme, rounds or epochs, callbacks
        and the rest, each with a default. Returns the per-round History (loss, accuracy,
        participants).
        """
        return _run(lambda: self.train_async(task_id, data, options))

"""Shared fixtures of the decentralized tests: a task store with small decentralized tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from disco.tasks.defaults import titanic_model, titanic_task
from disco.tasks.schema import Task, parse_task
from disco.tasks.store import TaskStore

TASK_MINIMUMS: dict[str, int | None] = {
    "plain": None,  # no minimumReadyPeers: DISCO's default of 3 (the schema's)
    "pair": 2,
    "other": 2,
    "solo": 1,
}


def decentralized_task(task_id: str, minimum_ready_peers: int | None) -> Task:
    """Titanic's definition as a decentralized task with its own id and readiness minimum."""
    base = titanic_task()
    info: dict[str, Any] = {**base["trainingInformation"], "scheme": "decentralized"}
    info.pop("minimumReadyPeers", None)
    if minimum_ready_peers is not None:
        info["minimumReadyPeers"] = minimum_ready_peers
    return parse_task({**base, "taskID": task_id, "trainingInformation": info})


def fill_store(data_dir: Path) -> TaskStore:
    """A store under `data_dir` with the tasks of TASK_MINIMUMS (persisted: servers find them)."""
    store = TaskStore(data_dir)
    store.load(with_defaults=False)
    artifacts = titanic_model(np.random.default_rng(0))
    for task_id, minimum in TASK_MINIMUMS.items():
        store.add(decentralized_task(task_id, minimum), artifacts)
    return store


@pytest.fixture(scope="module")
def decentralized_store(tmp_path_factory: pytest.TempPathFactory) -> TaskStore:
    """A loaded store with the tasks of TASK_MINIMUMS."""
    return fill_store(tmp_path_factory.mktemp("decentralized-store"))


@pytest.fixture(scope="session")
def decentralized_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with the tasks of TASK_MINIMUMS, built once; copy it before serving from it."""
    data_dir = tmp_path_factory.mktemp("decentralized-template")
    fill_store(data_dir)
    return data_dir

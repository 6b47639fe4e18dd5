"""Fixtures of the robustness tests: one live server per module with a small frame limit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI

from disco.server.app import create_app
from disco.server.settings import Settings
from disco.tasks.defaults import titanic_model, titanic_task
from disco.tasks.schema import Task, parse_task
from disco.tasks.store import TaskStore
from robustness.helpers import Connections, LogWatch, serve_app_in_thread, watching_logs

MAX_FRAME_BYTES = 256 * 1024
"""Frame limit of the test servers: a titanic update in the legacy encoding (~140 KB) fits."""

FEDERATED_TASK = "titanic"
DECENTRALIZED_TASK = "titanic-p2p"
DECENTRALIZED_MINIMUM = 3


def decentralized_task(task_id: str, minimum_ready_peers: int) -> Task:
    """Titanic as a decentralized task."""
    base = titanic_task()
    info: dict[str, Any] = {
        **base["trainingInformation"],
        "scheme": "decentralized",
        "minimumReadyPeers": minimum_ready_peers,
    }
    return parse_task({**base, "taskID": task_id, "trainingInformation": info})


def prepare_data_dir(data_dir: Path) -> None:
    """The default tasks plus a decentralized one, persisted where the server will load them."""
    store = TaskStore(data_dir)
    store.load(with_defaults=True)
    store.add(
        decentralized_task(DECENTRALIZED_TASK, DECENTRALIZED_MINIMUM),
        titanic_model(np.random.default_rng(1)),
    )


def hostile_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Small limits, one participant per federated round, short deadlines."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "port": 0,
        "log_level": "warning",
        "max_frame_bytes": MAX_FRAME_BYTES,
        "max_body_bytes": 1024 * 1024,
        "default_min_participants": 1,
        "round_deadline_s": 0.5,
        "readiness_deadline_s": 0.5,
        "duplicate_client_grace_s": 0.1,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def server_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("hostile") / "data"  # its parent holds nothing else
    prepare_data_dir(data_dir)
    return data_dir


@dataclass(frozen=True)
class LiveServer:
    """A server running in a thread: its base URL, and its app to read its state in-process."""

    url: str
    app: FastAPI


@pytest.fixture(scope="module")
def live(server_data_dir: Path) -> Iterator[LiveServer]:
    """One live loopback server per module (uvicorn enforces the frame limit, as in production)."""
    settings = hostile_settings(server_data_dir)
    app = create_app(settings)
    with serve_app_in_thread(app, settings) as url:
        yield LiveServer(url, app)


@pytest.fixture
async def connections(live: LiveServer) -> AsyncIterator[Connections]:
    opened = Connections(live.url)
    yield opened
    await opened.close_all()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[LogWatch]:
    with watching_logs(caplog) as watch:
        yield watch

"""Task settings are checked once, when a task enters the server: over `POST /tasks` (JSON and
multipart) a bad one is a 400 naming the field; from `--tasks-dir` at start-up it is one log
line and the task is skipped. Either way no client ever meets a task that cannot aggregate."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient  # imported (warning filtered) by tests/conftest.py

from disco.protocol.weights import encode_legacy
from disco.server.app import create_app
from disco.server.settings import Settings
from disco.tasks.artifacts import ModelArtifacts
from disco.tasks.defaults import titanic_model, titanic_task
from disco.tasks.disco_encoding import encode_disco_model

BAD_SETTINGS: list[tuple[dict[str, Any], str]] = [
    ({"aggregator": "bogus"}, "trainingInformation.aggregator: must be one of"),
    ({"aggregator": "trimmed_mean", "trimRatio": 7}, "trainingInformation.trimRatio: must be in"),
    ({"trimRatio": -0.1}, "trainingInformation.trimRatio: must be in"),
    (
        {"byzantineRobustAggregator": True, "tauPercentile": 0},
        "trainingInformation.tauPercentile: must be in (0.0, 1.0]",
    ),
    (
        {"byzantineRobustAggregator": {"iterations": 0}},
        "trainingInformation.byzantineRobustAggregator.iterations: must be a positive integer",
    ),
    (
        {"byzantineRobustAggregator": "krum"},
        "trainingInformation.byzantineRobustAggregator: must be one of",
    ),
    (
        {"aggregator": "median", "byzantineRobustAggregator": True},
        "trainingInformation.aggregator: 'median' conflicts",
    ),
    ({"clippingIterations": 2.5}, "trainingInformation.clippingIterations: must be a positive"),
    ({"minNbOfParticipants": 0}, "trainingInformation.minNbOfParticipants: must be >= 1"),
    ({"minimumReadyPeers": 1.5}, "trainingInformation.minimumReadyPeers: must be an integer"),
    ({"maxShareValue": 0}, "trainingInformation.maxShareValue: must be > 0"),
    ({"clippingRadius": -1}, "trainingInformation.clippingRadius: must be > 0"),
    ({"noiseScale": -1}, "trainingInformation.noiseScale: must be >= 0"),
]
CASES = [pytest.param(fields, message, id=json.dumps(fields)) for fields, message in BAD_SETTINGS]


def model() -> ModelArtifacts:
    return titanic_model(np.random.default_rng(3))


def task_with(task_id: str, **fields: Any) -> dict[str, Any]:
    task = titanic_task()
    info = {**task["trainingInformation"], **fields}
    return {**task, "taskID": task_id, "trainingInformation": info}


def json_body(task: dict[str, Any]) -> dict[str, Any]:
    artifacts = model()
    return {
        "task": task,
        "model": list(encode_disco_model(artifacts)),
        "weights": encode_legacy(artifacts.weights()),
    }


def multipart_body(task: dict[str, Any]) -> list[tuple[str, tuple[str, bytes, str]]]:
    artifacts = model()
    return [
        ("task.json", ("task.json", json.dumps(task).encode(), "application/json")),
        (
            "model.json",
            ("model.json", json.dumps(artifacts.to_layers_json("w.bin")).encode(), "text/json"),
        ),
        ("weights", ("w.bin", artifacts.weight_data, "application/octet-stream")),
    ]


async def ids(client: httpx.AsyncClient) -> list[str]:
    return sorted(task["taskID"] for task in (await client.get("/tasks")).json())


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    settings: Settings = make_settings(load_default_tasks=False)
    return settings


@pytest.mark.parametrize("transport", ["json", "multipart"])
@pytest.mark.parametrize(("fields", "message"), CASES)
async def test_post_refuses_bad_settings_naming_the_field(
    async_client: httpx.AsyncClient, fields: dict[str, Any], message: str, transport: str
) -> None:
    task = task_with("bad", **fields)
    if transport == "json":
        response = await async_client.post("/tasks", json=json_body(task))
        where = "task"
    else:
        response = await async_client.post("/tasks", files=multipart_body(task))
        where = "task.json"
    assert response.status_code == 400, response.text
    assert list(response.json()) == ["error"]
    assert f"{where}.{message}" in response.json()["error"]
    assert await ids(async_client) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"byzantineRobustAggregator": True, "tauPercentile": 0.5},  # what DISCO 2.1.1 sends
        {"byzantineRobustAggregator": "median"},
        {"byzantineRobustAggregator": {"tauPercentile": 0.3, "iterations": 2}},
        {"aggregator": "trimmed_mean", "trimRatio": 0.2},
    ],
)
async def test_good_settings_are_created_and_served_as_sent(
    async_client: httpx.AsyncClient, fields: dict[str, Any]
) -> None:
    task = task_with("good", **fields)
    response = await async_client.post("/tasks", json=json_body(task))
    assert response.status_code == 201, response.text
    assert (await async_client.get("/tasks/good")).json() == task


def write_task_folder(folder: Path, task: dict[str, Any]) -> None:
    folder.mkdir(parents=True)
    artifacts = model()
    (folder / "task.json").write_text(json.dumps(task))
    (folder / "model.json").write_text(json.dumps(artifacts.to_layers_json("weights.bin")))
    (folder / "weights.bin").write_bytes(artifacts.weight_data)


@pytest.mark.parametrize(("fields", "message"), CASES)
def test_tasks_dir_skips_bad_settings_with_one_log_line(
    make_settings: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, Any],
    message: str,
) -> None:
    extra = tmp_path / "extra"
    write_task_folder(extra / "bad-folder", task_with("bad", **fields))
    write_task_folder(extra / "good-folder", task_with("good"))
    app: FastAPI = create_app(make_settings(load_default_tasks=False, tasks_dir=extra))
    with caplog.at_level(logging.INFO), TestClient(app) as client:
        assert sorted(t["taskID"] for t in client.get("/tasks").json()) == ["good"]
    lines = [r for r in caplog.records if "bad-folder" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.ERROR
    assert message in lines[0].getMessage()
    assert "Traceback" not in caplog.text

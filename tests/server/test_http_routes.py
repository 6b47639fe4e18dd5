"""GET routes: identification, tasks, model negotiation, weights files, status, errors, CORS."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.testclient import TestClient  # imported (warning filtered) by tests/conftest.py

from disco import __version__
from disco.server.app import create_app
from disco.server.http.errors import ErrorBody
from disco.server.settings import Settings
from disco.server.state import server_state
from disco.tasks.artifacts import ModelArtifacts
from disco.tasks.disco_encoding import decode_disco_model
from disco.tasks.schema import parse_task
from disco.tasks.store import TaskStore

AXIOS = {"Accept": "application/json, text/plain, */*"}
FETCH = {"Accept": "*/*"}
DEFAULT_IDS = ["cifar10", "mnist", "titanic"]


def _store(app: FastAPI) -> TaskStore:
    store: TaskStore = server_state(app).store
    return store


def _disco_artifacts(response: httpx.Response) -> ModelArtifacts:
    """Decode a DISCO-encoded model body as the JS client does: JSON byte array -> msgpack."""
    body = response.json()
    assert isinstance(body, list) and all(isinstance(b, int) for b in body)
    return decode_disco_model(bytes(body))


def _assert_same_weights(a: ModelArtifacts, b: ModelArtifacts) -> None:
    assert a.shapes() == b.shapes()
    for x, y in zip(a.weights(), b.weights(), strict=True):
        np.testing.assert_array_equal(x, y)


async def test_root_identifies_the_server(async_client: httpx.AsyncClient) -> None:
    response = await async_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "disco" in response.text and __version__ in response.text
    assert "/tasks" in response.text and "/docs" in response.text


async def test_tasks_lists_defaults_each_a_valid_task(async_client: httpx.AsyncClient) -> None:
    response = await async_client.get("/tasks")
    assert response.status_code == 200
    tasks = response.json()
    assert sorted(t["taskID"] for t in tasks) == DEFAULT_IDS
    for raw in tasks:
        # The same required fields and types as the client's isTask, and the round trip is exact.
        assert parse_task(raw).to_json() == raw
        assert isinstance(raw["displayInformation"]["taskTitle"], str)
        assert isinstance(raw["trainingInformation"]["epochs"], int | float)


async def test_one_task_and_unknown_task(async_client: httpx.AsyncClient) -> None:
    response = await async_client.get("/tasks/titanic")
    assert response.status_code == 200
    assert response.json()["taskID"] == "titanic"
    missing = await async_client.get("/tasks/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "unknown task 'nope'"}


async def test_model_json_for_disco_clients_is_the_msgpack_byte_array(
    app: FastAPI, async_client: httpx.AsyncClient
) -> None:
    response = await async_client.get("/tasks/titanic/model.json", headers=AXIOS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    stored = _store(app).get("titanic")
    assert response.content == stored.disco_model
    _assert_same_weights(_disco_artifacts(response), stored.artifacts)


async def test_a_rendered_model_json_is_served_again_as_it_was(
    app: FastAPI, async_client: httpx.AsyncClient
) -> None:
    stored = _store(app).get("titanic")
    assert not stored.rendered("disco_model")  # the first request renders it (in a thread)
    first = await async_client.get("/tasks/titanic/model.json", headers=AXIOS)
    assert stored.rendered("disco_model")  # later ones read the cached bytes on the loop
    again = await async_client.get("/tasks/titanic/model.json", headers=AXIOS)
    assert again.status_code == 200 and again.content == first.content == stored.disco_model
    assert again.headers["etag"] == first.headers["etag"]


@pytest.mark.parametrize("headers", [FETCH, {}, {"Accept": "application/json"}])
async def test_model_json_for_everyone_else_is_tfjs_layers(
    app: FastAPI, async_client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await async_client.get("/tasks/titanic/model.json", headers=headers)
    assert response.status_code == 200
    model_json = response.json()
    assert model_json["weightsManifest"][0]["paths"] == ["weights.bin"]
    weights = await async_client.get("/tasks/titanic/weights.bin", headers=headers)
    assert weights.status_code == 200
    assert weights.headers["content-type"] == "application/octet-stream"
    rebuilt = ModelArtifacts.from_layers(model_json, {"weights.bin": weights.content})
    _assert_same_weights(rebuilt, _store(app).get("titanic").artifacts)


async def test_format_query_overrides_accept(async_client: httpx.AsyncClient) -> None:
    disco = await async_client.get("/tasks/mnist/model.json?format=disco", headers=FETCH)
    assert isinstance(disco.json(), list)
    tfjs = await async_client.get("/tasks/mnist/model.json?format=tfjs", headers=AXIOS)
    assert "modelTopology" in tfjs.json()
    # tf.loadLayersModel appends the model URL's query to the weight URLs: it must still work.
    weights = await async_client.get("/tasks/mnist/weights.bin?format=tfjs", headers=AXIOS)
    assert weights.headers["content-type"] == "application/octet-stream"


async def test_unknown_format_is_400(async_client: httpx.AsyncClient) -> None:
    for path in ("/tasks/titanic/model.json", "/tasks/titanic/weights.bin"):
        response = await async_client.get(path, params={"format": "onnx"})
        assert response.status_code == 400
        assert "format" in response.json()["error"]


async def test_weights_bin_for_disco_clients_is_the_model_array(
    app: FastAPI, async_client: httpx.AsyncClient
) -> None:
    response = await async_client.get("/tasks/titanic/weights.bin", headers=AXIOS)
    assert response.status_code == 200
    assert response.content == _store(app).get("titanic").disco_model


async def test_model_responses_carry_no_store_and_etag(async_client: httpx.AsyncClient) -> None:
    tags = set()
    for path, headers in [
        ("/tasks/titanic/model.json", AXIOS),
        ("/tasks/titanic/model.json", FETCH),
        ("/tasks/titanic/weights.bin", FETCH),
    ]:
        response = await async_client.get(path, headers=headers)
        assert response.headers["cache-control"] == "no-store"
        assert "accept" in response.headers["vary"].lower()
        etag = response.headers["etag"]
        tags.add(etag)
        again = await async_client.get(path, headers={**headers, "If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        stale = await async_client.get(path, headers={**headers, "If-None-Match": '"old"'})
        assert stale.status_code == 200
    assert len(tags) == 3  # one per representation


async def test_model_json_is_always_the_current_global_model(
    app: FastAPI, async_client: httpx.AsyncClient
) -> None:
    store = _store(app)
    before = await async_client.get("/tasks/titanic/model.json", headers=AXIOS)
    new = [np.full(w.shape, 0.25, dtype=np.float32) for w in store.get("titanic").weights()]
    await asyncio.to_thread(store.update_model, "titanic", new, 1)
    after = await async_client.get("/tasks/titanic/model.json", headers=AXIOS)
    assert after.headers["etag"] != before.headers["etag"]
    for tensor in _disco_artifacts(after).weights():
        assert np.all(tensor == np.float32(0.25))
    raw = await async_client.get("/tasks/titanic/weights.bin", headers=FETCH)
    assert np.all(np.frombuffer(raw.content, dtype="<f4") == np.float32(0.25))
    status = (await async_client.get("/tasks/titanic/status")).json()
    assert status["round"] == 1 and status["modelVersion"] == 2


@pytest.mark.parametrize(
    "path",
    [
        "/tasks/titanic/other.bin",
        "/tasks/titanic/weights-1.bin",  # exists on disk, but is not the served name
        "/tasks/titanic/meta.json",
        "/tasks/titanic/task.json",
        "/tasks/titanic/%2e%2e",
        "/tasks/titanic/..%2fmeta.json",
        "/tasks/titanic/%2e%2e%2f%2e%2e%2fsettings",
        "/tasks/titanic/weights.bin%00",
        "/tasks/..%2f..%2fetc/passwd",
        "/tasks/%2e%2e/model.json",
        "/tasks/nope/model.json",
        "/tasks/nope/weights.bin",
    ],
)
async def test_unknown_files_and_traversal_are_404(
    async_client: httpx.AsyncClient, path: str
) -> None:
    # httpx resolves a literal '..' itself; test_http_live sends raw ones over a socket.
    response = await async_client.get(httpx.URL(path), headers=FETCH)
    assert response.status_code == 404, response.text
    assert isinstance(response.json()["error"], str)


async def test_status_without_hubs_has_placeholders(async_client: httpx.AsyncClient) -> None:
    response = await async_client.get("/tasks/titanic/status")
    assert response.status_code == 200
    assert response.json() == {
        "taskID": "titanic",
        "scheme": "federated",
        "round": 0,
        "modelVersion": 1,
        "currentNumberOfParticipants": 0,
        "totalNumberOfParticipants": 0,
        "averageNumberOfParticipants": 0.0,
        "connectedPeers": 0,
        "readyPeers": 0,
        "live": False,
    }
    assert (await async_client.get("/tasks/nope/status")).status_code == 404


class _FakeHub:
    """Stands for a federated hub: a `TaskStatusReporter` whose report is scripted."""

    def __init__(self, report: Any) -> None:
        self.report = report

    def task_status(self, task_id: str) -> Any:
        if isinstance(self.report, Exception):
            raise self.report
        return self.report if task_id == "titanic" else None


async def test_status_merges_a_hub_report(app: FastAPI, async_client: httpx.AsyncClient) -> None:
    server_state(app).federated = _FakeHub(
        {
            "round": 7,
            "currentNumberOfParticipants": 2,
            "totalNumberOfParticipants": 5,
            "averageNumberOfParticipants": 2.5,
            "junk": object(),
        }
    )
    body = (await async_client.get("/tasks/titanic/status")).json()
    assert body["round"] == 7 and body["live"] is True
    assert body["currentNumberOfParticipants"] == 2
    assert body["totalNumberOfParticipants"] == 5
    assert body["averageNumberOfParticipants"] == 2.5
    other = (await async_client.get("/tasks/mnist/status")).json()
    assert other["live"] is False


async def test_status_survives_a_failing_hub(app: FastAPI, async_client: httpx.AsyncClient) -> None:
    server_state(app).federated = _FakeHub(RuntimeError("boom"))
    response = await async_client.get("/tasks/titanic/status")
    assert response.status_code == 200
    assert response.json()["live"] is False
    server_state(app).federated = _FakeHub(
        {"round": float("nan"), "averageNumberOfParticipants": float("inf"), "connectedPeers": "3"}
    )
    body = (await async_client.get("/tasks/titanic/status")).json()
    assert body["round"] == 0 and body["averageNumberOfParticipants"] == 0.0
    assert body["connectedPeers"] == 0 and body["live"] is True


async def test_unknown_route_and_method_are_json(async_client: httpx.AsyncClient) -> None:
    missing = await async_client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not found: /nowhere"}
    wrong = await async_client.delete("/tasks")
    assert wrong.status_code == 405
    assert "DELETE" in wrong.json()["error"]
    assert wrong.headers["allow"] == "GET, POST"  # both routes at /tasks, not just the first


async def test_cors_is_open_for_reads(async_client: httpx.AsyncClient) -> None:
    origin = {"Origin": "https://example.org"}
    response = await async_client.get("/tasks", headers=origin)
    assert response.headers["access-control-allow-origin"] == "*"
    preflight = await async_client.options(
        "/tasks/titanic/model.json",
        headers={**origin, "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200
    assert "GET" in preflight.headers["access-control-allow-methods"]
    refused = await async_client.options(
        "/tasks", headers={**origin, "Access-Control-Request-Method": "POST"}
    )
    assert refused.status_code == 400


async def test_openapi_declares_json_errors_and_no_422(async_client: httpx.AsyncClient) -> None:
    response = await async_client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert "422" not in json.dumps(schema["paths"])
    post = schema["paths"]["/tasks"]["post"]
    assert {"201", "400", "401", "403", "409", "413", "415"} <= set(post["responses"])
    assert set(post["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {} in post["security"]  # open when no admin token is configured
    model = schema["paths"]["/tasks/{taskID}/model.json"]["get"]
    assert {"200", "304", "400", "404"} <= set(model["responses"])
    assert [p["name"] for p in model["parameters"]] == ["taskID", "format"]
    assert schema["components"]["schemas"]["ErrorBody"] == ErrorBody.model_json_schema()
    reference = {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for code, answer in operation["responses"].items():
                if code.startswith(("4", "5")):
                    assert answer["content"] == {"application/json": reference}, (path, method)
    assert (await async_client.get("/docs")).status_code == 200


def test_error_responses_build_no_pydantic_adapter(app: FastAPI) -> None:
    """Documented by reference: FastAPI builds a TypeAdapter per `model` entry of each route
    (again inside the first request, for included routers), only for the OpenAPI document."""
    routes = [route for route in app.routes if isinstance(route, APIRoute)]
    for included in app.routes:
        inner = getattr(included, "original_router", None)
        routes += [r for r in (inner.routes if inner else []) if isinstance(r, APIRoute)]
    assert any(r.path == "/tasks/{taskID}/model.json" for r in routes)
    for route in routes:
        assert [code for code in route.response_fields if int(code) >= 400] == [], route.path


def test_lifespan_loads_the_store_then_starts_the_hubs(settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app) as client:
        state = server_state(app)
        assert isinstance(state.store, TaskStore)
        assert state.federated is not None
        assert state.decentralized is not None
        assert client.get("/tasks/titanic/status").json()["live"] is False
    # Hubs stop (and say so) before the app's own state goes.
    assert state.federated is None and state.decentralized is None


def test_app_client_fixture_serves(app_client: TestClient) -> None:
    assert app_client.get("/tasks").status_code == 200

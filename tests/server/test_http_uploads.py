"""POST /tasks: pushTask JSON and multipart uploads, refusals, limits, admin token, restarts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from fastapi import FastAPI

from disco.protocol.weights import encode_legacy
from disco.server.app import create_app
from disco.server.settings import Settings
from disco.tasks.artifacts import ModelArtifacts
from disco.tasks.defaults import titanic_model, titanic_task
from disco.tasks.disco_encoding import decode_disco_model, encode_disco_model

AXIOS = {"Accept": "application/json, text/plain, */*"}
DEFAULT_IDS = ["cifar10", "mnist", "titanic"]
TOKEN = "s3cret-token"


def artifacts() -> ModelArtifacts:
    return titanic_model(np.random.default_rng(7))


def task_json(task_id: str = "uploaded") -> dict[str, Any]:
    return {**titanic_task(), "taskID": task_id}


def push_task_body(task_id: str = "uploaded", with_weights: bool = True) -> dict[str, Any]:
    """The body the 2.1.1 client's pushTask posts: byte-int arrays of msgpack model / weights."""
    model = artifacts()
    body: dict[str, Any] = {"task": task_json(task_id), "model": list(encode_disco_model(model))}
    if with_weights:
        body["weights"] = encode_legacy(model.weights())
    return body


def multipart_files(
    task_id: str = "uploaded", shards: int = 1
) -> list[tuple[str, tuple[str, bytes, str]]]:
    """task.json, model.json and the weights split over `shards` files, as httpx `files`."""
    model = artifacts()
    names = [f"group1-shard{i + 1}of{shards}.bin" for i in range(shards)]
    model_json = model.to_layers_json("weights.bin")
    model_json["weightsManifest"][0]["paths"] = names
    data = model.weight_data
    cuts = [len(data) * i // shards for i in range(shards + 1)]
    files = [
        ("task.json", ("task.json", json.dumps(task_json(task_id)).encode(), "application/json")),
        ("model.json", ("model.json", json.dumps(model_json).encode(), "application/json")),
    ]
    for i, name in enumerate(names):
        files.append(("weights", (name, data[cuts[i] : cuts[i + 1]], "application/octet-stream")))
    return files


async def task_ids(client: httpx.AsyncClient) -> list[str]:
    return sorted(t["taskID"] for t in (await client.get("/tasks")).json())


async def assert_refused(
    client: httpx.AsyncClient, response: httpx.Response, status: int, reason_part: str
) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert reason_part in body["error"], body["error"]
    assert await task_ids(client) == DEFAULT_IDS  # nothing was added


# --------------------------------------------------------------------------- success


async def test_push_task_json_creates_the_task(async_client: httpx.AsyncClient) -> None:
    response = await async_client.post("/tasks", json=push_task_body())
    assert response.status_code == 201, response.text
    assert response.json() == task_json()
    assert response.headers["location"] == "/tasks/uploaded"
    assert await task_ids(async_client) == sorted([*DEFAULT_IDS, "uploaded"])
    served = await async_client.get("/tasks/uploaded/model.json", headers=AXIOS)
    model = decode_disco_model(bytes(served.json()))
    assert model.weight_data == artifacts().weight_data
    raw = await async_client.get("/tasks/uploaded/weights.bin")
    assert raw.content == artifacts().weight_data


async def test_push_task_without_weights_uses_the_model(async_client: httpx.AsyncClient) -> None:
    response = await async_client.post("/tasks", json=push_task_body(with_weights=False))
    assert response.status_code == 201, response.text
    raw = await async_client.get("/tasks/uploaded/weights.bin")
    assert raw.content == artifacts().weight_data


@pytest.mark.parametrize("shards", [1, 3])
async def test_multipart_upload_creates_the_task(
    async_client: httpx.AsyncClient, shards: int
) -> None:
    response = await async_client.post("/tasks", files=multipart_files(shards=shards))
    assert response.status_code == 201, response.text
    assert response.json()["taskID"] == "uploaded"
    model_json = (await async_client.get("/tasks/uploaded/model.json?format=tfjs")).json()
    assert model_json["weightsManifest"][0]["paths"] == ["weights.bin"]
    raw = await async_client.get("/tasks/uploaded/weights.bin")
    assert raw.content == artifacts().weight_data


async def test_multipart_parts_found_by_field_name(async_client: httpx.AsyncClient) -> None:
    model = artifacts()
    files = {
        "task": (None, json.dumps(task_json()).encode()),  # plain form fields, no file names
        "model": (None, json.dumps(model.to_layers_json("w.bin")).encode()),
        "w.bin": ("blob", model.weight_data),
    }
    response = await async_client.post("/tasks", files=files)
    assert response.status_code == 201, response.text


# --------------------------------------------------------------------------- refusals (JSON)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def mutate(body: dict[str, Any]) -> Any:
        body[key] = value
        return body

    return mutate


def _drop(key: str) -> Callable[[dict[str, Any]], Any]:
    def mutate(body: dict[str, Any]) -> Any:
        del body[key]
        return body

    return mutate


def _task_field(path: list[str], value: Any) -> Callable[[dict[str, Any]], Any]:
    def mutate(body: dict[str, Any]) -> Any:
        node = body["task"]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return body

    return mutate


def _model_msgpack(obj: Any) -> Callable[[dict[str, Any]], Any]:
    return _set("model", list(msgpack.packb(obj, use_bin_type=True)))


def _weights(transform: Callable[[list[np.ndarray[Any, Any]]], list[Any]]) -> Any:
    return _set("weights", encode_legacy(transform(artifacts().weights())))


BAD_JSON_BODIES: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("array body", lambda body: [body], "body: must be a JSON object"),
    ("no task", _drop("task"), "task: required"),
    ("task not object", _set("task", "titanic"), "task: must be a JSON object"),
    ("no taskID", _task_field(["taskID"], None), "task.taskID"),
    ("taskID traversal", _task_field(["taskID"], "../evil"), "task.taskID"),
    ("taskID slash", _task_field(["taskID"], "a/b"), "task.taskID"),
    ("bad epochs", _task_field(["trainingInformation", "epochs"], "10"), "epochs"),
    ("no title", _task_field(["displayInformation", "taskTitle"], None), "taskTitle"),
    ("no model", _drop("model"), "model: required"),
    ("model not array", _set("model", "abc"), "model"),
    ("model byte > 255", _set("model", [1, 2, 256]), "model"),
    ("model floats", _set("model", [1.5, 2]), "model"),
    ("model empty", _set("model", []), "model"),
    ("model not msgpack", _set("model", [0xC1]), "model"),
    ("model msgpack list", _model_msgpack([1, 2]), "model"),
    ("model no topology", _model_msgpack({"weightSpecs": [], "weightData": b""}), "model"),
    (
        "model size mismatch",
        _model_msgpack(
            {
                "modelTopology": {},
                "weightSpecs": [{"name": "w", "shape": [2], "dtype": "float32"}],
                "weightData": msgpack.ExtType(0x1A, b"\0" * 4),
            }
        ),
        "model",
    ),
    ("weights garbage", _set("weights", [1, 2, 3]), "weights"),
    ("weights not array", _set("weights", "abc"), "weights"),
    ("weights count", _weights(lambda w: w[:-1]), "weights"),
    ("weights shape", _weights(lambda w: [x.reshape(-1) for x in w]), "weights"),
    ("weights values", _weights(lambda w: [x + 1 for x in w]), "weights: tensor 0"),
]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [pytest.param(m, r, id=i) for i, m, r in BAD_JSON_BODIES],
)
async def test_bad_json_bodies_are_400(
    async_client: httpx.AsyncClient, mutate: Callable[[dict[str, Any]], Any], reason: str
) -> None:
    response = await async_client.post("/tasks", json=mutate(push_task_body()))
    await assert_refused(async_client, response, 400, reason)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "body: not valid JSON"),
        (b'{"task": "\xff"}', "body: not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "body"),
        (b"", "body: not valid JSON"),
    ],
)
async def test_unparsable_json_is_400(
    async_client: httpx.AsyncClient, content: bytes, reason: str
) -> None:
    response = await async_client.post(
        "/tasks", content=content, headers={"Content-Type": "application/json"}
    )
    await assert_refused(async_client, response, 400, reason)


async def test_duplicate_task_id_is_409(async_client: httpx.AsyncClient) -> None:
    response = await async_client.post("/tasks", json=push_task_body("titanic"))
    await assert_refused(async_client, response, 409, "titanic")
    first = await async_client.post("/tasks", json=push_task_body("again"))
    assert first.status_code == 201
    second = await async_client.post("/tasks", files=multipart_files("again"))
    assert second.status_code == 409
    assert "already exists" in second.json()["error"]


async def test_other_content_types_are_415(async_client: httpx.AsyncClient) -> None:
    response = await async_client.post(
        "/tasks", content=b"task=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    await assert_refused(async_client, response, 415, "Content-Type")


# --------------------------------------------------------------------------- refusals (multipart)


def _without(name: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [f for f in multipart_files() if f[1][0] != name]


def _replace(name: str, data: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(f[0], (f[1][0], data, f[1][2])) if f[1][0] == name else f for f in multipart_files()]


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        pytest.param(_without("task.json"), "task.json: required", id="no task.json"),
        pytest.param(_without("model.json"), "model.json: required", id="no model.json"),
        pytest.param(_without("group1-shard1of1.bin"), "group1-shard1of1.bin", id="no weights"),
        pytest.param(_replace("task.json", b"{"), "task.json: not valid JSON", id="task syntax"),
        pytest.param(_replace("task.json", b"{}"), "task.json.taskID", id="task fields"),
        pytest.param(_replace("model.json", b"[]"), "model.json", id="model.json array"),
        pytest.param(
            _replace("group1-shard1of1.bin", b"\0" * 8), "model.json", id="weights too short"
        ),
        pytest.param(
            [*multipart_files(), multipart_files()[0]], "task.json: sent 2 times", id="twice"
        ),
    ],
)
async def test_bad_multipart_bodies_are_400(
    async_client: httpx.AsyncClient, files: Any, reason: str
) -> None:
    response = await async_client.post("/tasks", files=files)
    await assert_refused(async_client, response, 400, reason)


async def test_manifest_path_traversal_is_400(async_client: httpx.AsyncClient) -> None:
    model = artifacts()
    model_json = model.to_layers_json("weights.bin")
    model_json["weightsManifest"][0]["paths"] = ["../../etc/passwd"]
    files = [
        ("task.json", ("task.json", json.dumps(task_json()).encode(), "application/json")),
        ("model.json", ("model.json", json.dumps(model_json).encode(), "application/json")),
        ("w", ("passwd", model.weight_data, "application/octet-stream")),
    ]
    response = await async_client.post("/tasks", files=files)
    await assert_refused(async_client, response, 400, "not a safe file name")


@pytest.mark.parametrize(
    ("content_type", "content", "reason"),
    [
        ("multipart/form-data", b"--x\r\n", "boundary"),
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="task.json"\r\n\r\n{}',
            "closing boundary",
        ),
        ("multipart/form-data; boundary=xyz", b"garbage", "multipart"),
        (
            "multipart/form-data; boundary=xyz",
            b"--xyz\r\nContent-Type: text/plain\r\n\r\nhi\r\n--xyz--\r\n",
            "Content-Disposition",
        ),
    ],
)
async def test_malformed_multipart_is_400(
    async_client: httpx.AsyncClient, content_type: str, content: bytes, reason: str
) -> None:
    response = await async_client.post(
        "/tasks", content=content, headers={"Content-Type": content_type}
    )
    await assert_refused(async_client, response, 400, reason)


# --------------------------------------------------------------------------- body limit


@pytest.fixture
def small_limit_app(make_settings: Callable[..., Settings]) -> FastAPI:
    return create_app(make_settings(max_body_bytes=4096))


@pytest.fixture
async def small_limit_client(small_limit_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    app = small_limit_app
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


async def test_declared_oversized_body_is_413(small_limit_client: httpx.AsyncClient) -> None:
    response = await small_limit_client.post("/tasks", json=push_task_body())
    await assert_refused(small_limit_client, response, 413, "4096")


async def test_streamed_oversized_body_is_413(small_limit_client: httpx.AsyncClient) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):  # 1 MB in all if the server read everything
            sent += 1
            yield b" " * 1024

    response = await small_limit_client.post(
        "/tasks", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    await assert_refused(small_limit_client, response, 413, "exceed")


async def test_bad_content_length_is_400(async_client: httpx.AsyncClient) -> None:
    response = await async_client.post(
        "/tasks", content=b"{}", headers={"Content-Type": "application/json", "Content-Length": "x"}
    )
    assert response.status_code == 400


async def test_body_under_limit_is_accepted(make_settings: Callable[..., Settings]) -> None:
    body = json.dumps(push_task_body()).encode()
    app = create_app(make_settings(max_body_bytes=len(body)))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        response = await client.post(
            "/tasks", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 201, response.text


# --------------------------------------------------------------------------- admin token


@pytest.fixture
async def token_client(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(admin_token=TOKEN, max_body_bytes=4096))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client


async def test_admin_token_missing_is_401(token_client: httpx.AsyncClient) -> None:
    # Checked before the body: an oversized body without a token is 401, not 413.
    response = await token_client.post("/tasks", json=push_task_body())
    await assert_refused(token_client, response, 401, "admin token required")
    assert response.headers["www-authenticate"] == "Bearer"
    basic = await token_client.post(
        "/tasks", json=push_task_body(), headers={"Authorization": "Basic dXNlcjpwdw=="}
    )
    assert basic.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {b"Authorization": b"Bearer wrong"},
        {b"Authorization": f"Bearer {TOKEN}x".encode()},
        {b"X-Admin-Token": b"wrong"},
        {b"Authorization": "Bearer wr\xf6ng".encode("latin-1")},  # compare_digest needs bytes
    ],
)
async def test_admin_token_wrong_is_403(
    token_client: httpx.AsyncClient, headers: dict[bytes, bytes]
) -> None:
    response = await token_client.post("/tasks", json=push_task_body(), headers=headers)
    await assert_refused(token_client, response, 403, "admin token rejected")


@pytest.mark.parametrize(
    "headers", [{"Authorization": f"Bearer {TOKEN}"}, {"X-Admin-Token": TOKEN}]
)
async def test_admin_token_right_passes(
    make_settings: Callable[..., Settings], headers: dict[str, str]
) -> None:
    app = create_app(make_settings(admin_token=TOKEN))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        assert (await client.get("/tasks")).status_code == 200  # reads stay open
        response = await client.post("/tasks", json=push_task_body(), headers=headers)
        assert response.status_code == 201, response.text


# --------------------------------------------------------------------------- persistence


async def test_uploaded_task_survives_a_restart(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    served: dict[str, bytes] = {}
    for attempt in range(2):
        app = create_app(settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t"
            ) as client,
        ):
            if attempt == 0:
                created = await client.post("/tasks", json=push_task_body())
                assert created.status_code == 201
            for name, headers in [("disco", AXIOS), ("tfjs", {"Accept": "*/*"})]:
                model = await client.get("/tasks/uploaded/model.json", headers=headers)
                weights = await client.get("/tasks/uploaded/weights.bin", headers=headers)
                assert model.status_code == weights.status_code == 200
                key = f"{name}-{attempt}"
                served[key] = model.content + b"|" + weights.content
            assert (await client.get("/tasks/uploaded")).json() == task_json()
    assert served["disco-0"] == served["disco-1"]
    assert served["tfjs-0"] == served["tfjs-1"]

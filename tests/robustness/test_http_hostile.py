"""Hostile HTTP requests against a live loopback server.

Every bad request gets a 4xx answer with a JSON `{"error": <reason>}` body, never a 500, never
a file the API does not serve; and after each test the task list, every task's files on disk
and the directory around the data dir are exactly as before.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from robustness.conftest import FEDERATED_TASK, LiveServer
from robustness.helpers import ANSWER_TIMEOUT_S, raw_http

MAX_BODY_BYTES = 1024 * 1024  # hostile_settings' max_body_bytes


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root`: relative path -> (size, mtime in ns)."""
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
async def http(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=ANSWER_TIMEOUT_S) as client:
        yield client


@pytest.fixture(autouse=True)
async def nothing_changes(
    http: httpx.AsyncClient, server_data_dir: Path
) -> AsyncIterator[None]:
    """The task list, the data dir and its surroundings are untouched by the test."""
    tasks_before = (await http.get("/tasks")).content
    files_before = tree(server_data_dir)
    around_before = sorted(p.name for p in server_data_dir.parent.iterdir())
    yield
    assert (await http.get("/tasks")).content == tasks_before
    assert tree(server_data_dir) == files_before
    assert sorted(p.name for p in server_data_dir.parent.iterdir()) == around_before


def assert_json_error(status: int, headers: Any, body: bytes, expected: int | None = None) -> str:
    """A 4xx (exactly `expected` when given) whose body is `{"error": "<reason>"}`."""
    assert 400 <= status < 500, (status, body[:300])
    if expected is not None:
        assert status == expected, (status, body[:300])
    assert headers["content-type"].startswith("application/json"), headers
    payload = json.loads(body)
    assert isinstance(payload, dict) and list(payload) == ["error"], payload
    reason = payload["error"]
    assert isinstance(reason, str) and reason.strip(), payload
    return reason


def check(response: httpx.Response, expected: int | None = None) -> str:
    return assert_json_error(response.status_code, response.headers, response.content, expected)


# --------------------------------------------------------------------------- path traversal

SECRETS = (b"root:", b"sha256", b"weightsManifest", b"trainingInformation")
"""Contents of /etc/passwd, meta.json, model.json, task.json: none may leak through a 4xx."""

TRAVERSALS = [
    "/tasks/titanic/../../../../etc/passwd",
    "/tasks/titanic/../meta.json",
    "/tasks/titanic/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/tasks/titanic/..%2fmeta.json",
    "/tasks/titanic/%2e%2e%2fmeta.json",
    "/tasks/titanic/%2E%2E/meta.json",
    "/tasks/titanic/%252e%252e%252fmeta.json",
    "/tasks/titanic/%252E%252E%252Fmeta.json",
    "/tasks/titanic/..%5Cmeta.json",
    "/tasks/titanic/..%5C..%5C..%5Cetc%5Cpasswd",
    "/tasks/titanic/%255c..%255cmeta.json",
    "/tasks/titanic/..\\meta.json",
    "/tasks/titanic/meta.json",
    "/tasks/titanic/task.json",
    "/tasks/titanic/weights-1.bin",
    "/tasks/titanic/.",
    "/tasks/titanic/..",
    "/tasks/titanic/%2e",
    "/tasks/titanic/%00",
    "/tasks/titanic/weights.bin%00.png",
    "/tasks/titanic//etc/passwd",
    "/tasks/titanic/%2Fetc%2Fpasswd",
    "/tasks/..%2Ftitanic/model.json",
    "/tasks/%2e%2e/model.json",
    "/tasks/%2e%2e%2f%2e%2e%2fetc/weights.bin",
    "/tasks/..%5C..%5Cetc/model.json",
    "/tasks/.%2e/status",
    "/tasks/titanic%00/model.json",
    "/tasks/" + "a" * 5000 + "/model.json",
    "/tasks/titanic/" + "b" * 5000,
    "/%2e%2e/%2e%2e/etc/passwd",
    "/../../etc/passwd",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_path_traversal_is_404(live: LiveServer, target: str) -> None:
    status, headers, body = await raw_http(live.url, f"GET {target} HTTP/1.1")
    assert status in (400, 404), (status, body[:300])
    assert_json_error(status, headers, body)
    for secret in SECRETS:
        assert secret not in body, body[:300]


async def test_served_file_names_still_work(http: httpx.AsyncClient) -> None:
    """The control: the names the manifest lists are served (so the 404s above mean refusal)."""
    model = await http.get(f"/tasks/{FEDERATED_TASK}/model.json", params={"format": "tfjs"})
    assert model.status_code == 200
    [path] = [p for group in model.json()["weightsManifest"] for p in group["paths"]]
    assert (await http.get(f"/tasks/{FEDERATED_TASK}/{path}")).status_code == 200


# --------------------------------------------------------------------------- unknown, methods


@pytest.mark.parametrize(
    "path",
    ["/tasks/nope", "/tasks/nope/status", "/tasks/nope/model.json", "/tasks/nope/weights.bin",
     "/tasks/TITANIC", "/nope", "/tasks/titanic/status/extra", "/federated/titanic/someone",
     "/deai/titanic"],
)
async def test_unknown_things_are_404(http: httpx.AsyncClient, path: str) -> None:
    check(await http.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/tasks"), ("PUT", "/tasks"), ("PATCH", "/tasks"), ("DELETE", "/tasks/titanic"),
     ("PUT", "/tasks/titanic"), ("POST", "/tasks/titanic"), ("POST", "/tasks/titanic/model.json"),
     ("PUT", "/tasks/titanic/weights.bin"), ("DELETE", "/tasks/titanic/status"), ("POST", "/")],
)
async def test_wrong_methods_are_405(http: httpx.AsyncClient, method: str, path: str) -> None:
    response = await http.request(method, path, content=b"{}")
    reason = check(response, 405)
    assert method in reason
    assert "GET" in response.headers["allow"]


@pytest.mark.parametrize(
    "query", ["format=zip", "format=", "format=DISCO%00", "format=disco&format=" + "x" * 3000]
)
async def test_bad_query_is_400(http: httpx.AsyncClient, query: str) -> None:
    reason = check(await http.get(f"/tasks/{FEDERATED_TASK}/model.json?{query}"), 400)
    assert "format" in reason


@pytest.mark.parametrize(
    "headers",
    [{"Accept": "\x7f" * 100}, {"If-None-Match": '"' * 1000}, {"If-None-Match": "*, W/"},
     {"Accept": "application/json, text/plain;q=nan"}],
)
async def test_odd_headers_are_harmless(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await http.get(f"/tasks/{FEDERATED_TASK}/model.json", headers=headers)
    assert response.status_code in (200, 304), response.text[:300]


# --------------------------------------------------------------------------- POST /tasks bodies


@pytest.fixture(scope="module")
def titanic_upload(live: LiveServer) -> dict[str, Any]:
    """A valid pushTask body for titanic (taken from the server), to be broken per test."""
    with httpx.Client(base_url=live.url, timeout=ANSWER_TIMEOUT_S) as client:
        task = client.get(f"/tasks/{FEDERATED_TASK}").json()
        model = client.get(f"/tasks/{FEDERATED_TASK}/model.json", params={"format": "disco"})
    return {"task": task, "model": model.json()}


def renamed(upload: dict[str, Any], task_id: str) -> dict[str, Any]:
    return {**upload, "task": {**upload["task"], "taskID": task_id}}


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("unterminated", b"{", "body: not valid JSON"),
    ("empty", b"", "body: not valid JSON"),
    ("array", b"[]", "JSON object"),
    ("string", b'"task"', "JSON object"),
    ("number", b"1e999", "JSON object"),
    ("null", b"null", "JSON object"),
    ("not-utf8", b'{"task": "\xff\xfe"}', "UTF-8"),
    ("nan-literal", b'{"task": NaN, "model": []}', "task"),
    ("deep-array", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("deep-object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
    ("no-task", b'{"model": [1]}', "task: required"),
    ("task-int", b'{"task": 1, "model": [1]}', "task"),
    ("task-empty", b'{"task": {}, "model": [1]}', "task"),
]


@pytest.mark.parametrize(("name", "body", "fragment"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_bad_json_bodies_are_400(
    http: httpx.AsyncClient, name: str, body: bytes, fragment: str
) -> None:
    response = await http.post("/tasks", content=body, headers={"Content-Type": "application/json"})
    assert fragment in check(response, 400)


BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("model-missing", {"model": None}, "model"),
    ("model-str", {"model": "AAAA"}, "model"),
    ("model-object", {"model": {"0": 1}}, "model"),
    ("model-byte-300", {"model": [300]}, "model"),
    ("model-byte-negative", {"model": [-1]}, "model"),
    ("model-byte-float", {"model": [1.5]}, "model"),
    ("model-byte-bool", {"model": [True]}, "model"),
    ("model-empty", {"model": []}, "model"),
    ("model-not-msgpack", {"model": [0xC1]}, "model"),
    ("model-truncated", {"model": "truncate"}, "model"),
    ("weights-str", {"weights": "x"}, "weights"),
    ("weights-wrong", {"weights": [0x90]}, "weights"),
    ("epochs-str", {"task.epochs": "10"}, "epochs"),
    ("epochs-negative", {"task.epochs": -1}, "epochs"),
    ("scheme-int", {"task.scheme": 5}, "scheme"),
    ("display-list", {"task.displayInformation": []}, "displayInformation"),
]


@pytest.mark.parametrize(("name", "change", "fragment"), BAD_FIELDS, ids=[b[0] for b in BAD_FIELDS])
async def test_wrong_field_types_are_400(
    http: httpx.AsyncClient, titanic_upload: dict[str, Any], name: str, change: dict[str, Any],
    fragment: str,
) -> None:
    upload = renamed(titanic_upload, f"fresh-{name}")
    for key, value in change.items():
        if key == "task.displayInformation":
            upload["task"] = {**upload["task"], "displayInformation": value}
        elif key.startswith("task."):
            info = {**upload["task"]["trainingInformation"], key.removeprefix("task."): value}
            upload["task"] = {**upload["task"], "trainingInformation": info}
        elif value == "truncate":
            upload[key] = upload[key][: len(upload[key]) // 2]
        elif value is None:
            del upload[key]
        else:
            upload[key] = value
    assert fragment in check(await http.post("/tasks", json=upload), 400)


@pytest.mark.parametrize(
    "task_id",
    ["../evil", "..", ".", "..\\evil", "a/b", "a\\b", "/etc/passwd", "%2e%2e%2fevil",
     "evil\x00", "evil\n", ".hidden", "", "x" * 200, "ti tanic", "évil"],
)
async def test_hostile_task_ids_are_400(
    http: httpx.AsyncClient, titanic_upload: dict[str, Any], task_id: str
) -> None:
    reason = check(await http.post("/tasks", json=renamed(titanic_upload, task_id)), 400)
    assert "taskID" in reason


async def test_existing_task_is_409(
    http: httpx.AsyncClient, titanic_upload: dict[str, Any]
) -> None:
    assert "titanic" in check(await http.post("/tasks", json=titanic_upload), 409)


async def test_unsupported_content_type_is_415(
    http: httpx.AsyncClient, titanic_upload: dict[str, Any]
) -> None:
    body = json.dumps(titanic_upload).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "image/png"):
        response = await http.post("/tasks", content=body, headers={"Content-Type": content_type})
        check(response, 415)


async def test_body_over_the_limit_is_413(http: httpx.AsyncClient) -> None:
    """Declared too big: refused before reading; streamed (chunked): cut off at the limit."""
    declared = await http.post(
        "/tasks", content=b" " * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"}
    )
    assert "max_body_bytes" in check(declared, 413)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    streamed = await http.post(
        "/tasks", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "max_body_bytes" in check(streamed, 413)


async def test_lying_content_length_is_refused(live: LiveServer) -> None:
    """A Content-Length that is not a number never reaches the app: the HTTP layer says 400."""
    status, _, _ = await raw_http(
        live.url, "POST /tasks HTTP/1.1",
        {"Content-Length": "12abc", "Content-Type": "application/json"},
    )
    assert status == 400


# --------------------------------------------------------------------------- multipart uploads


def multipart(files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body from {field: (file name, content)}."""
    boundary = "hostile-boundary-1234"
    out = b""
    for field, (filename, content) in files.items():
        out += (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode() + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def layers_files(live: LiveServer, titanic_upload: dict[str, Any]) -> dict[str, Any]:
    """titanic's TF.js layers files and task, as a multipart upload would carry them."""
    with httpx.Client(base_url=live.url, timeout=ANSWER_TIMEOUT_S) as client:
        model_json = client.get(f"/tasks/{FEDERATED_TASK}/model.json", params={"format": "tfjs"})
        weights = client.get(f"/tasks/{FEDERATED_TASK}/weights.bin", params={"format": "tfjs"})
    return {"task": titanic_upload["task"], "model": model_json.json(), "weights": weights.content}


@pytest.mark.parametrize(
    "weights_path",
    ["../evil.bin", "..\\evil.bin", "/etc/passwd", "sub/evil.bin", ".hidden.bin", "evil\x00.bin",
     "..", "C:\\evil.bin", "", "x" * 1000],
)
async def test_hostile_manifest_paths_are_400(
    http: httpx.AsyncClient, layers_files: dict[str, Any], weights_path: str
) -> None:
    model = dict(layers_files["model"])
    model["weightsManifest"] = [{**model["weightsManifest"][0], "paths": [weights_path]}]
    task = {**layers_files["task"], "taskID": "fresh-multipart"}
    body, content_type = multipart({
        "task.json": ("task.json", json.dumps(task).encode()),
        "model.json": ("model.json", json.dumps(model).encode()),
        "weights": (weights_path.replace("\x00", ""), layers_files["weights"]),
    })
    reason = check(await http.post("/tasks", content=body, headers={"Content-Type": content_type}))
    assert "weightsManifest" in reason or "paths" in reason or "missing" in reason


@pytest.mark.parametrize(
    "body",
    [b"--x\r\n", b"garbage", b"--hostile-boundary-1234\r\nContent-Disposition: form-data\r\n\r\n"],
)
async def test_malformed_multipart_is_400(http: httpx.AsyncClient, body: bytes) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=hostile-boundary-1234"}
    check(await http.post("/tasks", content=body, headers=headers), 400)


async def test_tree_helper_sees_files(tmp_path: Path) -> None:
    """The invariant fixture's helper must notice a new file (or every check above is void)."""
    before = tree(tmp_path)
    (tmp_path / "x").write_bytes(b"1")
    assert tree(tmp_path) != before

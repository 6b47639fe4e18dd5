"""What the client fetches over HTTP: the task list and a task's current global model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from disco.errors import DiscoError
from disco.tasks.artifacts import ModelArtifacts


class ServerError(DiscoError, RuntimeError):
    """The server could not be reached or refused a request; the message says which and why."""


@dataclass(frozen=True)
class RemoteModel:
    """A task's global model as the server serves it."""

    artifacts: ModelArtifacts
    etag: str | None


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return str(body)[:200]


async def _get(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET url; ServerError unless the server answers below 400.

    A server may close an idle keep-alive connection just as a request goes out on it ("Server
    disconnected without sending a response"); a GET is idempotent, so it is sent once more, on
    a new connection.
    """
    try:
        try:
            response = await client.get(url)
        except httpx.RemoteProtocolError:
            response = await client.get(url)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise ServerError(f"cannot reach the server at {url}: {error}") from None
    if response.status_code == 404:
        raise ServerError(f"not found: {url} ({_reason(response)})")
    if response.status_code >= 400:
        raise ServerError(f"GET {url} failed with {response.status_code}: {_reason(response)}")
    return response


def _json(response: httpx.Response) -> Any:
    """The body as JSON, or ServerError: whatever answered is not a DISCO server."""
    try:
        return response.json()
    except ValueError:
        raise ServerError(f"{response.request.url} did not answer with JSON") from None


async def fetch_tasks(client: httpx.AsyncClient, base_url: str) -> list[dict[str, Any]]:
    """GET /tasks: the task JSON objects the server offers."""
    response = await _get(client, f"{base_url}/tasks")
    tasks = _json(response)
    if not isinstance(tasks, list):
        raise ServerError(f"{base_url}/tasks did not return a list of tasks")
    return [task for task in tasks if isinstance(task, dict)]


async def fetch_task(client: httpx.AsyncClient, base_url: str, task_id: str) -> dict[str, Any]:
    """One task's JSON, or ServerError naming the tasks that do exist."""
    tasks = await fetch_tasks(client, base_url)
    for task in tasks:
        if task.get("taskID") == task_id:
            return task
    known = ", ".join(str(t.get("taskID")) for t in tasks) or "none"
    raise ServerError(f"unknown task {task_id!r} on {base_url} (tasks: {known})")


async def fetch_model(client: httpx.AsyncClient, base_url: str, task_id: str) -> RemoteModel:
    """The current global model as TF.js layers files (model.json + its weight files)."""
    model_url = f"{base_url}/tasks/{task_id}/model.json"
    response = await _get(client, f"{model_url}?format=tfjs")
    model_json = _json(response)
    if not isinstance(model_json, dict):
        raise ServerError(f"{model_url} is not a TF.js model.json")
    files: dict[str, bytes] = {}
    for group in model_json.get("weightsManifest", []):
        for path in group.get("paths", []):
            files[path] = (await _get(client, f"{base_url}/tasks/{task_id}/{path}")).content
    return RemoteModel(ModelArtifacts.from_layers(model_json, files), response.headers.get("etag"))

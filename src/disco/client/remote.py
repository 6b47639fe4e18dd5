"""What the client fetches over HTTP: the task list and a task's current global model.

This is where task JSON enters the client: every task is validated by the task schema here, and
the rest of the client, the simulation and the CLI read the typed `Task`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from disco.errors import DiscoError
from disco.tasks.artifacts import ModelArtifacts
from disco.tasks.schema import Task, TaskValidationError, parse_task

log = logging.getLogger("disco.client")


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


async def _task_objects(client: httpx.AsyncClient, base_url: str) -> list[Mapping[str, Any]]:
    response = await _get(client, f"{base_url}/tasks")
    tasks = _json(response)
    if not isinstance(tasks, list):
        raise ServerError(f"{base_url}/tasks did not return a list of tasks")
    return [task for task in tasks if isinstance(task, Mapping)]


def _served_id(task: Mapping[str, Any]) -> str:
    """The id a served task claims, for messages about a task that may not be valid."""
    return str(task.get("taskID"))


def _parsed(task: Mapping[str, Any], base_url: str) -> Task:
    """A served task, typed; ServerError naming each field the task schema refuses."""
    try:
        return parse_task(task)
    except TaskValidationError as error:
        raise ServerError(
            f"task {_served_id(task)!r} on {base_url} is not a valid DISCO task: {error}"
        ) from None


async def fetch_tasks(client: httpx.AsyncClient, base_url: str) -> list[Task]:
    """GET /tasks: the tasks the server offers, typed. A task the schema refuses is left out
    with a warning naming the field (the JavaScript client drops such a task too)."""
    tasks = []
    for served in await _task_objects(client, base_url):
        try:
            tasks.append(_parsed(served, base_url))
        except ServerError as error:
            log.warning("%s", error)
    return tasks


async def fetch_task(client: httpx.AsyncClient, base_url: str, task_id: str) -> Task:
    """One task, typed; ServerError naming the tasks that do exist, or why it is not valid."""
    served = await _task_objects(client, base_url)
    for task in served:
        if task.get("taskID") == task_id:
            return _parsed(task, base_url)
    known = ", ".join(_served_id(task) for task in served) or "none"
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

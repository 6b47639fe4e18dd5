"""HTTP routes: server identification, the tasks API and the current global model files.

Store reads and writes and every CPU-heavy step (decoding uploads, rendering a model as a byte
array) run in worker threads, so a big upload never stalls the WebSocket traffic of training.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from disco import __version__
from disco.server.access import listing_filter, task_access
from disco.server.auth import require_admin
from disco.server.http import webapp
from disco.server.http.errors import error_response, responses
from disco.server.http.negotiation import ModelFormat, choose_format, etag_matches, make_etag
from disco.server.http.sliced import SlicedResponse
from disco.server.http.uploads import UploadError, declared_length, parse_upload, read_limited
from disco.server.state import StateDep, StoreDep, TaskStatusReporter
from disco.tasks.schema import Task
from disco.tasks.store import (
    SERVED_WEIGHTS_PATH,
    StoredTask,
    TaskExistsError,
    TaskNotFoundError,
    TaskStore,
)
from disco.tasks.torch_model import is_torch_topology, not_trainable_reason, torch_factory

log = logging.getLogger("disco.server.http")

router = APIRouter()

JSON: Final = "application/json"
OCTET_STREAM: Final = "application/octet-stream"
MODEL_FILE: Final = "model.json"

_BYTE_ARRAY_SCHEMA: Final[dict[str, Any]] = {
    "type": "array",
    "items": {"type": "integer", "minimum": 0, "maximum": 255},
    "description": "byte-integers of a msgpack encoding",
}
_LAYERS_MODEL_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["modelTopology", "weightsManifest"],
    "properties": {
        "modelTopology": {"type": "object"},
        "weightsManifest": {"type": "array", "items": {"type": "object"}},
    },
    "description": "TF.js layers model.json",
}
_POST_TASK_BODY: Final[dict[str, Any]] = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "required": ["task", "model"],
                "properties": {
                    "task": {"$ref": "#/components/schemas/Task"},
                    "model": {
                        **_BYTE_ARRAY_SCHEMA,
                        "description": "byte-integers of the msgpack TF.js ModelArtifacts",
                    },
                    "weights": {
                        **_BYTE_ARRAY_SCHEMA,
                        "description": "optional: the same weights in the legacy encoding; "
                        "must agree with the model's weightData",
                    },
                },
            }
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["task.json", "model.json"],
                "properties": {
                    "task.json": {"type": "string", "format": "binary"},
                    "model.json": {"type": "string", "format": "binary"},
                },
                "additionalProperties": {
                    "type": "string",
                    "format": "binary",
                    "description": "the weight files named in model.json's weightsManifest",
                },
            }
        },
    },
}

TaskIDParam = Annotated[str, Path(alias="taskID", description="the task's taskID")]
FormatParam = Annotated[
    ModelFormat | None,
    Query(
        alias="format",
        description="force a representation: `disco` (JSON byte array of the msgpack model, "
        "what DISCO clients read) or `tfjs` (TF.js layers files); default: `disco` for the "
        "axios Accept header of DISCO clients, `tfjs` otherwise",
    ),
]


class TaskStatus(BaseModel):
    """Progress of a task; participant counts are 0 when no hub reports on the task."""

    taskID: str
    scheme: str
    round: int = Field(description="round of the current global model")
    modelVersion: int = Field(description="persisted model versions so far")
    currentNumberOfParticipants: int = 0
    totalNumberOfParticipants: int = 0
    averageNumberOfParticipants: float = 0.0
    connectedPeers: int = Field(default=0, description="decentralized peers connected")
    readyPeers: int = Field(default=0, description="decentralized peers ready for the next round")
    live: bool = Field(default=False, description="whether a training hub reported on the task")
    privacy: dict[str, Any] | None = Field(
        default=None,
        description="ε spent: the largest client-side ε a participant reported "
        "(clientEpsilon, at delta) and the server's central DP account (central)",
    )
    secureAggregation: dict[str, Any] | None = Field(
        default=None, description="stage and outcomes of the task's secure federated rounds"
    )


class CompletedRoundModel(BaseModel):
    """One completed round of the global model (`disco.tasks.store.CompletedRound`)."""

    round: int = Field(description="round of the model the aggregation produced")
    time: float = Field(description="Unix time (seconds) the model was stored")
    contributions: int = Field(description="updates aggregated into the model")
    seconds: float = Field(description="from the round's first accepted update to its model")


class RoundHistory(BaseModel):
    """The global model's last completed rounds, oldest first (persisted with the model)."""

    taskID: str
    round: int = Field(description="round of the current global model")
    rounds: list[CompletedRoundModel]


# --------------------------------------------------------------------------- helpers


def _stored(store: TaskStore, task_id: str) -> StoredTask:
    """The task and its current model, or 404 (a dictionary look-up: no thread hop)."""
    try:
        return store.get(task_id)
    except TaskNotFoundError:
        raise HTTPException(404, detail=f"unknown task {task_id!r}") from None


def _json(
    body: bytes, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(body, status_code=status_code, media_type=JSON, headers=dict(headers or {}))


async def _model_response(
    request: Request,
    stored: StoredTask,
    variant: str,
    body: Callable[[], bytes],
    media_type: str,
    rendered: bool,
) -> Response:
    """A model representation: never cached by intermediaries, revalidated with its ETag.
    `rendered`: `body` is already computed (a cached encoding), so no thread hop for it."""
    etag = make_etag(variant, stored.round, stored.version, stored.model_version.sha256)
    headers = {"ETag": etag, "Cache-Control": "no-store", "Vary": "Accept"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    # The first rendering of a big model is CPU work; later ones return the cached bytes.
    content = body() if rendered else await asyncio.to_thread(body)
    return SlicedResponse(content, media_type=media_type, headers=headers)


def _refuse_torch_model(stored: StoredTask) -> Response | None:
    """409 for DISCO-encoded requests of a PyTorch-only model: JS clients cannot build it."""
    topology = stored.artifacts.model_topology
    if not is_torch_topology(topology):
        return None
    return error_response(409, not_trainable_reason(stored.task_id, torch_factory(topology)))


def _hub_status(hub: TaskStatusReporter, task_id: str) -> Mapping[str, Any]:
    """What a hub reports on the task, {} when it reports nothing (or fails)."""
    try:
        status = hub.task_status(task_id)
    except Exception:  # status is informational: a hub bug must not break the route
        log.exception("task_status(%r) failed", task_id)
        return {}
    return status if isinstance(status, Mapping) else {}


def _mapping(value: object) -> dict[str, Any] | None:
    """A hub's nested report when it is a mapping, else None."""
    return dict(value) if isinstance(value, Mapping) else None


def _number(value: object) -> float | None:
    """A finite JSON number, else None (a hub's report is not trusted to be well-formed)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _count(value: object, default: int) -> int:
    number = _number(value)
    return default if number is None else int(number)


# --------------------------------------------------------------------------- routes


@router.get(
    "/",
    response_class=PlainTextResponse,
    summary="Identify the server",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        307: {"description": "a browser (Accept naming text/html) is sent to the web app /app/"},
    },
)
async def identify(request: Request) -> Response:
    """Name and version, and where to go next; a browser is sent to the web app instead."""
    redirect = webapp.browser_redirect(request)
    if redirect is not None:
        return redirect
    return PlainTextResponse(
        f"disco server {__version__}\n"
        "Tasks: GET /tasks\n"
        "Web app: /app/\n"
        "API documentation: /docs (OpenAPI schema: /openapi.json)\n",
        headers={"Vary": "Accept"},
    )


@router.get(
    "/tasks",
    summary="List the tasks",
    response_class=Response,
    responses={
        200: {
            "model": list[Task],
            "description": "every open task, and the enrolled ones the request's participant "
            "token (or the admin token) is for, by taskID",
        }
    },
)
async def list_tasks(request: Request, state: StateDep) -> Response:
    """The tasks' JSON; each one passes the DISCO client's `isTask` check (a 2.1.1 client
    refuses the whole list otherwise), so a hidden task is left out, never masked."""
    shown = listing_filter(request, state)

    # Joins each task's cached JSON: cheaper than a thread hop.
    tasks = [stored.task_json for stored in state.store.stored() if shown(stored.task_id)]
    return _json(b"[" + b",".join(tasks) + b"]")


@router.post(
    "/tasks",
    summary="Create a task with its initial model",
    status_code=201,
    response_class=Response,
    dependencies=[Depends(require_admin)],
    responses={
        201: {"model": Task, "description": "the task as stored"},
        **responses(400, 401, 403, 409, 413, 415),
    },
    # `{}` (appended to the two schemes): no credentials needed when no admin token is set.
    openapi_extra={"requestBody": _POST_TASK_BODY, "security": [{}]},
)
async def create_task(request: Request, state: StateDep) -> Response:
    """JSON `{task, model, weights}` as DISCO's `pushTask` sends, or multipart TF.js files.

    Nothing is stored unless the whole body is valid.
    """
    limit = state.settings.max_body_bytes
    try:
        declared_length(request.headers.get("content-length"), limit)
        async with state.upload_slots:
            body = await read_limited(request.stream(), limit)
            content_type = request.headers.get("content-type")
            upload = await asyncio.to_thread(parse_upload, body, content_type)
            del body
    except UploadError as error:
        return error_response(error.status, error.reason)
    except ClientDisconnect:
        return error_response(400, "body: the client disconnected before sending all of it")
    try:
        stored = await asyncio.to_thread(state.store.add, upload.task, upload.artifacts)
    except TaskExistsError as error:
        return error_response(409, f"task.taskID: {error}")
    log.info("task %s created over HTTP", stored.task_id)
    state.events.notify(stored.task_id, "created")
    return _json(stored.task_json, 201, {"Location": f"/tasks/{stored.task_id}"})


@router.get(
    "/tasks/{taskID}",
    summary="One task",
    response_class=Response,
    responses={200: {"model": Task, "description": "the task"}, **responses(401, 403, 404)},
    dependencies=[Depends(task_access)],
)
async def get_task(store: StoreDep, task_id: TaskIDParam) -> Response:
    """The task's JSON."""
    stored = _stored(store, task_id)
    return _json(stored.task_json)


@router.get(
    "/tasks/{taskID}/status",
    summary="Training progress of a task",
    response_model=TaskStatus,
    response_model_exclude_none=True,  # privacy / secureAggregation only for tasks using them
    responses=responses(401, 403, 404),
    dependencies=[Depends(task_access)],
)
async def task_status(state: StateDep, task_id: TaskIDParam) -> TaskStatus:
    """Round of the current model; live participant counts when a training hub reports them."""
    stored = _stored(state.store, task_id)
    status = TaskStatus(
        taskID=stored.task_id,
        scheme=stored.task.training_information.scheme,
        round=stored.round,
        modelVersion=stored.version,
    )
    reports = [_hub_status(hub, task_id) for hub in state.status_reporters()]
    merged: dict[str, Any] = {}
    for report in reports:
        merged.update(report)
    if not any(reports):
        return status
    average = _number(merged.get("averageNumberOfParticipants"))
    return status.model_copy(
        update={
            "round": max(status.round, _count(merged.get("round"), status.round)),
            "currentNumberOfParticipants": _count(merged.get("currentNumberOfParticipants"), 0),
            "totalNumberOfParticipants": _count(merged.get("totalNumberOfParticipants"), 0),
            "averageNumberOfParticipants": 0.0 if average is None else average,
            "connectedPeers": _count(merged.get("connectedPeers"), 0),
            "readyPeers": _count(merged.get("readyPeers"), 0),
            "live": True,
            "privacy": _mapping(merged.get("privacy")),
            "secureAggregation": _mapping(merged.get("secureAggregation")),
        }
    )


@router.get(
    "/tasks/{taskID}/history",
    summary="Round history of a task's global model",
    response_model=RoundHistory,
    responses=responses(401, 403, 404),
    dependencies=[Depends(task_access)],
)
async def task_history(store: StoreDep, task_id: TaskIDParam) -> RoundHistory:
    """The last completed federated rounds (at most `HISTORY_LIMIT`): when each model was
    stored, how many updates it aggregated and how long the round took."""
    stored = _stored(store, task_id)
    return RoundHistory(
        taskID=stored.task_id,
        round=stored.round,
        rounds=[CompletedRoundModel(**entry.to_json()) for entry in stored.history],
    )


_MODEL_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "the current global model",
        "content": {JSON: {"schema": {"anyOf": [_BYTE_ARRAY_SCHEMA, _LAYERS_MODEL_SCHEMA]}}},
    },
    304: {"description": "unchanged since the ETag given in If-None-Match"},
    **responses(400, 401, 403, 404, 409),
}


@router.get(
    "/tasks/{taskID}/model.json",
    summary="The current global model",
    response_class=Response,
    responses=_MODEL_RESPONSES,
    dependencies=[Depends(task_access)],
)
async def get_model(
    request: Request, store: StoreDep, task_id: TaskIDParam, fmt: FormatParam = None
) -> Response:
    """DISCO encoding for DISCO clients (axios Accept header), TF.js layers JSON for the rest."""
    stored = _stored(store, task_id)
    chosen = choose_format(request.headers.get("accept"), fmt)
    if chosen is ModelFormat.DISCO:
        refusal = _refuse_torch_model(stored)
        if refusal is not None:
            return refusal
        return await _model_response(
            request, stored, "disco", lambda: stored.disco_model, JSON,
            stored.rendered("disco_model"),
        )  # fmt: skip
    return await _model_response(
        request, stored, "tfjs", lambda: stored.model_json, JSON, stored.rendered("model_json")
    )


@router.get(
    "/tasks/{taskID}/{fileName}",
    summary="A weights file named in the current model.json",
    response_class=Response,
    responses={
        200: {
            "description": "float32 little-endian weights (or, for DISCO clients, the same "
            "byte array as model.json, as the original server sent)",
            "content": {
                OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}},
                JSON: {"schema": _BYTE_ARRAY_SCHEMA},
            },
        },
        304: {"description": "unchanged since the ETag given in If-None-Match"},
        **responses(400, 401, 403, 404, 409),
    },
    dependencies=[Depends(task_access)],
)
async def get_weights_file(
    request: Request,
    store: StoreDep,
    task_id: TaskIDParam,
    file_name: Annotated[str, Path(alias="fileName", description="e.g. weights.bin")],
    fmt: FormatParam = None,
) -> Response:
    """Only the file the served manifest names exists; any other name (traversal too) is 404."""
    stored = _stored(store, task_id)
    if file_name != SERVED_WEIGHTS_PATH:
        raise HTTPException(404, detail=f"task {task_id!r} has no file {file_name!r}")
    chosen = choose_format(request.headers.get("accept"), fmt)
    if chosen is ModelFormat.DISCO:
        refusal = _refuse_torch_model(stored)
        if refusal is not None:
            return refusal
        return await _model_response(
            request, stored, "disco", lambda: stored.disco_model, JSON,
            stored.rendered("disco_model"),
        )  # fmt: skip
    return await _model_response(
        request, stored, "weights", lambda: stored.weights_bin, OCTET_STREAM, True
    )

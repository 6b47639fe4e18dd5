"""Participant tokens over HTTP and WebSocket: where they travel, how a refusal looks.

A native client sends `Authorization: Bearer <token>`. The 2.1.1 JS client cannot set headers,
so a token may also lead the path of the server URL it is given, `http://host:8080/p/<token>/`:
`TokenPathMiddleware` strips that prefix from every HTTP and WebSocket request before routing,
in place (uvicorn's access log reads the same scope, so it never shows the token), and keeps
the token in the scope for `participant_token`. The header wins over the prefix.

HTTP routes of a task depend on `task_access` (401/403 with a JSON reason and one log line);
WebSocket routes hand their handler a `Gate` (`websocket_gate`), which checks the token after
accepting, so that a refusal is a close 1008 with its reason. Decisions: `disco.server.enrollment`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Annotated, Any, Final

from fastapi import Depends, HTTPException, Path
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from disco.server.auth import ADMIN_HEADER, presented_token, token_matches
from disco.server.enrollment import AccessRefused, Gate, Grant
from disco.server.settings import Settings
from disco.server.state import StateDep
from disco.server.websocket import safe_text

log = logging.getLogger("disco.server.access")

PATH_PREFIX: Final = "/p/"
TOKEN_SCOPE_KEY: Final = "disco.participant_token"


def strip_token_path(scope: MutableMapping[str, Any]) -> None:
    """`/p/<token>/rest` -> `/rest` (in place), the token kept under `TOKEN_SCOPE_KEY`."""
    path = scope.get("path")
    if not isinstance(path, str) or not path.startswith(PATH_PREFIX):
        return
    token, _, rest = path[len(PATH_PREFIX) :].partition("/")
    if not token:
        return
    scope["path"] = "/" + rest
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw.startswith(PATH_PREFIX.encode()):
        scope["raw_path"] = b"/" + raw[len(PATH_PREFIX) :].partition(b"/")[2]
    scope[TOKEN_SCOPE_KEY] = token


class TokenPathMiddleware:
    """ASGI middleware: strip a `/p/<token>/` path prefix (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            strip_token_path(scope)
        await self.app(scope, receive, send)


def _bearer(connection: HTTPConnection) -> str | None:
    scheme, _, credential = connection.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip() or None


def participant_token(connection: HTTPConnection) -> str | None:
    """The participant token a request carries: the bearer credential, else the path prefix."""
    token = _bearer(connection)
    if token is not None:
        return token
    prefixed = connection.scope.get(TOKEN_SCOPE_KEY)
    return prefixed if isinstance(prefixed, str) else None


def is_admin(connection: HTTPConnection, settings: Settings) -> bool:
    """True when the request carries the server's admin token (never when it has none)."""
    if settings.admin_token is None:
        return False
    presented = presented_token(
        connection.headers.get("authorization"), connection.headers.get(ADMIN_HEADER)
    )
    return presented is not None and token_matches(presented, settings.admin_token)


def log_refusal(connection: HTTPConnection, task_id: str, refusal: AccessRefused) -> None:
    """The one line of a refused request (never the token: the path is already stripped)."""
    kind = "WebSocket" if connection.scope["type"] == "websocket" else connection.scope["method"]
    client = connection.client.host if connection.client is not None else "?"
    log.warning(
        "task %s: %s %s from %s refused (%d): %s",
        safe_text(task_id), kind, safe_text(connection.url.path), client, refusal.status,
        refusal.reason,
    )  # fmt: skip


def listing_filter(connection: HTTPConnection, state: StateDep) -> Callable[[str], bool]:
    """Whether a listing (GET /tasks, /events) shows a task to this requester: every open
    task, and the enrolled ones its participant token (or the admin token) is for."""
    admin = is_admin(connection, state.settings)
    token = participant_token(connection)
    return lambda task_id: state.enrollment.visible(task_id, token, admin)


async def task_access(
    connection: HTTPConnection,
    state: StateDep,
    task_id: Annotated[str, Path(alias="taskID", description="the task's taskID")],
) -> Grant:
    """FastAPI dependency of every HTTP route of a task: a participant token of the task (or
    the admin token) when the task requires enrollment; 401/403 otherwise."""
    try:
        return state.enrollment.grant(
            task_id, participant_token(connection), admin=is_admin(connection, state.settings)
        )
    except AccessRefused as refusal:
        log_refusal(connection, task_id, refusal)
        headers = {"WWW-Authenticate": "Bearer"} if refusal.status == 401 else None
        raise HTTPException(refusal.status, detail=refusal.reason, headers=headers) from None


TaskAccessDep = Annotated[Grant, Depends(task_access)]


async def websocket_gate(connection: HTTPConnection, state: StateDep) -> Gate:
    """The credentials of a WebSocket, for its handler to check once it has accepted (`async`:
    no thread hop, see `disco.server.state`)."""
    return Gate(state.enrollment, participant_token(connection))


GateDep = Annotated[Gate, Depends(websocket_gate)]

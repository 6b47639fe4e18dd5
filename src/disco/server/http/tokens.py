"""Admin routes of participant tokens: issue, list and revoke the tokens of a task.

Guarded by the server's admin token, and refused outright when the server has none (handing out
access must not be open to anyone). A token is shown once, in the answer that issues it; the
server keeps only its digest (`disco.server.enrollment`). Revoking a token closes its live
connections with 1008.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from disco.server.auth import require_admin_token
from disco.server.enrollment import MAX_LABEL_CHARS, EnrollmentError, TokenRecord
from disco.server.http.errors import responses
from disco.server.state import StateDep
from disco.server.websocket import safe_text
from disco.tasks.store import TaskNotFoundError

log = logging.getLogger("disco.server.enrollment")

router = APIRouter(dependencies=[Depends(require_admin_token)])

TaskIDParam = Annotated[str, Path(alias="taskID", description="the task's taskID")]


class TokenRequest(BaseModel):
    """What the admin says about a new token."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(
        default="", max_length=MAX_LABEL_CHARS, description="who holds it, e.g. 'hospital A'"
    )


class TokenInfo(BaseModel):
    """A token as the admin sees it: never the token itself."""

    tokenID: str = Field(description="public id, to list and revoke the token by")
    taskID: str
    label: str
    created: float = Field(description="Unix time of issue")
    revoked: bool
    connections: int = Field(description="live connections made with the token")


class IssuedToken(TokenInfo):
    """A new token: the only time the server shows it."""

    token: str = Field(description="the participant token (256 random bits, URL-safe text)")


class TokenList(BaseModel):
    taskID: str
    tokens: list[TokenInfo]


def _known(state: StateDep, task_id: str) -> bool:
    """Whether the task requires enrollment; 404 for an unknown task."""
    try:
        stored = state.store.get(task_id)
    except TaskNotFoundError:
        raise HTTPException(404, detail=f"unknown task {task_id!r}") from None
    return stored.task.training_information.enrollment_required


def _info(state: StateDep, record: TokenRecord) -> TokenInfo:
    return TokenInfo(
        **record.public(), connections=state.enrollment.live_connections(record.token_id)
    )


_ADMIN_REFUSALS = responses(401, 403, 404)


@router.post(
    "/tasks/{taskID}/tokens",
    summary="Issue a participant token for a task that requires enrollment",
    status_code=201,
    response_model=IssuedToken,
    responses={**_ADMIN_REFUSALS, **responses(400, 409)},
)
async def issue_token(
    state: StateDep, task_id: TaskIDParam, body: TokenRequest | None = None
) -> IssuedToken:
    """A new token (shown once); 409 when the task is open (it needs none)."""
    if not _known(state, task_id):
        raise HTTPException(
            409,
            detail=f"task {task_id!r} is open (trainingInformation.requiresEnrollment is not "
            "true): it needs no participant tokens",
        )
    label = body.label if body is not None else ""
    record, token = await asyncio.to_thread(state.enrollment.tokens.create, task_id, label)
    log.info("task %s: participant token %s issued (%s)", task_id, record.token_id,
             safe_text(label) or "no label")  # fmt: skip
    return IssuedToken(**_info(state, record).model_dump(), token=token)


@router.get(
    "/tasks/{taskID}/tokens",
    summary="The participant tokens of a task",
    response_model=TokenList,
    responses=_ADMIN_REFUSALS,
)
async def list_tokens(state: StateDep, task_id: TaskIDParam) -> TokenList:
    """Every token issued for the task, revoked ones included, by their public ids."""
    _known(state, task_id)
    records = state.enrollment.tokens.tokens(task_id)
    return TokenList(taskID=task_id, tokens=[_info(state, record) for record in records])


@router.delete(
    "/tasks/{taskID}/tokens/{tokenID}",
    summary="Revoke a participant token",
    response_model=TokenInfo,
    responses=_ADMIN_REFUSALS,
)
async def revoke_token(
    state: StateDep,
    task_id: TaskIDParam,
    token_id: Annotated[str, Path(alias="tokenID", description="the token's public id")],
) -> TokenInfo:
    """Refuse the token from now on and close its live connections (1008); idempotent."""
    _known(state, task_id)
    try:
        record = await asyncio.to_thread(state.enrollment.tokens.revoke, task_id, token_id)
    except EnrollmentError as error:
        raise HTTPException(404, detail=str(error)) from None
    closed = state.enrollment.closed_by_revocation(record.token_id)
    log.info("task %s: participant token %s revoked, %d live connections closed",
             task_id, record.token_id, closed)  # fmt: skip
    return _info(state, record)

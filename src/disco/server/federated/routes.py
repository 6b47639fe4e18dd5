"""WebSocket routes of federated learning, under both spellings DISCO 2.1.1 clients dial, and the
router lifespan that runs the federated hub (CONTRACTS.md, "disco.server").

`/federated/{taskID}` without a clientID is deliberately not served: the newer DISCO protocol
uses that path with other message codes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, WebSocket

from disco.server.federated.handler import serve_federated
from disco.server.federated.hub import FederatedHub


@asynccontextmanager
async def hub_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Create the hub once the app's lifespan loaded the store; close it before the store goes."""
    hub = FederatedHub(app.state.store, app.state.settings)
    await hub.start()
    app.state.federated = hub
    try:
        yield
    finally:
        app.state.federated = None  # new connections are told the service is not running
        await hub.close()


router = APIRouter(lifespan=hub_lifespan)


def _hub(websocket: WebSocket) -> FederatedHub | None:
    """The app's hub, None while the server state is not (or no longer) set up."""
    hub = getattr(websocket.app.state, "federated", None)
    return hub if isinstance(hub, FederatedHub) else None


@router.websocket("/federated/{task_id}/{client_id}")
async def federated(websocket: WebSocket, task_id: str, client_id: str) -> None:
    """README spelling; `client_id` identifies the participant across its messages."""
    await serve_federated(websocket, task_id, client_id, _hub(websocket))


@router.websocket("/feai/{task_id}/{client_id}")
async def feai(websocket: WebSocket, task_id: str, client_id: str) -> None:
    """The spelling the 2.1.1 JS client dials (its clientID is a UUID it makes)."""
    await serve_federated(websocket, task_id, client_id, _hub(websocket))

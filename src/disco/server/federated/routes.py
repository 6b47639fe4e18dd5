"""WebSocket routes of federated learning, under both spellings DISCO 2.1.1 clients dial, and the
router lifespan that runs the federated hub (see `disco.server.state`).

`/federated/{taskID}` without a clientID is deliberately not served: the newer DISCO protocol
uses that path with other message codes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, WebSocket

from disco.server.access import GateDep
from disco.server.federated.handler import serve_federated
from disco.server.federated.hub import FederatedHub
from disco.server.state import StateDep, running_hub, server_state


@asynccontextmanager
async def hub_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the hub once the app's lifespan loaded the store; close it before the store goes."""
    state = server_state(app)

    def publish(hub: FederatedHub | None) -> None:
        state.federated = hub

    hub = FederatedHub(
        state.store, state.settings, on_change=state.events.notify, metrics=state.metrics
    )
    async with running_hub(hub, publish):
        yield


router = APIRouter(lifespan=hub_lifespan)


async def federated_hub(state: StateDep) -> FederatedHub | None:
    """The running hub, None while the server does not (or no longer) run it (`async`: no
    thread hop, see `disco.server.state`)."""
    return state.federated


HubDep = Annotated[FederatedHub | None, Depends(federated_hub)]


@router.websocket("/federated/{task_id}/{client_id}")
async def federated(
    websocket: WebSocket, task_id: str, client_id: str, hub: HubDep, gate: GateDep
) -> None:
    """README spelling; `client_id` identifies the participant across its messages."""
    await serve_federated(websocket, task_id, client_id, hub, gate)


@router.websocket("/feai/{task_id}/{client_id}")
async def feai(
    websocket: WebSocket, task_id: str, client_id: str, hub: HubDep, gate: GateDep
) -> None:
    """The spelling the 2.1.1 JS client dials (its clientID is a UUID it makes)."""
    await serve_federated(websocket, task_id, client_id, hub, gate)

"""WebSocket routes of decentralized signaling, under both spellings DISCO clients dial, and the
router lifespan that runs the signaling hub (see `disco.server.state`).

`/decentralized/{taskID}` without a clientID is deliberately not served: the newer DISCO protocol
uses that path with other message codes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, WebSocket

from disco.server.access import GateDep
from disco.server.decentralized.handler import PEER_UPDATES_PARAMETER, serve_peer
from disco.server.decentralized.hub import SignalingHub
from disco.server.state import StateDep, running_hub, server_state


@asynccontextmanager
async def hub_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the hub once the app's lifespan loaded the store; close it before the store goes."""
    state = server_state(app)

    def publish(hub: SignalingHub | None) -> None:
        state.decentralized = hub

    hub = SignalingHub(
        state.store, state.settings, on_change=state.events.notify, metrics=state.metrics
    )
    async with running_hub(hub, publish):
        yield


router = APIRouter(lifespan=hub_lifespan)


async def signaling_hub(state: StateDep) -> SignalingHub | None:
    """The running hub, None while the server does not (or no longer) run it (`async`: no
    thread hop, see `disco.server.state`)."""
    return state.decentralized


HubDep = Annotated[SignalingHub | None, Depends(signaling_hub)]
PeerUpdates = Annotated[str | None, Query(alias=PEER_UPDATES_PARAMETER)]
"""The `?peerUpdates=` opt-in, unparsed (the handler refuses bad values with a reason)."""


@router.websocket("/decentralized/{task_id}/{client_id}")
async def decentralized(
    websocket: WebSocket,
    task_id: str,
    client_id: str,
    hub: HubDep,
    gate: GateDep,
    peer_updates: PeerUpdates = None,
) -> None:
    """README spelling; the server assigns the peer id, so `client_id` only binds the
    connection to its participant token on a task that requires enrollment."""
    await serve_peer(websocket, task_id, hub, peer_updates, gate, client_id)


@router.websocket("/deai/{task_id}")
async def deai(
    websocket: WebSocket,
    task_id: str,
    hub: HubDep,
    gate: GateDep,
    peer_updates: PeerUpdates = None,
) -> None:
    """The spelling the 2.1.1 JS client dials."""
    await serve_peer(websocket, task_id, hub, peer_updates, gate)

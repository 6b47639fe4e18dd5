"""WebSocket routes of decentralized signaling, under both spellings DISCO clients dial, and the
router lifespan that runs the signaling hub (CONTRACTS.md, "disco.server").

`/decentralized/{taskID}` without a clientID is deliberately not served: the newer DISCO protocol
uses that path with other message codes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, WebSocket

from disco.server.decentralized.handler import PEER_UPDATES_PARAMETER, serve_peer
from disco.server.decentralized.hub import SignalingHub


@asynccontextmanager
async def hub_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Create the hub once the app's lifespan loaded the store; close it before the store goes."""
    hub = SignalingHub(app.state.store, app.state.settings)
    await hub.start()
    app.state.decentralized = hub
    try:
        yield
    finally:
        app.state.decentralized = None  # new connections are told the service is not running
        await hub.close()


router = APIRouter(lifespan=hub_lifespan)


def _hub(websocket: WebSocket) -> SignalingHub | None:
    """The app's hub, None while the server state is not (or no longer) set up."""
    hub = getattr(websocket.app.state, "decentralized", None)
    return hub if isinstance(hub, SignalingHub) else None


def _peer_updates(websocket: WebSocket) -> str | None:
    """The `?peerUpdates=` opt-in, unparsed (the handler refuses bad values with a reason)."""
    return websocket.query_params.get(PEER_UPDATES_PARAMETER)


@router.websocket("/decentralized/{task_id}/{client_id}")
async def decentralized(websocket: WebSocket, task_id: str, client_id: str) -> None:
    """README spelling; the server assigns the peer id, so `client_id` is not used."""
    await serve_peer(websocket, task_id, _hub(websocket), _peer_updates(websocket))


@router.websocket("/deai/{task_id}")
async def deai(websocket: WebSocket, task_id: str) -> None:
    """The spelling the 2.1.1 JS client dials."""
    await serve_peer(websocket, task_id, _hub(websocket), _peer_updates(websocket))

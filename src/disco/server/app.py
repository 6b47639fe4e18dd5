"""The ASGI application factory: `uvicorn disco.server.app:create_app --factory`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from disco import __version__
from disco.server import http
from disco.server.access import TokenPathMiddleware
from disco.server.decentralized import routes as decentralized_routes
from disco.server.federated import routes as federated_routes
from disco.server.limits import ClientLimits
from disco.server.metrics import ServerMetrics, TrafficMiddleware
from disco.server.receive_budget import ReceiveBudget
from disco.server.settings import Settings
from disco.server.state import start_state, stop_state

log = logging.getLogger("disco.server")


ROUTERS: Final = (
    http.tokens_router,  # before /tasks/{taskID}/{fileName}
    http.router,
    http.live_router,
    http.metrics_router,
    http.webapp_router,
    federated_routes.router,
    decentralized_routes.router,
)
"""The server's routers, in matching order."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; its state (settings, task store, hubs) is a typed `ServerState`.

    Start-up order (`disco.server.state`): this app's lifespan loads the task store, then
    enters the lifespans of the federated and decentralized routers, in that order, which start
    their hubs; shut-down runs in reverse.

    The routers' routes are added to the app's router as they are (`ROUTERS`), not through
    `include_router`: FastAPI builds the routes of an included router a second time, lazily,
    inside the first request that walks them (dependants, parameter and response adapters: about
    20 ms of the first `GET /tasks` here), while the routes the routers hold are complete already
    (router-level dependencies included). No router sets a prefix, tags or include-time options.
    """
    settings = settings or Settings()
    # The budget the WebSocket protocol reserves big frames from (`runner.uvicorn_config` takes
    # it from `app.state`), created here so that the app's metrics report it.
    receive_budget = ReceiveBudget(settings.ws_receive_budget_bytes)
    metrics = ServerMetrics(receive_budget)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await start_state(app, settings, metrics)
        try:
            async with (
                federated_routes.router.lifespan_context(app),
                decentralized_routes.router.lifespan_context(app),
            ):
                yield
        finally:
            await stop_state(app)

    app = FastAPI(
        title="disco",
        version=__version__,
        summary="DISCO server: tasks, federated aggregation, decentralized signaling",
        lifespan=lifespan,
        docs_url=None,  # served by http.install_docs, without a CDN
        redoc_url=None,
    )
    app.state.receive_budget = receive_budget
    # Models and tasks are public: any web page may read them (training data never comes here).
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "HEAD", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["ETag"],
    )
    app.add_middleware(TrafficMiddleware, metrics=metrics)
    app.add_middleware(
        ClientLimits,
        max_connections=settings.max_connections_per_ip,
        rate_per_s=settings.requests_per_ip_per_s,
        burst=settings.request_burst_per_ip,
    )
    # Outermost: every later layer, and uvicorn's access log, sees the path without a token.
    app.add_middleware(TokenPathMiddleware)
    http.install_error_handlers(app)
    for router in ROUTERS:
        app.router.routes.extend(router.routes)
    http.install_openapi(app)
    http.install_docs(app)
    return app

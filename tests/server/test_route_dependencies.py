"""How the app serves its routes: every endpoint and dependency on the event loop (FastAPI runs
a plain `def` one in anyio's thread pool, a thread hop per request, and the import of anyio's
backend on the first one, for what is an attribute read), and each route as its router built it
(not rebuilt by FastAPI inside the first request)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import BaseRoute

from disco.server.app import ROUTERS, create_app
from disco.server.auth import require_admin_token
from disco.server.settings import Settings


def _routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The app's routes, included routers walked through."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)
        else:
            yield route


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _runs_on_the_loop(call: Callable[..., Any]) -> bool:
    """What FastAPI awaits directly: a coroutine function, or an object whose __call__ is one
    (its security schemes)."""
    target = call if inspect.isroutine(call) else getattr(call, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(target)


def test_no_route_runs_a_dependency_or_endpoint_in_the_thread_pool(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    checked: list[str] = []
    threaded: list[str] = []
    for route in _routes(app.routes):
        if not isinstance(route, APIRoute | APIWebSocketRoute):
            continue
        checked.append(route.path)
        for call in _calls(route.dependant):
            if not _runs_on_the_loop(call):
                threaded.append(f"{route.path}: {getattr(call, '__qualname__', call)}")
    # The routes the 2.1.1 client uses are among those checked.
    assert {"/tasks", "/tasks/{taskID}/model.json", "/feai/{task_id}/{client_id}"} <= set(checked)
    assert threaded == []


def test_every_route_is_served_as_the_router_built_it(tmp_path: Path) -> None:
    """The routers' routes are on the app itself, not behind an included router that FastAPI
    would build again inside the first request; each route keeps its router's dependencies."""
    app = create_app(Settings(data_dir=tmp_path))
    assert not [route for route in app.routes if hasattr(route, "original_router")]
    served = {id(route) for route in app.routes}
    for router in ROUTERS:
        assert router.routes and all(id(route) in served for route in router.routes)
    tokens = next(r for r in app.routes if getattr(r, "path", "") == "/tasks/{taskID}/tokens")
    assert isinstance(tokens, APIRoute)
    assert require_admin_token in [sub.call for sub in tokens.dependant.dependencies]

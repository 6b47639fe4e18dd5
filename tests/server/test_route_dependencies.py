"""Every route's endpoint and dependencies run on the event loop: FastAPI runs a plain `def`
one in anyio's thread pool, a thread hop per request (and the import of anyio's backend on the
first one) for what is an attribute read."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import BaseRoute

from disco.server.app import create_app
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

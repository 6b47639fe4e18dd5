"""Fixtures shared by the whole suite: server settings, in-process apps and a live server.

- `settings`: server Settings on a fresh tmp data dir, port 0 (any free port), default tasks on,
  log level warning. Tests needing other values use `make_settings(**overrides)`.
- `app`: `create_app(settings)` (lifespan NOT run: no store yet).
- `app_client`: starlette TestClient on `app`, lifespan run (store loaded, hubs started).
- `async_client`: httpx.AsyncClient over ASGITransport on `app`, lifespan run; base URL
  `http://testserver`.
- `live_server`: base URL (`http://127.0.0.1:<port>`, no trailing slash) of `settings` served by
  uvicorn in a thread over real loopback; stopped at teardown.

The suite runs on several pytest-xdist workers (`scripts/test.sh`: `-n ... --dist loadgroup
--no-loadscope-reorder`); `pytest_collection_modifyitems` below decides what runs together.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from disco.server.app import create_app
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings

with warnings.catch_warnings():
    # starlette deprecates its httpx-based TestClient in favour of httpx2 (not installed here).
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from starlette.testclient import TestClient

MakeSettings = Callable[..., Settings]

# Longest first (xdist hands out work in collection order): a long test started last would keep
# one worker busy after the others ran out of work.
_HEAVY_FIRST = ("slow", "browser", "interop")


def _shares_a_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a fixture set up once per module or class (a server, a browser,
    built venvs): such tests stay on one worker, so that it is set up once."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        definitions[-1].scope in ("module", "class", "package")
        for definitions in info.name2fixturedefs.values()
        if definitions
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist: one group per module whose tests share a fixture, heavy tests first."""

    def rank(item: pytest.Item) -> int:
        marks = [i for i, name in enumerate(_HEAVY_FIRST) if item.get_closest_marker(name)]
        return marks[0] if marks else len(_HEAVY_FIRST)

    for item in items:
        if _shares_a_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    # Keep each module's tests together in the order (a group is one unit of work for xdist).
    first_rank: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        first_rank[module] = min(first_rank.get(module, len(_HEAVY_FIRST)), rank(item))
    items.sort(key=lambda item: first_rank[item.nodeid.split("::")[0]])


@pytest.fixture
def make_settings(tmp_path: Path) -> MakeSettings:
    """Settings on a tmp data dir (the same one for every call of a test), port 0, quiet logs."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "disco-data",
            "port": 0,
            "log_level": "warning",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    """Default server settings on a fresh data dir."""
    return make_settings()


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    """The app for `settings`; its lifespan runs only inside a client fixture or server."""
    return create_app(settings)


@pytest.fixture
def app_client(app: FastAPI) -> Iterator[TestClient]:
    """A synchronous starlette TestClient with the app's lifespan running."""
    with TestClient(app) as client:
        yield client


@pytest.fixture
async def async_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx.AsyncClient calling the app in-process, with the app's lifespan running."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client,
    ):
        yield client


@pytest.fixture
def live_server(settings: Settings) -> Iterator[str]:
    """Base URL of `settings` served over real loopback in a thread."""
    with serve_in_thread(settings) as url:
        yield url

"""Fixtures shared by the whole suite: server settings, in-process apps and a live server.

- `settings`: server Settings on a fresh tmp data dir, port 0 (any free port), default tasks on,
  log level warning. Tests needing other values use `make_settings(**overrides)`.
- `app`: `create_app(settings)` (lifespan NOT run: no store yet).
- `app_client`: starlette TestClient on `app`, lifespan run (store loaded, hubs started).
- `async_client`: httpx.AsyncClient over ASGITransport on `app`, lifespan run; base URL
  `http://testserver`.
- `live_server`: base URL (`http://127.0.0.1:<port>`, no trailing slash) of `settings` served by
  uvicorn in a thread over real loopback; stopped at teardown.
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

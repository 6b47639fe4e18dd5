"""A server on 127.0.0.1 for a test module, with the settings most federated tests share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from disco.server.runner import serve_in_thread
from disco.server.settings import Settings


@contextmanager
def loopback_server(factory: pytest.TempPathFactory, **overrides: Any) -> Iterator[str]:
    """Serve a fresh data folder (default tasks built, 60 s round deadline, warnings only, any
    `overrides` on top) in a thread; the base URL; stopped on exit."""
    chosen: dict[str, Any] = {"round_deadline_s": 60.0, "log_level": "warning"} | overrides
    with serve_in_thread(Settings(data_dir=factory.mktemp("data"), port=0, **chosen)) as url:
        yield url

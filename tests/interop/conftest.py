"""Fixtures of the interop tests: the npm client directory and `disco-server` subprocesses.

- `node_client_dir`: tests/interop/node (skips the test when node or its node_modules is missing);
- `interop_server_factory(*extra_args)`: start another server (own data dir) with extra CLI flags;
  returns its `ServerProcess` (`.url`, `.data_dir`, `.log()`); all are stopped at teardown;
- `interop_server`: base URL (no trailing slash) of a fresh server with a short round deadline;
- `shared_interop_server`: the same, one per test module (for tests that only add new tasks).

Every test collected here that carries `@pytest.mark.interop` is skipped, with the reason, when node
or the npm client is not installed (`./scripts/test.sh` installs them, so CI runs them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from interop.harness import DEFAULT_SERVER_ARGS, NODE_DIR, ServerProcess, node_missing_reason


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip interop tests when the JS client cannot run, instead of failing on a missing `node`."""
    reason = node_missing_reason()
    if reason is None:
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason=f"interop: {reason}")
    for item in items:
        if item.get_closest_marker("interop") is not None and here in item.path.parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def node_client_dir() -> Path:
    """Directory of the node scripts and the installed @epfml/discojs-node client."""
    reason = node_missing_reason()
    if reason is not None:
        pytest.skip(f"interop: {reason}")
    return NODE_DIR


@pytest.fixture
def interop_server_factory(
    tmp_path: Path, node_client_dir: Path
) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers on demand (each with its own data dir); all are stopped at teardown."""
    started: list[ServerProcess] = []

    def start(*extra_args: str) -> ServerProcess:
        server = ServerProcess(tmp_path / f"server-{len(started)}", extra_args=extra_args)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def interop_server(interop_server_factory: Callable[..., ServerProcess]) -> str:
    """Base URL of a fresh server (default tasks, short round deadline, tmp data dir)."""
    return interop_server_factory(*DEFAULT_SERVER_ARGS).url


@pytest.fixture(scope="module")
def shared_interop_server(
    tmp_path_factory: pytest.TempPathFactory, node_client_dir: Path
) -> Iterator[str]:
    """One server for a whole module: cheaper when tests do not depend on round state."""
    server = ServerProcess(tmp_path_factory.mktemp("shared") / "server", DEFAULT_SERVER_ARGS)
    try:
        yield server.start()
    finally:
        server.stop()


# Fixtures of the decentralized interop tests, shared by the JS-only and mixed tests.
from interop.p2p import decentralized_server, loopback_shim  # noqa: E402

__all__ = ["decentralized_server", "loopback_shim"]

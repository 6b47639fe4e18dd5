"""Drive the `disco` command as a subprocess (as a user would), against in-test servers.

- `disco`: run `.venv/bin/disco ARGS` in a tmp cwd until it exits (bounded by its progress:
  `support.progress`); CompletedProcess.
- `start_disco`: the same as a Popen (for Ctrl-C tests); killed at teardown if still running.
- `served`: (base URL, app) of a server in a thread, for tests that look at the server's state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from cli.helpers import RunDisco, StartDisco
from disco.server.app import create_app
from disco.server.runner import base_url, bound_port, uvicorn_config
from disco.server.settings import Settings
from support.progress import Watch

DISCO = Path(sys.executable).with_name("disco")


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TTY_INTERACTIVE", None)
    env.pop("FORCE_COLOR", None)
    env["COLUMNS"] = "100"
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


@pytest.fixture
def disco(start_disco: StartDisco) -> RunDisco:
    """Run the CLI to completion; a child that stalls fails the test (and is killed)."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        child = start_disco(*args)
        [(stdout, stderr)] = Watch([child]).wait_for_exit(f"disco {' '.join(args)}")
        return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)

    return run


def _interruptible() -> None:
    """In the child before exec: Ctrl-C (SIGINT) acts as in a terminal.

    A suite started in the background by a non-interactive shell (`cmd &`, nohup) inherits
    SIGINT ignored; a child then ignores it too (asyncio installs no handler for an ignored
    SIGINT) and the Ctrl-C tests would wait on a child that cannot hear them.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def start_disco(workdir: Path) -> Iterator[StartDisco]:
    """Start the CLI in the background; every child still running at teardown is killed."""
    children: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [str(DISCO), *args],
            cwd=workdir,
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_interruptible,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[str, FastAPI]]:
    """A real loopback server in a thread, with its app (to look at hub state)."""
    app = create_app(settings)
    server = uvicorn.Server(uvicorn_config(app, settings))
    thread = threading.Thread(target=server.run, name="cli-test-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "the server thread stopped during start-up"
            assert time.monotonic() < deadline, "the server did not start in time"
            time.sleep(0.01)
        yield base_url(settings.host, bound_port(server)), app
    finally:
        server.should_exit = True
        thread.join(timeout=10)

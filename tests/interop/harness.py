"""Drive the real DISCO JavaScript client against a `disco-server` subprocess.

Two pieces, shared by every interop test module:

- node scripts of `tests/interop/node` print one JSON line on stdout (logs on stderr) and exit
  0 (success), 1 (error) or 2 (their own overall timeout); `run_node` / `run_node_async` run one,
  bounded in time, and return that line parsed;
- `ServerProcess` runs `disco-server` exactly as a user would (the console script of this
  virtualenv, CLI flags only) on a free loopback port with its own data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from support.node import NODE_DIR, node_missing_reason
from support.progress import MIN_CPU_S, cpu_seconds

__all__ = [
    "DEFAULT_SERVER_ARGS",
    "NODE_DIR",
    "ROUND_DEADLINE_S",
    "Digest",
    "NodeScriptError",
    "ServerProcess",
    "f32_sha256",
    "get_json",
    "http_get",
    "node_missing_reason",
    "node_weights",
    "requires_node",
    "run_node",
    "run_node_async",
    "served_layers_weights",
    "served_tensors",
]

STDERR_TAIL = 6000
START_LIMIT_S = 180.0  # a server start in all (see `ServerProcess._wait_ready`)

# A round aggregates this long after its quorum at the latest: short, so tests are quick, but long
# enough for two real clients on a loaded 2-core machine to both post into the same round.
ROUND_DEADLINE_S = 2.0
DEFAULT_SERVER_ARGS: tuple[str, ...] = ("--round-deadline", str(ROUND_DEADLINE_S))

requires_node = pytest.mark.skipif(
    node_missing_reason() is not None, reason=node_missing_reason() or ""
)


class NodeScriptError(AssertionError):
    """A node script failed, timed out or printed no JSON; carries its stderr tail."""


def _node_command(script: str, args: Sequence[str]) -> list[str]:
    return ["node", str(NODE_DIR / script), *args]


def _parse_result(script: str, returncode: int, stdout: bytes, stderr: bytes) -> Any:
    """The last stdout line as JSON, or NodeScriptError naming the exit code and stderr."""
    err = stderr.decode(errors="replace")[-STDERR_TAIL:]
    if returncode != 0:
        meaning = {1: "error", 2: "script timeout"}.get(returncode, "killed or crashed")
        raise NodeScriptError(f"node {script} exited {returncode} ({meaning}); stderr:\n{err}")
    lines = stdout.decode(errors="replace").strip().splitlines()
    if not lines:
        raise NodeScriptError(f"node {script} printed no result; stderr:\n{err}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise NodeScriptError(
            f"node {script}: last line is not JSON ({exc}): {lines[-1][:500]}"
        ) from None


def run_node(script: str, *args: str, timeout: float = 60.0) -> Any:
    """Run `node tests/interop/node/<script> args...`; return its result line parsed as JSON."""
    try:
        done = subprocess.run(
            _node_command(script, args),
            cwd=NODE_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it already
        err = (exc.stderr or b"").decode(errors="replace")[-STDERR_TAIL:]
        raise NodeScriptError(
            f"node {script} still running after {timeout} s; stderr:\n{err}"
        ) from None
    return _parse_result(script, done.returncode, done.stdout, done.stderr)


async def run_node_async(script: str, *args: str, timeout: float = 60.0) -> Any:  # noqa: ASYNC109
    """`run_node` without blocking the event loop: gather several to run clients concurrently.

    `timeout` bounds the child process (killed when it runs out), like `run_node`'s.
    """
    proc = await asyncio.create_subprocess_exec(
        *_node_command(script, args),
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        _, stderr = await proc.communicate()
        err = stderr.decode(errors="replace")[-STDERR_TAIL:]
        raise NodeScriptError(
            f"node {script} still running after {timeout} s; stderr:\n{err}"
        ) from None
    finally:
        if proc.returncode is None:  # cancelled (e.g. a sibling in gather failed)
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return _parse_result(script, proc.returncode, stdout, stderr)


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """(status, body) of a GET, 4xx/5xx included: tests assert on them."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def f32_sha256(data: bytes) -> str:
    """sha256 hex of raw float32 bytes: what the node scripts report per tensor."""
    return hashlib.sha256(data).hexdigest()


Digest = dict[str, tuple[tuple[int, ...], str]]  # weight name -> (shape, sha256 of float32 bytes)


def get_json(url: str) -> Any:
    """GET `url` and parse JSON, asserting a 200."""
    status, body = http_get(url)
    assert status == 200, f"GET {url} -> {status}: {body[:300]!r}"
    return json.loads(body)


def served_tensors(model_url: str) -> list[tuple[str, tuple[int, ...], bytes]]:
    """(name, shape, float32 bytes) of every weight of a served TF.js layers model, in manifest
    order, read from the weight files its model.json names."""
    model_json = get_json(model_url)
    assert "modelTopology" in model_json, f"{model_url} is not a TF.js layers model.json"
    tensors: list[tuple[str, tuple[int, ...], bytes]] = []
    for group in model_json["weightsManifest"]:
        data = b""
        for path in group["paths"]:
            status, body = http_get(urljoin(model_url, path))
            assert status == 200, f"GET weight file {path} -> {status}: {body[:300]!r}"
            data += body
        offset = 0
        for spec in group["weights"]:
            assert spec.get("dtype", "float32") == "float32", spec
            shape = tuple(spec["shape"])
            size = 4 * math.prod(shape)
            tensors.append((spec["name"], shape, data[offset : offset + size]))
            offset += size
        assert offset == len(data), f"{group['paths']}: {len(data)} bytes, manifest says {offset}"
    return tensors


def served_layers_weights(model_url: str) -> Digest:
    """Digest of the weight files a TF.js layers model.json names, as the server serves them."""
    return {name: (shape, f32_sha256(data)) for name, shape, data in served_tensors(model_url)}


def node_weights(described: dict[str, Any]) -> Digest:
    """Digest reported by a node script (`common.weightsDigest` with names)."""
    return {t["name"]: (tuple(t["shape"]), t["sha256"]) for t in described["tensors"]}


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_executable() -> Path:
    """The `disco-server` console script next to the running interpreter (the project venv)."""
    return Path(sys.executable).parent / "disco-server"


def server_environment() -> dict[str, str]:
    """This process's environment without `DISCO_*` settings: the CLI flags alone configure it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISCO_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


@dataclass
class ServerProcess:
    """`disco-server` in a subprocess on 127.0.0.1; `start()` returns once GET / answers."""

    data_dir: Path
    extra_args: Sequence[str] = ()
    start_timeout: float = 30.0
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-server.log"

    def command(self) -> list[str]:
        return [
            str(server_executable()),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--data-dir", str(self.data_dir),
            "--log-level", "warning",
            *self.extra_args,
        ]  # fmt: skip

    def log(self) -> str:
        """The server's combined output so far (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-STDERR_TAIL:]
        except FileNotFoundError:
            return ""

    def start(self, attempts: int = 3) -> str:
        """Start on a free port (retrying if it was taken meanwhile); return the base URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=server_environment(),
                )
            if self._wait_ready():
                return self.url
            if self.process.poll() is None or attempt == attempts - 1:
                self.stop()
                raise RuntimeError(f"disco-server did not start: {self.command()}\n{self.log()}")
        raise AssertionError("unreachable")

    def _wait_ready(self) -> bool:
        """True once GET / answers (any status); False if the process died or stalled first.

        A loaded machine may need a minute for the server's imports alone, so `start_timeout`
        bounds a stretch in which the process used less than `MIN_CPU_S` of CPU (stuck, not
        slow); `START_LIMIT_S` bounds the whole start.
        """
        assert self.process is not None
        started = progress_at = time.monotonic()
        cpu_at_progress = 0.0
        while True:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                http_get(f"{self.url}/", timeout=1.0)
                return True
            now = time.monotonic()
            used = cpu_seconds(self.process.pid) or 0.0
            if used - cpu_at_progress >= MIN_CPU_S:
                cpu_at_progress, progress_at = used, now
            if now - progress_at > self.start_timeout or now - started > START_LIMIT_S:
                return False
            time.sleep(0.1)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=grace)
        return process.returncode

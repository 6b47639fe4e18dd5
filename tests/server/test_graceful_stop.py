"""SIGTERM stops `disco-server` gracefully: no new connections, a round whose last update just
arrived is aggregated and persisted, WebSockets are closed with 1001 and a reason, exit status 0;
a restart resumes at the round (and model) the server stopped at."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from disco.protocol.framing import unpack_message
from disco.protocol.weights import encode_native
from disco.server.runner import free_port
from support.robust_ws import FedClient, filled, push_task, small_model

START_TIMEOUT_S = 60.0


@contextmanager
def disco_server(data_dir: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    """`disco-server` in a subprocess, ready to serve; killed if the test did not stop it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "disco.cli.server", "--port", str(port), "--data-dir",
         str(data_dir), "--no-default-tasks", "--round-deadline", "60", "--log-level", "info"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for _ in range(int(START_TIMEOUT_S / 0.1)):
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/tasks", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("disco-server did not start")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


async def closing_frames(client: FedClient) -> tuple[list[dict[str, object]], int | None, str]:
    """The frames a client still gets, then the close code and reason the server sent."""
    frames: list[dict[str, object]] = []
    try:
        for _ in range(10):
            frame = await asyncio.wait_for(client.ws.recv(), 30)
            assert isinstance(frame, bytes)
            frames.append(unpack_message(frame))
    except ConnectionClosed as closed:
        if closed.rcvd is None:
            return frames, None, ""
        return frames, closed.rcvd.code, closed.rcvd.reason
    raise AssertionError("the server did not close the connection")


@pytest.mark.slow
async def test_sigterm_finishes_the_round_and_a_restart_resumes_it(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with disco_server(tmp_path, port) as server:
        # Big enough that aggregating and persisting take a moment (and leave the event loop).
        task = await push_task(base, model=small_model(inputs=400, units=1000),
                               minNbOfParticipants=2)  # fmt: skip
        a, b = await FedClient.open(base, task), await FedClient.open(base, task)
        round_, weights = await a.latest()
        shapes = [tuple(w.shape) for w in weights]
        assert (await a.post(filled(shapes, 1.0), round_))["status"] == "accepted"
        # b's update completes the round; the stop is requested while it is being handled.
        await b.send({"type": 8, "weights": encode_native(filled(shapes, 3.0)), "round": round_})
        server.send_signal(signal.SIGTERM)
        (_, a_code, a_reason), (b_frames, b_code, b_reason) = await asyncio.gather(
            closing_frames(a), closing_frames(b)
        )
        _, stderr = server.communicate(timeout=60)
        assert server.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
    assert (a_code, a_reason) == (1001, "server shutting down")
    assert (b_code, b_reason) == (1001, "server shutting down")
    acknowledged = any(f.get("type") == 8 and f.get("status") == "accepted" for f in b_frames)

    with disco_server(tmp_path, port) as server:
        client = await FedClient.open(base, task)
        resumed, model = await client.latest()
        await client.close()
        async with httpx.AsyncClient() as http:
            status = (await http.get(f"{base}/tasks/{task}/status")).json()
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
        assert server.returncode == 0
    assert status["round"] == resumed
    # Nothing lost, nothing half-done: an acknowledged update is in the stored model, and the
    # model is exactly the one of its round (the mean of 1 and 3, or the initial one).
    if acknowledged:
        assert resumed == round_ + 1
    assert resumed in (round_, round_ + 1)
    expected = filled(shapes, 2.0) if resumed == round_ + 1 else weights
    for got, want in zip(model, expected, strict=True):
        np.testing.assert_array_equal(got, want)

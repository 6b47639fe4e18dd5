"""The container image (Dockerfile) runs the server: two real 2.1.1 clients train titanic on it.

Built with podman from this checkout by `scripts/container.sh build`, on a local equivalent of
debian:bookworm-slim (built once from Debian's packages and kept: it is the only thing this test
leaves behind; the image, containers and volume it creates are removed). The container runs with
host networking on a free port, its data directory in a named volume.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interop.datasets import good_shards
from interop.harness import ROUND_DEADLINE_S, free_port, get_json, http_get
from interop.test_federated_interop import adopted, served_model, settle, train

pytestmark = [pytest.mark.slow, pytest.mark.interop, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "container.sh"
BUILD_TIMEOUT_S = 1200.0
START_TIMEOUT_S = 60.0


def podman(*args: str, timeout: float = 120.0, check: bool = True) -> str:
    """Run podman through scripts/container.sh (this machine's podman settings); its stdout."""
    done = subprocess.run(
        [str(SCRIPT), "podman", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout.strip()


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The image built from this checkout; removed afterwards."""
    tag = f"localhost/disco-test:{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    done = subprocess.run(
        [str(SCRIPT), "build", tag],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    try:
        assert done.returncode == 0, f"image build failed:\n{done.stderr[-6000:]}"
        print(f"image {tag} built in {time.monotonic() - started:.0f} s")
        yield tag
    finally:
        podman("rmi", "--force", tag, check=False)


class Container:
    """One `podman run -d` of the image with host networking; removed by `remove()`."""

    def __init__(self, image: str, volume: str, port: int) -> None:
        self.name = f"disco-test-{uuid.uuid4().hex[:12]}"
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        podman(
            "run", "--detach", "--name", self.name, "--network", "host",
            # `podman healthcheck run` below checks the HEALTHCHECK; no systemd timers here.
            "--health-interval", "disable",
            "--volume", f"{volume}:/var/lib/disco",
            "--env", f"DISCO_PORT={port}",
            "--env", f"DISCO_ROUND_DEADLINE={ROUND_DEADLINE_S}",
            "--env", "DISCO_LOG_LEVEL=warning",
            image,
        )  # fmt: skip

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if http_get(f"{self.url}/", timeout=1.0)[0] == 200:
                    return
            except OSError:
                pass
            state = podman("inspect", "--format", "{{.State.Status}}", self.name)
            if state not in ("created", "running"):
                break
            time.sleep(0.3)
        raise AssertionError(f"the container did not serve on {self.url}:\n{self.logs()}")

    def logs(self) -> str:
        return podman("logs", self.name, check=False)[-6000:]

    def stop(self) -> int:
        """`podman stop` (SIGTERM, then SIGKILL after 30 s); the server's exit code."""
        podman("stop", "--time", "30", self.name, timeout=60)
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name))

    def remove(self) -> None:
        podman("rm", "--force", "--volumes", "--time", "5", self.name, check=False)


@pytest.fixture
def volume() -> Iterator[str]:
    name = f"disco-test-data-{uuid.uuid4().hex[:12]}"
    podman("volume", "create", name)
    try:
        yield name
    finally:
        podman("volume", "rm", "--force", name, check=False)


def image_config(image: str) -> dict[str, Any]:
    described = json.loads(podman("image", "inspect", image))[0]
    config: dict[str, Any] = described["Config"]
    print(f"image size: {described['Size'] / 1e6:.0f} MB")
    return config


def test_image_trains_titanic_with_two_js_clients(
    image: str, volume: str, tmp_path: Path
) -> None:
    config = image_config(image)
    assert config["User"] == "disco"
    assert "8080/tcp" in config["ExposedPorts"]
    assert "/var/lib/disco" in config["Volumes"]
    assert config["Entrypoint"] == ["disco-server"]
    assert "DISCO_HOST=0.0.0.0" in config["Env"]

    containers: list[Container] = []
    try:
        first = Container(image, volume, free_port())
        containers.append(first)
        first.wait_ready()
        # The image's HEALTHCHECK passes, and the server does not run as root.
        podman("healthcheck", "run", first.name)
        assert podman("exec", first.name, "id", "-u") != "0"
        if (ROOT / "web" / "package.json").is_file():  # the web app ships in the image
            status_code, page = http_get(f"{first.url}/app/")
            assert status_code == 200 and b"<html" in page.lower(), page[:200]

        initial_sha, _ = served_model(first.url)
        shards = good_shards(tmp_path / "data", 2)
        barrier = tmp_path / "barrier"

        async def both() -> list[Any]:
            runs = (train(first.url, f"c{i}", s, barrier, 2) for i, s in enumerate(shards))
            return list(await asyncio.gather(*runs))

        records = asyncio.run(both())
        asyncio.run(settle())
        for record in records:
            assert record["ok"], record.get("error")
            assert record["closes"] == [], record["closes"]
            assert adopted(record), f"client {record['clientID']} never got aggregated weights"
        final_sha, finite = served_model(first.url)
        assert finite
        assert final_sha != initial_sha, "the served model did not change"
        status = get_json(f"{first.url}/tasks/titanic/status")
        assert status["round"] >= max(max(adopted(r)) for r in records)

        # SIGTERM stops it cleanly; a new container on the same volume serves the same model.
        assert first.stop() == 0, first.logs()
        second = Container(image, volume, free_port())
        containers.append(second)
        second.wait_ready()
        assert get_json(f"{second.url}/tasks/titanic/status")["round"] == status["round"]
        assert served_model(second.url)[0] == final_sha
    except BaseException:
        for container in containers:
            print(f"--- {container.name} logs:\n{container.logs()}")
        raise
    finally:
        for container in containers:
            container.remove()

"""Per-IP limits: connections held at once and request rate, refused with 429 + JSON reason over
HTTP and close 1008 + reason over WebSocket, without disturbing connections already admitted;
the options reach the settings and uvicorn."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from disco.cli.server import load_settings
from disco.server.app import create_app
from disco.server.runner import serve_in_thread, uvicorn_config
from disco.server.settings import Settings
from support.robust_ws import FedClient


def settings(tmp_path: Path, **limits: object) -> Settings:
    return Settings(data_dir=tmp_path, port=0, log_level="warning", **limits)  # type: ignore[arg-type]


async def test_connections_per_ip_are_capped(tmp_path: Path) -> None:
    with serve_in_thread(settings(tmp_path, max_connections_per_ip=2)) as base:
        first = await FedClient.open(base, "titanic")
        second = await FedClient.open(base, "titanic")
        try:
            third = await FedClient.open(base, "titanic", hello=False)
            code, reason = await third.closed()
            assert code == 1008 and reason is not None and "too many connections" in reason
            async with httpx.AsyncClient(base_url=base) as http:
                refused = await http.get("/tasks")
            assert refused.status_code == 429
            assert "too many connections" in refused.json()["error"]
            assert int(refused.headers["Retry-After"]) >= 1
            assert await first.round() == 0  # the admitted ones are undisturbed
        finally:
            await first.close()
            await second.close()
        for _ in range(100):  # once they are gone the address may connect again
            async with httpx.AsyncClient(base_url=base) as http:
                if (await http.get("/tasks")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the address stayed refused after its connections closed")


async def test_request_rate_per_ip_is_capped(tmp_path: Path) -> None:
    limited = settings(tmp_path, requests_per_ip_per_s=0.5, request_burst_per_ip=3)
    with serve_in_thread(limited) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            statuses = [(await http.get("/tasks")).status_code for _ in range(3)]
            refused = await http.get("/tasks")
        assert statuses == [200, 200, 200]
        assert refused.status_code == 429 and "too many requests" in refused.json()["error"]
        assert int(refused.headers["Retry-After"]) >= 1
        socket = await FedClient.open(base, "titanic", hello=False)
        code, reason = await socket.closed()
        assert code == 1008 and reason is not None and "too many requests" in reason


def test_limit_options_reach_uvicorn() -> None:
    chosen = load_settings([
        "--max-connections-per-ip", "8", "--requests-per-ip", "20", "--request-burst-per-ip",
        "40", "--keep-alive-timeout", "7", "--max-connections", "1000",
    ])  # fmt: skip
    assert (chosen.max_connections_per_ip, chosen.requests_per_ip_per_s) == (8, 20.0)
    assert chosen.request_burst_per_ip == 40
    config = uvicorn_config(create_app(chosen), chosen)
    assert (config.timeout_keep_alive, config.limit_concurrency) == (7, 1000)
    with pytest.raises(SystemExit):
        load_settings(["--requests-per-ip", "0"])

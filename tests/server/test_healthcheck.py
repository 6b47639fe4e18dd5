"""The container's health check: which URL it asks, and its verdict on a live and a dead port."""

from __future__ import annotations

from disco.cli.healthcheck import check, health_url
from disco.server.runner import free_port


def test_health_url_follows_the_server_environment() -> None:
    assert health_url({}) == "http://127.0.0.1:8080/"
    assert health_url({"DISCO_HOST": "0.0.0.0", "DISCO_PORT": "9000"}) == "http://127.0.0.1:9000/"
    assert health_url({"DISCO_HOST": "::"}) == "http://[::1]:8080/"
    assert health_url({"DISCO_SSL_CERTFILE": "/certs/server.pem"}).startswith("https://")


def test_check_tells_a_live_server_from_a_closed_port(live_server: str) -> None:
    assert check(f"{live_server}/")
    assert not check(f"http://127.0.0.1:{free_port()}/", timeout_s=2.0)

"""Per-task enrollment: every route of an enrolled task refuses a client without a valid token
of that task (none, unknown, revoked, another task's, someone else's clientID), over HTTP and
WebSocket, with the token as a bearer header or as the `/p/<token>/` path prefix; listings
stay valid; admin routes; revocation closes live connections; no token in any log line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from fastapi.routing import APIWebSocketRoute
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from disco.cli.main import main as disco_main
from disco.client import Client
from disco.client.federated import FederatedError, FederatedSession
from disco.protocol.messages import client_connected
from disco.server.app import create_app
from disco.server.decentralized import routes as decentralized_routes
from disco.server.events import EventBus, ServerEvent
from disco.server.federated import routes as federated_routes
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from disco.tasks.schema import parse_task
from disco.tasks.store import SERVED_WEIGHTS_PATH
from interop.p2p import titanic, write_task_folder

ADMIN = "admin-secret"
ENROLLED, OTHER = "private", "other"
AXIOS = {"Accept": "application/json, text/plain, */*"}


def enrolled_task(task_id: str) -> dict[str, Any]:
    raw, _ = titanic()
    info = {**raw["trainingInformation"], "requiresEnrollment": True}
    return {**raw, "taskID": task_id, "trainingInformation": info}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Server:
    url: str
    http: httpx.Client
    tokens: dict[str, str]  # name -> token
    ids: dict[str, str]  # name -> tokenID

    def issue(self, task_id: str, label: str = "") -> tuple[str, str]:
        response = self.http.post(
            f"/tasks/{task_id}/tokens", json={"label": label}, headers=bearer(ADMIN)
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return body["token"], body["tokenID"]

    def websocket(self, path: str, headers: dict[str, str] | None = None) -> ClientConnection:
        return connect("ws" + self.url.removeprefix("http") + path,
                       additional_headers=headers, open_timeout=10)  # fmt: skip


def enrolled_settings(tmp_path: Path, admin_token: str | None = ADMIN) -> Settings:
    """A server with two tasks that require enrollment (copies of titanic)."""
    _, artifacts = titanic()
    for task_id in (ENROLLED, OTHER):
        if not (tmp_path / "tasks" / task_id).exists():
            write_task_folder(tmp_path / "tasks", enrolled_task(task_id), artifacts)
    return Settings(data_dir=tmp_path / "data", tasks_dir=tmp_path / "tasks", port=0,
                    log_level="warning", admin_token=admin_token)  # fmt: skip


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with (
        serve_in_thread(enrolled_settings(tmp_path)) as url,
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        found = Server(url, http, {}, {})
        for name, task_id in (("a", ENROLLED), ("b", ENROLLED), ("revoked", ENROLLED),
                              ("other", OTHER)):  # fmt: skip
            found.tokens[name], found.ids[name] = found.issue(task_id, f"holder {name}")
        revoked = http.delete(
            f"/tasks/{ENROLLED}/tokens/{found.ids['revoked']}", headers=bearer(ADMIN)
        )
        assert revoked.status_code == 200 and revoked.json()["revoked"] is True
        yield found


def task_routes() -> list[str]:
    """Every GET route of a task in the API schema (any route added later included), as URL
    paths; the admin's token routes excepted."""
    return [
        path.replace("{taskID}", ENROLLED).replace("{fileName}", SERVED_WEIGHTS_PATH)
        for path, operations in create_app().openapi()["paths"].items()
        if "{taskID}" in path and "get" in operations and "/tokens" not in path
    ]


def ws_routes() -> list[str]:
    """Every WebSocket route, for the enrolled task and the clientID 'alice'."""
    return [
        route.path.replace("{task_id}", ENROLLED).replace("{client_id}", "alice")
        for router in (federated_routes.router, decentralized_routes.router)
        for route in router.routes
        if isinstance(route, APIWebSocketRoute)
    ]


def bad_credentials(server: Server) -> list[tuple[str, dict[str, str], int, str]]:
    """(prefix, headers, status, reason part) of each refused way to ask."""
    return [
        ("", {}, 401, "requires enrollment"),
        ("", bearer("not-a-token"), 401, "not recognized"),
        ("", bearer(server.tokens["revoked"]), 401, "revoked"),
        ("", bearer(server.tokens["other"]), 403, "another task"),
        (f"/p/{server.tokens['revoked']}", {}, 401, "revoked"),
        (f"/p/{server.tokens['other']}", {}, 403, "another task"),
    ]


def test_every_http_route_of_an_enrolled_task_needs_its_token(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    routes = task_routes()
    task = f"/tasks/{ENROLLED}"
    assert {task, f"{task}/status", f"{task}/model.json", f"{task}/{SERVED_WEIGHTS_PATH}"} <= set(
        routes
    )
    with caplog.at_level(logging.INFO, logger="disco"):
        for path in routes:
            for prefix, headers, status, reason in bad_credentials(server):
                response = server.http.get(prefix + path, headers={**AXIOS, **headers})
                assert response.status_code == status, (prefix, path, headers)
                assert reason in response.json()["error"]
            for prefix, headers in (
                ("", bearer(server.tokens["a"])),
                (f"/p/{server.tokens['b']}", {}),
                ("", bearer(ADMIN)),  # the operator sees everything over HTTP
            ):
                response = server.http.get(prefix + path, headers={**AXIOS, **headers})
                assert response.status_code == 200, (prefix, path, response.text)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("disco")]
    refusals = [line for line in lines if "refused" in line]
    assert len(refusals) == len(routes) * len(bad_credentials(server))  # one line each
    assert not any(token in line for line in lines for token in server.tokens.values())
    # An open task is untouched: no token needed.
    assert server.http.get("/tasks/titanic/status").status_code == 200


def close_of(server: Server, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Connect, say clientConnected, and return how the server closed the connection."""
    with server.websocket(path, headers) as ws:
        try:
            ws.send(msgpack.packb(client_connected()))
            for _ in range(5):
                ws.recv(timeout=10)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code, closed.rcvd.reason
    raise AssertionError(f"{path}: not closed")


@contextlib.contextmanager
def connected(
    server: Server, path: str, headers: dict[str, str] | None = None
) -> Iterator[ClientConnection]:
    """An accepted connection that said clientConnected and got its answer."""
    with server.websocket(path, headers) as ws:
        ws.send(msgpack.packb(client_connected()))
        assert msgpack.unpackb(ws.recv(timeout=10))["type"] in (0, 1)  # connected / peer id
        yield ws


def test_every_websocket_route_of_an_enrolled_task_needs_its_token(server: Server) -> None:
    routes = ws_routes()
    assert {"/federated/private/alice", "/feai/private/alice", "/deai/private",
            "/decentralized/private/alice"} <= set(routes)  # fmt: skip
    cases = [*bad_credentials(server), ("", bearer(ADMIN), 401, "not recognized")]
    for path in routes:
        for prefix, headers, _, reason in cases:
            code, why = close_of(server, prefix + path, headers)
            assert code == 1008 and reason in why, (prefix, path, headers, why)


def test_a_client_id_belongs_to_the_token_that_used_it_first(server: Server) -> None:
    with connected(server, "/feai/private/alice", bearer(server.tokens["a"])):
        pass
    for path in ("/feai/private/alice", "/federated/private/alice",
                 "/decentralized/private/alice"):  # fmt: skip
        for prefix, headers in (("", bearer(server.tokens["b"])), (f"/p/{server.tokens['b']}", {})):
            code, why = close_of(server, prefix + path, headers)
            assert code == 1008 and "another participant token" in why
    # Its holder may come back (alice is still its own).
    with connected(server, f"/p/{server.tokens['a']}/feai/private/alice"):
        pass


def test_listing_shows_an_enrolled_task_only_to_its_participants(server: Server) -> None:
    def listed(prefix: str = "", headers: dict[str, str] | None = None) -> set[str]:
        response = server.http.get(prefix + "/tasks", headers=headers or {})
        assert response.status_code == 200
        tasks = response.json()
        for task in tasks:
            parse_task(task)  # each element stays a valid DISCO task
        return {task["taskID"] for task in tasks}

    anyone = listed()
    assert "titanic" in anyone and ENROLLED not in anyone and OTHER not in anyone
    mine = listed(f"/p/{server.tokens['a']}")
    assert (
        ENROLLED in mine
        and OTHER not in mine
        and mine == listed(headers=bearer(server.tokens["a"]))
    )
    assert ENROLLED not in listed(headers=bearer(server.tokens["revoked"]))
    assert {ENROLLED, OTHER} <= listed(headers=bearer(ADMIN))


def test_live_events_show_an_enrolled_task_only_to_its_participants(server: Server) -> None:
    for headers, shown in (({}, False), (bearer(server.tokens["a"]), True)):
        listed = {t["taskID"] for t in server.http.get("/tasks", headers=headers).json()}
        seen: set[str] = set()
        with server.http.stream("GET", "/events", headers=headers) as response:
            assert response.status_code == 200
            for line in response.iter_lines():  # the stream starts with every visible task
                if line.startswith("data: "):
                    seen.add(json.loads(line.removeprefix("data: "))["taskID"])
                if len(seen) == len(listed):
                    break
        assert seen == listed and (ENROLLED in seen) is shown


async def test_the_event_bus_sends_a_subscriber_only_the_tasks_it_may_see() -> None:
    bus = EventBus(lambda task_id: {"taskID": task_id}, interval_s=0.01)
    everyone, participant = bus.subscribe(), bus.subscribe(shows=lambda t: t != ENROLLED)
    bus.notify(ENROLLED, "status")
    bus.notify("open", "status")
    assert {(await everyone.next(5) or _NONE).data["taskID"] for _ in range(2)} == {
        ENROLLED, "open",
    }  # fmt: skip
    assert (await participant.next(5) or _NONE).data["taskID"] == "open"
    with pytest.raises(TimeoutError):
        await participant.next(0.2)
    bus.close()


_NONE = ServerEvent(0, "none", {"taskID": None})


def test_revoking_a_token_closes_its_live_connections(server: Server) -> None:
    token, token_id = server.issue(ENROLLED)
    with (
        connected(server, "/feai/private/carol", bearer(token)) as federated,
        connected(server, f"/p/{token}/deai/private") as decentralized,
    ):
        listing = server.http.get(f"/tasks/{ENROLLED}/tokens", headers=bearer(ADMIN)).json()
        mine = next(t for t in listing["tokens"] if t["tokenID"] == token_id)
        assert mine["connections"] == 2 and "token" not in mine
        revoked = server.http.delete(f"/tasks/{ENROLLED}/tokens/{token_id}", headers=bearer(ADMIN))
        assert revoked.status_code == 200
        for ws in (federated, decentralized):
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(20):
                    ws.recv(timeout=10)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                1008,
                "participant token revoked",
            )
    assert server.http.get(f"/p/{token}/tasks/{ENROLLED}").status_code == 401


def test_token_routes_need_the_admin_token(server: Server, tmp_path: Path) -> None:
    path = f"/tasks/{ENROLLED}/tokens"
    assert server.http.get(path).status_code == 401
    assert server.http.get(path, headers=bearer(server.tokens["a"])).status_code == 403
    assert server.http.post("/tasks/titanic/tokens", headers=bearer(ADMIN)).status_code == 409
    assert server.http.get("/tasks/nope/tokens", headers=bearer(ADMIN)).status_code == 404
    missing = server.http.delete(f"{path}/0123456789ab", headers=bearer(ADMIN))
    assert missing.status_code == 404 and "no token" in missing.json()["error"]
    # A server without an admin token hands out no participant tokens at all.
    with serve_in_thread(enrolled_settings(tmp_path / "open", admin_token=None)) as url:
        refused = httpx.post(f"{url}{path}", json={}, timeout=10)
        assert refused.status_code == 403 and "admin token" in refused.json()["error"]


async def test_the_python_client_and_cli_show_their_token(
    server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client(server.url, token=server.tokens["a"])
    assert ENROLLED in [task.task_id for task in await client.tasks_async()]
    assert "private" in (await client.task_async(ENROLLED)).task_id
    async with FederatedSession(client.server, ENROLLED, "dave") as session:
        round_, weights = await session.latest()
        assert round_ == 0 and weights
    with pytest.raises(FederatedError, match="requires enrollment"):
        async with FederatedSession(server.url, ENROLLED, "eve"):
            pass
    assert "token=" not in repr(client.server)  # never printed by accident
    monkeypatch.setenv("DISCO_TOKEN", server.tokens["b"])
    assert await asyncio.to_thread(disco_main, ["tasks", "--server", server.url]) == 0
    assert ENROLLED in capsys.readouterr().out
    argv = ["tasks", "--server", server.url, "--token", server.tokens["other"]]
    assert await asyncio.to_thread(disco_main, argv) == 0
    listed = capsys.readouterr().out
    assert OTHER in listed and ENROLLED not in listed


def test_cli_manages_tokens(
    server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCO_ADMIN_TOKEN", ADMIN)
    common = ["--server", server.url, "--task", ENROLLED]
    assert disco_main(["tokens", "create", *common, "--label", "hospital C"]) == 0
    printed = capsys.readouterr()
    token = printed.out.strip()
    token_id = next(word for word in printed.err.split() if len(word) == 12)
    assert server.http.get(f"/tasks/{ENROLLED}", headers=bearer(token)).status_code == 200
    assert disco_main(["tokens", "list", *common]) == 0
    listing = capsys.readouterr().out
    assert token_id in listing and "hospital C" in listing and token not in listing
    assert disco_main(["tokens", "revoke", *common, "--id", token_id]) == 0
    assert server.http.get(f"/tasks/{ENROLLED}", headers=bearer(token)).status_code == 401
    monkeypatch.delenv("DISCO_ADMIN_TOKEN")
    assert disco_main(["tokens", "list", *common, "--admin-token", "wrong"]) == 1
    assert "403" in capsys.readouterr().err


def test_the_access_log_never_shows_a_path_token(tmp_path: Path) -> None:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    settings = enrolled_settings(tmp_path).model_copy(update={"log_level": "info"})
    keep = Keep()
    with serve_in_thread(settings) as url:
        access = logging.getLogger("uvicorn.access")
        access.addHandler(keep)
        try:
            with httpx.Client(base_url=url, timeout=10) as http:
                token = http.post(f"/tasks/{ENROLLED}/tokens", headers=bearer(ADMIN)).json()
                assert http.get(f"/p/{token['token']}/tasks/{ENROLLED}").status_code == 200
                assert http.get(f"/p/{token['token']}x/tasks/{ENROLLED}").status_code == 401
        finally:
            access.removeHandler(keep)
    assert any(f"/tasks/{ENROLLED} " in line for line in lines), lines
    assert not any(token["token"] in line for line in lines), lines

"""What the client fetches over HTTP: errors become ServerError; a dropped keep-alive is retried."""

from __future__ import annotations

import httpx
import pytest

from disco.client.remote import ServerError, fetch_tasks


def _client(answers: list[httpx.Response | Exception]) -> tuple[httpx.AsyncClient, list[str]]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.AsyncClient(transport=httpx.MockTransport(handle)), seen


async def test_a_connection_the_server_dropped_is_retried_once() -> None:
    dropped = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    client, seen = _client([dropped, httpx.Response(200, json=[{"taskID": "t"}])])
    async with client:
        assert await fetch_tasks(client, "http://x") == [{"taskID": "t"}]
    assert seen == ["http://x/tasks", "http://x/tasks"]


async def test_a_server_that_keeps_dropping_is_a_server_error() -> None:
    dropped = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    client, seen = _client([dropped, dropped])
    async with client:
        with pytest.raises(ServerError, match="cannot reach the server at http://x/tasks"):
            await fetch_tasks(client, "http://x")
    assert len(seen) == 2


async def test_an_answer_that_is_not_json_is_a_server_error() -> None:
    client, _ = _client([httpx.Response(200, text="<html>hello</html>")])
    async with client:
        with pytest.raises(ServerError, match="did not answer with JSON"):
            await fetch_tasks(client, "http://x")

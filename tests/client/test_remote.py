"""What the client fetches over HTTP: errors become ServerError; a dropped keep-alive is retried."""

from __future__ import annotations

import logging

import httpx
import pytest

from disco.client.remote import ServerError, fetch_task, fetch_tasks
from support.tasks import make_task

TASK = make_task("t")


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
    client, seen = _client([dropped, httpx.Response(200, json=[TASK.to_json()])])
    async with client:
        assert await fetch_tasks(client, "http://x") == [TASK]
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


async def test_tasks_are_typed_and_an_invalid_one_is_left_out_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Served JSON becomes a typed Task here; a task the schema refuses is named and skipped."""
    bad = {**TASK.to_json(), "taskID": "bad"}
    bad["trainingInformation"] = {**bad["trainingInformation"], "minimumReadyPeers": 0}
    client, _ = _client([httpx.Response(200, json=[bad, TASK.to_json(), "junk"])])
    with caplog.at_level(logging.WARNING, logger="disco.client"):
        async with client:
            tasks = await fetch_tasks(client, "http://x")
    assert [task.task_id for task in tasks] == ["t"]
    assert tasks[0].training_information.min_ready_peers == 3
    assert "task 'bad'" in caplog.text
    assert "trainingInformation.minimumReadyPeers: must be >= 1" in caplog.text


async def test_an_invalid_task_asked_for_is_a_server_error_naming_the_field() -> None:
    bad = {**TASK.to_json(), "taskID": "bad"}
    bad["trainingInformation"] = {**bad["trainingInformation"], "maxShareValue": "big"}
    client, _ = _client([httpx.Response(200, json=[bad]), httpx.Response(200, json=[bad])])
    async with client:
        with pytest.raises(ServerError, match=r"trainingInformation\.maxShareValue: must be a"):
            await fetch_task(client, "http://x", "bad")
        with pytest.raises(ServerError, match=r"unknown task 'nope' on http://x \(tasks: bad\)"):
            await fetch_task(client, "http://x", "nope")

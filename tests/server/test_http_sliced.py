"""Big HTTP bodies leave in slices (each client holds a slice, not a copy of the body)."""

from __future__ import annotations

import os
from typing import Any

import httpx

from disco.server.http.sliced import SLICE_BYTES, SlicedResponse


async def sent(response: SlicedResponse) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append(message)

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    await response({"type": "http", "method": "GET"}, receive, send)
    return messages


async def test_a_big_body_is_sent_in_slices_with_its_length() -> None:
    body = os.urandom(2 * SLICE_BYTES + 5)
    messages = await sent(SlicedResponse(body, media_type="application/json"))
    start, *parts = messages
    assert (b"content-length", str(len(body)).encode()) in start["headers"]
    assert [len(p["body"]) for p in parts] == [SLICE_BYTES, SLICE_BYTES, 5]
    assert [p["more_body"] for p in parts] == [True, True, False]
    assert b"".join(p["body"] for p in parts) == body


async def test_a_small_body_is_one_message() -> None:
    messages = await sent(SlicedResponse(b"{}", media_type="application/json"))
    assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"]
    assert messages[1]["body"] == b"{}"


async def test_a_sliced_body_arrives_whole_through_an_app() -> None:
    body = os.urandom(3 * SLICE_BYTES)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await SlicedResponse(body, media_type="application/octet-stream")(scope, receive, send)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/")
    assert response.content == body
    assert response.headers["content-length"] == str(len(body))

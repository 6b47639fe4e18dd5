"""Updates and models larger than a frame travel in chunks (tiny chunks here: 8 bytes).

Over a loopback server: the Python client uploads and downloads in chunks; an upload cut short
by a dropped connection never reaches the model, and the client's new upload completes the
round; a named upload cut short is resumed on a new connection where the server stopped (by its
own client only); refused chunks are answered once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from websockets.frames import Frame, Opcode

from disco.client.federated import FederatedError, FederatedSession
from disco.protocol import native_chunks
from disco.protocol.framing import pack
from disco.protocol.messages import client_connected, post_weights, upload_progress
from disco.protocol.native_chunks import encode_chunks
from disco.weights import Weights
from support.cutting_proxy import CuttingProxy
from support.robust_ws import FedClient, abort, push_task
from support.servers import loopback_server

CHUNK = 8  # bytes: two parameters per chunk


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with loopback_server(tmp_path_factory) as url:
        yield url


@pytest.fixture(autouse=True)
def tiny_chunks() -> Iterator[None]:
    with patch.object(native_chunks, "CHUNK_BYTES", CHUNK):
        yield


def shifted(weights: Weights, delta: float) -> Weights:
    return [np.asarray(w + np.float32(delta), dtype=np.float32) for w in weights]


async def upload(client: FedClient, weights: Weights, round: int, chunks: int | None = None
                 ) -> None:  # fmt: skip
    """Send the first `chunks` chunks of an upload (all by default), without waiting."""
    for index, payload in enumerate(encode_chunks(weights, CHUNK)):
        if chunks is not None and index >= chunks:
            return
        await client.send(post_weights(payload, round, 10))


async def fetch(client: FedClient) -> tuple[int, Weights]:
    """latestServerRound, whose answer comes in chunks: the round and the assembled model."""
    await client.send({"type": 11})
    parts: list[bytes] = []
    while True:
        reply = await client.receive()
        assert reply["type"] == 11 and reply["weights"]["chunk"]["offset"] == len(parts) * 2
        parts.append(reply["weights"]["data"])
        weights = reply["weights"]
        if weights["chunk"]["offset"] + len(weights["data"]) // 4 == weights["chunk"]["total"]:
            break
    flat = np.frombuffer(b"".join(parts), "<f4")
    sizes = [int(np.prod(shape)) for shape in weights["shapes"]]
    tensors = np.split(flat, np.cumsum(sizes)[:-1])
    return reply["round"], [t.reshape(s) for t, s in zip(tensors, weights["shapes"], strict=True)]


async def test_python_clients_upload_and_download_in_chunks(server_url: str) -> None:
    task = await push_task(server_url, minNbOfParticipants=2)
    async with (
        FederatedSession(server_url, task) as first,
        FederatedSession(server_url, task) as second,
    ):
        round_, start = await first.latest()  # chunked answer, assembled
        assert round_ == 0 and [w.shape for w in start] == [(4, 3), (3,)]
        one, two = shifted(start, 1.0), shifted(start, 3.0)
        exchanges = await asyncio.gather(
            first.contribute(one, 0, 10, timeout_s=20), second.contribute(two, 0, 10, timeout_s=20)
        )
    for exchange in exchanges:
        assert exchange.round == 1 and exchange.weights is not None
        for new, old in zip(exchange.weights, start, strict=True):
            np.testing.assert_allclose(new, old + 2.0, rtol=0, atol=1e-6)


async def test_an_upload_cut_short_never_enters_the_model(server_url: str) -> None:
    task = await push_task(server_url, minNbOfParticipants=2)
    a = await FedClient.open(server_url, task, "a", query="?encoding=native")
    b = await FedClient.open(server_url, task, "b", query="?encoding=native")
    _, start = await fetch(b)
    await upload(a, shifted(start, 100.0), 0, chunks=3)  # 6 of 15 parameters, then gone
    await a.round()  # the server has handled the chunks before the drop
    abort(a.ws)
    for payload in encode_chunks(shifted(start, 3.0), CHUNK):
        await b.send(post_weights(payload, 0, 10))
    reply = await b.receive()
    assert reply["type"] == 8 and reply["status"] == "accepted" and reply["round"] == 0
    assert await b.round() == 0  # a's partial upload did not count as a contribution
    again = await FedClient.open(server_url, task, "a", query="?encoding=native")
    await upload(again, shifted(start, 1.0), 0)
    reply = await again.receive()
    assert reply["status"] == "accepted" and reply["round"] == 1
    round_, model = await fetch(b)
    assert round_ == 1
    for new, old in zip(model, start, strict=True):
        np.testing.assert_allclose(new, old + 2.0, rtol=0, atol=1e-5)
    for client in (b, again):
        await client.ws.close()


NAME = "0123456789abcdef0123456789abcdef"  # an upload name, as long as the client's (uuid hex)


async def test_a_named_upload_cut_short_resumes_where_the_server_stopped(server_url: str) -> None:
    task = await push_task(server_url, minNbOfParticipants=2)
    a = await FedClient.open(server_url, task, "a", query="?encoding=native")
    b = await FedClient.open(server_url, task, "b", query="?encoding=native")
    _, start = await fetch(b)
    chunks = list(encode_chunks(shifted(start, 1.0), CHUNK, upload=NAME))
    for payload in chunks[:3]:  # 6 of 15 parameters, then gone
        await a.send(post_weights(payload, 0, 10))
    assert await a.request(upload_progress(NAME)) == upload_progress(NAME, 6)  # live upload
    abort(a.ws)
    # Someone else's connection holds nothing of it, and cannot continue it.
    stranger = await FedClient.open(server_url, task, "c", query="?encoding=native")
    assert await stranger.request(upload_progress(NAME)) == upload_progress(NAME, 0)
    await stranger.send(post_weights(chunks[3], 0, 10))
    refusal = await stranger.receive()
    assert refusal["status"] == "invalid" and "interrupted upload" in refusal["error"]
    again = await FedClient.open(server_url, task, "a", query="?encoding=native")
    assert await again.request(upload_progress(NAME)) == upload_progress(NAME, 6)
    assert await again.request(upload_progress("f" * 32)) == upload_progress("f" * 32, 0)
    await again.send(post_weights(chunks[-1], 0, 10))  # not where it stopped: refused
    refusal = await again.receive()
    assert refusal["status"] == "invalid"
    assert await again.request(upload_progress(NAME)) == upload_progress(NAME, 6)  # still kept
    for payload in chunks[3:]:
        await again.send(post_weights(payload, 0, 10))
    reply = await again.receive()
    assert reply["status"] == "accepted" and reply["round"] == 0
    assert await again.request(upload_progress(NAME)) == upload_progress(NAME, 0)  # taken in
    for payload in encode_chunks(shifted(start, 3.0), CHUNK):
        await b.send(post_weights(payload, 0, 10))
    assert (await b.receive())["status"] == "accepted"
    round_, model = await fetch(b)
    assert round_ == 1
    for new, old in zip(model, start, strict=True):
        np.testing.assert_allclose(new, old + 2.0, rtol=0, atol=1e-5)
    for client in (b, again, stranger):
        await client.ws.close()


def ws_frame_bytes(message: dict[str, Any]) -> int:
    """Bytes of the masked WebSocket frame a client sends for `message` (websockets' own
    framing, as `support.robust_ws.write_partial_frame` builds it)."""
    return len(Frame(Opcode.BINARY, pack(message)).serialize(mask=True))


def upload_frames(weights: Weights) -> list[int]:
    """The byte size of each chunk frame of the Python client's upload of `weights`."""
    return [ws_frame_bytes(post_weights(payload, 0, 10))
            for payload in encode_chunks(weights, CHUNK, upload=NAME)]  # fmt: skip


async def completes_with_one_more(other: FederatedSession, start: Weights) -> None:
    """`other` contributes start + 3 to round 0: with the other client's update of start + 1
    taken in, the round completes with their mean, start + 2."""
    exchange = await other.contribute(shifted(start, 3.0), 0, 10, timeout_s=20)
    assert exchange.round == 1 and exchange.weights is not None
    for new, old in zip(exchange.weights, start, strict=True):
        np.testing.assert_allclose(new, old + 2.0, rtol=0, atol=1e-5)


async def test_the_python_client_resumes_an_upload_cut_short(server_url: str) -> None:
    task = await push_task(server_url, minNbOfParticipants=2)
    starts: list[int] = []
    real = native_chunks.encode_chunks

    def recording(*args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        starts.append(kwargs.get("start", 0))
        return real(*args, **kwargs)

    async with FederatedSession(server_url, task) as other:
        _, start = await other.latest()
        mine = shifted(start, 1.0)
        cut = ws_frame_bytes(client_connected()) + sum(upload_frames(mine)[:3])
        async with CuttingProxy(server_url, cut).running() as proxy:
            with patch("disco.client.federated.encode_chunks", recording):
                async with FederatedSession(proxy.url, task) as cut_short:
                    ack = await cut_short.post(mine, 0, 10)
            assert proxy.cut.is_set() and proxy.connections == 2
        assert ack.accepted and ack.round == 0
        assert starts == [0, 6]  # the second connection sent parameters 6.. only
        await completes_with_one_more(other, start)


async def test_an_upload_whose_answer_is_lost_is_not_sent_twice(server_url: str) -> None:
    task = await push_task(server_url, minNbOfParticipants=2)
    async with FederatedSession(server_url, task) as other:
        _, start = await other.latest()
        mine = shifted(start, 1.0)
        cut = ws_frame_bytes(client_connected()) + sum(upload_frames(mine))
        async with CuttingProxy(server_url, cut).running() as proxy:
            async with FederatedSession(proxy.url, task) as cut_short:
                with pytest.raises(FederatedError, match="whether it was counted is unknown"):
                    await cut_short.post(mine, 0, 10)
            assert proxy.connections == 2
        # The server took it in once: with the other's update, the round completes.
        await completes_with_one_more(other, start)


async def test_refused_chunks_are_answered_once(server_url: str) -> None:
    task = await push_task(server_url, minNbOfParticipants=2)
    client = await FedClient.open(server_url, task, query="?encoding=native")
    _, start = await fetch(client)
    chunks = list(encode_chunks(start, CHUNK))
    poisoned = [dict(c) for c in chunks]
    poisoned[2] = {**chunks[2], "data": np.array([np.nan, 1], "<f4").tobytes()}
    for payload in poisoned:
        await client.send(post_weights(payload, 0))
    refusal = await client.receive()
    assert refusal["status"] == "invalid" and "NaN" in refusal["error"]
    await client.send(post_weights(chunks[1], 0))  # not at offset 0: no upload to continue
    refusal = await client.receive()
    assert refusal["status"] == "invalid" and "without an upload" in refusal["error"]
    for payload in chunks[2:]:  # the rest of that refused upload: dropped silently
        await client.send(post_weights(payload, 0))
    for payload in chunks:  # a fresh upload is taken in
        await client.send(post_weights(payload, 0))
    accepted = await client.receive()
    assert accepted["status"] == "accepted"
    await client.ws.close()


def test_chunks_cover_the_model_in_order() -> None:
    weights = [np.arange(5, dtype=np.float32), np.arange(5, 11, dtype=np.float32).reshape(2, 3)]
    payloads: list[dict[str, Any]] = list(encode_chunks(weights, 12))
    assert [p["chunk"]["offset"] for p in payloads] == [0, 3, 6, 9]
    data = b"".join(bytes(p["data"]) for p in payloads)
    assert np.frombuffer(data, "<f4").tolist() == list(range(11))
    assert all(len(pack(post_weights(p, 0))) < 100 for p in payloads)

"""The Python client's round in one request (post with `awaitRound`) against a loopback server.

Frames are counted on the client's socket: a post that closes the round is answered at once by
the next round's model (one frame out, one in); a post that waits sees roundStatus frames (the
CLI's "waiting for participants") and then the same model. The statistics exchange that follows
(who contributed, for the CLI) is counted apart.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from disco.client.federated import FederatedError, FederatedSession
from disco.protocol.framing import unpack_message
from disco.protocol.messages import PostAck, PostStatus, RoundStatus
from disco.protocol.types import MessageType
from disco.weights import Weights
from support.robust_ws import push_task
from support.servers import loopback_server

WITHIN_S = 20.0


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with loopback_server(tmp_path_factory) as url:
        yield url


class Counted:
    """Counts the frames a session's socket sends and receives, by message type."""

    def __init__(self, session: FederatedSession) -> None:
        ws = session._ws
        assert ws is not None
        self.sent: Counter[int] = Counter()
        self.received: Counter[int] = Counter()
        send, recv = ws.send, ws.recv

        async def counted_send(frame: Any, *args: Any, **kwargs: Any) -> None:
            self.sent[unpack_message(frame)["type"]] += 1
            await send(frame, *args, **kwargs)

        async def counted_recv(*args: Any, **kwargs: Any) -> Any:
            frame = await recv(*args, **kwargs)
            self.received[unpack_message(frame)["type"]] += 1
            return frame

        ws.send = counted_send  # type: ignore[method-assign]
        ws.recv = counted_recv  # type: ignore[method-assign]

    def clear(self) -> None:
        self.sent.clear()
        self.received.clear()


def shifted(weights: Weights, delta: float) -> Weights:
    return [np.asarray(w + np.float32(delta), dtype=np.float32) for w in weights]


async def test_a_round_is_one_request_per_client(server_url: str) -> None:
    task = await push_task(server_url, minNbOfParticipants=2)
    statuses: list[RoundStatus] = []
    async with (
        FederatedSession(server_url, task, on_status=statuses.append) as first,
        FederatedSession(server_url, task) as second,
    ):
        round_, start = await first.latest()
        first_frames, second_frames = Counted(first), Counted(second)
        waiting = asyncio.create_task(first.contribute(shifted(start, 1.0), round_, 10, WITHIN_S))
        for _ in range(int(WITHIN_S / 0.01)):  # the lone post waits: the CLI is told why
            if statuses or waiting.done():
                break
            await asyncio.sleep(0.01)
        assert statuses and statuses[0].waiting_for == "participants"
        assert (statuses[0].round, statuses[0].contributions, statuses[0].min_participants) == (
            0, 1, 2,
        )
        closing = await second.contribute(shifted(start, 3.0), round_, 10, WITHIN_S)
        waited = await asyncio.wait_for(waiting, WITHIN_S)
    for exchange in (waited, closing):
        assert exchange.round == 1 and exchange.participants == 2 and exchange.weights is not None
        for new, old in zip(exchange.weights, start, strict=True):
            np.testing.assert_allclose(new, old + 2.0, rtol=0, atol=1e-6)
    post, model, ack = (
        MessageType.POST_WEIGHTS_TO_SERVER, MessageType.LATEST_SERVER_ROUND,
        MessageType.POST_WEIGHTS_TO_SERVER,
    )  # fmt: skip
    stats = MessageType.PULL_SERVER_STATISTICS
    # The round closed at once for the second client: its post, then the model. No ack.
    assert second_frames.sent == Counter({post: 1, stats: 1})
    assert second_frames.received == Counter({model: 1, stats: 1})
    assert ack not in second_frames.received
    # The first waited: roundStatus frames meanwhile, then the same model; no ack either.
    assert first_frames.sent == Counter({post: 1, stats: 1})
    received = dict(first_frames.received)
    assert received.pop(MessageType.ROUND_STATUS) == len(statuses) >= 1
    assert received == {model: 1, stats: 1}


async def test_a_refused_post_is_acknowledged_and_the_client_says_why(server_url: str) -> None:
    task = await push_task(server_url, minNbOfParticipants=2)
    async with FederatedSession(server_url, task) as session:
        round_, start = await session.latest()
        frames = Counted(session)
        outcome = await session.post_and_wait(shifted(start, 1.0), round_ + 5, 10, WITHIN_S)
        assert isinstance(outcome, PostAck) and outcome.status is PostStatus.FUTURE
        assert outcome.round == round_ and outcome.error
        nan = [np.full_like(w, np.nan) for w in start]
        with pytest.raises(FederatedError, match=r"refused the update \(invalid\)"):
            await session.contribute(nan, round_, 10, WITHIN_S)
        assert frames.received[MessageType.POST_WEIGHTS_TO_SERVER] == 2  # acknowledged at once
        assert frames.received[MessageType.LATEST_SERVER_ROUND] == 0


async def test_a_future_post_is_sent_again_for_the_servers_round(server_url: str) -> None:
    task = await push_task(server_url, minNbOfParticipants=1)
    async with FederatedSession(server_url, task) as session:
        round_, start = await session.latest()
        exchange = await session.contribute(shifted(start, 1.0), round_ + 3, 10, WITHIN_S)
    assert exchange.round == round_ + 1 and exchange.weights is not None
    np.testing.assert_allclose(exchange.weights[0], start[0] + 1.0, rtol=0, atol=1e-6)

"""Federated clients that vanish at every step of the protocol, abruptly or silently.

Rules checked (server side: `disco.server.federated.hub`, module docstring "Identity"):
- a client whose socket dies (TCP reset, or closed without a close frame) at any step frees its
  clientID at once: reconnecting with the same id right away is accepted;
- what it posted before dying still counts for the round; once back it may post again;
- a participant that goes silent (connected, never posting again, even stuck half-way through a
  frame) delays its round by the round deadline at most;
- a connection that died silently (no FIN, no RST: frozen) keeps its clientID only until the
  keepalive drops it: meanwhile a second connection is refused with a reason saying when to
  retry, afterwards it is accepted.

One server for the module, each test on a task of its own (so rounds never mix). Short timings:
round deadline DEADLINE_S, keepalive ping every PING_S with PONG_TIMEOUT_S to answer, duplicate
grace GRACE_S.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from disco.protocol.framing import pack
from disco.protocol.weights import encode_native
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from disco.weights import Weights
from support.robust_ws import (
    FedClient,
    abort,
    filled,
    freeze,
    push_task,
    reset,
    write_partial_frame,
)

DEADLINE_S = 1.0
PING_S = 0.5
PONG_TIMEOUT_S = 1.5
GRACE_S = 0.5  # well under PING_S + PONG_TIMEOUT_S: a refusal never races the keepalive
SHAPES = [(4, 3), (3,)]  # support.robust_ws.small_model()

Death = Callable[[Any], None]
DEATHS: dict[str, Death] = {"reset": reset, "abort": abort}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("dropouts-federated"),
        port=0,
        load_default_tasks=False,
        log_level="warning",
        round_deadline_s=DEADLINE_S,
        ws_ping_interval_s=PING_S,
        ws_ping_timeout_s=PONG_TIMEOUT_S,
        duplicate_client_grace_s=GRACE_S,
    )
    with serve_in_thread(settings) as url:
        yield url


class Clients:
    """Opens clients for one test on one task; whatever is left is closed at the end."""

    def __init__(self, base: str, task_id: str) -> None:
        self.base = base
        self.task_id = task_id
        self.opened: list[FedClient] = []

    async def open(self, client_id: str | None = None, **options: Any) -> FedClient:
        client = await FedClient.open(self.base, self.task_id, client_id, **options)
        self.opened.append(client)
        return client

    async def close_all(self) -> None:
        """Close live clients; abort frozen ones (they would not answer the close)."""
        for client in self.opened:
            transport = client.ws.transport
            if not transport.is_closing() and not transport.is_reading():
                abort(client.ws)
        await asyncio.gather(*(c.close() for c in self.opened), return_exceptions=True)


@pytest.fixture
async def clients(server: str) -> AsyncIterator[Clients]:
    """Clients of a fresh task (2 participants minimum)."""
    opened = Clients(server, await push_task(server, minNbOfParticipants=2))
    try:
        yield opened
    finally:
        await opened.close_all()


async def two_participants(clients: Clients) -> tuple[FedClient, FedClient]:
    """a and b, both participants of round 1 (they made round 0 aggregate)."""
    a, b = await clients.open(), await clients.open()
    await a.post(filled(SHAPES, 0.0), 0)
    assert (await b.post(filled(SHAPES, 0.0), 0))["round"] == 1
    return a, b


def assert_model(weights: Weights, value: float) -> None:
    assert [w.shape for w in weights] == SHAPES
    for tensor in weights:
        np.testing.assert_allclose(tensor, value, rtol=1e-6)


def large_post_frame(round: int) -> bytes:
    """A post of the right weights padded past 1 MiB (the server ignores unknown fields)."""
    return pack({
        "type": 8, "round": round, "weights": encode_native(filled(SHAPES, 50.0)),
        "padding": b"\x00" * (1 << 20),
    })


async def reconnect_at_once(clients: Clients, client_id: str) -> FedClient:
    """The same clientID, right away: accepted (hello answered) and able to ask for the round."""
    again = await clients.open(client_id, hello=False)
    try:
        await again.hello()
    except ConnectionClosed as closed:
        raise AssertionError(f"reconnecting {client_id} was refused: {closed}") from None
    return again


# --------------------------------------------------------------------------- abrupt deaths

STAGES = ["before_hello", "after_hello", "after_post", "waiting_for_latest", "mid_frame"]


@pytest.mark.parametrize("death", DEATHS)
@pytest.mark.parametrize("stage", STAGES)
async def test_client_dying_at_any_step_frees_its_id_and_never_stalls(
    clients: Clients, stage: str, death: str
) -> None:
    a, b = await two_participants(clients)
    victim = await clients.open(hello=stage != "before_hello", keepalive=False)
    counted = False
    if stage in ("after_post", "waiting_for_latest"):
        await victim.post(filled(SHAPES, 6.0), 1)
        counted = True
    if stage == "waiting_for_latest":
        await victim.send({"type": 11})  # dies before reading the answer
    if stage == "mid_frame":
        write_partial_frame(victim.ws, large_post_frame(1), 0.5)
        await asyncio.sleep(0.05)  # the server is now inside the frame
    DEATHS[death](victim.ws)

    again = await reconnect_at_once(clients, victim.client_id)
    await a.post(filled(SHAPES, 1.0), 1)
    reply = await b.post(filled(SHAPES, 2.0), 1)  # every participant posted: aggregates now
    assert reply["status"] == "accepted"
    assert reply["round"] == 2
    round_, model = await again.latest()
    assert round_ == 2
    assert_model(model, 3.0 if counted else 1.5)  # the dead client's post counted (6+1+2)/3
    assert (await again.post(filled(SHAPES, 4.0), 2))["status"] == "accepted"


@pytest.mark.parametrize("route", ["federated", "feai"])
@pytest.mark.parametrize("repost", [False, True])
async def test_reconnected_client_resumes_its_round(
    clients: Clients, route: str, repost: bool
) -> None:
    a, b = await two_participants(clients)
    x = await clients.open(route=route)
    await x.post(filled(SHAPES, 0.0), 1)
    await a.post(filled(SHAPES, 0.0), 1)
    assert (await b.post(filled(SHAPES, 0.0), 1))["round"] == 2  # a, b, x: participants of 2
    await x.post(filled(SHAPES, 6.0), 2)
    reset(x.ws)
    back = await FedClient.open(clients.base, clients.task_id, x.client_id, route=route)
    clients.opened.append(back)
    assert await back.round() == 2
    if repost:  # a resend for the same round replaces the one posted before the crash
        assert (await back.post(filled(SHAPES, 9.0), 2))["status"] == "accepted"
    await a.post(filled(SHAPES, 1.0), 2)
    assert (await b.post(filled(SHAPES, 2.0), 2))["round"] == 3
    assert_model((await back.latest())[1], 4.0 if repost else 3.0)
    assert (await back.post(filled(SHAPES, 0.0), 3))["status"] == "accepted"


# --------------------------------------------------------------------------- silent clients


async def elapsed_until_round(client: FedClient, target: int, within_s: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await client.wait_round(target, within_s) == target, "the round stalled"
    return loop.time() - start


@pytest.mark.parametrize("silence", ["idle", "frozen", "frozen_mid_frame"])
async def test_silent_participant_delays_its_round_by_the_deadline_at_most(
    clients: Clients, silence: str
) -> None:
    a, b = await two_participants(clients)
    x = await clients.open(keepalive=False)
    await x.post(filled(SHAPES, 0.0), 1)
    await a.post(filled(SHAPES, 0.0), 1)
    assert (await b.post(filled(SHAPES, 0.0), 1))["round"] == 2  # x: a participant of round 2
    if silence == "frozen_mid_frame":
        write_partial_frame(x.ws, large_post_frame(2), 0.3)
    if silence != "idle":
        freeze(x.ws)  # no pong either: the keepalive drops it after PING_S + PONG_TIMEOUT_S
    await a.post(filled(SHAPES, 1.0), 2)
    assert (await b.post(filled(SHAPES, 2.0), 2))["round"] == 2  # quorum; x still awaited
    waited = await elapsed_until_round(a, 3, DEADLINE_S + 3.0)
    assert waited <= DEADLINE_S + 0.5, f"round 2 took {waited:.2f} s, deadline {DEADLINE_S} s"
    assert_model((await a.latest())[1], 1.5)


async def test_vanishing_awaited_participant_ends_the_wait_at_once(clients: Clients) -> None:
    a, b = await two_participants(clients)
    x = await clients.open(keepalive=False)
    await x.post(filled(SHAPES, 0.0), 1)
    await a.post(filled(SHAPES, 0.0), 1)
    assert (await b.post(filled(SHAPES, 0.0), 1))["round"] == 2
    await a.post(filled(SHAPES, 1.0), 2)
    await b.post(filled(SHAPES, 2.0), 2)  # quorum, x awaited until the deadline...
    reset(x.ws)  # ... or until it is gone
    waited = await elapsed_until_round(a, 3, DEADLINE_S + 3.0)
    assert waited < DEADLINE_S / 2, f"round 2 took {waited:.2f} s after x vanished"


# --------------------------------------------------------------------------- half-dead sockets


@pytest.mark.parametrize("route", ["federated", "feai"])
async def test_half_dead_connection_keeps_its_id_until_the_keepalive_drops_it(
    clients: Clients, route: str
) -> None:
    loop = asyncio.get_running_loop()
    old = await clients.open(route=route, keepalive=False)
    frozen_at = loop.time()
    freeze(old.ws)  # TCP still open, no pong ever: looks alive until the keepalive gives up
    refused = await clients.open(old.client_id, route=route, hello=False)
    code, reason = await refused.closed()
    assert code == 1008
    assert reason is not None and reason.startswith("clientID already connected"), reason
    assert "retry" in reason and f"{PING_S + PONG_TIMEOUT_S:g} s" in reason, reason

    for _ in range(100):  # bounded: the keepalive drops the old one within PING_S + PONG_TIMEOUT_S
        again = await clients.open(old.client_id, route=route, hello=False)
        try:
            await again.hello()
            break
        except ConnectionClosed:
            assert loop.time() - frozen_at < PING_S + PONG_TIMEOUT_S + 3.0, "never freed"
    else:
        pytest.fail("the clientID was never freed")
    assert loop.time() - frozen_at >= PONG_TIMEOUT_S  # not before a ping went unanswered
    assert await again.round() == 0


async def test_live_duplicate_is_refused_and_the_first_connection_is_untouched(
    clients: Clients,
) -> None:
    first = await clients.open()
    second = await clients.open(first.client_id, hello=False)
    code, reason = await second.closed()
    assert code == 1008 and reason is not None and "already connected" in reason
    await asyncio.sleep(PING_S + PONG_TIMEOUT_S)  # a live connection answers the keepalive
    await first.hello()
    assert await first.round() == 0


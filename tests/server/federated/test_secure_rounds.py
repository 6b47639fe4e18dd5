"""Secure federated rounds over a live server: sums, dropouts at every step, aborts, refusals.

Members here are scripted: each speaks the secure-aggregation messages (types 20-27) with a
`disco.secagg.Participant` and can vanish (close its socket) after any step. The task's model
is `support.robust_ws.small_model()` (15 parameters); one server for the module, a task per test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from disco.client.federated import FederatedSession
from disco.client.secure_federated import (
    SecureFederatedCommunicator,
    roster_from,
    weighted_vector,
)
from disco.protocol.secagg import (
    SecAggRoster,
    parse_secagg_reply,
    secagg_join,
    secagg_masked,
    secagg_reveal,
    secagg_shares,
)
from disco.protocol.types import MessageType
from disco.secagg import Participant
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from disco.weights import Weights
from support.robust_ws import push_task, task_json

SHAPES = [(4, 3), (3,)]
DEADLINE_S = 1.5
STEPS = ["keys", "shares", "masked", "reveal"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("secure-rounds"),
        port=0,
        load_default_tasks=False,
        log_level="warning",
        round_deadline_s=DEADLINE_S,
    )
    with serve_in_thread(settings) as url:
        yield url


async def secure_task(server: str, n: int, **extra: Any) -> str:
    return await push_task(
        server, aggregationStrategy="secure", minNbOfParticipants=n, **extra
    )


def model(value: float, seed: int) -> Weights:
    rng = np.random.default_rng(seed)
    return [(value + rng.normal(0, 1, shape)).astype(np.float32) for shape in SHAPES]


class Member:
    """A scripted member: runs the protocol until `stop_after` (a step it completes, then it
    closes its socket) or the outcome; `tamper` corrupts one of its messages."""

    def __init__(self, session: FederatedSession, weights: Weights, samples: int) -> None:
        self.session = session
        self.vector = weighted_vector(weights, samples)
        self.participant = Participant()
        self.outcome: dict[str, Any] | None = None
        self.refusals: list[str] = []

    async def run(
        self, round_: int, stop_after: str | None = None, tamper: str | None = None,
        silent: bool = False,
    ) -> None:
        keys = {str(c): (k.cipher, k.mask) for c, k in self.participant.advertisement().items()}
        await self.session.send(secagg_join(round_, keys))
        session = b""
        while True:
            message = await self.session.receive(10 * DEADLINE_S)
            kind = message["type"]
            if kind == MessageType.SECAGG_ROSTER:
                if stop_after == "keys":  # its keys went to everyone; it never shares
                    return await self.session.close()
                parsed = parse_secagg_reply(message)
                assert isinstance(parsed, SecAggRoster)
                roster, index = roster_from(parsed)
                session = roster.session
                shares = self.participant.share(roster, index)
                sealed = dict(shares.sealed)
                if tamper == "share":
                    first = next(iter(sealed))
                    sealed[first] = sealed[first][:-3]
                await self.session.send(secagg_shares(session, sealed, shares.commitment))
                if stop_after == "shares":
                    return None if silent else await self.session.close()
            elif kind == MessageType.SECAGG_RELAY:
                self.participant.receive(
                    {int(i): b for i, b in message["shares"]}, message["sharers"]
                )
                masked = self.participant.masked(self.vector).tobytes()
                if tamper == "mask":
                    masked = masked[:-8]
                await self.session.send(secagg_masked(session, masked))
                if stop_after == "masked":
                    return await self.session.close()
            elif kind == MessageType.SECAGG_UNMASK:
                if stop_after == "reveal":  # dies during unmasking, before answering
                    return await self.session.close()
                revealed = self.participant.reveal(message["survivors"], message["dropped"])
                await self.session.send(secagg_reveal(session, revealed))
            elif kind == MessageType.SECAGG_OUTCOME:
                if message["status"] == "refused":
                    self.refusals.append(message["error"])
                    continue
                self.outcome = message
                return None


async def members(server: str, task: str, n: int) -> list[tuple[Member, Weights, int]]:
    out = []
    for i in range(n):
        session = FederatedSession(server, task, answer_timeout_s=10)
        await session.connect()
        weights, samples = model(float(i), seed=i), 10 * (i + 1)
        out.append((Member(session, weights, samples), weights, samples))
    return out


def weighted_mean(parts: list[tuple[Weights, int]]) -> Weights:
    total = sum(s for _, s in parts)
    return [
        sum(w[t].astype(np.float64) * s for w, s in parts) / total  # type: ignore[misc]
        for t in range(len(SHAPES))
    ]


async def global_model(server: str, task: str) -> tuple[int, Weights]:
    async with FederatedSession(server, task) as session:
        return await session.latest()


async def status(server: str, task: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server) as http:
        response = await http.get(f"/tasks/{task}/status")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def close_all(group: list[tuple[Member, Weights, int]]) -> None:
    await asyncio.gather(*(m.session.close() for m, _, _ in group), return_exceptions=True)


async def test_five_members_get_the_weighted_mean(server: str) -> None:
    task = await secure_task(server, 5)
    sessions = [FederatedSession(server, task) for _ in range(5)]
    for s in sessions:
        await s.connect()
    inputs = [(model(float(i), seed=i), 10 * (i + 1)) for i in range(5)]
    try:
        exchanges = await asyncio.gather(
            *(
                SecureFederatedCommunicator(s, round_timeout_s=20).exchange(w, 0, n)
                for s, (w, n) in zip(sessions, inputs, strict=True)
            )
        )
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    expected = weighted_mean(inputs)
    for exchange in exchanges:
        assert exchange.round == 1 and exchange.participants == 5
        assert exchange.weights is not None
        for got, want in zip(exchange.weights, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    report = await status(server, task)
    assert report["secureAggregation"]["completedRounds"] == 1
    assert report["secureAggregation"]["lastOutcome"]["participants"] == 5
    async with httpx.AsyncClient(base_url=server) as http:
        history = (await http.get(f"/tasks/{task}/history")).json()
    assert [(r["round"], r["contributions"]) for r in history["rounds"]] == [(1, 5)]


@pytest.mark.parametrize("dropouts", [1, 2])
@pytest.mark.parametrize("step", STEPS)
async def test_dropouts_at_each_step(server: str, step: str, dropouts: int) -> None:
    """7 members, threshold 5: one or two vanish after `step`; the others get the mean of the
    members whose masked update counted (a member gone after sending it still counts), within
    the round's deadlines."""
    task = await secure_task(server, 7)
    group = await members(server, task, 7)
    try:
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    m.run(0, stop_after=step if i < dropouts else None)
                    for i, (m, _, _) in enumerate(group)
                )
            ),
            4 * DEADLINE_S + 5,
        )
        elapsed = asyncio.get_running_loop().time() - started
        counted = [(w, n) for i, (_, w, n) in enumerate(group)
                   if i >= dropouts or step in ("masked", "reveal")]
        for i, (m, _, _) in enumerate(group):
            if i >= dropouts:
                assert m.outcome is not None and m.outcome["status"] == "aggregated", m.outcome
                assert m.outcome["round"] == 1 and m.outcome["participants"] == len(counted)
        round_, weights = await global_model(server, task)
        assert round_ == 1
        for got, want in zip(weights, weighted_mean(counted), strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        assert elapsed < 3 * DEADLINE_S  # disconnects are not waited for
    finally:
        await close_all(group)


async def test_a_silent_member_delays_a_stage_by_its_deadline_only(server: str) -> None:
    """Connected but mute after sharing: the masking stage closes at its deadline."""
    task = await secure_task(server, 5)
    group = await members(server, task, 5)
    try:
        started = asyncio.get_running_loop().time()
        await asyncio.gather(
            *(m.run(0, stop_after="shares" if i == 0 else None, silent=True)
              for i, (m, _, _) in enumerate(group))
        )
        elapsed = asyncio.get_running_loop().time() - started
        assert all(m.outcome and m.outcome["participants"] == 4 for m, _, _ in group[1:])
        assert DEADLINE_S <= elapsed < 2 * DEADLINE_S + 1
    finally:
        await close_all(group)


async def test_fewer_than_threshold_survivors_abort_then_the_next_round_works(server: str) -> None:
    task = await secure_task(server, 6)  # 6 members: threshold 4
    _, before = await global_model(server, task)
    group = await members(server, task, 6)
    try:
        await asyncio.gather(
            *(m.run(0, stop_after="shares" if i < 3 else None) for i, (m, _, _) in enumerate(group))
        )
        for m, _, _ in group[3:]:
            assert m.outcome is not None and m.outcome["status"] == "aborted"
            assert "fewer than the threshold" in m.outcome["error"]
        round_, weights = await global_model(server, task)
        assert round_ == 0  # model unchanged
        for got, want in zip(weights, before, strict=True):
            np.testing.assert_array_equal(got, want)
        report = await status(server, task)
        assert report["secureAggregation"]["abortedRounds"] == 1
        # the next attempt, with enough members, aggregates
        await close_all(group)
        fresh = await members(server, task, 6)
        group += fresh
        await asyncio.gather(*(m.run(0) for m, _, _ in fresh))
        assert all(m.outcome and m.outcome["status"] == "aggregated" for m, _, _ in fresh)
        assert (await global_model(server, task))[0] == 1
    finally:
        await close_all(group)


@pytest.mark.parametrize("tamper", ["share", "mask"])
async def test_a_malformed_message_is_refused_and_the_round_goes_on(
    server: str, tamper: str
) -> None:
    task = await secure_task(server, 5)
    group = await members(server, task, 5)
    try:
        await asyncio.wait_for(
            asyncio.gather(
                *(m.run(0, tamper=tamper if i == 0 else None) for i, (m, _, _) in enumerate(group))
            ),
            4 * DEADLINE_S + 5,
        )
        cheat = group[0][0]
        assert cheat.refusals and "bytes" in cheat.refusals[0]
        counted = [(w, n) for _, w, n in group[1:]]
        for m, _, _ in group:
            assert m.outcome is not None and m.outcome["status"] == "aggregated"
            assert m.outcome["participants"] == 4
        _, weights = await global_model(server, task)
        for got, want in zip(weights, weighted_mean(counted), strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    finally:
        await close_all(group)


async def test_plain_updates_are_refused_on_a_secure_task(server: str) -> None:
    task = await secure_task(server, 2)
    async with FederatedSession(server, task) as session:
        _, weights = await session.latest()
        ack = await session.post(weights, 0, 10)
    assert ack.status == "invalid" and "securely" in ack.error


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"byzantineRobustAggregator": True}, "robust aggregator"),
        ({"aggregator": "median"}, "robust aggregator"),
        ({"secureAggregation": {"threshold": 0.4}}, "must be > 0.5"),
        (
            {"privacy": {"central": {"noiseMultiplier": 1.0, "clippingRadius": 1.0}}},
            "privacy.central",
        ),
    ],
)
async def test_task_creation_refuses_secure_with_what_it_cannot_do(
    server: str, extra: dict[str, Any], reason: str
) -> None:
    body = {
        "task": task_json("refused-secure", aggregationStrategy="secure", **extra),
        "model": [],
    }
    async with httpx.AsyncClient(base_url=server) as http:
        response = await http.post("/tasks", json=body)
    assert response.status_code == 400
    assert reason in response.text

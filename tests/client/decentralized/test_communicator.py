"""Python peers through an in-process server: signaling, WebRTC on loopback, whole rounds.

Every peer uses `loopback_only=True` (no ICE server, candidates on 127.0.0.1 / ::1 only).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from disco.client import DecentralizedOptions
from disco.client.decentralized import DecentralizedCommunicator, DecentralizedError
from disco.client.decentralized.webrtc import is_loopback_address
from disco.client.session import Exchange
from disco.tasks.defaults import default_tasks
from disco.tasks.schema import DEFAULT_MINIMUM_READY_PEERS, Task, TaskValidationError, parse_task
from disco.weights import Weights
from support.tasks import make_task

pytestmark = pytest.mark.timeout(60)

Server = Callable[..., tuple[str, Task]]
SCALE_BITS = 16


def titanic_shapes() -> list[tuple[int, ...]]:
    for task, artifacts in default_tasks():
        if task.task_id == "titanic":
            return [tuple(s) for s in artifacts.shapes()]
    raise AssertionError("no titanic task")


def peer_inputs(peers: int, rounds: int, seed: int) -> list[list[Weights]]:
    """inputs[peer][round]: distinct uniform(-1, 1) weights of the titanic model's shapes."""
    rng = np.random.default_rng(seed)
    shapes = titanic_shapes()
    return [
        [[rng.uniform(-1, 1, size=s).astype(np.float32) for s in shapes] for _ in range(rounds)]
        for _ in range(peers)
    ]


def mean_of(updates: Sequence[Weights]) -> list[np.ndarray[Any, Any]]:
    return [np.mean([np.float64(u[i]) for u in updates], axis=0) for i in range(len(updates[0]))]


def max_error(got: Weights | None, want: Sequence[np.ndarray[Any, Any]]) -> float:
    assert got is not None, "the round produced no aggregate"
    return max(float(np.abs(np.float64(g) - w).max()) for g, w in zip(got, want, strict=True))


def communicator(
    url: str,
    task: Task,
    secure: bool = False,
    round_timeout_s: float = 20.0,
    **options: Any,
) -> DecentralizedCommunicator:
    return DecentralizedCommunicator(
        url,
        task,
        secure,
        round_timeout_s,
        options=DecentralizedOptions(loopback_only=True, **options),
    )


async def run_peers(
    url: str, task: Task, inputs: list[list[Weights]], **options: Any
) -> list[list[tuple[Exchange, dict[str, float], str]]]:
    """Every peer runs its rounds; per peer and round: (Exchange, timings, mode)."""

    async def peer(rounds: list[Weights]) -> list[tuple[Exchange, dict[str, float], str]]:
        out = []
        async with communicator(url, task, **options) as c:
            for index, weights in enumerate(rounds):
                exchange = await c.exchange(weights, index, 10)
                assert c.last_outcome is not None
                out.append((exchange, dict(c.last_timings), c.last_outcome.mode))
                for link in c.links.values():
                    addresses = link.local_candidate_addresses()
                    assert addresses and all(map(is_loopback_address, addresses)), addresses
        assert not c.links, "links must be closed on exit"
        return out

    return list(await asyncio.gather(*(peer(rounds) for rounds in inputs)))


@pytest.mark.parametrize("route", ["decentralized", "deai"])
async def test_three_python_peers_average_in_clear_text(
    decentralized_server: Server, route: str
) -> None:
    url, task = decentralized_server(3)
    inputs = peer_inputs(3, rounds=2, seed=1)
    started = time.monotonic()
    results = await run_peers(url, task, inputs, route=route)
    print(
        f"3 peers, 2 clear-text rounds: {time.monotonic() - started:.2f} s;",
        "timings of peer 0:",
        [r[1] for r in results[0]],
    )
    for peer_results in results:
        for index, (exchange, _, mode) in enumerate(peer_results):
            assert mode == "clear-text"
            assert exchange.participants == 3 and exchange.round == index + 1
            assert max_error(exchange.weights, mean_of([p[index] for p in inputs])) < 1e-6


async def test_four_python_peers_run_native_secure_aggregation(
    decentralized_server: Server,
) -> None:
    url, task = decentralized_server(4, secure=True)
    inputs = peer_inputs(4, rounds=2, seed=2)
    started = time.monotonic()
    results = await run_peers(url, task, inputs, secure=True, scale_bits=SCALE_BITS)
    print(
        f"4 peers, 2 native secure rounds: {time.monotonic() - started:.2f} s;",
        "timings of peer 0:",
        [r[1] for r in results[0]],
    )
    tolerance = 2.0 ** -(SCALE_BITS + 1) + 1e-6  # fixed-point rounding + float32 result
    for peer_results in results:
        for index, (exchange, _, mode) in enumerate(peer_results):
            assert mode == "secure-native"
            assert exchange.participants == 4
            assert max_error(exchange.weights, mean_of([p[index] for p in inputs])) <= tolerance


async def test_python_peers_forced_to_disco_mode_still_agree(decentralized_server: Server) -> None:
    url, task = decentralized_server(3, secure=True)
    inputs = peer_inputs(3, rounds=1, seed=3)
    results = await run_peers(url, task, inputs, secure=True, secure_mode="disco")
    for (exchange, _, mode), *_ in results:
        assert mode == "secure-disco" and exchange.participants == 3
        assert max_error(exchange.weights, mean_of([p[0] for p in inputs])) < 1e-6


async def test_connections_dropped_between_rounds_are_made_again(
    decentralized_server: Server,
) -> None:
    url, task = decentralized_server(3)
    inputs = peer_inputs(3, rounds=2, seed=6)
    peers = [communicator(url, task) for _ in range(3)]
    try:
        for peer in peers:
            await peer.connect()
        first = await asyncio.gather(*(p.exchange(inputs[i][0], 0, 1) for i, p in enumerate(peers)))
        assert [e.participants for e in first] == [3, 3, 3]
        dropped = list(peers[0].links.values())
        await asyncio.gather(*(link.close("dropped by the test") for link in dropped))
        gone = peers[0].peer_id
        assert gone is not None
        for _ in range(500):  # the others see the data channels close (bounded: 5 s)
            if all(p.links[gone].closed for p in peers[1:] if gone in p.links):
                break
            await asyncio.sleep(0.01)
        second = await asyncio.gather(
            *(p.exchange(inputs[i][1], 1, 1) for i, p in enumerate(peers))
        )
    finally:
        await asyncio.gather(*(p.close() for p in peers))
    for exchange in second:
        assert exchange.participants == 3
        assert max_error(exchange.weights, mean_of([p[1] for p in inputs])) < 1e-6
    assert all(link.closed for link in dropped)


async def vanishing_round(
    url: str, task: Task, secure: bool
) -> tuple[list[Exchange], list[Weights]]:
    """Peers A and B exchange; C says ready, learns the round's peers and disappears."""
    inputs = [rounds[0] for rounds in peer_inputs(3, rounds=1, seed=4)]
    vanishing = communicator(url, task)
    await vanishing.connect()
    signaling = vanishing._signaling
    assert signaling is not None
    staying = [communicator(url, task, secure=secure, round_timeout_s=2.0) for _ in range(2)]
    try:
        for peer in staying:
            await peer.connect()

        async def vanish() -> None:
            await signaling.send_ready()
            await signaling.next_round(10)
            await vanishing.close()

        vanishing_task = asyncio.ensure_future(vanish())
        exchanges = await asyncio.gather(
            *(peer.exchange(inputs[i], 0, 10) for i, peer in enumerate(staying))
        )
        await vanishing_task
    finally:
        await asyncio.gather(*(peer.close() for peer in [vanishing, *staying]))
    return list(exchanges), inputs


async def test_clear_text_round_averages_without_a_vanished_peer(
    decentralized_server: Server,
) -> None:
    url, task = decentralized_server(3)
    started = time.monotonic()
    exchanges, inputs = await vanishing_round(url, task, secure=False)
    assert time.monotonic() - started < 10
    for exchange in exchanges:
        assert exchange.participants == 2
        assert max_error(exchange.weights, mean_of(inputs[:2])) < 1e-6


async def test_secure_round_fails_cleanly_without_a_vanished_peer(
    decentralized_server: Server,
) -> None:
    url, task = decentralized_server(3, secure=True)
    exchanges, _ = await vanishing_round(url, task, secure=True)
    for exchange in exchanges:
        assert exchange.weights is None and exchange.round == 1


async def test_no_round_within_the_timeout_keeps_local_weights(
    decentralized_server: Server,
) -> None:
    url, task = decentralized_server(3)
    async with communicator(url, task, round_timeout_s=0.3) as alone:
        exchange = await alone.exchange(peer_inputs(1, 1, 5)[0][0], 7, 10)
    assert exchange == Exchange(None, 1, 8)


async def test_unknown_task_is_refused_with_the_servers_reason(
    decentralized_server: Server,
) -> None:
    url, task = decentralized_server(3)
    with pytest.raises(DecentralizedError, match="unknown task"):
        async with communicator(url, task.model_copy(update={"task_id": "no-such-task"})):
            pass


async def test_unreachable_server_is_an_error() -> None:
    from disco.server.runner import free_port

    with pytest.raises(DecentralizedError, match="cannot connect"):
        await communicator(f"http://127.0.0.1:{free_port()}", make_task()).connect()


def test_options_are_checked() -> None:
    task = make_task()
    with pytest.raises(ValueError, match="secure_mode"):
        DecentralizedCommunicator(
            "http://x",
            task,
            options=DecentralizedOptions(secure_mode="strong"),  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="scale_bits"):
        DecentralizedCommunicator("http://x", task, options=DecentralizedOptions(scale_bits=31))
    with pytest.raises(TaskValidationError, match="taskID: required"):
        parse_task({k: v for k, v in task.to_json().items() if k != "taskID"})
    c = DecentralizedCommunicator("http://x", make_task(maxShareValue=7, minimumReadyPeers=4))
    assert c.task_id == "t"
    assert c.max_share_value == 7.0 and c.minimum_ready_peers == 4
    assert c.link_settings.ice_servers[0].urls == "stun:stun.l.google.com:19302"
    assert communicator("http://x", task).link_settings.ice_servers == []


def test_the_communicator_reads_the_typed_task_settings() -> None:
    """Ready peers and the share bound come from the task (its defaults when it states none);
    options override only the share bound."""
    from disco.aggregation.secure import DEFAULT_MAX_SHARE_VALUE

    unstated = make_task(minimumReadyPeers=None, maxShareValue=None)
    c = DecentralizedCommunicator("http://x", unstated)
    assert c.minimum_ready_peers == DEFAULT_MINIMUM_READY_PEERS
    assert c.max_share_value == DEFAULT_MAX_SHARE_VALUE
    stated = make_task(minimumReadyPeers=5, maxShareValue=2.5)
    assert stated.training_information.min_ready_peers == 5
    c = DecentralizedCommunicator("http://x", stated)
    assert (c.minimum_ready_peers, c.max_share_value) == (5, 2.5)
    c = DecentralizedCommunicator(
        "http://x", stated, options=DecentralizedOptions(max_share_value=9)
    )
    assert (c.minimum_ready_peers, c.max_share_value) == (5, 9.0)


@pytest.mark.slow
async def test_clients_train_a_task_together(decentralized_server: Server, tmp_path: Any) -> None:
    """`Client.train(scheme decentralized)`: three trainers, every round averaged by all three."""
    from disco.client import Client, TrainOptions
    from interop.datasets import titanic_rows, write_csv

    url, task = decentralized_server(3)
    shards = [write_csv(tmp_path / f"shard{i}.csv", titanic_rows(90, seed=i)) for i in range(3)]
    histories = await asyncio.gather(
        *(
            Client(url).train_async(
                task.task_id,
                shard,
                TrainOptions(
                    rounds=2,
                    round_timeout_s=30.0,
                    decentralized=DecentralizedOptions(loopback_only=True),
                ),
            )
            for shard in shards
        )
    )
    for history in histories:
        assert history.scheme == "decentralized"
        assert [(r.round, r.participants, r.aggregated) for r in history.rounds] == [
            (0, 3, True),
            (1, 3, True),
        ]
    finals = [h.final_weights for h in histories]
    assert finals[0] is not None
    for other in finals[1:]:
        assert other is not None
        assert max_error(other, [t.astype(np.float64) for t in finals[0]]) < 1e-6

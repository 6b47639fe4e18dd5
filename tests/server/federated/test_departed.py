"""Departed participants: an update counts only while its client is connected or left less than
the round deadline before; live figures count connected clients only. Both kinds of round
contributions (folded FedAvg, kept for robust aggregators)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from disco.aggregation.strategy import Aggregator, Mean
from disco.server.federated.engine import RoundEngine

from .test_federated_engine import Recorder, make_engine, model, reference_mean, values

AGGREGATORS = [pytest.param(Mean(), id="folded"), pytest.param(reference_mean, id="kept")]


async def until(engine: RoundEngine, check: Callable[[], bool], within_s: float = 5.0) -> None:
    """Wait for the engine's status changes until `check()` holds (bounded)."""
    async with asyncio.timeout(within_s):
        while not check():
            changed = engine.changed()
            if check():
                return
            await changed.wait()


@pytest.mark.parametrize("aggregator", AGGREGATORS)
async def test_an_update_of_a_client_gone_for_longer_than_the_deadline_is_dropped(
    aggregator: Aggregator,
) -> None:
    recorder = Recorder()
    engine = make_engine(recorder, aggregator=aggregator, deadline_s=0.2)
    engine.join("gone")
    assert (await engine.submit("gone", model(9.0), 0)).accepted
    engine.leave("gone")
    await until(engine, lambda: engine.round_status().contributions == 0)
    for client, value in (("b", 1.0), ("c", 3.0)):
        engine.join(client)
        assert (await engine.submit(client, model(value), 0)).accepted
    await until(engine, lambda: engine.round == 1)
    [(round_, weights)] = recorder.calls
    assert round_ == 1 and set(values(weights)) == {2.0}  # 9.0 is not in the mean
    await engine.close()


@pytest.mark.parametrize("aggregator", AGGREGATORS)
async def test_an_update_of_a_client_that_just_left_still_counts(aggregator: Aggregator) -> None:
    recorder = Recorder()
    engine = make_engine(recorder, aggregator=aggregator, deadline_s=10.0)
    engine.join("left")
    assert (await engine.submit("left", model(1.0), 0)).accepted
    engine.leave("left")
    engine.join("b")
    assert (await engine.submit("b", model(3.0), 0)).accepted  # completes the round at once
    assert engine.round == 1
    assert set(values(recorder.calls[0][1])) == {2.0}
    await engine.close()


async def test_live_figures_count_connected_clients_only() -> None:
    engine = make_engine(deadline_s=10.0)
    engine.join("a")
    assert (await engine.submit("a", model(1.0), 0)).accepted
    engine.leave("a")
    engine.join("newcomer")  # alone: it must not be told that someone else takes part
    assert engine.round_status().participants == 0
    assert engine.statistics().current_participants == 0
    assert engine.round_status().contributions == 1  # a's update still counts, for now
    engine.join("a")  # back before its update expired: counted again, update kept
    assert engine.round_status().participants == 1
    assert engine.statistics().current_participants == 1
    await engine.close()


async def test_coming_back_in_time_keeps_the_update() -> None:
    engine = make_engine(deadline_s=0.2)
    engine.join("a")
    assert (await engine.submit("a", model(1.0), 0)).accepted
    engine.leave("a")
    engine.join("a")
    engine.join("observer")
    engine.leave("observer")  # an observer's departure expires nothing
    await asyncio.sleep(0.4)  # past the deadline: nothing may expire (no event to wait for)
    assert engine.round_status().contributions == 1
    assert engine.round_status().participants == 1
    await engine.close()

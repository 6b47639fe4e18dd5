"""Round engine rules, without sockets: quorum, deadline, staleness, validation, persistence."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from disco.protocol.messages import PostStatus
from disco.server.federated.engine import Aggregator, RoundEngine
from disco.weights import Weights

SHAPES = [(2, 3), (3,)]


def model(value: float) -> Weights:
    """A two-tensor model whose every scalar is `value`."""
    return [np.full(shape, value, dtype=np.float32) for shape in SHAPES]


def reference_mean(
    updates: Sequence[Weights], sample_counts: Sequence[float] | None, previous: Weights
) -> Weights:
    """Straightforward float64 (weighted) mean, independent of disco.aggregation."""
    counts = np.ones(len(updates)) if sample_counts is None else np.asarray(sample_counts, float)
    factors = counts / counts.sum()
    return [
        sum((f * u[i].astype(np.float64) for f, u in zip(factors, updates, strict=True)),
            np.zeros(updates[0][i].shape)).astype(np.float32)
        for i in range(len(updates[0]))
    ]


class Recorder:
    """Records persisted (round, weights); can be told to fail or to block."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, Weights]] = []
        self.fail = False
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, weights: Weights, round: int) -> None:
        self.entered.set()
        if self.gate is not None:
            await asyncio.wait_for(self.gate.wait(), 5)
        if self.fail:
            raise OSError("disk full")
        self.calls.append((round, weights))


def make_engine(
    recorder: Recorder | None = None,
    *,
    round: int = 0,
    min_participants: int = 2,
    deadline_s: float = 10.0,
    max_staleness: int = 1,
    aggregator: Aggregator = reference_mean,
    thread_threshold: int = 100_000,
) -> RoundEngine:
    return RoundEngine(
        "task",
        model(0.0),
        round,
        min_participants=min_participants,
        deadline_s=deadline_s,
        max_staleness=max_staleness,
        aggregator=aggregator,
        persist=recorder or Recorder(),
        thread_threshold=thread_threshold,
    )


def values(weights: Weights) -> list[float]:
    """Every scalar of a model (the test models are constant per tensor)."""
    return [float(x) for tensor in weights for x in tensor.ravel()]


async def test_quorum_then_aggregation_with_mean() -> None:
    recorder = Recorder()
    engine = make_engine(recorder)
    for client in "ab":
        engine.join(client)
    first = await engine.submit("a", model(1.0), 0)
    assert first.status is PostStatus.ACCEPTED and not first.aggregated
    assert engine.round == 0
    second = await engine.submit("b", model(3.0), 0)
    assert second.accepted and second.aggregated and second.round == 1
    round_, weights = engine.current()
    assert round_ == 1
    assert values(weights) == [2.0] * 9
    assert [r for r, _ in recorder.calls] == [1]
    assert values(recorder.calls[0][1]) == [2.0] * 9


async def test_single_contribution_below_quorum_never_aggregates() -> None:
    engine = make_engine(deadline_s=0.01)
    engine.join("a")
    await engine.submit("a", model(1.0), 0)
    assert await engine.wait_for_round(1, 0.1) == 0


async def test_min_participants_one_aggregates_each_post() -> None:
    engine = make_engine(min_participants=1)
    engine.join("a")
    result = await engine.submit("a", model(4.0), 0)
    assert result.aggregated and engine.round == 1
    assert values(engine.current()[1]) == [4.0] * 9


async def test_resend_replaces_previous_contribution() -> None:
    engine = make_engine()
    for client in "ab":
        engine.join(client)
    await engine.submit("a", model(100.0), 0)
    await engine.submit("a", model(1.0), 0)
    assert engine.contributors() == {"a"}
    await engine.submit("b", model(3.0), 0)
    assert values(engine.current()[1]) == [2.0] * 9


async def test_observer_does_not_delay_a_round() -> None:
    engine = make_engine(deadline_s=10.0)
    for client in ("a", "b", "observer"):
        engine.join(client)
    await engine.submit("a", model(1.0), 0)
    result = await engine.submit("b", model(1.0), 0)
    assert result.aggregated
    assert "observer" not in engine.participants()


async def three_client_round(engine: RoundEngine) -> int:
    """Get a, b and c to contribute to one round; they are then all participants of the next.

    Returns the round reached (2): a and b aggregate round 0 alone (c is not a participant yet),
    then all three contribute to round 1.
    """
    for client in "abc":
        engine.join(client)
    await engine.submit("a", model(1.0), 0)
    await engine.submit("b", model(1.0), 0)
    assert engine.round == 1
    for client in "cab":
        await engine.submit(client, model(1.0), 1)
    assert engine.round == 2
    assert engine.participants() == {"a", "b", "c"}
    return 2


async def test_deadline_aggregates_without_the_slow_participant() -> None:
    engine = make_engine(deadline_s=0.05)
    r = await three_client_round(engine)
    await engine.submit("a", model(2.0), r)
    result = await engine.submit("b", model(4.0), r)
    assert not result.aggregated and engine.round == r  # c is still awaited
    assert await engine.wait_for_round(r + 1, 2.0) == r + 1
    assert values(engine.current()[1]) == [3.0] * 9
    # c last counted for round r - 1: it is no longer awaited in round r + 1
    assert engine.participants() == {"a", "b"}
    await engine.submit("a", model(1.0), r + 1)
    assert (await engine.submit("b", model(1.0), r + 1)).aggregated  # no deadline needed


async def test_deadline_counts_from_the_quorum() -> None:
    engine = make_engine(deadline_s=0.3)
    r = await three_client_round(engine)
    await engine.submit("a", model(1.0), r)
    await asyncio.sleep(0.35)  # longer than the deadline, but the quorum is not reached yet
    assert engine.round == r
    await engine.submit("b", model(1.0), r)
    assert await engine.wait_for_round(r + 1, 0.1) == r  # the deadline has just started
    assert await engine.wait_for_round(r + 1, 2.0) == r + 1


async def test_leaving_participant_does_not_stall_the_round() -> None:
    engine = make_engine(deadline_s=30.0)
    r = await three_client_round(engine)
    await engine.submit("a", model(1.0), r)
    await engine.submit("b", model(1.0), r)
    assert engine.round == r
    engine.leave("c")
    assert await engine.wait_for_round(r + 1, 2.0) == r + 1


async def test_contribution_of_a_departed_client_still_counts() -> None:
    engine = make_engine()
    for client in "ab":
        engine.join(client)
    await engine.submit("a", model(1.0), 0)
    engine.leave("a")
    await engine.submit("b", model(3.0), 0)
    assert engine.round == 1
    assert values(engine.current()[1]) == [2.0] * 9


async def test_stale_round_refused_with_current_round() -> None:
    engine = make_engine(round=5, max_staleness=1)
    engine.join("a")
    result = await engine.submit("a", model(1.0), 3)
    assert result.status is PostStatus.STALE and result.round == 5
    assert "too old" in result.reason
    assert engine.contributors() == set()
    within = await engine.submit("a", model(1.0), 4)
    assert within.accepted and engine.contributors() == {"a"}


async def test_future_round_refused() -> None:
    engine = make_engine(round=2)
    result = await engine.submit("a", model(1.0), 3)
    assert result.status is PostStatus.FUTURE and result.round == 2
    assert engine.contributors() == set()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
async def test_non_finite_update_refused_and_others_continue(bad: float) -> None:
    engine = make_engine()
    for client in "abc":
        engine.join(client)
    poisoned = model(1.0)
    poisoned[1][2] = bad
    result = await engine.submit("a", poisoned, 0)
    assert result.status is PostStatus.INVALID and "NaN or Inf" in result.reason
    assert engine.contributors() == set()
    await engine.submit("b", model(1.0), 0)
    await engine.submit("c", model(3.0), 0)
    assert engine.round == 1
    assert values(engine.current()[1]) == [2.0] * 9


@pytest.mark.parametrize(
    ("weights", "reason"),
    [
        ([np.zeros((2, 3), np.float32)], "expected 2 weight tensors, got 1"),
        ([np.zeros((3, 2), np.float32), np.zeros(3, np.float32)], "shape [3, 2], expected [2, 3]"),
        ([*model(0.0), np.zeros(1, np.float32)], "expected 2 weight tensors, got 3"),
    ],
)
async def test_shape_mismatch_refused(weights: Weights, reason: str) -> None:
    engine = make_engine()
    result = await engine.submit("a", weights, 0)
    assert result.status is PostStatus.INVALID
    assert reason in result.reason
    assert engine.contributors() == set()


async def test_float64_update_is_accepted_as_float32() -> None:
    engine = make_engine(min_participants=1)
    result = await engine.submit("a", [w.astype(np.float64) + 1 for w in model(0.0)], 0)
    assert result.aggregated
    assert all(w.dtype == np.float32 for w in engine.current()[1])


async def test_sample_weighted_mean() -> None:
    engine = make_engine()
    await engine.submit("a", model(1.0), 0, num_samples=30)
    await engine.submit("b", model(5.0), 0, num_samples=10)
    assert engine.round == 1
    np.testing.assert_allclose(values(engine.current()[1]), [2.0] * 9, rtol=1e-6)


async def test_missing_sample_count_means_unweighted() -> None:
    seen: list[Sequence[float] | None] = []

    def spy(updates: Sequence[Weights], counts: Sequence[float] | None, prev: Weights) -> Weights:
        seen.append(counts)
        return reference_mean(updates, counts, prev)

    engine = make_engine(aggregator=spy)
    await engine.submit("a", model(1.0), 0, num_samples=30)
    await engine.submit("b", model(5.0), 0)
    assert seen == [None]
    assert values(engine.current()[1]) == [3.0] * 9


async def test_aggregator_gets_the_current_model_as_previous() -> None:
    previous: list[list[float]] = []

    def spy(updates: Sequence[Weights], counts: Sequence[float] | None, prev: Weights) -> Weights:
        previous.append(values(prev))
        return reference_mean(updates, counts, prev)

    engine = make_engine(min_participants=1, aggregator=spy)
    await engine.submit("a", model(5.0), 0)
    await engine.submit("a", model(7.0), 1)
    assert previous == [[0.0] * 9, [5.0] * 9]


async def test_with_disco_aggregation_strategy() -> None:
    from disco.aggregation.strategy import Mean

    engine = make_engine(aggregator=Mean())
    await engine.submit("a", model(1.0), 0, num_samples=1)
    await engine.submit("b", model(4.0), 0, num_samples=2)
    np.testing.assert_allclose(values(engine.current()[1]), [3.0] * 9, rtol=1e-6)


async def test_persistence_gets_each_new_round() -> None:
    recorder = Recorder()
    engine = make_engine(recorder, round=7, min_participants=1)
    await engine.submit("a", model(1.0), 7)
    await engine.submit("a", model(2.0), 8)
    assert [r for r, _ in recorder.calls] == [8, 9]
    assert values(recorder.calls[1][1]) == [2.0] * 9


async def test_persistence_failure_still_advances(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    recorder.fail = True
    engine = make_engine(recorder, min_participants=1)
    result = await engine.submit("a", model(1.0), 0)
    assert result.aggregated and engine.round == 1
    assert "could not persist" in caplog.text


async def test_aggregator_failure_keeps_model_and_round(caplog: pytest.LogCaptureFixture) -> None:
    def broken(
        updates: Sequence[Weights], counts: Sequence[float] | None, prev: Weights
    ) -> Weights:
        raise ValueError("boom")

    recorder = Recorder()
    engine = make_engine(recorder, min_participants=1, aggregator=broken)
    result = await engine.submit("a", model(1.0), 0)
    assert result.accepted and not result.aggregated
    assert engine.round == 0 and values(engine.current()[1]) == [0.0] * 9
    assert recorder.calls == []
    assert engine.contributors() == set()
    assert "aggregating round 0" in caplog.text


async def test_non_finite_aggregate_is_not_published() -> None:
    def nan_mean(
        updates: Sequence[Weights], counts: Sequence[float] | None, prev: Weights
    ) -> Weights:
        return [np.full(w.shape, np.nan, np.float32) for w in updates[0]]

    engine = make_engine(min_participants=1, aggregator=nan_mean)
    await engine.submit("a", model(1.0), 0)
    assert engine.round == 0 and values(engine.current()[1]) == [0.0] * 9


async def test_submission_during_aggregation_counts_for_next_round() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    engine = make_engine(recorder)
    for client in "abc":
        engine.join(client)
    await engine.submit("a", model(1.0), 0)
    aggregating = asyncio.create_task(engine.submit("b", model(1.0), 0))
    await asyncio.wait_for(recorder.entered.wait(), 2)
    late = asyncio.create_task(engine.submit("c", model(9.0), 0))
    await asyncio.sleep(0.01)
    assert not late.done()  # waits for the aggregation: it is not lost
    assert engine.current()[0] == 0  # reads do not wait
    recorder.gate.set()
    assert (await asyncio.wait_for(aggregating, 2)).aggregated
    result = await asyncio.wait_for(late, 2)
    assert result.accepted and result.round == 1 and not result.aggregated
    assert engine.contributors() == {"c"}
    assert values(engine.current()[1]) == [1.0] * 9


async def test_submission_during_aggregation_without_staleness_is_told_new_round() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    engine = make_engine(recorder, max_staleness=0)
    await engine.submit("a", model(1.0), 0)
    aggregating = asyncio.create_task(engine.submit("b", model(1.0), 0))
    await asyncio.wait_for(recorder.entered.wait(), 2)
    late = asyncio.create_task(engine.submit("c", model(9.0), 0))
    await asyncio.sleep(0.01)
    recorder.gate.set()
    await asyncio.wait_for(aggregating, 2)
    result = await asyncio.wait_for(late, 2)
    assert result.status is PostStatus.STALE and result.round == 1


async def test_submissions_queued_behind_an_aggregation_are_counted() -> None:
    """Small updates skip the task hand-off only while the lock is free and nobody queues for
    it (`_queued`): submissions waiting behind an aggregation are counted until taken in, and
    every one counts for the next round, like a newcomer's."""
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    engine = make_engine(recorder)
    for client in "abcd":
        engine.join(client)
    await engine.submit("a", model(1.0), 0)  # lock free: taken in at once
    aggregating = asyncio.create_task(engine.submit("b", model(1.0), 0))
    await asyncio.wait_for(recorder.entered.wait(), 2)
    queued = [asyncio.create_task(engine.submit(c, model(5.0), 0)) for c in "cd"]
    await asyncio.sleep(0.01)
    assert engine._queued == 2 and not any(task.done() for task in queued)
    recorder.gate.set()
    await asyncio.wait_for(aggregating, 2)
    newcomer = await engine.submit("e", model(9.0), 1)
    assert newcomer.accepted and newcomer.round == 1
    for task in queued:
        result = await asyncio.wait_for(task, 2)
        assert result.accepted and result.round == 1
    assert engine._queued == 0
    assert engine.contributors() == {"c", "d", "e"}


async def test_cancelled_submitter_does_not_interrupt_aggregation() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    engine = make_engine(recorder)
    await engine.submit("a", model(1.0), 0)
    submitter = asyncio.create_task(engine.submit("b", model(3.0), 0))
    await asyncio.wait_for(recorder.entered.wait(), 2)
    submitter.cancel()
    recorder.gate.set()
    assert await engine.wait_for_round(1, 2.0) == 1
    assert values(engine.current()[1]) == [2.0] * 9


async def test_large_models_validate_and_aggregate_in_threads() -> None:
    engine = make_engine(thread_threshold=0)
    poisoned = model(1.0)
    poisoned[0][0, 0] = np.nan
    assert (await engine.submit("a", poisoned, 0)).status is PostStatus.INVALID
    await engine.submit("a", model(1.0), 0)
    assert (await engine.submit("b", model(2.0), 0)).aggregated
    assert values(engine.current()[1]) == [1.5] * 9


async def test_statistics() -> None:
    engine = make_engine(deadline_s=0.05)
    empty = engine.statistics()
    assert (empty.round, empty.current_participants, empty.total_participants) == (0, 0, 0)
    assert empty.average_participants == 0.0
    r = await three_client_round(engine)  # 2 contributions in round 0, 3 in round 1
    assert engine.statistics().current_participants == 3
    await engine.submit("a", model(1.0), r)
    await engine.submit("b", model(1.0), r)
    assert await engine.wait_for_round(r + 1, 2.0) == r + 1  # 2 contributions in round 2
    stats = engine.statistics()
    assert stats.round == r + 1
    assert stats.current_participants == 2  # c did not post in round r
    assert stats.total_participants == 3
    assert stats.average_participants == pytest.approx(7 / 3)


async def test_wait_for_round_times_out_with_current_round() -> None:
    engine = make_engine()
    assert await engine.wait_for_round(1, 0.01) == 0
    assert await engine.wait_for_round(0, 0.01) == 0


async def test_closed_engine_refuses_and_wakes_waiters() -> None:
    engine = make_engine()
    waiter = asyncio.create_task(engine.wait_for_round(5, 10.0))
    await asyncio.sleep(0)
    await engine.close()
    assert await asyncio.wait_for(waiter, 2) == 0
    result = await engine.submit("a", model(1.0), 0)
    assert result.status is PostStatus.CLOSED


async def test_close_cancels_a_running_deadline() -> None:
    engine = make_engine(deadline_s=0.05)
    r = await three_client_round(engine)
    await engine.submit("a", model(1.0), r)
    await engine.submit("b", model(1.0), r)
    await engine.close()
    await asyncio.sleep(0.1)
    assert engine.round == r


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError, match="min_participants"):
        make_engine(min_participants=0)
    with pytest.raises(ValueError, match="deadline_s"):
        make_engine(deadline_s=0)
    with pytest.raises(ValueError, match="max_staleness"):
        make_engine(max_staleness=-1)

"""A round's contributions folded into a running mean (with the journal) against kept copies.

Random sequences of updates, resends and sample counts must give the mean of each client's
latest update, as the aggregator computes it from kept copies; nothing update-sized stays in
memory beyond the accumulator.
"""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disco.aggregation import running
from disco.aggregation.mean import mean
from disco.aggregation.running import RunningMean
from disco.aggregation.strategy import Mean
from disco.server.federated.contributions import (
    JOURNAL_ENTRY_BYTES,
    FoldedUpdates,
    KeptUpdates,
    stage,
)
from disco.server.federated.engine import RoundEngine
from disco.weights import Weights

SHAPES = [(3, 2), (5,)]


def model(rng: np.random.Generator, scale: float = 1.0) -> Weights:
    return [(scale * rng.standard_normal(shape)).astype(np.float32) for shape in SHAPES]


def close(a: Weights, b: Weights) -> bool:
    return all(np.allclose(x, y, rtol=1e-6, atol=1e-6) for x, y in zip(a, b, strict=True))


puts = st.lists(
    st.tuples(st.sampled_from("abcd"), st.integers(0, 2**32 - 1),
              st.one_of(st.none(), st.integers(1, 1000))),
    min_size=1, max_size=10,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(puts, st.sampled_from([2, 4, 1 << 26]))
def test_folding_gives_the_mean_of_each_clients_latest_update(
    sequence: list[tuple[str, int, int | None]], float64_max: int
) -> None:
    kept = KeptUpdates(lambda updates, counts, previous: mean(updates, counts), SHAPES)
    with patch.object(running, "FLOAT64_MAX_PARAMS", float64_max):
        folded = FoldedUpdates(SHAPES)  # float32 accumulator when the model is "big"
        for client, seed, samples in sequence:
            update = model(np.random.default_rng(seed))
            folded.put(client, update, samples)
            kept.put(client, update, samples)
        assert folded.clients() == kept.clients() and len(folded) == len(kept)
        expected = kept.aggregate([])
        assert close(folded.aggregate([]), expected)
    folded.close()


def test_running_mean_folds_pieces_and_weights() -> None:
    acc = RunningMean(6)
    acc.fold(np.arange(6, dtype=np.float32), 0, 2.0)
    acc.counted(2.0)
    acc.fold(np.full(3, 10, np.float32), 0)  # one update in two pieces
    acc.fold(np.full(3, 20, np.float32), 3)
    acc.counted()
    assert acc.result().tolist() == pytest.approx([10 / 3, 12 / 3, 14 / 3, 26 / 3, 28 / 3, 30 / 3])
    with pytest.raises(ValueError, match="outside"):
        RunningMean(2).fold(np.zeros(3, np.float32), 0)


def test_folded_updates_keep_no_copy_in_memory(tmp_path: Path) -> None:
    """Without an in-memory journal budget (as for any update over JOURNAL_ENTRY_BYTES)."""
    rng = np.random.default_rng(0)
    folded = FoldedUpdates(SHAPES, tmp_path, journal_memory_bytes=0)
    for client in "abc":
        folded.put(client, model(rng), None)
    size = sum(int(np.prod(s)) for s in SHAPES)
    assert folded.running.nbytes == 8 * size  # one float64 accumulator, not three updates
    assert folded.journal.kept_bytes == 0
    assert not any(folded.journal.in_memory(client) for client in "abc")
    assert list(tmp_path.iterdir()) == []  # journal entries are anonymous files
    folded.close()


SIZE = sum(int(np.prod(s)) for s in SHAPES)

operations = st.lists(
    st.tuples(st.sampled_from(["put", "put", "put", "drop"]), st.sampled_from("abcde"),
              st.integers(0, 2**32 - 1), st.one_of(st.none(), st.integers(1, 1000))),
    min_size=1, max_size=14,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(operations, st.sampled_from([0, 2 * 4 * SIZE, 3 * 4 * SIZE + 1, 1 << 20]))
def test_a_journal_in_memory_or_in_files_refolds_exactly(
    sequence: list[tuple[str, str, int, int | None]], budget: int
) -> None:
    """Resends and drops refold from the journal, whether its entries are in memory, in files
    (past the budget) or both: the result is the mean of the kept copies."""
    kept = KeptUpdates(lambda updates, counts, previous: mean(updates, counts), SHAPES)
    folded = FoldedUpdates(SHAPES, journal_memory_bytes=budget)
    try:
        for operation, client, seed, samples in sequence:
            if operation == "drop":
                folded.drop(client)
                kept.drop(client)
                continue
            update = model(np.random.default_rng(seed))
            folded.put(client, update, samples)
            kept.put(client, update, samples)
            assert folded.journal.kept_bytes <= budget
        assert folded.clients() == kept.clients()
        if len(kept):
            assert close(folded.aggregate([]), kept.aggregate([]))
    finally:
        folded.close()
    assert folded.journal.kept_bytes == 0


def test_the_in_memory_journal_spills_to_files_past_its_budget(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    updates = {client: model(rng) for client in "abcd"}
    folded = FoldedUpdates(SHAPES, tmp_path, journal_memory_bytes=2 * 4 * SIZE)
    for client in "abc":
        folded.put(client, updates[client], None)
    journal = folded.journal
    assert [journal.in_memory(c) for c in "abc"] == [True, True, False]  # c spilled
    assert journal.kept_bytes == 2 * 4 * SIZE
    folded.drop("a")  # frees room in memory: the next entry is kept there
    folded.put("d", updates["d"], None)
    assert journal.in_memory("d") and not journal.in_memory("c")
    resent = model(rng)
    folded.put("c", resent, None)  # a resend of a spilled entry: still a file (no room)
    assert not journal.in_memory("c")
    assert close(folded.aggregate([]), mean([updates["b"], resent, updates["d"]], None))
    folded.close()
    assert journal.kept_bytes == 0


def test_a_journal_entry_in_memory_is_a_copy() -> None:
    """A kept entry never aliases the caller's array (e.g. a view of a received frame)."""
    flat = np.arange(SIZE, dtype=np.float32)
    folded = FoldedUpdates([(SIZE,)])  # one tensor: flattening it makes no copy
    folded.put("a", [flat], None)
    folded.put("b", [np.full(SIZE, 2, np.float32)], None)
    flat[:] = 100.0  # the caller reuses its buffer
    folded.put("b", [np.zeros(SIZE, np.float32)], 3)  # a resend: refolds a's entry
    assert folded.journal.in_memory("a")
    assert close(folded.aggregate([]), [np.arange(SIZE, dtype=np.float32) / 2])
    folded.close()


def test_a_staged_entry_is_kept_without_a_copy_only_when_it_is_owned() -> None:
    """The journal keeps a small staged update's own array as it is (no copy per post), but
    copies one that may alias the caller's buffer (a view of a received frame)."""
    buffer = np.arange(SIZE, dtype=np.float32)
    folded = FoldedUpdates([(SIZE,)])
    folded.put_staged("a", stage(buffer, None), None)
    owned = stage(np.full(SIZE, 2, np.float32), None, owned=True)
    folded.put_staged("b", owned, None)
    buffer[:] = 100.0  # the caller reuses its buffer
    (_, kept_a), = folded.journal.blocks("a", SIZE)
    (_, kept_b), = folded.journal.blocks("b", SIZE)
    assert np.array_equal(kept_a, np.arange(SIZE, dtype=np.float32))
    assert kept_b is owned.values
    folded.close()


def mean_engine(start: Weights, journal_dir: Path) -> RoundEngine:
    """A FedAvg engine of two participants that persists nothing."""

    async def persist(weights: Weights, round: int) -> None:
        return None

    return RoundEngine(
        "t", start, min_participants=2, deadline_s=60, max_staleness=1,
        aggregator=Mean(), persist=persist, journal_dir=journal_dir,
    )  # fmt: skip


async def test_the_engine_stages_a_small_update_as_its_own_copy(tmp_path: Path) -> None:
    """`RoundEngine.stage` of a small update: owned, and sharing no memory with the tensors
    given (which the journal would otherwise keep alive or see change)."""
    start = [np.zeros(shape, np.float32) for shape in SHAPES]

    engine = mean_engine(start, tmp_path)
    given = [np.ones(shape, np.float32) for shape in SHAPES]
    staged = engine.stage(given)
    assert staged is not None and staged.owned and staged.values is not None
    assert not any(np.shares_memory(staged.values, tensor) for tensor in given)
    await engine.close()


def test_stage_writes_only_big_updates_to_a_file(tmp_path: Path) -> None:
    small = stage(np.ones(JOURNAL_ENTRY_BYTES // 4, np.float32), tmp_path)
    assert small.handle is None and small.values is not None
    big = stage(np.ones(JOURNAL_ENTRY_BYTES // 4 + 1, np.float32), tmp_path)
    assert big.handle is not None
    assert np.array_equal(big.load(), np.ones(JOURNAL_ENTRY_BYTES // 4 + 1, np.float32))
    folded = FoldedUpdates([(JOURNAL_ENTRY_BYTES // 4 + 1,)], tmp_path)
    folded.put_staged("a", big, None)
    assert not folded.journal.in_memory("a")  # a big update never stays in memory
    folded.close()
    small.close()


async def test_engine_with_fedavg_folds_and_honours_resends(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    start = model(rng)

    engine = mean_engine(start, tmp_path)
    for client in "ab":
        engine.join(client)
    first, second, resent = model(rng), model(rng), model(rng)
    assert (await engine.submit("a", first, 0, 10)).accepted
    assert (await engine.submit("a", resent, 0, 30)).accepted  # replaces the first
    assert (await engine.submit("b", second, 0, 10)).aggregated
    _, weights = engine.current()
    assert close(weights, mean([resent, second], [30, 10]))
    await engine.close()

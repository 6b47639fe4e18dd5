"""The engine's incrementally kept participant sets equal their definitions after every step.

`participants()` and the awaited set are maintained per event (so a round of N posts costs O(N));
this replays random join / leave / submit sequences and recomputes both from the module's
definitions after each step: participants = connected clients whose last contribution counted
for the current or the previous round; awaited = participants without a contribution this round;
live participants (statistics) = awaited + contributors that did not leave since contributing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disco.server.federated.engine import RoundEngine

CLIENTS = ["a", "b", "c", "d", "e"]
Step = tuple[str, str, int]  # (action, client, round offset)


def _mean(updates: Sequence[list[np.ndarray]], _: object, __: object) -> list[np.ndarray]:
    return [np.mean([u[0] for u in updates], axis=0).astype(np.float32)]


async def _replay(steps: list[Step], min_participants: int) -> None:
    persisted: list[int] = []

    async def persist(_: object, round_: int) -> None:
        persisted.append(round_)

    engine = RoundEngine(
        "t",
        [np.zeros(2, np.float32)],
        min_participants=min_participants,
        deadline_s=3600.0,
        max_staleness=1,
        aggregator=_mean,
        persist=persist,
    )
    connected: set[str] = set()
    last_counted: dict[str, int] = {}
    departed: set[str] = set()  # contributors of the round that left after contributing
    try:
        for action, client, offset in steps:
            if action == "join":
                engine.join(client)
                connected.add(client)
                departed.discard(client)
            elif action == "leave":
                if client in engine.contributors():
                    departed.add(client)
                engine.leave(client)
                connected.discard(client)
            else:
                before = engine.round
                result = await engine.submit(client, [np.ones(2, np.float32)], before - offset)
                if result.accepted:
                    last_counted[client] = before
            await asyncio.sleep(0)  # let an aggregation kicked by a leave run
            current = engine.round
            expected = {c for c in connected if last_counted.get(c, -10) >= current - 1}
            assert engine.participants() == expected
            awaited = expected - engine.contributors()
            departed &= engine.contributors()  # a new round forgets the last one's departures
            stats = engine.statistics()
            live = engine.contributors() - departed
            assert stats.current_participants == len(awaited) + len(live)
            # A complete round never lingers: quorum reached and nobody awaited means aggregated.
            assert not (len(engine.contributors()) >= min_participants and not awaited)
        assert persisted == list(range(1, engine.round + 1))
    finally:
        await engine.close()


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["join", "leave", "submit", "submit"]),
            st.sampled_from(CLIENTS),
            st.integers(0, 2),
        ),
        max_size=40,
    ),
    min_participants=st.integers(1, 3),
)
def test_incremental_sets_match_their_definitions(steps: list[Step], min_participants: int) -> None:
    asyncio.run(_replay(steps, min_participants))

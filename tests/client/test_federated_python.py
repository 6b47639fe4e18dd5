"""Four Python clients train `titanic` federated against an in-process server.

Figure (seeded run, generated titanic-like data, 20 rounds): held-out accuracy of the global
model ~0.78 over the last rounds against a majority-class rate of ~0.64.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")


from disco.client import Client, TrainOptions  # noqa: E402
from disco.client.federated import FederatedError, FederatedSession  # noqa: E402
from disco.server.runner import serve_in_thread  # noqa: E402
from disco.server.settings import Settings  # noqa: E402
from disco.simulation.builtin_data import builtin_dataset  # noqa: E402
from disco.simulation.splits import majority_rate, split_iid  # noqa: E402


@pytest.fixture
def server(tmp_path: Path) -> str:
    settings = Settings(
        data_dir=tmp_path,
        port=0,
        log_level="warning",
        default_min_participants=4,
        round_deadline_s=5.0,
    )
    with serve_in_thread(settings) as url:
        yield url


async def test_four_python_clients_beat_the_majority_class(server: str) -> None:
    torch.set_num_threads(1)
    client = Client(server)
    task = await client.task_async("titanic")
    data = builtin_dataset(task)
    train, held_out = data.split(0.2, seed=0)
    histories = await asyncio.gather(
        *(
            client.train_async(
                "titanic",
                part,
                TrainOptions(
                    rounds=20,
                    seed=i,
                    round_timeout_s=30.0,
                    validation=held_out if i == 0 else None,
                ),
            )
            for i, part in enumerate(split_iid(train, 4, seed=0))
        )
    )
    rounds = histories[0].rounds
    assert len(rounds) == 20
    assert all(r.aggregated and r.participants == 4 for h in histories for r in h.rounds)
    # Every participant ends with the same global model.
    finals = [h.final_weights for h in histories]
    for other in finals[1:]:
        assert other is not None and finals[0] is not None
        for a, b in zip(finals[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
    late_accuracy = float(np.mean([r.val_accuracy for r in rounds[-5:]]))
    assert late_accuracy > majority_rate(held_out) + 0.07, (late_accuracy, majority_rate(held_out))


async def test_unknown_task_and_refused_update_are_clear_errors(server: str) -> None:
    from disco.client.remote import ServerError

    with pytest.raises(ServerError, match=r"unknown task 'nope'.*titanic"):
        await Client(server).task_async("nope")
    async with FederatedSession(server, "titanic") as session:
        _, weights = await session.latest()
        weights[0] = weights[0][:1].copy()  # wrong shape
        with pytest.raises(FederatedError, match=r"refused"):
            await session.contribute(weights, 0, 10, timeout_s=5.0)

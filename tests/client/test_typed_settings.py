"""The client trains with the typed task's settings: batch size, round length, client-side DP."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from disco.client.api import model_for
from disco.client.options import TrainOptions
from disco.client.session import Exchange, run_training
from disco.client.training import LocalTrainer
from disco.simulation.builtin_data import builtin_dataset
from disco.tasks.defaults import titanic_model
from disco.tasks.schema import Task
from disco.weights import Weights
from support.tasks import make_task


class Recording:
    """A communicator that keeps what it was sent and returns no aggregate (local weights stay)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Weights, int]] = []

    async def exchange(
        self, weights: Weights, round_: int, num_samples: int, epsilon: float | None = None
    ) -> Exchange:
        self.sent.append(([np.array(w) for w in weights], num_samples))
        return Exchange(None, 1, round_ + 1)


def _norm(a: Weights, b: Weights) -> float:
    squares = (np.sum((np.float64(x) - np.float64(y)) ** 2) for x, y in zip(a, b, strict=True))
    return float(np.sqrt(sum(squares)))


async def _first_update(task: Task) -> tuple[float, int, LocalTrainer]:
    """Norm of the first round's update, and the samples it covered."""
    model = model_for(titanic_model(np.random.default_rng(0)))
    trainer = LocalTrainer(model, task.training_information, seed=0)
    before = model.tfjs_weights()
    recording = Recording()
    history = await run_training(
        task,
        trainer,
        builtin_dataset(task),
        recording,
        "federated",
        TrainOptions(rounds=1, seed=0),
    )
    assert history.task_id == task.task_id and len(history.rounds) == 1
    sent, samples = recording.sent[0]
    return _norm(sent, before), samples, trainer


async def test_rounds_follow_the_tasks_batch_size_and_round_duration() -> None:
    _, samples, trainer = await _first_update(make_task("titanic", batchSize=8, roundDuration=3))
    assert (trainer.batch_size, trainer.round_duration) == (8, 3)
    assert samples == 8 * 3


async def test_updates_are_clipped_and_noised_as_the_typed_task_says() -> None:
    plain, _, _ = await _first_update(make_task("titanic", roundDuration=2))
    radius = plain / 100
    clipped, _, _ = await _first_update(
        make_task("titanic", roundDuration=2, clippingRadius=radius)
    )
    assert clipped == pytest.approx(radius, rel=1e-3)
    noised, _, _ = await _first_update(
        make_task("titanic", roundDuration=2, clippingRadius=radius, noiseScale=10.0)
    )
    assert noised > 10 * radius  # noise of standard deviation noiseScale * clippingRadius

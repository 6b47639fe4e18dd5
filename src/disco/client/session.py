"""A training run: local steps interleaved with communication rounds, with per-round history.

The communication itself is pluggable (`Communicator`): federated through the server, or
decentralized among peers. Rounds last `roundDuration` batches, as in DISCO 2.1.1.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from disco.client.data.dataset import Dataset
from disco.client.privacy import plan_for, planned_rounds, privatize
from disco.weights import Weights

log = logging.getLogger("disco.client.session")

if TYPE_CHECKING:
    from disco.client.options import TrainOptions
    from disco.client.training import LocalTrainer  # torch: imported when training starts
    from disco.tasks.schema import Task


@dataclass(frozen=True)
class Exchange:
    """The outcome of one communication round."""

    weights: Weights | None  # aggregated weights, None when nothing came back (keep local ones)
    participants: int
    round: int  # the round this participant contributes to next


class Communicator(Protocol):
    """Shares this participant's weights for a round and returns the aggregate."""

    async def exchange(
        self, weights: Weights, round_: int, num_samples: int, epsilon: float | None = None
    ) -> Exchange:
        """`epsilon`: the client-side DP ε spent once this update is out (reported to the
        server when the channel carries it)."""
        ...


@dataclass
class RoundRecord:
    """One line of history: what a round did."""

    round: int
    epoch: int
    batches: int
    loss: float
    accuracy: float
    participants: int
    aggregated: bool
    seconds: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    epsilon: float | None = None  # client-side DP ε spent after this round (None: no DP)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class History:
    """Per-round records of a run, plus the final model weights."""

    task_id: str
    scheme: str
    rounds: list[RoundRecord] = field(default_factory=list)
    final_weights: Weights | None = None
    delta: float | None = None  # δ of the records' ε (None: updates carry no DP guarantee)
    budget: float | None = None  # ε the task allows
    stopped: str | None = None  # why training stopped before its plan (the budget), else None

    @property
    def epsilon(self) -> float | None:
        """ε spent over the run so far (None without client-side DP)."""
        spent = [r.epsilon for r in self.rounds if r.epsilon is not None]
        return spent[-1] if spent else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "scheme": self.scheme,
            "rounds": [r.as_dict() for r in self.rounds],
            "epsilon": self.epsilon,
            "delta": self.delta,
            "budget": self.budget,
            "stopped": self.stopped,
        }


RoundCallback = Callable[[RoundRecord], None]
BatchCallback = Callable[[int, int, float, float], None]  # epoch, batch, loss, accuracy


def _round_batches(
    trainer: LocalTrainer, data: Dataset, epochs: int | None, rounds: int | None
) -> Iterator[list[tuple[int, Dataset]]]:
    """Group batches into rounds of `round_duration` (a last partial round is kept)."""
    if rounds is not None:
        stream = trainer.batches(data, epochs=10**9)
    else:
        stream = trainer.batches(data, epochs=epochs)
    produced = 0
    group: list[tuple[int, Dataset]] = []
    for item in stream:
        group.append(item)
        if len(group) == trainer.round_duration:
            yield group
            produced += 1
            group = []
            if rounds is not None and produced >= rounds:
                return
    if group:
        yield group


async def run_training(
    task: Task,
    trainer: LocalTrainer,
    data: Dataset,
    communicator: Communicator,
    scheme: str,
    options: TrainOptions,
    start_round: int = 0,
) -> History:
    """Train on `data`, exchanging weights every round; returns the history."""
    info = task.training_information
    rng = np.random.default_rng(options.seed)
    history = History(task.task_id, scheme)
    plan = plan_for(
        info,
        planned_rounds(
            len(data), trainer.batch_size,
            options.epochs if options.epochs is not None else trainer.epochs,
            trainer.round_duration, options.rounds,
        ),
    )
    account = plan.account()
    if account is not None:
        history.delta, history.budget = plan.delta, plan.budget
    warned = False
    previous = trainer.model.tfjs_weights()
    round_ = start_round
    for group in _round_batches(trainer, data, options.epochs, options.rounds):
        spent_after: float | None = None
        if account is not None:
            spent_after = account.epsilon_after(1)
            if plan.budget is not None and spent_after > plan.budget:
                reason = (
                    f"privacy budget: another round would bring ε to {spent_after:.3g} > "
                    f"{plan.budget:g} (δ = {plan.delta:g})"
                )
                if plan.on_exhausted == "stop":
                    log.warning("stopping: %s", reason)
                    history.stopped = reason
                    break
                if not warned:
                    log.warning("continuing past the %s", reason)
                    warned = True
        started = time.monotonic()
        losses, accuracies = [], []
        for index, (epoch, batch) in enumerate(group):
            metrics = await asyncio.to_thread(trainer.step, batch)  # keep the loop responsive
            losses.append(metrics.loss)
            accuracies.append(metrics.accuracy)
            if options.on_batch is not None:
                options.on_batch(epoch, index, metrics.loss, metrics.accuracy)
        update = privatize(
            trainer.model.tfjs_weights(), previous, plan.clipping_radius, plan.noise_std, rng
        )
        samples = sum(len(batch) for _, batch in group)
        result = await communicator.exchange(update, round_, samples, spent_after)
        if account is not None:
            account.spend()  # the update left this participant, aggregated or not
        if result.weights is not None:
            trainer.model.set_tfjs_weights(result.weights)
        previous = trainer.model.tfjs_weights()
        record = RoundRecord(
            round=round_,
            epoch=group[-1][0],
            batches=len(group),
            loss=float(np.mean(losses)),
            accuracy=float(np.mean(accuracies)),
            participants=result.participants,
            aggregated=result.weights is not None,
            seconds=time.monotonic() - started,
            epsilon=None if account is None else account.epsilon,
        )
        if options.validation is not None and len(options.validation):
            evaluated = await asyncio.to_thread(trainer.evaluate, options.validation)
            record.val_loss, record.val_accuracy = evaluated.loss, evaluated.accuracy
        history.rounds.append(record)
        if options.on_round is not None:
            options.on_round(record)
        round_ = result.round
    history.final_weights = trainer.model.tfjs_weights()
    return history

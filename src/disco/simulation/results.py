"""What a simulation did, round by round: the per-round table and its JSON log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from disco.client.session import History, RoundRecord


@dataclass
class SimulationRound:
    """One row of the per-round table.

    `loss` is the participants' mean training loss over the round's batches; `accuracy` and
    `val_loss` are the global model's on the held-out data (None when not evaluated);
    `aggregated` counts the participants whose round produced an aggregate.
    """

    round: int
    participants: int
    loss: float
    accuracy: float | None
    val_loss: float | None
    seconds: float
    aggregated: int = 0


@dataclass
class SimulationResult:
    """What a simulation did, round by round; `write_json` saves it as the JSON log."""

    task_id: str
    scheme: str
    clients: int
    split: str
    secure: bool
    rounds: list[SimulationRound] = field(default_factory=list)
    majority_rate: float | None = None
    seconds: float = 0.0
    engine: str = "local"
    seed: int = 0
    server: str = ""
    held_out: int = 0
    train_sizes: list[int] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float | None:
        return self.rounds[-1].accuracy if self.rounds else None

    def mean_accuracy(self, last: int = 3) -> float | None:
        """Mean held-out accuracy of the last `last` evaluated rounds (less noisy than one)."""
        values = [r.accuracy for r in self.rounds if r.accuracy is not None][-last:]
        return float(np.mean(values)) if values else None

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "final_accuracy": self.final_accuracy,
            "mean_accuracy_last_3": self.mean_accuracy(3),
        }

    def write_json(self, path: str | Path) -> Path:
        target = Path(path)
        target.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
        return target


def combine_rounds(histories: Sequence[History]) -> list[SimulationRound]:
    """Per-round table from all participants' histories (evaluation from participant 0)."""
    by_round: dict[int, list[RoundRecord]] = {}
    for history in histories:
        for index, record in enumerate(history.rounds):
            by_round.setdefault(index, []).append(record)
    evaluated = histories[0].rounds if histories else []
    rows = []
    for index in sorted(by_round):
        records = by_round[index]
        ref = evaluated[index] if index < len(evaluated) else None
        rows.append(
            SimulationRound(
                round=index + 1,
                participants=max(r.participants for r in records),
                loss=float(np.mean([r.loss for r in records])),
                accuracy=ref.val_accuracy if ref is not None else None,
                val_loss=ref.val_loss if ref is not None else None,
                seconds=max(r.seconds for r in records),
                aggregated=sum(1 for r in records if r.aggregated),
            )
        )
    return rows

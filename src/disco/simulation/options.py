"""`SimulationOptions`: what `simulate_async` runs, checked before anything starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from disco.client.data.dataset import Dataset
from disco.client.data.tabular import Missing
from disco.client.options import (
    DecentralizedOptions,
    OptionsError,
    Scheme,
    TrainOptions,
    require_choice,
)
from disco.client.session import RoundCallback, RoundRecord
from disco.protocol.compression import Compression
from disco.simulation.splits import parse_split

Engine = Literal["local", "ray"]
ParticipantListener = Callable[[int, RoundRecord], None]
"""Called with (participant index, record) after each of a participant's rounds."""


@dataclass(frozen=True, kw_only=True)
class SimulationOptions:
    """How a simulation runs; every field has a working default.

    - `scheme`, `secure`, `rounds`, `round_timeout_s`, `decentralized`: as in `TrainOptions`,
      for every participant; `seed`: participant i trains with seed + i, the split uses seed;
    - `data_path`: a CSV file or image folder (None: the task's built-in data), read with
      `missing` and `resize`; `split`: "iid" or "dirichlet:ALPHA"; `holdout`: fraction of the
      data kept for evaluating the global model after each round;
    - `engine`: "local" (asyncio tasks here) or "ray" (Ray actors, on `ray_address` or a local
      Ray); `on_participant_round`: progress callback;
    - `compression`: federated participants send "fp16" or "int8" updates.
    """

    scheme: Scheme = "federated"
    secure: bool = False
    rounds: int | None = None
    data_path: str | Path | None = None
    split: str = "iid"
    holdout: float = 0.2
    seed: int = 0
    round_timeout_s: float = 120.0
    engine: Engine = "local"
    ray_address: str | None = None
    on_participant_round: ParticipantListener | None = None
    decentralized: DecentralizedOptions = field(default_factory=DecentralizedOptions)
    missing: Missing = "error"
    resize: bool = False
    compression: Compression | None = None

    def __post_init__(self) -> None:
        self.participant(0)  # the participants' own options are checked by TrainOptions
        require_choice("engine", self.engine, Engine)
        require_choice("missing", self.missing, Missing)
        parse_split(self.split)
        if not 0.0 < self.holdout < 1.0:
            raise OptionsError(f"the held-out fraction must be in (0, 1), got {self.holdout}")

    def participant(
        self,
        index: int,
        validation: Dataset | None = None,
        on_round: RoundCallback | None = None,
    ) -> TrainOptions:
        """The training options of participant `index` (participant 0 evaluates `validation`)."""
        return TrainOptions(
            scheme=self.scheme,
            secure=self.secure,
            rounds=self.rounds,
            validation=validation,
            on_round=on_round,
            round_timeout_s=self.round_timeout_s,
            seed=self.seed + index,
            decentralized=self.decentralized,
            compression=self.compression,
        )

"""Options objects: impossible values fail when the options are built, naming the option."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")

from disco.client import Dataset, DecentralizedOptions, OptionsError, TrainOptions
from disco.simulation import SimulationOptions


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: TrainOptions(rounds=0), "rounds"),
        (lambda: TrainOptions(epochs=-1), "epochs"),
        (lambda: TrainOptions(round_timeout_s=float("nan")), "round_timeout_s"),
        (lambda: TrainOptions(scheme="local"), "scheme"),  # type: ignore[arg-type]
        (lambda: TrainOptions(missing="zero"), "missing"),  # type: ignore[arg-type]
        (lambda: DecentralizedOptions(route="p2p"), "route"),  # type: ignore[arg-type]
        (lambda: DecentralizedOptions(max_share_value=0), "max_share_value"),
        (lambda: DecentralizedOptions(connect_timeout_s=-1), "connect_timeout_s"),
        (lambda: SimulationOptions(split="dirichlet:0"), "split"),
        (lambda: SimulationOptions(holdout=1.0), "held-out"),
        (lambda: SimulationOptions(engine="dask"), "engine"),  # type: ignore[arg-type]
        (lambda: SimulationOptions(rounds=0), "rounds"),
    ],
)
def test_impossible_values_are_refused(build: object, named: str) -> None:
    with pytest.raises(OptionsError, match=named):
        build()  # type: ignore[operator]


def test_options_are_frozen_and_keyword_only() -> None:
    options = TrainOptions(rounds=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.rounds = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        TrainOptions(3)  # type: ignore[misc]
    assert dataclasses.replace(options, seed=5) == TrainOptions(rounds=3, seed=5)


def test_each_simulated_participant_gets_its_training_options() -> None:
    peers = DecentralizedOptions(loopback_only=True)
    held_out = Dataset(np.zeros((2, 1), np.float32), np.zeros(2, np.int64), num_classes=2)
    options = SimulationOptions(
        scheme="decentralized", secure=True, rounds=4, seed=10, decentralized=peers
    )
    first = options.participant(0, held_out)
    third = options.participant(2)
    assert (first.scheme, first.secure, first.rounds, first.seed) == ("decentralized", True, 4, 10)
    assert first.validation is held_out and first.decentralized is peers
    assert (third.seed, third.validation) == (12, None)


@pytest.mark.parametrize("name", ["evaluate", "predict"])
def test_blocking_entry_points_take_the_typed_options_of_their_async_twins(name: str) -> None:
    """`Client.evaluate`/`predict` name their options (no `**options: Any` dropping types)."""
    import inspect

    from disco.client import Client

    blocking = inspect.signature(getattr(Client, name)).parameters
    awaitable = inspect.signature(getattr(Client, f"{name}_async")).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in blocking.values())
    assert [(p.name, p.kind, p.default, p.annotation) for p in blocking.values()] == [
        (p.name, p.kind, p.default, p.annotation) for p in awaitable.values()
    ]


def test_create_task_takes_the_typed_options_of_its_async_twin() -> None:
    """`Client.create_task` names its options like its async twin; only schema fields are free."""
    import inspect

    from disco.client import Client

    blocking = inspect.signature(Client.create_task).parameters
    awaitable = inspect.signature(Client.create_task_async).parameters
    assert [(p.name, p.kind, p.default, p.annotation) for p in blocking.values()] == [
        (p.name, p.kind, p.default, p.annotation) for p in awaitable.values()
    ]
    assert blocking["torch_only"].kind is inspect.Parameter.KEYWORD_ONLY

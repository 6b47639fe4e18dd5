"""Run a simulation: split the data, train every participant concurrently, evaluate each round.

Participants are asyncio tasks in this process by default, or Ray actors (`engine="ray"`) so a
large simulation spreads over a cluster. Each round the global model is evaluated on held-out
data: participant 0 holds the evaluation set, and its weights right after a round's exchange are
the global model (federated: the server's aggregate; decentralized: the peers' mean).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import httpx

from disco.client.data.dataset import DataError, Dataset
from disco.client.data.loading import load_task_data
from disco.client.options import OptionsError
from disco.client.remote import fetch_model, fetch_task
from disco.client.session import History, RoundRecord
from disco.simulation.builtin_data import builtin_dataset
from disco.simulation.local_server import quorum_problem
from disco.simulation.options import SimulationOptions
from disco.simulation.results import SimulationResult, combine_rounds
from disco.simulation.splits import majority_rate, split_data
from disco.tasks.schema import Task

log = logging.getLogger("disco.simulation")


async def _all_or_none(coroutines: Sequence[Coroutine[Any, Any, History]]) -> list[History]:
    """Run the participants together; if one fails (or we are cancelled) stop the others.

    Stopping means cancelling and awaiting them, so every connection is closed on the way out.
    """
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def prepare_data(
    server_url: str, task_id: str, options: SimulationOptions
) -> tuple[Task, Dataset, Dataset]:
    """The task, its training data and held-out evaluation data (built-in data without a path)."""
    async with httpx.AsyncClient(timeout=30) as http:
        task = await fetch_task(http, server_url, task_id)
        remote = await fetch_model(http, server_url, task_id)
    if options.data_path is None:
        data = await asyncio.to_thread(builtin_dataset, task)
    else:
        data = await asyncio.to_thread(
            load_task_data,
            task.training_information,
            options.data_path,
            remote.artifacts.model_topology,
            missing=options.missing,
            resize=options.resize,
        )
    if len(data) < 4:
        raise DataError(f"too little data to simulate: {len(data)} samples")
    train, held_out = data.split(options.holdout, seed=options.seed)
    return task, train, held_out


async def simulate_async(
    server_url: str, task_id: str, clients: int, options: SimulationOptions | None = None
) -> SimulationResult:
    """Run `clients` participants of `task_id` concurrently and collect the per-round table.

    With `engine="ray"` each participant is a Ray actor (Ray is initialised locally, or on
    `ray_address`, unless the caller already did).
    """
    options = options or SimulationOptions()
    if clients < 1:
        raise OptionsError("a simulation needs at least one participant")
    started = time.monotonic()
    task, train, held_out = await prepare_data(server_url, task_id, options)
    problem = quorum_problem(task, options.scheme, clients)
    if problem is not None:
        log.warning("%s; rounds will wait for other participants", problem)
    parts = split_data(train, clients, options.split, options.seed)
    result = SimulationResult(
        task_id,
        options.scheme,
        clients,
        options.split,
        options.secure,
        majority_rate=majority_rate(held_out),
        engine=options.engine,
        seed=options.seed,
        server=server_url,
        held_out=len(held_out),
        train_sizes=[len(p) for p in parts],
    )
    listener = options.on_participant_round
    if options.engine == "ray":
        from disco.simulation.ray_engine import RayJob, run_with_ray

        stop = threading.Event()
        # The callback stays here: Ray ships the job to the actors, and a callback may not travel.
        job = RayJob(server_url, task_id, dataclasses.replace(options, on_participant_round=None))
        try:
            histories = await asyncio.to_thread(
                run_with_ray, job, parts, held_out, options.ray_address, listener, stop
            )
        finally:
            stop.set()  # on cancellation: the polling thread kills the actors and returns
    else:
        from disco.client.api import Client  # torch: the Ray driver does without it

        client = Client(server_url)

        def on_round(index: int) -> Callable[[RoundRecord], None] | None:
            if listener is None:
                return None
            return lambda record: listener(index, record)

        histories = await _all_or_none(
            [
                client.train_async(
                    task_id,
                    part,
                    options.participant(index, held_out if index == 0 else None, on_round(index)),
                )
                for index, part in enumerate(parts)
            ]
        )
    result.rounds = combine_rounds(histories)
    result.seconds = time.monotonic() - started
    return result

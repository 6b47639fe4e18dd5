"""Run simulated participants as Ray actors (`pip install .[ray]`), one actor per participant.

Each actor trains with the ordinary `Client` against the server URL, so the participants can sit
on any machine of a Ray cluster that reaches the server. An in-process simulation server listens
on 127.0.0.1: with it, use a local Ray instance (the default) or a cluster on this machine only.

Actors are threaded (two threads): one trains, the other answers `records()` so the driver can
show per-round progress while training runs. Each actor uses one torch thread (participants
already run in parallel) and asks Ray for `min(1, cluster CPUs / participants)` CPUs, so that
all participants are scheduled at once: a round only completes when every one of them joins.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from disco.client.data.dataset import Dataset
from disco.client.session import History, RoundRecord
from disco.errors import DiscoError
from disco.simulation.options import SimulationOptions

POLL_INTERVAL_S = 0.5


class RayEngineError(DiscoError, RuntimeError):
    """Ray is missing or unreachable, or a participant actor failed or died; the message says."""


class RayMissingError(RayEngineError):
    """The ray extra is not installed."""


@dataclass(frozen=True)
class RayJob:
    """What every participant of a Ray simulation shares (everything but its data)."""

    server_url: str
    task_id: str
    options: SimulationOptions  # without its callback: progress is reported by the driver


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayMissingError("--engine ray needs the ray extra: pip install '.[ray]'") from None
    return ray


def reachable_address(address: str, timeout_s: float = 3.0) -> None:
    """RayEngineError unless a `host:port` (or `ray://host:port`) Ray address accepts TCP.

    Ray itself retries an unreachable cluster for minutes; this fails in seconds instead.
    Other forms (`auto`, `local`) are left to Ray.
    """
    target = address.removeprefix("ray://")
    host, separator, port = target.rpartition(":")
    if not separator or not port.isdigit() or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        raise RayEngineError(f"cannot reach the Ray cluster at {address}: {error}") from None


def init_ray(
    address: str | None = None, num_cpus: int | None = None, verbose: bool = False
) -> bool:
    """Start (or connect to) Ray unless it is already running; True when this call started it.

    Call it from the main thread when possible (Ray installs signal handlers there). A local
    instance binds to 127.0.0.1 and gets `num_cpus` (default: this machine's count).
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.ERROR,
        "include_dashboard": False,
    }
    if address:
        reachable_address(address)
        options["address"] = address
    else:
        options["num_cpus"] = num_cpus or os.cpu_count() or 1
        options["_node_ip_address"] = "127.0.0.1"
    ray.init(**options)
    return True


def cpus_per_participant(cluster_cpus: float, participants: int) -> float:
    """CPUs per actor so that all `participants` fit on the cluster at once (at most 1).

    Rounded down to Ray's resource precision (1e-4) so that n shares never exceed the total;
    a cluster without CPU resources gets 0 (no CPU accounting).
    """
    if participants < 1:
        raise ValueError("no participants")
    if cluster_cpus <= 0:
        return 0.0
    share = math.floor(cluster_cpus / participants * 10_000) / 10_000
    return max(0.0001, min(1.0, share))


class Participant:
    """Body of the actor: trains one participant, remembering each round for `records`."""

    def __init__(self) -> None:
        self._records: list[RoundRecord] = []
        self._lock = threading.Lock()

    def run(self, job: RayJob, data: Dataset, validation: Dataset | None, index: int) -> History:
        import torch

        from disco.client.api import Client

        torch.set_num_threads(1)
        data = _writable(data)
        validation = _writable(validation) if validation is not None else None

        def remember(record: RoundRecord) -> None:
            with self._lock:
                self._records.append(record)

        options = job.options.participant(index, validation, remember)
        return Client(job.server_url).train(job.task_id, data, options)

    def records(self, start: int = 0) -> list[RoundRecord]:
        """The rounds completed so far, from index `start`."""
        with self._lock:
            return self._records[start:]


def _writable(data: Dataset) -> Dataset:
    """A copy whose arrays torch may wrap (Ray hands actors read-only, zero-copy arrays)."""
    return Dataset(data.x.copy(), data.y.copy(), data.num_classes)


def run_with_ray(
    job: RayJob,
    parts: Sequence[Dataset],
    held_out: Dataset,
    ray_address: str | None = None,
    on_participant_round: Callable[[int, RoundRecord], None] | None = None,
    stop: threading.Event | None = None,
) -> list[History]:
    """Train every part in its own actor; returns the histories in participant order.

    Blocking (run it in a thread from asyncio). Participant 0 evaluates on `held_out` and its
    rounds are reported to `on_participant_round` as they complete. Setting `stop` kills the
    actors and raises RayEngineError. Ray is shut down again only if this call started it.
    """
    ray = _ray()
    started_here = init_ray(ray_address, num_cpus=len(parts) if ray_address is None else None)
    actors: list[Any] = []
    try:
        cpus = cpus_per_participant(float(ray.cluster_resources().get("CPU", 0)), len(parts))
        actor_class = ray.remote(num_cpus=cpus, max_concurrency=2)(Participant)
        actors = [actor_class.remote() for _ in parts]
        futures = [
            actor.run.remote(job, part, held_out if index == 0 else None, index)
            for index, (actor, part) in enumerate(zip(actors, parts, strict=True))
        ]
        index_of = {future: index for index, future in enumerate(futures)}
        seen = 0
        pending = list(futures)
        while pending:
            if stop is not None and stop.is_set():
                raise RayEngineError("the simulation was stopped")
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_INTERVAL_S)
            for future in ready:  # a failed participant stops the simulation at once
                _result(ray, future, index_of[future])
            if on_participant_round is not None:
                seen = _report(ray, actors[0], seen, on_participant_round)
        histories = [_result(ray, future, index) for index, future in enumerate(futures)]
        if on_participant_round is not None:  # rounds that ended after the last poll
            for record in histories[0].rounds[seen:]:
                on_participant_round(0, record)
        return histories
    finally:
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()


def _report(ray: Any, actor: Any, seen: int, listener: Callable[[int, RoundRecord], None]) -> int:
    """Pass participant 0's new rounds to the listener; the new count of reported rounds."""
    try:
        records: list[RoundRecord] = ray.get(actor.records.remote(seen), timeout=10)
    except Exception:  # progress is informational; the result check reports real failures
        return seen
    for record in records:
        listener(0, record)
    return seen + len(records)


def _result(ray: Any, future: Any, index: int) -> History:
    """A participant's history, or RayEngineError with the participant's own error message."""
    try:
        history: History = ray.get(future)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None) or error
        raise RayEngineError(f"participant {index} failed: {cause}") from None
    except ray.exceptions.RayActorError as error:
        raise RayEngineError(f"participant {index}'s actor died: {error}") from None
    return history

"""Run simulated participants as Ray actors (`pip install .[ray]`), one actor per participant.

Each actor trains with the ordinary `Client` against the server URL, so the participants can
sit on any machine of a Ray cluster that reaches the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from disco.client.data.dataset import DataError, Dataset
from disco.client.session import History


class RayMissingError(DataError):
    """The ray extra is not installed."""


def _participant(
    server_url: str,
    task_id: str,
    data: Dataset,
    validation: Dataset | None,
    scheme: str,
    secure: bool,
    rounds: int | None,
    round_timeout_s: float,
    seed: int,
) -> History:
    import torch

    from disco.client.api import Client

    torch.set_num_threads(1)
    return Client(server_url).train(
        task_id,
        data,
        scheme=scheme,
        secure=secure,
        rounds=rounds,
        validation=validation,
        round_timeout_s=round_timeout_s,
        seed=seed,
    )


def run_with_ray(
    server_url: str,
    task_id: str,
    parts: Sequence[Dataset],
    held_out: Dataset,
    scheme: str,
    secure: bool,
    rounds: int | None,
    round_timeout_s: float,
    seed: int,
    ray_address: str | None,
) -> list[History]:
    """Train every part in its own Ray task; returns the histories in participant order."""
    try:
        import ray
    except ImportError:
        raise RayMissingError("--engine ray needs the ray extra: pip install '.[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = (
            {"address": ray_address}
            if ray_address
            else {"num_cpus": max(2, len(parts)), "include_dashboard": False}
        )
        ray.init(ignore_reinit_error=True, log_to_driver=False, **options)
    try:
        remote = ray.remote(num_cpus=0.5 if ray_address is None else 1)(_participant)
        futures = [
            remote.remote(
                server_url,
                task_id,
                part,
                held_out if index == 0 else None,
                scheme,
                secure,
                rounds,
                round_timeout_s,
                seed + index,
            )
            for index, part in enumerate(parts)
        ]
        histories: list[History] = ray.get(futures)
        return histories
    finally:
        if started_here:
            ray.shutdown()

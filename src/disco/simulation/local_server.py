"""An in-process server for a simulation, whose task waits for exactly the simulated participants.

`simulation_server(task_id, n)` runs a server on a free loopback port whose copy of the task
waits for exactly `n` participants (`minNbOfParticipants` and `minimumReadyPeers` set to `n`):
every round then aggregates all `n` updates, whatever the task's own minimum says. This is the
one module of the simulation that uses the server package.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from disco.client.options import OptionsError
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from disco.tasks.defaults import default_tasks
from disco.tasks.schema import parse_task
from disco.tasks.store import TaskStore


def with_quorum(task_json: Mapping[str, Any], participants: int) -> dict[str, Any]:
    """A copy of a task JSON whose rounds wait for exactly `participants` clients/peers."""
    if participants < 1:
        raise OptionsError("a simulation needs at least one participant")
    copied = copy.deepcopy(dict(task_json))
    info = dict(copied.get("trainingInformation") or {})
    info["minNbOfParticipants"] = participants
    info["minimumReadyPeers"] = participants
    copied["trainingInformation"] = info
    return copied


def quorum_problem(task_json: Mapping[str, Any], scheme: str, participants: int) -> str | None:
    """Why `participants` simulated clients alone cannot complete a round of this task, if so.

    Only minimums the task states are checked (a server default is not visible to clients).
    """
    info = task_json.get("trainingInformation") or {}
    key = "minimumReadyPeers" if scheme == "decentralized" else "minNbOfParticipants"
    value = info.get(key) if isinstance(info, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > participants:
        return (
            f"task {task_json.get('taskID')!r} has {key}={value}: rounds wait for "
            f"{value} participants, but only {participants} are simulated"
        )
    return None


@contextmanager
def simulation_server(
    task_id: str, participants: int, round_deadline_s: float = 10.0
) -> Iterator[str]:
    """An in-process server (throwaway data folder, free loopback port) for a simulation.

    Its copy of the default task `task_id` waits for `participants` (see `with_quorum`); the
    other default tasks are served unchanged. Yields the base URL; stops the server on exit.
    """
    with tempfile.TemporaryDirectory(prefix="disco-sim-") as folder:
        store = TaskStore(folder)
        for task, artifacts in default_tasks():
            if task.task_id == task_id:
                store.add(parse_task(with_quorum(task.to_json(), participants)), artifacts)
        settings = Settings(
            host="127.0.0.1",
            port=0,
            data_dir=Path(folder),
            log_level="warning",
            round_deadline_s=round_deadline_s,
            default_min_participants=participants,
        )
        with serve_in_thread(settings) as url:
            yield url

"""An in-process server for a simulation, whose task waits for exactly the simulated participants.

`simulation_server(task_id, n)` runs a server on a free loopback port whose copy of the task
waits for exactly `n` participants (`minNbOfParticipants` and `minimumReadyPeers` set to `n`):
every round then aggregates all `n` updates, whatever the task's own minimum says. This is the
one module of the simulation that uses the server package.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from disco.client.options import OptionsError
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from disco.tasks.defaults import default_tasks
from disco.tasks.schema import Task
from disco.tasks.store import TaskStore


def with_quorum(task: Task, participants: int) -> Task:
    """A copy of a task whose rounds wait for exactly `participants` clients/peers."""
    if participants < 1:
        raise OptionsError("a simulation needs at least one participant")
    info = task.training_information.model_copy(
        update={"min_nb_of_participants": participants, "minimum_ready_peers": participants}
    )
    return task.model_copy(update={"training_information": info})


def quorum_problem(task: Task, scheme: str, participants: int) -> str | None:
    """Why `participants` simulated clients alone cannot complete a round of this task, if so.

    Only minimums the task states are checked (a server default is not visible to clients).
    """
    info = task.training_information
    if scheme == "decentralized":
        key, value = "minimumReadyPeers", info.minimum_ready_peers
    else:
        key, value = "minNbOfParticipants", info.min_nb_of_participants
    if value is not None and value > participants:
        return (
            f"task {task.task_id!r} has {key}={int(value)}: rounds wait for "
            f"{int(value)} participants, but only {participants} are simulated"
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
                store.add(with_quorum(task, participants), artifacts)
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

"""Valid typed tasks for tests of code that reads task settings (the client, simulation, CLI)."""

from __future__ import annotations

from typing import Any

from disco.tasks.defaults import titanic_task
from disco.tasks.schema import Task, parse_task


def make_task(
    task_id: str = "t", *, title: str | None = None, scheme: str = "federated", **training: Any
) -> Task:
    """DISCO's titanic task under `task_id`, typed: `trainingInformation` fields given by their
    DISCO names (`minimumReadyPeers=4`, `dataType="image"`...) override titanic's; a value of
    None removes the field."""
    base = titanic_task()
    info = {**base["trainingInformation"], "scheme": scheme, **training}
    display = {**base["displayInformation"], "taskTitle": title or task_id}
    return parse_task(
        {
            **base,
            "taskID": task_id,
            "displayInformation": display,
            "trainingInformation": {k: v for k, v in info.items() if v is not None},
        }
    )

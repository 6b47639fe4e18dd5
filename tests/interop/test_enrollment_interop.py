"""Two real 2.1.1 JS clients train titanic on a task that requires enrollment: the client cannot
set headers, so each one is given the server URL with its own token as the path prefix
`/p/<token>/` (HTTP and WebSocket alike)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from interop.datasets import good_shards
from interop.harness import ROUND_DEADLINE_S
from interop.p2p import titanic, write_task_folder
from interop.test_federated_interop import TASK, adopted, train

pytestmark = pytest.mark.interop

ADMIN = "interop-admin"


@pytest.fixture
def enrolled_server(tmp_path: Path) -> Iterator[str]:
    task, artifacts = titanic()
    info = {**task["trainingInformation"], "requiresEnrollment": True}
    write_task_folder(tmp_path / "tasks", {**task, "trainingInformation": info}, artifacts)
    settings = Settings(
        data_dir=tmp_path / "data",
        tasks_dir=tmp_path / "tasks",
        load_default_tasks=False,
        port=0,
        log_level="warning",
        round_deadline_s=ROUND_DEADLINE_S,
        admin_token=ADMIN,
    )
    with serve_in_thread(settings) as url:
        yield url


async def test_js_clients_train_through_path_prefix_tokens(
    enrolled_server: str, tmp_path: Path
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=enrolled_server, timeout=10) as http:
        assert TASK not in [t["taskID"] for t in (await http.get("/tasks")).json()]  # hidden
        tokens = [
            (await http.post(f"/tasks/{TASK}/tokens", headers=admin)).json()["token"]
            for _ in range(2)
        ]
        start = (await http.get(f"/p/{tokens[0]}/tasks/{TASK}/status")).json()["round"]
        shards = good_shards(tmp_path / "data", 2)
        records = await asyncio.gather(
            *(
                train(f"{enrolled_server}/p/{token}/", f"c{i}", shard, tmp_path / "barrier", 2)
                for i, (token, shard) in enumerate(zip(tokens, shards, strict=True))
            )
        )
        for record in records:
            assert record["ok"], record.get("error")
            assert record["closes"] == [], record["closes"]
            assert len(record["posts"]) >= 4
            assert adopted(record), "no aggregated weights came back"
        mine = {"Authorization": f"Bearer {tokens[1]}"}
        assert (await http.get(f"/tasks/{TASK}/status", headers=mine)).json()["round"] > start
        assert (await http.get(f"/tasks/{TASK}/status")).status_code == 401
